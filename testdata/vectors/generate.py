"""Writes nexo's conformance vectors from the specification, independently
of the Go code: frames are packed here with Python's struct module.

    python3 testdata/vectors/generate.py          # rewrites native.json, methods.json, legacy.json
    python3 testdata/vectors/generate.py --check  # fails if they differ from what it would write

Every implementation's tests read these files: the Go wire and server tests,
and the other-language clients. See README.md beside this file.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TYPES = {"HELLO": 1, "WELCOME": 2, "REQUEST": 3, "RESPONSE": 4, "ERROR": 5,
         "PING": 6, "PONG": 7, "EVENT": 8, "GOODBYE": 9}
CODES = {"BAD_FRAME": 1, "UNSUPPORTED_VERSION": 2, "UNAUTHORIZED": 3, "UNKNOWN_METHOD": 4,
         "BAD_PAYLOAD": 5, "DIVISION_BY_ZERO": 6, "OVERFLOW": 7, "BUSY": 8, "SHUTTING_DOWN": 9,
         "TIMEOUT": 10, "INTERNAL": 11, "FRAME_TOO_LARGE": 12, "UNAVAILABLE": 13}
MAX, MIN = 2**63 - 1, -2**63


def frame(ftype, body=b"", fid=0, flags=0, version=1, length=None):
    if length is None:
        length = 8 + len(body)
    return struct.pack(">IBBHI", length, version, ftype, flags, fid) + body


def operands(a, b):
    return struct.pack(">qq", a, b)


def request_body(method, payload=b"", deadline=None):
    pre = b"" if deadline is None else struct.pack(">I", deadline)
    return pre + bytes([len(method)]) + method.encode() + payload


def valid(name, data, meaning):
    return {"name": name, "hex": data.hex(), "valid": True, "frame": meaning}


def invalid(name, data, error, note):
    return {"name": name, "hex": data.hex(), "valid": False, "error": error, "note": note}


def native():
    v = []
    hello = json.dumps({"name": "vectors"}, separators=(",", ":")).encode()
    v.append(valid("HELLO with a name", frame(1, hello), {"type": "HELLO", "id": 0, "flags": 0, "json": {"name": "vectors"}}))
    v.append(valid("HELLO with an empty body (same as {})", frame(1), {"type": "HELLO", "id": 0, "flags": 0, "json": {}}))
    welcome = json.dumps({"client_id": 42, "server": "nexo/0.1.0", "heartbeat_ms": 5000, "max_frame": 1048576}, separators=(",", ":")).encode()
    v.append(valid("WELCOME", frame(2, welcome), {"type": "WELCOME", "id": 0, "flags": 0,
                                                   "json": {"client_id": 42, "server": "nexo/0.1.0", "heartbeat_ms": 5000, "max_frame": 1048576}}))
    v.append(valid("REQUEST math.add 2 3", frame(3, request_body("math.add", operands(2, 3)), 1),
                   {"type": "REQUEST", "id": 1, "flags": 0, "method": "math.add", "payload_hex": operands(2, 3).hex(), "math": [2, 3]}))
    v.append(valid("REQUEST with DEADLINE 1500 ms", frame(3, request_body("math.div", operands(7, 2), 1500), 2, 1),
                   {"type": "REQUEST", "id": 2, "flags": 1, "deadline_ms": 1500, "method": "math.div", "payload_hex": operands(7, 2).hex(), "math": [7, 2]}))
    v.append(valid("REQUEST with DEADLINE 0 ms (answered TIMEOUT)", frame(3, request_body("math.add", operands(1, 1), 0), 3, 1),
                   {"type": "REQUEST", "id": 3, "flags": 1, "deadline_ms": 0, "method": "math.add", "payload_hex": operands(1, 1).hex(), "math": [1, 1]}))
    v.append(valid("REQUEST MinInt64 operands", frame(3, request_body("math.mul", operands(MIN, -1)), 4),
                   {"type": "REQUEST", "id": 4, "flags": 0, "method": "math.mul", "payload_hex": operands(MIN, -1).hex(), "math": [MIN, -1]}))
    v.append(valid("REQUEST empty sys.echo", frame(3, request_body("sys.echo"), 5),
                   {"type": "REQUEST", "id": 5, "flags": 0, "method": "sys.echo", "payload_hex": ""}))
    v.append(valid("REQUEST with the largest id", frame(3, request_body("sys.info"), 0xFFFFFFFF),
                   {"type": "REQUEST", "id": 0xFFFFFFFF, "flags": 0, "method": "sys.info", "payload_hex": ""}))
    v.append(valid("REQUEST with a 255-byte method", frame(3, request_body("m" * 255), 6),
                   {"type": "REQUEST", "id": 6, "flags": 0, "method": "m" * 255, "payload_hex": ""}))
    v.append(valid("RESPONSE int64 5", frame(4, struct.pack(">q", 5), 1), {"type": "RESPONSE", "id": 1, "flags": 0, "payload_hex": struct.pack(">q", 5).hex(), "int": 5}))
    v.append(valid("RESPONSE int64 MinInt64", frame(4, struct.pack(">q", MIN), 1), {"type": "RESPONSE", "id": 1, "flags": 0, "payload_hex": struct.pack(">q", MIN).hex(), "int": MIN}))
    v.append(valid("RESPONSE float64 3.5", frame(4, struct.pack(">d", 3.5), 2), {"type": "RESPONSE", "id": 2, "flags": 0, "payload_hex": struct.pack(">d", 3.5).hex(), "float": 3.5}))
    v.append(valid("RESPONSE float64 +0 (0 / -5)", frame(4, struct.pack(">d", 0.0), 2), {"type": "RESPONSE", "id": 2, "flags": 0, "payload_hex": "0000000000000000", "float": 0.0}))
    v.append(valid("RESPONSE empty (empty echo)", frame(4, b"", 5), {"type": "RESPONSE", "id": 5, "flags": 0, "payload_hex": ""}))
    for name, code, msg in (("DIVISION_BY_ZERO", 6, "calc: division by zero"), ("FRAME_TOO_LARGE", 12, ""), ("BUSY", 8, "too many connections")):
        fid = 0 if name in ("FRAME_TOO_LARGE", "BUSY") else 3
        v.append(valid("ERROR %s" % name, frame(5, struct.pack(">H", code) + msg.encode(), fid),
                       {"type": "ERROR", "id": fid, "flags": 0, "code": code, "code_name": name, "message": msg}))
    v.append(valid("PING with an 8-byte body", frame(6, bytes(range(8)), 7), {"type": "PING", "id": 7, "flags": 0, "body_hex": bytes(range(8)).hex()}))
    v.append(valid("PING empty", frame(6, b"", 8), {"type": "PING", "id": 8, "flags": 0, "body_hex": ""}))
    v.append(valid("PING with the largest body (64 bytes)", frame(6, b"\xab" * 64, 9), {"type": "PING", "id": 9, "flags": 0, "body_hex": (b"\xab" * 64).hex()}))
    v.append(valid("PONG", frame(7, bytes(range(8)), 7), {"type": "PONG", "id": 7, "flags": 0, "body_hex": bytes(range(8)).hex()}))
    v.append(valid("EVENT", frame(8, b"\x07clients" + b"{}"), {"type": "EVENT", "id": 0, "flags": 0, "topic": "clients", "payload_hex": b"{}".hex()}))
    v.append(valid("GOODBYE with a reason", frame(9, b"server shutting down"), {"type": "GOODBYE", "id": 0, "flags": 0, "reason": "server shutting down"}))
    v.append(valid("GOODBYE empty", frame(9), {"type": "GOODBYE", "id": 0, "flags": 0, "reason": ""}))
    v.append(valid("frame exactly at a max frame of 64", frame(4, b"\x00" * 56, 1), {"type": "RESPONSE", "id": 1, "flags": 0, "payload_hex": "00" * 56, "max_frame": 64}))

    v.append(invalid("length below 8", struct.pack(">I", 7) + b"\x01\x06\x00\x00\x00\x00\x00", "BAD_FRAME", "closes the connection"))
    v.append(invalid("length 0", b"\x00\x00\x00\x00", "BAD_FRAME", "closes the connection"))
    v.append(invalid("length claims 4 GiB", b"\xff\xff\xff\xff", "FRAME_TOO_LARGE", "rejected before any allocation; closes"))
    inv = invalid("length one over a max frame of 64", frame(4, b"\x00" * 57, 1), "FRAME_TOO_LARGE", "closes the connection")
    inv["max_frame"] = 64
    v.append(inv)
    v.append(invalid("version 2", frame(6, version=2), "UNSUPPORTED_VERSION", "closes the connection"))
    v.append(invalid("version 0", frame(6, version=0), "UNSUPPORTED_VERSION", "closes the connection"))
    v.append(invalid("type 0", frame(0), "BAD_FRAME", "unknown type"))
    v.append(invalid("type 10", frame(10), "BAD_FRAME", "unknown type"))
    v.append(invalid("unknown flag bit 0x0002", frame(6, flags=2), "BAD_FRAME", "every bit but DEADLINE is 0 in version 1"))
    v.append(invalid("DEADLINE on a RESPONSE", frame(4, b"", 1, flags=1), "BAD_FRAME", "DEADLINE is for REQUEST only"))
    v.append(invalid("REQUEST without body", frame(3, b"", 1), "BAD_FRAME", "short body"))
    v.append(invalid("REQUEST method length 0", frame(3, b"\x00", 1), "BAD_FRAME", "method length is 1..255"))
    v.append(invalid("REQUEST method longer than the body", frame(3, b"\x05ab", 1), "BAD_FRAME", "short body"))
    v.append(invalid("REQUEST DEADLINE cut short", frame(3, b"\x00\x00\x01", 1, flags=1), "BAD_FRAME", "short body"))
    v.append(invalid("REQUEST method not ASCII", frame(3, b"\x02\xc3\xa9", 1), "BAD_FRAME", "method is printable ASCII"))
    v.append(invalid("ERROR without its code", frame(5, b"\x00", 1), "BAD_FRAME", "short body"))
    v.append(invalid("PING body of 65 bytes", frame(6, b"\x00" * 65), "BAD_FRAME", "PING body is 0..64 bytes"))
    v.append(invalid("EVENT with an empty topic", frame(8, b"\x00"), "BAD_FRAME", "topic length is 1..255"))
    v.append(invalid("stream ends inside a header", frame(4, b"x", 1)[:7], "TRUNCATED", "the stream ended inside a frame; a server answers BAD_FRAME"))
    v.append(invalid("stream ends inside a body", frame(4, b"abc", 1)[:13], "TRUNCATED", "the stream ended inside a frame; a server answers BAD_FRAME"))
    return v


def methods():
    def ok_int(m, a, b, r):
        return {"method": m, "payload_hex": operands(a, b).hex(), "a": a, "b": b, "response_hex": struct.pack(">q", r).hex(), "result": r}

    def ok_float(a, b, r):
        return {"method": "math.div", "payload_hex": operands(a, b).hex(), "a": a, "b": b, "response_hex": struct.pack(">d", r).hex(), "result": r}

    def err(m, payload, code, a=None, b=None):
        d = {"method": m, "payload_hex": payload.hex(), "error": code}
        if a is not None:
            d["a"], d["b"] = a, b
        return d
    return [
        ok_int("math.add", 2, 3, 5), ok_int("math.add", MIN, MAX, -1), ok_int("math.add", MAX, 0, MAX),
        err("math.add", operands(MAX, 1), "OVERFLOW", MAX, 1), err("math.add", operands(MIN, -1), "OVERFLOW", MIN, -1),
        ok_int("math.sub", 2, 3, -1), ok_int("math.sub", -1, MIN, MAX),
        err("math.sub", operands(MIN, 1), "OVERFLOW", MIN, 1), err("math.sub", operands(0, MIN), "OVERFLOW", 0, MIN),
        # Beyond 2^53, where a float64 rounds: JSON doors must carry these exactly.
        ok_int("math.add", 2**53, 1, 2**53 + 1), ok_int("math.mul", 2**53 - 1, 3, 27021597764222973),
        ok_int("math.mul", -4, 5, -20), ok_int("math.mul", MIN, 1, MIN), ok_int("math.mul", 2**31, 2**31, 2**62), ok_int("math.mul", 0, MIN, 0),
        err("math.mul", operands(MIN, -1), "OVERFLOW", MIN, -1), err("math.mul", operands(2**32, 2**31), "OVERFLOW", 2**32, 2**31),
        ok_float(7, 2, 3.5), ok_float(-7, 2, -3.5), ok_float(1, 3, 1 / 3), ok_float(0, -5, 0.0), ok_float(MIN, -1, 9223372036854775808.0),
        err("math.div", operands(1, 0), "DIVISION_BY_ZERO", 1, 0), err("math.div", operands(0, 0), "DIVISION_BY_ZERO", 0, 0),
        err("math.add", operands(1, 2)[:15], "BAD_PAYLOAD"), err("math.div", operands(1, 2) + b"\x00", "BAD_PAYLOAD"),
        err("math.mul", b"", "BAD_PAYLOAD"),
        {"method": "sys.echo", "payload_hex": "", "response_hex": ""},
        {"method": "sys.echo", "payload_hex": b"hello".hex(), "response_hex": b"hello".hex()},
        err("no.such", b"", "UNKNOWN_METHOD"),
    ]


def legacy():
    v = []
    for order, name in (("<", "little"), (">", "big")):
        for cmd, a, b, reply in (("SUMA", 3, 4, "7\n"), ("RESTA", 3, 10, "-7\n"), ("MULTIPLICACION", -32768, -32768, "1073741824\n"),
                                 ("DIVISION", 7, 2, "3.5\n"), ("DIVISION", -4, 2, "-2\n"), ("DIVISION", 1, 3, "0.3333333333333333\n"),
                                 ("DIVISION", 0, -5, "0\n"), ("DIVISION", 1, 0, "ERROR DIVISION_BY_ZERO\n"), ("RAIZ", 4, 0, "ERROR UNKNOWN_METHOD\n")):
            v.append({"name": "%s %s %d %d" % (name, cmd, a, b), "hex": (struct.pack(order + "ihh", len(cmd), a, b) + cmd.encode()).hex(),
                      "valid": True, "order": name, "command": cmd, "a": a, "b": b, "reply": reply, "closes": False})
    for n in (0, -1, 33, 1000):
        v.append({"name": "length %d" % n, "hex": (struct.pack("<ihh", n, 1, 2) + b"SUMA").hex(), "valid": False,
                  "error": "BAD_FRAME", "reply": "ERROR BAD_FRAME\n", "closes": True})
    v.append({"name": "HTTP text", "hex": b"GET / HTTP/1.1\r\n\r\n".hex(), "valid": False, "error": "BAD_FRAME", "reply": "ERROR BAD_FRAME\n", "closes": True})
    return v


CHECK = "--check" in sys.argv  # compare with the files instead of writing them
stale = []


def write(name, description, vectors):
    text = json.dumps({"description": description, "vectors": vectors}, indent=1) + "\n"
    path = os.path.join(HERE, name)
    if CHECK:
        with open(path) as f:
            if f.read() != text:
                stale.append(name)
        return
    with open(path, "w") as f:
        f.write(text)


write("native.json", "Native protocol frames (spec section 1). hex is one frame; valid vectors give its meaning, invalid ones the error a "
      "receiver reports (a code name, or TRUNCATED when the stream ends inside a frame). max_frame, when present, is the receiver's limit; "
      "otherwise 1048576.", native())
write("methods.json", "Method payloads (spec section 1.3): a REQUEST with this method and payload is answered with response_hex, or an "
      "ERROR with this code. Integers are big-endian int64, quotients IEEE-754 float64.", methods())
write("legacy.json", "Legacy packets (spec section 2): hex is what the client sends, reply the line the server answers; closes tells "
      "whether the server then closes the connection. A connection's byte order is fixed by its first packet.", legacy())

if stale:
    print("stale vector files (run generate.py): " + ", ".join(stale))
    sys.exit(1)
