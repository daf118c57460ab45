"""nexo_client against a real `nexo serve` started by the test.

The server binary comes from $NEXO_BIN, or is built with `go build`.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from nexo_client import (Client, ConnectionClosed, DivisionByZero, NexoError, Overflow, ShuttingDown,
                         UnknownMethod, wire)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PYDIR = os.path.abspath(os.path.join(HERE, ".."))


class Server:
    def __init__(self, *args):
        self.tmp = tempfile.mkdtemp()
        binary = os.environ.get("NEXO_BIN")
        if not binary:
            binary = os.path.join(self.tmp, "nexo")
            subprocess.run(["go", "build", "-o", binary, "./cmd/nexo"], cwd=ROOT, check=True)
        self.proc = subprocess.Popen([binary, "serve", "--native-addr", "127.0.0.1:0", "--legacy-addr", "127.0.0.1:0",
                                      "--web-addr", "", "--admin-addr", "", *args],
                                     stderr=subprocess.PIPE, text=True)
        self.addrs = {}
        for line in self.proc.stderr:
            m = re.search(r"msg=listening door=(\w+) addr=(\S+)", line)
            if m:
                self.addrs[m.group(1)] = m.group(2)
            if len(self.addrs) == 2:
                break
        self.drain = threading.Thread(target=self.proc.stderr.read, daemon=True)  # keep the pipe drained
        self.drain.start()
        self.host, self.port = self.addrs["native"].rsplit(":", 1)
        self.port = int(self.port)

    def stop(self):
        self.proc.terminate()
        code = self.proc.wait(15)
        self.drain.join(5)
        self.proc.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return code


class Integration(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--heartbeat", "300ms")

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    def client(self, name="py-test"):
        c = Client(self.srv.host, self.srv.port, name=name)
        self.addCleanup(c.close)
        return c

    def test_math_and_typed_errors(self):
        c = self.client()
        self.assertEqual(c.add(2, 3), 5)
        self.assertEqual(c.sub(2, 3), -1)
        self.assertEqual(c.mul(-4, 5), -20)
        self.assertEqual(c.div(7, 2), 3.5)
        self.assertEqual(c.echo(b""), b"")
        with self.assertRaises(DivisionByZero) as cm:
            c.div(1, 0)
        self.assertEqual((cm.exception.code, cm.exception.name), (6, "DIVISION_BY_ZERO"))
        with self.assertRaises(Overflow):
            c.add(2**63 - 1, 1)
        with self.assertRaises(UnknownMethod):
            c.call("no.such")
        info = c.info()
        self.assertIn("math.add", info["methods"])

    def test_method_vectors(self):
        with open(os.path.join(ROOT, "testdata", "vectors", "methods.json")) as f:
            vectors = json.load(f)["vectors"]
        c = self.client()
        results = c.pipeline([(v["method"], bytes.fromhex(v["payload_hex"])) for v in vectors])
        for v, got in zip(vectors, results):
            with self.subTest(v["method"] + " " + v["payload_hex"]):
                if "error" in v:
                    self.assertIsInstance(got, NexoError)
                    self.assertEqual(got.name, v["error"])
                else:
                    self.assertEqual(got.hex(), v["response_hex"])

    def test_pipelining_from_threads(self):
        c = self.client()
        errors = []

        def work(k):
            try:
                for i in range(200):
                    if c.add(k * 1000, i) != k * 1000 + i:
                        errors.append((k, i))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def test_heartbeat_keeps_idle_client(self):
        c = self.client("idle")
        time.sleep(1.2)  # four heartbeat intervals: the reader answered the PINGs
        self.assertEqual(c.add(1, 1), 2)

    def test_close_says_goodbye(self):
        c = Client(self.srv.host, self.srv.port, name="leaver")
        self.assertEqual(c.add(1, 1), 2)
        cid = c.client_id
        c.close()
        with self.assertRaises(ConnectionClosed):
            c.add(1, 1)
        lister = self.client("lister")
        for _ in range(100):
            snap = json.loads(lister.call("sys.clients"))
            closed = [r for r in snap["closed"] if r["id"] == cid]
            if closed:
                break
            time.sleep(0.02)
        self.assertEqual(closed[0]["reason"], "client goodbye")

    def test_cli(self):
        env = dict(os.environ, PYTHONPATH=PYDIR)
        out = subprocess.run([sys.executable, "-m", "nexo_client", "--addr", self.srv.addrs["native"], "call", "math.div", "7", "2"],
                             capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual((out.returncode, out.stdout), (0, "3.5\n"))
        out = subprocess.run([sys.executable, "-m", "nexo_client", "--addr", self.srv.addrs["native"], "call", "math.div", "1", "0"],
                             capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertTrue(out.stderr.startswith("DIVISION_BY_ZERO"), out.stderr)
        out = subprocess.run([sys.executable, "-m", "nexo_client", "--addr", self.srv.addrs["native"], "auto", "--every", "0.01", "--count", "3"],
                             capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.strip().splitlines()
        self.assertEqual(len(lines), 4, out.stdout)
        for line in lines[1:]:
            self.assertRegex(line, r"^math\.(add|sub|mul|div) -?\d+ [-+*/] -?\d+ (= -?[\d.]+|: DIVISION_BY_ZERO)")

    def test_seed_client(self):
        host, port = self.srv.addrs["legacy"].rsplit(":", 1)
        out = subprocess.run([sys.executable, os.path.join(PYDIR, "seed_client.py"), host, port, "--every", "0.01", "--count", "5"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.strip().splitlines()
        self.assertEqual(len(lines), 5)
        for line in lines:
            self.assertRegex(line, r"^(SUMA|RESTA|MULTIPLICACION|DIVISION) -?\d+ -?\d+ -> (-?[\d.]+|ERROR DIVISION_BY_ZERO)$")


class Shutdown(unittest.TestCase):
    def test_server_goodbye(self):
        srv = Server()
        c = Client(srv.host, srv.port, name="until-the-end")
        self.assertEqual(c.add(1, 2), 3)
        self.assertEqual(srv.stop(), 0)
        with self.assertRaises((ConnectionClosed, ShuttingDown)):
            c.add(1, 1)
        c.close()


if __name__ == "__main__":
    unittest.main()
