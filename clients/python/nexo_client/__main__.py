"""python -m nexo_client call METHOD [ARG...] | auto [--every S] [--count N]

Mirrors the Go CLI: `call math.div 7 2` prints 3.5; errors go to stderr as
NAME: message with exit status 1.
"""
import argparse
import random
import struct
import sys
import time

from .client import Client, NexoError

OPS = [("math.add", "+"), ("math.sub", "-"), ("math.mul", "*"), ("math.div", "/")]


def fmt_float(q: float) -> str:
    # Go's strconv.FormatFloat(q, 'f', -1, 64) for the quotients of int64s.
    if q == 0:
        return "0"
    r = repr(q)
    if "e" in r:
        r = "{:f}".format(q).rstrip("0").rstrip(".")
    return r[:-2] if r.endswith(".0") else r


def format_result(method: str, resp: bytes) -> str:
    if method.startswith("math.") and len(resp) == 8:
        if method == "math.div":
            return fmt_float(struct.unpack(">d", resp)[0])
        return str(struct.unpack(">q", resp)[0])
    try:
        return resp.decode("utf-8")
    except UnicodeDecodeError:
        return resp.hex()


class UsageError(Exception):
    """A mistake on the command line (exit status 2)."""


def parse_addr(addr: str):
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError("--addr %r: want HOST:PORT, such as 127.0.0.1:7070" % addr)
    return host, int(port)


def call_payload(method: str, args) -> bytes:
    if method.startswith("math."):
        if len(args) != 2:
            raise UsageError("%s takes two integers, got %d arguments" % (method, len(args)))
        try:
            a, b = int(args[0]), int(args[1])
        except ValueError:
            raise UsageError("%s takes two integers, got %s" % (method, " ".join(args))) from None
        if not all(-(1 << 63) <= v < (1 << 63) for v in (a, b)):
            raise UsageError("%s takes int64 integers" % method)
        return struct.pack(">qq", a, b)
    return " ".join(args).encode()


def main(argv=None) -> int:
    """Runs the command line and returns its exit status: 0, 1 for an error
    at run time, 2 for a usage error. It prints one line on stderr for an
    error, never a traceback."""
    ap = argparse.ArgumentParser(prog="python -m nexo_client")
    ap.add_argument("--addr", default="127.0.0.1:7070", help="server address (native door)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("call", help="send one request")
    c.add_argument("method")
    c.add_argument("args", nargs=argparse.REMAINDER)
    a = sub.add_parser("auto", help="a random math operation every interval")
    a.add_argument("--every", type=float, default=10.0, help="seconds between operations")
    a.add_argument("--count", type=int, default=0, help="stop after N operations (0: forever)")
    opts = ap.parse_args(argv)  # exits 2 with one usage line on a mistake
    try:
        host, port = parse_addr(opts.addr)
        payload = call_payload(opts.method, opts.args) if opts.cmd == "call" else b""
        return run(opts, host, port, payload)
    except UsageError as e:
        print("nexo_client: %s" % e, file=sys.stderr)
        return 2
    except NexoError as e:
        print(str(e), file=sys.stderr)  # NAME: message, as documented
        return 1
    except ConnectionRefusedError:
        print("nexo_client: cannot connect to %s: connection refused (is `nexo serve` running?)" % opts.addr, file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print("nexo_client: %s: %s" % (opts.addr, e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0  # how auto is stopped


def run(opts, host: str, port: int, payload: bytes) -> int:
    with Client(host, port, name="python-" + opts.cmd) as client:
        if opts.cmd == "call":
            print(format_result(opts.method, client.call(opts.method, payload)))
            return 0
        print("connected to %s as client %d" % (opts.addr, client.client_id), flush=True)
        n = 0
        while True:
            method, sym = random.choice(OPS)
            x, y = random.randint(-32768, 32767), random.randint(-32768, 32767)
            try:
                res = format_result(method, client.call(method, struct.pack(">qq", x, y)))
                print("%s %d %s %d = %s" % (method, x, sym, y, res), flush=True)
            except NexoError as e:
                print("%s %d %s %d: %s" % (method, x, sym, y, e), flush=True)
            n += 1
            if opts.count and n >= opts.count:
                return 0
            time.sleep(opts.every)


if __name__ == "__main__":
    sys.exit(main())
