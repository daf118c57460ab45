"""The command line's errors: one line on stderr, exit status 1 or 2, never
a traceback. No server is needed: these fail before or at the connection."""
import os
import socket
import subprocess
import sys
import unittest

PYDIR = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "nexo_client", *args], cwd=PYDIR, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr


class CLIErrorsTest(unittest.TestCase):
    def check(self, args, status, words):
        code, err = cli(*args)
        self.assertEqual(code, status, err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        for w in words:
            self.assertIn(w, err)

    def test_refused(self):
        self.check(["--addr", "127.0.0.1:%d" % closed_port(), "call", "math.add", "1", "2"], 1, ["refused", "nexo serve"])

    def test_not_an_integer(self):
        self.check(["call", "math.add", "one", "2"], 2, ["two integers"])

    def test_too_few_args(self):
        self.check(["call", "math.add", "1"], 2, ["two integers"])

    def test_bad_addr(self):
        self.check(["--addr", "nowhere", "call", "sys.info"], 2, ["HOST:PORT"])

    def test_unknown_command(self):
        code, err = cli("frobnicate")
        self.assertEqual(code, 2)
        self.assertNotIn("Traceback", err)


if __name__ == "__main__":
    unittest.main()
