"""The shared conformance vectors (testdata/vectors), decoded and re-encoded
by nexo_client.wire."""
import json
import os
import struct
import unittest

from nexo_client import wire
from nexo_client.wire import Code, Type

VECTORS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "testdata", "vectors")


def load(name):
    with open(os.path.join(VECTORS, name)) as f:
        vs = json.load(f)["vectors"]
    assert vs, name
    return vs


class NativeVectors(unittest.TestCase):
    def test_native(self):
        for v in load("native.json"):
            with self.subTest(v["name"]):
                data = bytes.fromhex(v["hex"])
                limit = v.get("max_frame") or v.get("frame", {}).get("max_frame") or wire.DEFAULT_MAX_FRAME
                if not v["valid"]:
                    if v["error"] == "TRUNCATED":
                        self.assertEqual(wire.decode(data, limit), (None, 0))
                    else:
                        with self.assertRaises(wire.ProtocolError) as cm:
                            wire.decode(data, limit)
                        self.assertEqual(cm.exception.code, Code[v["error"]])
                    continue
                f, used = wire.decode(data, limit)
                self.assertEqual(used, len(data))
                m = v["frame"]
                self.assertEqual((Type(f.type).name, f.id, f.flags), (m["type"], m["id"], m["flags"]))
                if f.type == Type.REQUEST:
                    method, payload, deadline = wire.parse_request(f)
                    self.assertEqual((method, payload.hex(), deadline), (m["method"], m["payload_hex"], m.get("deadline_ms")))
                    self.assertEqual(wire.request(f.id, method, payload, deadline), data)
                    if "math" in m:
                        self.assertEqual(list(struct.unpack(">qq", payload)), m["math"])
                elif f.type == Type.ERROR:
                    code, msg = wire.parse_error(f.body)
                    self.assertEqual((code, Code(code).name, msg), (m["code"], m["code_name"], m["message"]))
                elif f.type == Type.EVENT:
                    topic, payload = wire.parse_event(f.body)
                    self.assertEqual((topic, payload.hex()), (m["topic"], m["payload_hex"]))
                elif f.type in (Type.HELLO, Type.WELCOME):
                    self.assertEqual(json.loads(f.body) if f.body else {}, m["json"])
                elif f.type == Type.GOODBYE:
                    self.assertEqual(f.body.decode(), m["reason"])
                else:
                    self.assertEqual(f.body.hex(), m.get("payload_hex", m.get("body_hex")))
                    if "int" in m:
                        self.assertEqual(struct.unpack(">q", f.body)[0], m["int"])
                    if "float" in m:
                        self.assertEqual(struct.unpack(">d", f.body)[0], m["float"])
                if f.type != Type.REQUEST:
                    self.assertEqual(wire.encode(f.type, f.body, f.id, f.flags), data)

    def test_method_payloads(self):
        for v in load("methods.json"):
            if "a" in v:
                with self.subTest(v["method"]):
                    self.assertEqual(wire.operands(v["a"], v["b"]).hex(), v["payload_hex"])


if __name__ == "__main__":
    unittest.main()
