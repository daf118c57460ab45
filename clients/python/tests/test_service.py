"""nexo_client.service over real sockets: examples/greet-py/service.py as a
subprocess, and services of the tests' own served from a thread.

The OpenRPC documents are checked against the OpenRPC meta-schema in
testdata/openrpc, with a small validator of the draft-07 keywords it uses
(standard library only), itself tested on documents that must fail.
"""
import http.client
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import Annotated, List, Literal, Optional, TypedDict

try:
    from typing import NotRequired
except ImportError:  # Python < 3.11
    NotRequired = None

from nexo_client.service import Example, RPCError, Schema, Service, deadline

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
EXAMPLE = os.path.join(ROOT, "examples", "greet-py", "service.py")
META = os.path.join(ROOT, "testdata", "openrpc")

# The document greet.py must publish: the contract nexo reads.
GREET_DOC = {
    "openrpc": "1.3.2",
    "info": {"title": "greet-py", "version": "0.1.0"},
    "methods": [{
        "name": "greet.py",
        "summary": "greets a name of 1 to 64 characters",
        "paramStructure": "by-name",
        "params": [{"name": "name", "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 64, "description": "who to greet"}}],
        "result": {"name": "result", "schema": {"type": "object", "properties": {"greeting": {"type": "string"}},
                                                "required": ["greeting"], "additionalProperties": False}},
        "errors": [{"code": -32602, "message": "BAD_PAYLOAD", "data": {"name": "BAD_PAYLOAD"}}],
        "examples": [
            {"name": "example 1", "params": [{"name": "name", "value": "Ann"}],
             "result": {"name": "result", "value": {"greeting": "Hello, Ann!"}}},
            {"name": "example 2", "description": "fails with BAD_PAYLOAD", "params": [{"name": "name", "value": ""}]},
        ],
        "x-idempotent": True,
        "x-encoding": "json",
    }],
}


# ---- a validator of the OpenRPC meta-schema's draft-07 keywords ---------------


class MetaSchema:
    """Checks a document against testdata/openrpc/meta-schema.json and the
    JSON Schema meta-schema it refers to."""

    def __init__(self):
        with open(os.path.join(META, "meta-schema.json")) as f:
            self.openrpc = json.load(f)
        with open(os.path.join(META, "json-schema-tools-meta-schema.json")) as f:
            self.docs = {"https://meta.json-schema.tools": json.load(f)}

    def errors(self, doc):
        return list(self._check(doc, self.openrpc, self.openrpc, "$"))

    def _resolve(self, ref, root):
        base, _, frag = ref.partition("#")
        if base:
            root = self.docs[base.rstrip("/")]
        node = root
        for part in filter(None, frag.split("/")):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, root

    @staticmethod
    def _is(v, t):
        return {"object": lambda: isinstance(v, dict), "array": lambda: isinstance(v, list),
                "string": lambda: isinstance(v, str), "boolean": lambda: isinstance(v, bool),
                "null": lambda: v is None,
                "number": lambda: type(v) in (int, float),
                "integer": lambda: type(v) is int or (type(v) is float and v.is_integer())}[t]()

    def _check(self, v, s, root, path):
        if s is True:
            return
        if s is False:
            yield f"{path}: nothing is valid here"
            return
        if "$ref" in s:  # draft-07: $ref stands alone
            node, r = self._resolve(s["$ref"], root)
            yield from self._check(v, node, r, path)
            return
        t = s.get("type")
        if t is not None and not any(self._is(v, x) for x in (t if isinstance(t, list) else [t])):
            yield f"{path}: want {t}, got {json.dumps(v)[:40]}"
            return
        if "enum" in s and not any(type(v) is type(e) and v == e for e in s["enum"]):
            yield f"{path}: {v!r} not in {s['enum']}"
        if isinstance(v, dict):
            for key in s.get("required", []):
                if key not in v:
                    yield f"{path}: missing {key}"
            props, patterns = s.get("properties", {}), s.get("patternProperties", {})
            for key, x in v.items():
                matched = key in props
                if matched:
                    yield from self._check(x, props[key], root, f"{path}.{key}")
                for p, ps in patterns.items():
                    if re.search(p, key):
                        matched = True
                        yield from self._check(x, ps, root, f"{path}.{key}")
                if not matched and "additionalProperties" in s:
                    yield from self._check(x, s["additionalProperties"], root, f"{path}.{key}")
                if "propertyNames" in s:
                    yield from self._check(key, s["propertyNames"], root, f"{path}[{key!r}]")
        if isinstance(v, list):
            items = s.get("items")
            if isinstance(items, list):
                for i, x in enumerate(v):
                    sub = items[i] if i < len(items) else s.get("additionalItems", True)
                    yield from self._check(x, sub, root, f"{path}[{i}]")
            elif items is not None:
                for i, x in enumerate(v):
                    yield from self._check(x, items, root, f"{path}[{i}]")
            if len(v) < s.get("minItems", 0):
                yield f"{path}: fewer than {s['minItems']} items"
            if s.get("uniqueItems") and len({json.dumps(x, sort_keys=True) for x in v}) != len(v):
                yield f"{path}: items not unique"
        if isinstance(v, str) and len(v) < s.get("minLength", 0):
            yield f"{path}: shorter than {s['minLength']}"
        if type(v) in (int, float):
            if "minimum" in s and v < s["minimum"]:
                yield f"{path}: under {s['minimum']}"
            if "exclusiveMinimum" in s and v <= s["exclusiveMinimum"]:
                yield f"{path}: not over {s['exclusiveMinimum']}"
        for key, want in (("oneOf", lambda n, k: n == 1), ("anyOf", lambda n, k: n >= 1)):
            if key in s:
                ok = sum(1 for sub in s[key] if not any(True for _ in self._check(v, sub, root, path)))
                if not want(ok, key):
                    yield f"{path}: {ok} of the {key} schemas match"


META_SCHEMA = MetaSchema()


# ---- helpers ------------------------------------------------------------------


def post(conn, body, headers=None, path="/rpc", method="POST"):
    """One HTTP request on conn: (status, headers, body bytes)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    return r.status, r, r.read()


def call(method, params=None, id=1):
    msg = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        msg["params"] = params
    return msg


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RPCTestCase(unittest.TestCase):
    """Tests against one server at self.host, self.port."""

    host = "127.0.0.1"
    port = 0

    def conn(self):
        c = http.client.HTTPConnection(self.host, self.port, timeout=10)
        self.addCleanup(c.close)
        return c

    def rpc(self, msg, headers=None, conn=None):
        """The parsed JSON answer of one message."""
        status, _, body = post(conn or self.conn(), msg, headers)
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def error(self, msg, code, message=None, name=None):
        """Asserts the answer is the error code (and message, data name)."""
        out = self.rpc(msg)
        self.assertIn("error", out, out)
        self.assertEqual(out["error"]["code"], code, out)
        if message is not None:
            self.assertEqual(out["error"]["message"], message)
        if name is not None:
            self.assertEqual(out["error"].get("data"), {"name": name})
        return out


# ---- the example, as nexo will run it ---------------------------------------


class Example_(subprocess.Popen):
    """examples/greet-py/service.py on a free port, from a directory outside
    the checkout and without PYTHONPATH: no install step."""

    def __init__(self, *args):
        self.tmp = tempfile.TemporaryDirectory()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        super().__init__([sys.executable, EXAMPLE, *args], stderr=subprocess.PIPE, text=True, cwd=self.tmp.name, env=env)
        self.first = self.stderr.readline()
        m = re.fullmatch(r"greet-py: serving greet\.py at http://127\.0\.0\.1:(\d+)/rpc\n", self.first)
        if not m:
            self.kill()
            self.stop()
            raise AssertionError(f"start line: {self.first!r}")
        self.port = int(m.group(1))

    def stop(self, sig=signal.SIGTERM):
        """Signal, wait, and return (exit status, the rest of stderr)."""
        if self.poll() is None:
            self.send_signal(sig)
        try:
            self.wait(15)
            rest = self.stderr.read()
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
            raise
        finally:
            self.stderr.close()
            self.tmp.cleanup()
        return self.returncode, rest


class GreetExample(RPCTestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc = Example_("--addr", "127.0.0.1:0")
        cls.port = cls.proc.port

    @classmethod
    def tearDownClass(cls):
        code, rest = cls.proc.stop()
        assert code == 0, (code, rest)
        assert rest == "", rest  # no traceback, nothing after the start line

    def test_document(self):
        doc = self.rpc(call("rpc.discover"))["result"]
        self.assertEqual(doc, GREET_DOC)
        self.assertEqual(META_SCHEMA.errors(doc), [])
        for params in ([], {}):  # no params, in either form
            self.assertEqual(self.rpc(call("rpc.discover", params))["result"], GREET_DOC)
        self.error(call("rpc.discover", ["x"]), -32602, "rpc.discover takes no params", "BAD_PAYLOAD")

    def test_the_validator_can_fail(self):
        self.assertEqual(META_SCHEMA.errors(GREET_DOC), [])
        for breaks in (lambda d: d["info"].pop("title"),
                       lambda d: d["methods"][0].update(paramStructure="sideways"),
                       lambda d: d["methods"][0]["examples"][0].pop("name"),
                       lambda d: d["methods"][0]["params"][0].update(schema={"type": "strin"}),
                       lambda d: d["methods"][0]["errors"][0].update(code="x"),
                       lambda d: d["methods"][0].update(idempotent=True)):
            doc = json.loads(json.dumps(GREET_DOC))
            breaks(doc)
            with self.subTest(doc=doc):
                self.assertNotEqual(META_SCHEMA.errors(doc), [])

    def test_call_by_name_and_by_position(self):
        want = {"jsonrpc": "2.0", "result": {"greeting": "Hello, Ann!"}, "id": 1}
        self.assertEqual(self.rpc(call("greet.py", {"name": "Ann"})), want)
        self.assertEqual(self.rpc(call("greet.py", ["Ann"])), want)
        for rid in ("abc", None, 7.5, 2**80):  # ids come back as they were
            self.assertEqual(self.rpc(call("greet.py", {"name": "Ann"}, id=rid))["id"], rid)
        self.assertEqual(self.rpc(call("greet.py", {"name": "é" * 64}))["result"]["greeting"], f"Hello, {'é' * 64}!")
        self.assertEqual(self.rpc(call("greet.py", {"name": "😀" * 64}))["result"]["greeting"], f"Hello, {'😀' * 64}!")

    def test_invalid_params(self):
        for params, message in [
            ({"name": ""}, "name: must be at least 1 character"),
            ({"name": "x" * 65}, "name: must be at most 64 characters"),
            ({"name": 42}, "name: want a string, got 42"),
            ({"name": None}, "name: want a string, got null"),
            ({"name": ["Ann"]}, "name: want a string, got an array"),
            ({"nme": "Ann"}, 'unknown param "nme"'),
            ({"name": "Ann", "age": 3}, 'unknown param "age"'),
            ({}, 'missing param "name"'),
            ([], 'missing param "name"'),
            (None, 'missing param "name"'),  # no params at all
            (["Ann", "Bob"], "too many params: want at most 1, got 2"),
            ([42], "name: want a string, got 42"),
        ]:
            with self.subTest(params=params):
                self.error(call("greet.py", params), -32602, message, "BAD_PAYLOAD")

    def test_protocol_errors(self):
        for body, code, message, rid in [
            ('{"jsonrpc":"2.0","method":"greet.py",', -32700, None, None),
            ('{"jsonrpc":"2.0","method":"greet.py","params":{"name":NaN},"id":1}', -32700, None, None),
            (b'\xff\xfe', -32700, "parse error: the body is not UTF-8", None),
            ("[" * 100000 + "]" * 100000, -32700, "parse error: nested too deeply", None),
            ("[]", -32600, "invalid request: empty batch", None),
            ("42", -32600, None, None),
            ('{"method":"greet.py","id":1}', -32600, 'invalid request: "jsonrpc" must be "2.0"', 1),
            ('{"jsonrpc":"1.0","method":"greet.py","id":1}', -32600, 'invalid request: "jsonrpc" must be "2.0"', 1),
            ('{"jsonrpc":"2.0","method":7,"id":1}', -32600, 'invalid request: "method" must be a string', 1),
            ('{"jsonrpc":"2.0","method":"greet.py","params":"Ann","id":1}', -32600,
             "invalid request: params must be an array or an object", 1),
            ('{"jsonrpc":"2.0","method":"greet.py","params":null,"id":1}', -32600,
             "invalid request: params must be an array or an object", 1),
            ('{"jsonrpc":"2.0","method":"greet.py","id":{"a":1}}', -32600,
             "invalid request: id must be a string, a number or null", None),
            ('{"jsonrpc":"2.0","method":"greet.py"', -32700, None, None),
            ('{"jsonrpc":"2.0","method":"greet.go","id":1}', -32601, "method not found: greet.go", 1),
        ]:
            with self.subTest(body=body[:60]):
                out = self.rpc(body)
                self.assertEqual((out["error"]["code"], out["id"]), (code, rid), out)
                if message:
                    self.assertEqual(out["error"]["message"], message)
        batch = "[" + ",".join(['{"jsonrpc":"2.0","method":"rpc.discover"}'] * 1001) + "]"
        self.assertEqual(self.rpc(batch)["error"], {"code": -32600, "message": "invalid request: batch over 1000 calls"})
        self.error(call("greet.py", {"name": "Ann"}) | {"method": "nope"}, -32601, "method not found: nope",
                   "UNKNOWN_METHOD")

    def test_batch(self):
        out = self.rpc([call("greet.py", {"name": "Ann"}, id="a"),
                        {"jsonrpc": "2.0", "method": "greet.py", "params": {"name": "Bo"}},  # a notification
                        call("greet.py", ["Cy"], id=2),
                        call("greet.py", {"name": ""}, id=3),
                        call("no.such", id=4),
                        5])
        self.assertEqual([m["id"] for m in out], ["a", 2, 3, 4, None])
        self.assertEqual(out[0]["result"], {"greeting": "Hello, Ann!"})
        self.assertEqual(out[1]["result"], {"greeting": "Hello, Cy!"})
        self.assertEqual([m["error"]["code"] for m in out[2:]], [-32602, -32601, -32600])

    def test_notifications_get_no_answer(self):
        c = self.conn()
        note = {"jsonrpc": "2.0", "method": "greet.py", "params": {"name": "Ann"}}
        for msg in (note, [note, note], {"jsonrpc": "2.0", "method": "no.such"}, note | {"params": {"name": ""}}):
            with self.subTest(msg=msg):
                status, r, body = post(c, msg)
                self.assertEqual((status, body, r.getheader("Content-Length")), (204, b"", None))
        # A batch with one call among notifications answers that call only.
        self.assertEqual(self.rpc([note, call("greet.py", ["Di"], id=9), note], conn=c),
                         [{"jsonrpc": "2.0", "result": {"greeting": "Hello, Di!"}, "id": 9}])
        self.assertEqual(self.rpc(call("greet.py", ["Ed"]), conn=c)["result"], {"greeting": "Hello, Ed!"})

    def test_keep_alive(self):
        c = self.conn()
        status, r, _ = post(c, call("greet.py", {"name": "Ann"}))
        self.assertEqual((status, r.version, r.will_close), (200, 11, False))
        sock = c.sock
        self.assertIsNotNone(sock)
        for i in range(5):
            status, r, body = post(c, call("greet.py", {"name": f"n{i}"}))
            self.assertEqual(json.loads(body)["result"]["greeting"], f"Hello, n{i}!")
            self.assertFalse(r.will_close)
            self.assertIs(c.sock, sock)  # the same connection, never reopened
        self.assertEqual(r.getheader("Content-Type"), "application/json")
        self.assertEqual(int(r.getheader("Content-Length")), len(body))

    def test_http_refusals_keep_the_connection(self):
        c = self.conn()
        status, r, body = post(c, "", method="GET")
        self.assertEqual((status, r.getheader("Allow")), (405, "POST"))
        status, r, body = post(c, "", method="HEAD")
        self.assertEqual((status, body), (405, b""))
        status, r, body = post(c, call("greet.py", ["Ann"]), headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 415)
        self.assertIn(b"application/json", body)
        status, r, body = post(c, call("greet.py", ["Ann"]), path="/other")
        self.assertEqual(status, 404)
        status, _, body = post(c, call("greet.py", ["Ann"]), headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual((status, json.loads(body)["result"]), (200, {"greeting": "Hello, Ann!"}))
        status, _, _ = post(c, call("greet.py", ["Ann"]), path="/rpc?x=1")
        self.assertEqual(status, 200)
        sock = c.sock
        status, r, body = post(c, b"x" * ((1 << 20) + 1))  # over the default 1 MiB
        self.assertEqual((status, r.getheader("Content-Type")), (413, "application/json"))
        self.assertEqual(json.loads(body), {"jsonrpc": "2.0", "id": None, "error": {
            "code": -32602, "message": "the request is over 1048576 bytes", "data": {"name": "BAD_PAYLOAD"}}})
        self.assertIs(c.sock, sock)
        self.assertEqual(self.rpc(call("greet.py", ["Ann"]), conn=c)["result"], {"greeting": "Hello, Ann!"})
        self.assertIs(c.sock, sock)  # still the same connection after each refusal

    def test_exactly_one_mib_is_accepted(self):
        msg = json.dumps(call("greet.py", {"name": "Ann"}))
        body = msg + " " * ((1 << 20) - len(msg))
        self.assertEqual(len(body), 1 << 20)
        self.assertEqual(self.rpc(body)["result"], {"greeting": "Hello, Ann!"})

    def test_huge_body_is_refused_without_reading_it(self):
        with socket.create_connection((self.host, self.port), timeout=10) as s:
            s.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000000000\r\n\r\n{")
            head = s.recv(4096)
            self.assertTrue(head.startswith(b"HTTP/1.1 413 "), head)
            self.assertIn(b"Connection: close", head)

    def test_raw_requests(self):
        for request, status in [
            (b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n", b"411"),
            (b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"2\r\n{}\r\n0\r\n\r\n", b"411"),
            (b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1x\r\n\r\n", b"400"),
            (b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
             b"Content-Length: 3\r\n\r\n{}", b"400"),
        ]:
            with self.subTest(request=request), socket.create_connection((self.host, self.port), timeout=10) as s:
                s.sendall(request)
                self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 " + status + b" "))

    def test_pipelined_requests(self):
        one = json.dumps(call("greet.py", ["Ann"])).encode()
        req = b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
            len(one), one)
        with socket.create_connection((self.host, self.port), timeout=10) as s:
            s.sendall(req * 3)
            data = b""
            while data.count(b"Hello, Ann!") < 3:
                chunk = s.recv(65536)
                self.assertTrue(chunk, data)
                data += chunk
            self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 3)

    def test_deadline(self):
        now_ms = int(time.time() * 1000)
        for value, code in [(str(now_ms - 1), -32010), ("0", -32010), (str(now_ms + 60000), None),
                            ("soon", None), ("", None)]:
            with self.subTest(deadline=value):
                status, _, body = post(self.conn(), call("greet.py", ["Ann"]), {"Nexo-Deadline": value})
                out = json.loads(body)
                if code is None:
                    self.assertEqual(out["result"], {"greeting": "Hello, Ann!"})
                else:
                    self.assertEqual(out["error"], {"code": -32010, "message": "the deadline passed",
                                                    "data": {"name": "TIMEOUT"}})

    def test_concurrent_connections(self):
        errors = []

        def work(k):
            try:
                c = http.client.HTTPConnection(self.host, self.port, timeout=10)
                try:
                    for i in range(20):
                        _, _, body = post(c, call("greet.py", [f"{k}.{i}"]))
                        if json.loads(body)["result"]["greeting"] != f"Hello, {k}.{i}!":
                            errors.append((k, i, body))
                finally:
                    c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])


class ExampleLifecycle(unittest.TestCase):
    def test_sigterm_and_sigint_stop_cleanly(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(sig=sig):
                p = Example_("--addr", "127.0.0.1:0")
                c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
                try:
                    self.assertEqual(post(c, call("greet.py", ["Ann"]))[0], 200)  # an idle kept-alive connection
                finally:
                    code, rest = p.stop(sig)
                    c.close()
                self.assertEqual((code, rest), (0, ""))

    def run_example(self, *args):
        p = subprocess.run([sys.executable, EXAMPLE, *args], capture_output=True, text=True, timeout=30)
        return p.returncode, p.stderr

    def test_bad_addr(self):
        code, err = self.run_example("--addr", "nowhere")
        self.assertEqual(code, 2)
        self.assertIn("want HOST:PORT", err)
        self.assertNotIn("Traceback", err)

    def test_port_in_use(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            code, err = self.run_example("--addr", "127.0.0.1:%d" % s.getsockname()[1])
        self.assertEqual(code, 1)
        self.assertRegex(err, r"^greet-py: listen on 127\.0\.0\.1:\d+: .*in use\n$")

    def test_help(self):
        code, err = self.run_example("--help")
        self.assertEqual(code, 0)


# ---- a service of the tests' own ----------------------------------------------


class Address(TypedDict):
    city: Annotated[str, Schema(min_length=1, description="the city")]
    zip: str


class Tree(TypedDict):
    children: List["Tree"]


LOG = io.StringIO()
NOTES = []
svc = Service("typed-py", "2.0.0", description="types and errors", log=LOG, max_body=4096)


@svc.method("kinds", idempotent=True)
def kinds(s: str, i: int, f: float, b: bool, n: None, ints: list[int], floats: dict[str, float],
          o: Optional[str] = None, u: Optional[int] = None, lit: Literal["a", "b"] = "a",
          addr: Optional[Address] = None, small: Annotated[int, Schema(minimum=0, maximum=10)] = 0,
          word: Annotated[str, Schema(pattern="^[a-z]+$")] = "x",
          tags: Annotated[list[str], Schema(min_length=1, max_length=2)] = ("t",)) -> list[str]:
    """Reports what it got, as Python sees it.

    Not part of the summary."""
    return [f"{k}={v!r}" for k, v in locals().items()]


@svc.method("double")
def double(x: int) -> int:
    return 2 * x


@svc.method(errors={1404: "NOT_FOUND"}, examples=[Example([1404, "no such user"], error="NOT_FOUND")])
def fail(code: int, message: str, data: Optional[dict[str, int]] = None) -> None:
    raise RPCError(code, message, data)


@svc.method
def boom() -> None:
    raise ValueError("secret-details-xyz")


@svc.method("bad.result")
def bad_result(kind: Literal["type", "extra", "nan", "set"]) -> Address:
    return {"type": {"city": 7, "zip": "x"}, "extra": {"city": "c", "zip": "z", "more": 1},
            "nan": {"city": "c", "zip": math.nan}, "set": {1, 2}}[kind]


@svc.method("when")
def when() -> Optional[float]:
    return deadline()


@svc.method("note")
def note(text: str) -> None:
    NOTES.append(text)


@svc.method("slow")
def slow(seconds: float) -> bool:
    time.sleep(seconds)
    return True


class Running:
    """svc.listen on a free port, served from a thread."""

    def __init__(self, service, **kw):
        self.server = service.listen("127.0.0.1:0", **kw)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.host, self.port = self.server.server_address[:2]

    def stop(self):
        self.server.shutdown()
        self.thread.join()
        done = self.server.drain(5)
        self.server.server_close()
        return done


class TypedService(RPCTestCase):
    @classmethod
    def setUpClass(cls):
        cls.running = Running(svc)
        cls.host, cls.port = cls.running.host, cls.running.port

    @classmethod
    def tearDownClass(cls):
        assert cls.running.stop()

    def setUp(self):
        LOG.seek(0)
        LOG.truncate()

    def kinds(self, **params):
        base = {"s": "s", "i": 1, "f": 1.5, "b": True, "n": None, "ints": [], "floats": {}}
        return self.rpc(call("kinds", base | params))

    def test_document(self):
        doc = self.rpc(call("rpc.discover"))["result"]
        self.assertEqual(META_SCHEMA.errors(doc), [])
        self.assertEqual(doc, svc.document())
        self.assertEqual(doc["info"], {"title": "typed-py", "description": "types and errors", "version": "2.0.0"})
        self.assertEqual([m["name"] for m in doc["methods"]],
                         ["kinds", "double", "fail", "boom", "bad.result", "when", "note", "slow"])
        m = doc["methods"][0]
        self.assertEqual((m["summary"], m["paramStructure"], m["x-idempotent"]),
                         ("Reports what it got, as Python sees it.", "by-name", True))
        self.assertNotIn("examples", m)
        params = {p["name"]: (p["schema"], p.get("required", False)) for p in m["params"]}
        address = {"type": "object",
                   "properties": {"city": {"type": "string", "minLength": 1, "description": "the city"},
                                  "zip": {"type": "string"}},
                   "required": ["city", "zip"], "additionalProperties": False}
        self.assertEqual(params, {
            "s": ({"type": "string"}, True),
            "i": ({"type": "integer"}, True),
            "f": ({"type": "number"}, True),
            "b": ({"type": "boolean"}, True),
            "n": ({"type": "null"}, True),
            "ints": ({"type": "array", "items": {"type": "integer"}}, True),
            "floats": ({"type": "object", "additionalProperties": {"type": "number"}}, True),
            "o": ({"anyOf": [{"type": "string"}, {"type": "null"}]}, False),
            "u": ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, False),
            "lit": ({"type": "string", "enum": ["a", "b"]}, False),
            "addr": ({"anyOf": [address, {"type": "null"}]}, False),
            "small": ({"type": "integer", "minimum": 0, "maximum": 10}, False),
            "word": ({"type": "string", "pattern": "^[a-z]+$"}, False),
            "tags": ({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2}, False),
        })
        self.assertEqual(m["result"], {"name": "result", "schema": {"type": "array", "items": {"type": "string"}}})
        fail_doc = doc["methods"][2]
        self.assertEqual(fail_doc["errors"], [{"code": 1404, "message": "NOT_FOUND", "data": {"name": "NOT_FOUND"}},
                                              {"code": -32602, "message": "BAD_PAYLOAD", "data": {"name": "BAD_PAYLOAD"}}])
        self.assertEqual(fail_doc["examples"], [{"name": "example 1", "description": "fails with NOT_FOUND",
                                                 "params": [{"name": "code", "value": 1404},
                                                            {"name": "message", "value": "no such user"}]}])
        self.assertEqual(fail_doc["x-idempotent"], False)
        self.assertEqual(doc["methods"][3]["params"], [])
        self.assertEqual(doc["methods"][3]["result"]["schema"], {"type": "null"})

    def test_values_reach_the_function_as_typed(self):
        got = self.kinds(i=2**100, f=3, o="x", u=None, lit="b", addr={"city": "Oslo", "zip": "0150"}, small=10,
                         word="abc", tags=["p", "q"])["result"]
        self.assertIn("i=1267650600228229401496703205376", got)
        self.assertIn("f=3.0", got)  # an int for a float arrives as a float
        self.assertIn("addr={'city': 'Oslo', 'zip': '0150'}", got)
        self.assertIn("tags=['p', 'q']", got)
        self.assertIn("o='x'", got)
        got = self.kinds()["result"]
        self.assertIn("o=None", got)  # defaults apply for params left out
        self.assertIn("tags=('t',)", got)

    def test_type_errors_name_the_field(self):
        for params, message in [
            ({"s": 1}, "s: want a string, got 1"),
            ({"i": True}, "i: want an integer, got true"),
            ({"i": 1.5}, "i: want an integer, got 1.5"),
            ({"i": 1.0}, "i: want an integer, got 1.0"),
            ({"i": "1"}, 'i: want an integer, got "1"'),
            ({"f": False}, "f: want a number, got false"),
            ({"f": 10**400}, "f: must be within the range of a 64-bit float"),
            ({"b": 1}, "b: want a boolean, got 1"),
            ({"n": 0}, "n: want null, got 0"),
            ({"ints": [1, "2"]}, 'ints[1]: want an integer, got "2"'),
            ({"ints": {}}, "ints: want an array, got an object"),
            ({"floats": {"ok": 1, "not ok": "x"}}, 'floats["not ok"]: want a number, got "x"'),
            ({"floats": {"k": None}}, "floats.k: want a number, got null"),
            ({"o": 5}, "o: want a string or null, got 5"),
            ({"lit": "c"}, 'lit: want one of "a", "b", got "c"'),
            ({"addr": {"city": "Oslo"}}, 'addr: missing field "zip"'),
            ({"addr": {"city": "Oslo", "zip": "1", "x": 1}}, 'addr: unknown field "x"'),
            ({"addr": {"city": "", "zip": "1"}}, "addr.city: must be at least 1 character"),
            ({"addr": []}, "addr: want an object or null, got an array"),
            ({"small": -1}, "small: must be at least 0"),
            ({"small": 11}, "small: must be at most 10"),
            ({"word": "abc1"}, "word: must match the pattern ^[a-z]+$"),
            ({"tags": []}, "tags: must have at least 1 item"),
            ({"tags": ["a", "b", "c"]}, "tags: must have at most 2 items"),
            ({"s": "x" * 100}, None),  # fine: no bound
        ]:
            with self.subTest(params=params):
                out = self.kinds(**params)
                if message is None:
                    self.assertIn("result", out)
                else:
                    self.assertEqual(out["error"], {"code": -32602, "message": message, "data": {"name": "BAD_PAYLOAD"}})
        self.error('{"jsonrpc":"2.0","method":"kinds","params":["s",1,1e400,true,null,[],{}],"id":1}', -32602,
                   "f: must be within the range of a 64-bit float")
        self.error(call("kinds", {"s": "s"}), -32602, 'missing param "i"')
        self.error(call("kinds", ["s", 1, 1.5, True, None, [], {}, None, None, "a", None, 0, "x", ["t"], "extra"]),
                   -32602, "too many params: want at most 14, got 15")
        self.assertIn("result", self.rpc(call("kinds", ["s", 1, 1.5, True, None, [], {}])))

    def test_big_ints_are_exact_both_ways(self):
        for x in (2**63, -(2**200), 10**4000 // 3):
            body = json.dumps(call("double", [x]))
            _, _, out = post(self.conn(), body)
            self.assertIn(str(2 * x).encode(), out)
            self.assertEqual(json.loads(out)["result"], 2 * x)
        out = json.loads(svc.handle(b'{"jsonrpc":"2.0","method":"double","params":[' + b"9" * 5000 + b'],"id":1}'))
        self.assertEqual(out["error"]["code"], -32700)  # past Python's digits limit: refused, not crashed

    def test_rpc_errors_keep_their_code(self):
        for code, message, data, want_data in [
            (1404, "no such user", None, {"name": "NOT_FOUND"}),  # declared: named as nexo names errors
            (1404, "no such user", {"id": 7}, {"id": 7}),
            (1000, "low", None, None),
            (65535, "high", {"n": 1}, {"n": 1}),
            (-32099, "a server error", None, None),
        ]:
            with self.subTest(code=code, data=data):
                out = self.rpc(call("fail", [code, message, data]))
                want = {"code": code, "message": message}
                if want_data is not None:
                    want["data"] = want_data
                self.assertEqual(out["error"], want)
        self.assertEqual(LOG.getvalue(), "")

    def test_internal_errors_are_hidden_and_logged(self):
        out = self.rpc(call("boom"))
        self.assertEqual(out["error"], {"code": -32603, "message": "internal error", "data": {"name": "INTERNAL"}})
        log = LOG.getvalue()
        self.assertTrue(log.startswith("typed-py: boom: internal error; the caller got -32603\nTraceback"), log)
        self.assertIn("ValueError: secret-details-xyz", log)
        for kind, logged in [("type", "result.city: want a string, got 7"), ("extra", 'result: unknown field "more"'),
                             ("nan", "result.zip: want a string, got NaN"), ("set", "result: want an object, got {1, 2}")]:
            with self.subTest(kind=kind):
                out = self.rpc(call("bad.result", [kind]))
                self.assertEqual(out["error"]["code"], -32603)
                self.assertNotIn("city", json.dumps(out))
                self.assertIn(f"typed-py: bad.result: the result does not fit its type: {logged}", LOG.getvalue())

    def test_deadline_reaches_the_function(self):
        self.assertIsNone(self.rpc(call("when"))["result"])
        ms = int(time.time() * 1000) + 60000
        self.assertEqual(self.rpc(call("when"), headers={"Nexo-Deadline": str(ms)})["result"], ms / 1000)
        self.assertIsNone(deadline())

    def test_notifications_run(self):
        NOTES.clear()
        status, _, _ = post(self.conn(), [{"jsonrpc": "2.0", "method": "note", "params": ["one"]},
                                          {"jsonrpc": "2.0", "method": "note", "params": {"text": "two"}},
                                          {"jsonrpc": "2.0", "method": "note", "params": {"text": 3}}])
        self.assertEqual((status, NOTES), (204, ["one", "two"]))

    def test_smaller_max_body(self):
        c = self.conn()
        status, _, _ = post(c, call("note", ["x" * 4096]))
        self.assertEqual(status, 413)
        self.assertEqual(self.rpc(call("note", ["x" * 4000]), conn=c)["result"], None)

    def test_handle_without_http(self):
        self.assertEqual(json.loads(svc.handle(json.dumps(call("double", [21])).encode())),
                         {"jsonrpc": "2.0", "result": 42, "id": 1})
        self.assertIsNone(svc.handle(b'{"jsonrpc":"2.0","method":"double","params":[1]}'))
        out = json.loads(svc.handle(json.dumps(call("double", [1])).encode(), deadline=time.time() - 1))
        self.assertEqual(out["error"]["code"], -32010)


class ServerLimits(unittest.TestCase):
    def test_drain_finishes_calls_and_refuses_new_ones(self):
        r = Running(svc)
        a = http.client.HTTPConnection(r.host, r.port, timeout=10)
        b = http.client.HTTPConnection(r.host, r.port, timeout=10)
        try:
            self.assertEqual(post(b, call("double", [1]))[0], 200)  # b is open and idle
            got = {}
            t = threading.Thread(target=lambda: got.update(a=post(a, call("slow", [0.5]))))
            t.start()
            for _ in range(200):
                if r.server._calls:
                    break
                time.sleep(0.01)
            r.server.shutdown()
            r.thread.join()
            drained = {}
            d = threading.Thread(target=lambda: drained.update(ok=r.server.drain(5)))
            d.start()
            while not r.server.draining:
                time.sleep(0.01)
            status, resp, body = post(b, call("double", [1]))  # arrives while draining
            self.assertEqual(json.loads(body)["error"], {"code": -32009, "message": "shutting down",
                                                         "data": {"name": "SHUTTING_DOWN"}})
            self.assertTrue(resp.will_close)
            d.join()
            t.join()
            self.assertEqual(drained, {"ok": True})
            status, resp, body = got["a"]
            self.assertEqual(json.loads(body)["result"], True)  # the call under way finished
            self.assertTrue(resp.will_close)
            with self.assertRaises(OSError):
                socket.create_connection((r.host, r.port), timeout=1).close()
        finally:
            a.close()
            b.close()
            r.server.server_close()

    def test_connections_are_bounded(self):
        r = Running(svc, max_connections=1)
        self.addCleanup(r.stop)
        first = http.client.HTTPConnection(r.host, r.port, timeout=10)
        try:
            self.assertEqual(post(first, call("double", [1]))[0], 200)
            second = http.client.HTTPConnection(r.host, r.port, timeout=10)
            try:
                status, resp, body = post(second, call("double", [1]))
            finally:
                second.close()
            self.assertEqual((status, resp.will_close), (200, True))
            self.assertEqual(json.loads(body)["error"], {"code": -32008, "data": {"name": "BUSY"},
                                                         "message": "busy: the service serves at most 1 connection"})
            second = http.client.HTTPConnection(r.host, r.port, timeout=10)
            try:  # the health check still sees the service up
                status, resp, body = post(second, call("rpc.discover"))
            finally:
                second.close()
            self.assertEqual(json.loads(body)["result"], svc.document())
            self.assertEqual(post(first, call("double", [1]))[0], 200)  # the first is served still
        finally:
            first.close()
        for _ in range(100):  # the slot frees once the server sees the close
            c = http.client.HTTPConnection(r.host, r.port, timeout=10)
            try:
                if post(c, call("double", [2]))[0] == 200:
                    break
            except (ConnectionError, http.client.HTTPException):
                pass
            finally:
                c.close()
            time.sleep(0.02)
        else:
            self.fail("the slot never came back")

    def test_idle_connections_are_closed(self):
        r = Running(svc, idle_timeout=0.2)
        self.addCleanup(r.stop)
        with socket.create_connection((r.host, r.port), timeout=10) as s:
            time.sleep(0.5)
            self.assertEqual(s.recv(100), b"")


# ---- mistakes found when a method is declared -----------------------------------


class Declaration(unittest.TestCase):
    def declare(self, fn, **kw):
        Service("t", log=io.StringIO()).method(**kw)(fn)

    def assertRefused(self, fn, exc, *words, **kw):
        with self.assertRaises(exc) as cm:
            self.declare(fn, **kw)
        for w in words:
            self.assertIn(w, str(cm.exception))

    def test_unsupported_hints_name_function_and_param(self):
        def f(x: set[str]) -> int: ...
        self.assertRefused(f, TypeError, "f (f)", "param 'x'", "unsupported type hint set[str]", "TypedDict")

        def g(x: int) -> tuple[int, int]: ...
        self.assertRefused(g, TypeError, "g (g)", "result", "tuple[int, int]")

        def h(x: "int | str") -> int: ...
        self.assertRefused(h, TypeError, "param 'x'", "Optional[T]")

        def i(x: dict[int, str]) -> int: ...
        self.assertRefused(i, TypeError, "dict[str, T]")

        def j(x: list) -> int: ...
        self.assertRefused(j, TypeError, "needs its item types")

        def k(x: Tree) -> int: ...
        self.assertRefused(k, TypeError, "Tree refers to itself")

        class Bad(TypedDict):
            when: bytes

        def m(x: Bad) -> int: ...
        self.assertRefused(m, TypeError, "param 'x', field 'when'", "bytes")

        def n(x: Annotated[int, Schema(min_length=1)]) -> int: ...
        self.assertRefused(n, TypeError, "param 'x'", "Schema(min_length=...) does not apply to an integer")

        def p(x: Annotated[Optional[str], Schema(minimum=1)]) -> int: ...
        self.assertRefused(p, TypeError, "Schema(minimum=...) does not apply to a string or null")

        def q(x: Annotated[list[int], Schema(pattern="x")]) -> int: ...
        self.assertRefused(q, TypeError, "Schema(pattern=...) does not apply to an array")

        def o(x: Literal[1.5]) -> int: ...
        self.assertRefused(o, TypeError, "Literal values")

    def test_signatures(self):
        def f(x) -> int: ...
        self.assertRefused(f, TypeError, "param 'x'", "no type hint")

        def g(x: int): ...
        self.assertRefused(g, TypeError, "no return type hint")

        def h(*xs: int) -> int: ...
        self.assertRefused(h, TypeError, "*args")

        def i(x: int, /) -> int: ...
        self.assertRefused(i, TypeError, "positional-only")

        async def j(x: int) -> int: ...
        self.assertRefused(j, TypeError, "async")

        def k(x: "Undefined") -> int: ...  # noqa: F821
        self.assertRefused(k, TypeError, "do not resolve")

    def test_names_errors_and_examples(self):
        def f(x: int) -> int: ...
        self.assertRefused(f, ValueError, "rpc.", name="rpc.mine")
        self.assertRefused(f, ValueError, "printable ASCII", name="has space")
        self.assertRefused(f, ValueError, "printable ASCII", name="")
        self.assertRefused(f, ValueError, "1000 to 65535", errors={999: "LOW"})
        self.assertRefused(f, ValueError, "1000 to 65535", errors={65536: "HIGH"})
        self.assertRefused(f, ValueError, 'Example(params, error="BAD_PAYLOAD")', examples=[({"x": "a"}, "BAD_PAYLOAD")])
        self.assertRefused(f, ValueError, "says BAD_PAYLOAD, but its params fit",
                           examples=[Example({"x": 1}, error="BAD_PAYLOAD")])
        self.assertRefused(f, ValueError, "example 1: its params do not fit: x: want an integer", examples=[({"x": "a"}, 2)])
        self.assertRefused(f, ValueError, "result: want an integer", examples=[({"x": 1}, "2")])
        self.assertRefused(f, ValueError, "'GONE' is not one of", examples=[Example([1], error="GONE")])
        self.assertRefused(f, ValueError, "not JSON", examples=[({"x": 1}, math.inf)])
        s = Service("t")
        s.method("x")(f)
        with self.assertRaises(ValueError):
            s.method("x")(f)

    def test_schema_arguments(self):
        for kw in ({"min_length": -1}, {"max_length": 1.5}, {"min_length": 3, "max_length": 2}, {"minimum": True},
                   {"minimum": 2, "maximum": 1}, {"pattern": "("}, {"minimum": math.inf}):
            with self.subTest(kw=kw), self.assertRaises(ValueError):
                Schema(**kw)

    def test_rpc_error_arguments(self):
        with self.assertRaises(TypeError):
            RPCError("1404", "x")
        with self.assertRaises(TypeError):
            RPCError(True, "x")
        e = RPCError(1404, "no such user", {"id": 1})
        self.assertEqual((e.code, e.message, e.data), (1404, "no such user", {"id": 1}))

    @unittest.skipIf(sys.version_info < (3, 10), "T | None is Python 3.10")
    def test_union_syntax(self):
        s = Service("t", log=io.StringIO())

        @s.method("u")
        def u(x: "int | None", y: "list[str | None]" = None) -> "str | None":
            pass
        params = s.document()["methods"][0]["params"]
        self.assertEqual([p["schema"] for p in params],
                         [{"anyOf": [{"type": "integer"}, {"type": "null"}]},
                          {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}}])
        out = json.loads(s.handle(json.dumps(call("u", [1, ["a", None, 2]])).encode()))
        self.assertEqual(out["error"]["message"], "y[2]: want a string or null, got 2")

    def test_constraints_through_optional(self):
        s = Service("t", log=io.StringIO())

        @s.method("opt")
        def opt(x: Annotated[Optional[str], Schema(max_length=2, description="short")] = None) -> None:
            pass
        self.assertEqual(s.document()["methods"][0]["params"][0]["schema"],
                         {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "null"}], "description": "short"})
        for params, error in (([None], None), (["ab"], None), (["abc"], "x: must be at most 2 characters")):
            out = json.loads(s.handle(json.dumps(call("opt", params)).encode()))
            self.assertEqual(out.get("error", {}).get("message"), error)

    @unittest.skipIf(NotRequired is None, "Python < 3.11")
    def test_not_required_fields(self):
        class Opt(TypedDict):
            a: int
            b: NotRequired[Annotated[str, Schema(max_length=3)]]

        s = Service("t", log=io.StringIO())

        @s.method("opt")
        def opt(o: Opt) -> Opt:
            return o
        schema = s.document()["methods"][0]["params"][0]["schema"]
        self.assertEqual(schema, {"type": "object", "properties": {"a": {"type": "integer"},
                                                                   "b": {"type": "string", "maxLength": 3}},
                                  "required": ["a"], "additionalProperties": False})
        self.assertEqual(json.loads(s.handle(json.dumps(call("opt", [{"a": 1}])).encode()))["result"], {"a": 1})
        out = json.loads(s.handle(json.dumps(call("opt", [{"a": 1, "b": "long"}])).encode()))
        self.assertEqual(out["error"]["message"], "o.b: must be at most 3 characters")


if __name__ == "__main__":
    unittest.main()
