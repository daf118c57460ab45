"""nexo's native protocol: frames, codes and their encoding (spec section 1).

Pure functions, no sockets: the client and the tests share them.
"""
import enum
import json
import struct
from typing import NamedTuple, Optional, Tuple

VERSION = 1
HEADER = struct.Struct(">IBBHI")  # length, version, type, flags, id
HEADER_LEN = HEADER.size  # 12
DEFAULT_MAX_FRAME = 1 << 20
MAX_PING_BODY = 64
FLAG_DEADLINE = 0x0001


class Type(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    REQUEST = 3
    RESPONSE = 4
    ERROR = 5
    PING = 6
    PONG = 7
    EVENT = 8
    GOODBYE = 9


class Code(enum.IntEnum):
    BAD_FRAME = 1
    UNSUPPORTED_VERSION = 2
    UNAUTHORIZED = 3
    UNKNOWN_METHOD = 4
    BAD_PAYLOAD = 5
    DIVISION_BY_ZERO = 6
    OVERFLOW = 7
    BUSY = 8
    SHUTTING_DOWN = 9
    TIMEOUT = 10
    INTERNAL = 11
    FRAME_TOO_LARGE = 12
    UNAVAILABLE = 13


class ProtocolError(Exception):
    """A malformed frame. code is what a receiver reports (a Code)."""

    def __init__(self, code: Code, message: str):
        super().__init__("%s: %s" % (code.name, message))
        self.code = code


class Frame(NamedTuple):
    type: int
    flags: int
    id: int
    body: bytes


def encode(ftype: int, body: bytes = b"", fid: int = 0, flags: int = 0) -> bytes:
    return HEADER.pack(8 + len(body), VERSION, ftype, flags, fid) + body


def check_method(method: str) -> bytes:
    raw = method.encode("ascii", "strict")
    if not 1 <= len(raw) <= 255 or any(c < 0x21 or c > 0x7E for c in raw):
        raise ValueError("method must be 1..255 bytes of printable ASCII: %r" % method)
    return raw


def request(fid: int, method: str, payload: bytes = b"", deadline_ms: Optional[int] = None) -> bytes:
    raw = check_method(method)
    body = bytes([len(raw)]) + raw + payload
    if deadline_ms is None:
        return encode(Type.REQUEST, body, fid)
    return encode(Type.REQUEST, struct.pack(">I", deadline_ms) + body, fid, FLAG_DEADLINE)


def hello(name: Optional[str] = None, token: Optional[str] = None) -> bytes:
    obj = {}
    if name:
        obj["name"] = name
    if token:
        obj["token"] = token
    return encode(Type.HELLO, json.dumps(obj, separators=(",", ":")).encode())


def decode(buf: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> Tuple[Optional[Frame], int]:
    """Decodes the first frame of buf: (frame, bytes used), or (None, 0) when
    more bytes are needed. Raises ProtocolError for a malformed frame."""
    if len(buf) < 4:
        return None, 0
    length = struct.unpack_from(">I", buf)[0]
    if length < 8:
        raise ProtocolError(Code.BAD_FRAME, "length %d is below 8" % length)
    if length > max_frame:
        raise ProtocolError(Code.FRAME_TOO_LARGE, "length %d is over the limit of %d" % (length, max_frame))
    if len(buf) < HEADER_LEN:
        return None, 0
    _, version, ftype, flags, fid = HEADER.unpack_from(buf)
    if version != VERSION:
        raise ProtocolError(Code.UNSUPPORTED_VERSION, "version %d" % version)
    if len(buf) < 4 + length:
        return None, 0
    frame = Frame(ftype, flags, fid, bytes(buf[HEADER_LEN:4 + length]))
    validate(frame)
    return frame, 4 + length


def validate(f: Frame) -> None:
    if not Type.HELLO <= f.type <= Type.GOODBYE:
        raise ProtocolError(Code.BAD_FRAME, "unknown type %d" % f.type)
    if f.flags & ~FLAG_DEADLINE:
        raise ProtocolError(Code.BAD_FRAME, "unknown flag bits 0x%x" % (f.flags & ~FLAG_DEADLINE))
    if f.flags & FLAG_DEADLINE and f.type != Type.REQUEST:
        raise ProtocolError(Code.BAD_FRAME, "DEADLINE on a %s" % Type(f.type).name)
    if f.type == Type.REQUEST:
        parse_request(f)
    elif f.type == Type.ERROR and len(f.body) < 2:
        raise ProtocolError(Code.BAD_FRAME, "ERROR body shorter than its code")
    elif f.type in (Type.PING, Type.PONG) and len(f.body) > MAX_PING_BODY:
        raise ProtocolError(Code.BAD_FRAME, "PING body over 64 bytes")
    elif f.type == Type.EVENT:
        parse_event(f.body)


def parse_request(f: Frame) -> Tuple[str, bytes, Optional[int]]:
    """(method, payload, deadline_ms or None)"""
    body, deadline = f.body, None
    if f.flags & FLAG_DEADLINE:
        if len(body) < 4:
            raise ProtocolError(Code.BAD_FRAME, "REQUEST too short for its deadline")
        deadline, body = struct.unpack_from(">I", body)[0], body[4:]
    if not body or body[0] == 0 or len(body) < 1 + body[0]:
        raise ProtocolError(Code.BAD_FRAME, "REQUEST method does not fit the body")
    method = body[1:1 + body[0]]
    if any(c < 0x21 or c > 0x7E for c in method):
        raise ProtocolError(Code.BAD_FRAME, "REQUEST method is not printable ASCII")
    return method.decode("ascii"), body[1 + body[0]:], deadline


def parse_error(body: bytes) -> Tuple[int, str]:
    if len(body) < 2:
        raise ProtocolError(Code.BAD_FRAME, "ERROR body shorter than its code")
    return struct.unpack_from(">H", body)[0], body[2:].decode("utf-8", "replace")


def parse_event(body: bytes) -> Tuple[str, bytes]:
    if not body or body[0] == 0 or len(body) < 1 + body[0]:
        raise ProtocolError(Code.BAD_FRAME, "EVENT topic does not fit the body")
    return body[1:1 + body[0]].decode("ascii"), body[1 + body[0]:]


def operands(a: int, b: int) -> bytes:
    """The payload of every math.* request: a and b as big-endian int64."""
    return struct.pack(">qq", a, b)
