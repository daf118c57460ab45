"""nexo_client: a client for nexo's native protocol, standard library only.

    from nexo_client import Client, DivisionByZero
    with Client("127.0.0.1", 7070, name="me") as c:
        c.add(2, 3)        # 5
        c.div(7, 2)        # 3.5
        try:
            c.div(1, 0)
        except DivisionByZero as e:
            print(e.code, e.name)   # 6 DIVISION_BY_ZERO
"""
from . import wire
from .client import ERRORS, Client, ConnectionClosed, NexoError, error_for
from .client import (BadFrame, BadPayload, Busy, DivisionByZero, FrameTooLarge, Internal,  # noqa: F401
                     Overflow, ShuttingDown, Timeout, Unauthorized, Unavailable, UnknownMethod,
                     UnsupportedVersion)
from .wire import Code, ProtocolError, Type

__all__ = ["Client", "NexoError", "ConnectionClosed", "ProtocolError", "Code", "Type", "ERRORS", "error_for", "wire",
           "BadFrame", "BadPayload", "Busy", "DivisionByZero", "FrameTooLarge", "Internal", "Overflow",
           "ShuttingDown", "Timeout", "Unauthorized", "Unavailable", "UnknownMethod", "UnsupportedVersion"]
__version__ = "0.1.0"
