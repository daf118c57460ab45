"""A nexo client over the native protocol, standard library only.

Concurrency model: one background reader thread per connection. Any number
of threads may call at once; their requests are pipelined over the one
connection and matched to responses by id. Client.pipeline sends many
requests in one write from a single thread.
"""
import json
import math
import socket
import struct
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import wire
from .wire import Code, Type


class NexoError(Exception):
    """An ERROR answered by the server. code is the numeric code, name its
    name (e.g. "DIVISION_BY_ZERO"), message the server's text."""

    code = 0

    def __init__(self, code: int, message: str = ""):
        self.code = code
        self.name = Code(code).name if code in Code._value2member_map_ else "CODE_%d" % code
        self.message = message
        super().__init__("%s: %s" % (self.name, message) if message else self.name)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


#: One exception class per code: DivisionByZero, Overflow, UnknownMethod, ...
ERRORS: Dict[int, type] = {c.value: type(_camel(c.name), (NexoError,), {"__doc__": "ERROR %s" % c.name}) for c in Code}
globals().update({cls.__name__: cls for cls in ERRORS.values()})


def error_for(code: int, message: str = "") -> NexoError:
    return ERRORS.get(code, NexoError)(code, message)


class ConnectionClosed(Exception):
    """The connection ended; calls without an answer fail with this."""


class _Pending:
    __slots__ = ("event", "result", "error")

    def __init__(self):
        self.event = threading.Event()
        self.result = None
        self.error = None


class Client:
    """One connection to a nexo server. Use as a context manager or call close()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 7070, name: Optional[str] = None,
                 token: Optional[str] = None, timeout: float = 10.0,
                 on_event: Optional[Callable[[str, bytes], None]] = None):
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: Dict[int, _Pending] = {}
        self._next_id = 0
        self._closed: Optional[Exception] = None
        self._goodbye: Optional[str] = None
        self._closing = False
        self._idle = threading.Condition(self._lock)
        self._on_event = on_event
        self._buf = bytearray()
        self.max_frame = wire.DEFAULT_MAX_FRAME  # until WELCOME says
        self._sock.sendall(wire.hello(name, token))
        frame = self._read_frame()
        if frame.type == Type.ERROR:
            self._sock.close()
            raise error_for(*wire.parse_error(frame.body))
        if frame.type != Type.WELCOME:
            self._sock.close()
            raise wire.ProtocolError(Code.BAD_FRAME, "server sent %s instead of WELCOME" % Type(frame.type).name)
        self.welcome = json.loads(frame.body)
        self.client_id = self.welcome["client_id"]
        self.max_frame = self.welcome.get("max_frame", wire.DEFAULT_MAX_FRAME)
        heartbeat = self.welcome.get("heartbeat_ms", 0) / 1000.0
        # The server PINGs every interval: silence for 2.5 of them means it is dead.
        self._sock.settimeout(2.5 * heartbeat if heartbeat > 0 else None)
        self._reader = threading.Thread(target=self._read_loop, name="nexo-reader-%d" % self.client_id, daemon=True)
        self._reader.start()

    # -- reading -----------------------------------------------------------
    def _read_frame(self) -> wire.Frame:
        while True:
            frame, used = wire.decode(self._buf, self.max_frame)
            if frame is not None:
                del self._buf[:used]
                return frame
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionClosed("the server closed the connection")
            self._buf += chunk

    def _read_loop(self):
        try:
            while True:
                f = self._read_frame()
                if f.type == Type.RESPONSE:
                    self._complete(f.id, f.body, None)
                elif f.type == Type.ERROR:
                    code, msg = wire.parse_error(f.body)
                    if f.id == 0:
                        raise error_for(code, msg)
                    self._complete(f.id, None, error_for(code, msg))
                elif f.type == Type.PING:
                    self._send(wire.encode(Type.PONG, f.body, f.id))
                elif f.type == Type.EVENT:
                    if self._on_event:
                        self._on_event(*wire.parse_event(f.body))
                elif f.type == Type.GOODBYE:
                    with self._lock:
                        self._goodbye = f.body.decode("utf-8", "replace")
                elif f.type != Type.PONG:
                    raise wire.ProtocolError(Code.BAD_FRAME, "server sent %s" % Type(f.type).name)
        except socket.timeout:
            self._fail(ConnectionClosed("the server stopped answering heartbeats"))
        except (OSError, ConnectionClosed, NexoError, wire.ProtocolError) as e:
            self._fail(e if isinstance(e, ConnectionClosed) else ConnectionClosed(str(e)))

    def _complete(self, fid, result, error):
        with self._lock:
            p = self._pending.pop(fid, None)
            if not self._pending:
                self._idle.notify_all()
        if p is not None:
            p.result, p.error = result, error
            p.event.set()

    def _fail(self, err: Exception):
        with self._lock:
            if self._closed is None:
                self._closed = err
            pending, self._pending = self._pending, {}
            self._idle.notify_all()
        for p in pending.values():
            p.error = err
            p.event.set()
        try:
            self._sock.close()
        except OSError:
            pass

    # -- writing -----------------------------------------------------------
    def _send(self, data: bytes):
        with self._send_lock:
            self._sock.sendall(data)

    def _start(self, method: str, payload: bytes, timeout: Optional[float]) -> Tuple[int, _Pending, bytes]:
        with self._lock:
            if self._closed is not None:
                raise ConnectionClosed(str(self._closed))
            if self._closing:
                raise ConnectionClosed("client closed")
            if self._goodbye is not None:
                raise error_for(Code.SHUTTING_DOWN, "the server said goodbye: " + self._goodbye)
            self._next_id = self._next_id % 0xFFFFFFFF + 1
            fid = self._next_id
            p = self._pending[fid] = _Pending()
        deadline = None if timeout is None else max(1, math.ceil(timeout * 1000))
        return fid, p, wire.request(fid, method, payload, deadline)

    def _wait(self, fid: int, p: _Pending, timeout: Optional[float]) -> bytes:
        if not p.event.wait(timeout):
            with self._lock:
                self._pending.pop(fid, None)
            raise TimeoutError("no answer within %.3fs" % timeout)
        if p.error is not None:
            raise p.error
        return p.result

    # -- API -----------------------------------------------------------------
    def call(self, method: str, payload: bytes = b"", timeout: Optional[float] = 10.0) -> bytes:
        """Sends one request and returns the response payload. The timeout
        travels as the request's DEADLINE; None waits forever."""
        fid, p, frame = self._start(method, payload, timeout)
        self._send(frame)
        return self._wait(fid, p, timeout)

    def pipeline(self, calls: Sequence[Tuple[str, bytes]], timeout: Optional[float] = 10.0) -> List[object]:
        """Sends every (method, payload) in one write, then waits for all.
        Returns the payloads in order; a failed call's place holds its
        NexoError instead of raising."""
        started = [self._start(m, pl, timeout) for m, pl in calls]
        self._send(b"".join(frame for _, _, frame in started))
        out = []
        for fid, p, _ in started:
            try:
                out.append(self._wait(fid, p, timeout))
            except NexoError as e:
                out.append(e)
        return out

    def _int(self, method, a, b, timeout):
        return struct.unpack(">q", self.call(method, wire.operands(a, b), timeout))[0]

    def add(self, a: int, b: int, timeout: Optional[float] = 10.0) -> int:
        return self._int("math.add", a, b, timeout)

    def sub(self, a: int, b: int, timeout: Optional[float] = 10.0) -> int:
        return self._int("math.sub", a, b, timeout)

    def mul(self, a: int, b: int, timeout: Optional[float] = 10.0) -> int:
        return self._int("math.mul", a, b, timeout)

    def div(self, a: int, b: int, timeout: Optional[float] = 10.0) -> float:
        return struct.unpack(">d", self.call("math.div", wire.operands(a, b), timeout))[0]

    def echo(self, payload: bytes, timeout: Optional[float] = 10.0) -> bytes:
        return self.call("sys.echo", payload, timeout)

    def info(self, timeout: Optional[float] = 10.0) -> dict:
        return json.loads(self.call("sys.info", b"", timeout))

    def close(self, timeout: float = 5.0):
        """Says GOODBYE, waits for calls in flight, then closes."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            alive = self._closed is None
        if alive:
            try:
                self._send(wire.encode(Type.GOODBYE, b"client closing"))
                with self._lock:
                    self._idle.wait_for(lambda: not self._pending or self._closed is not None, timeout)
                self._reader.join(1.0)  # the server closes once it has answered
            except OSError:
                pass
        self._fail(ConnectionClosed("client closed"))
        self._reader.join(1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
