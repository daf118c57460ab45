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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nexo_client")
    ap.add_argument("--addr", default="127.0.0.1:7070", help="server address (native door)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("call", help="send one request")
    c.add_argument("method")
    c.add_argument("args", nargs=argparse.REMAINDER)
    a = sub.add_parser("auto", help="a random math operation every interval")
    a.add_argument("--every", type=float, default=10.0, help="seconds between operations")
    a.add_argument("--count", type=int, default=0, help="stop after N operations (0: forever)")
    opts = ap.parse_args(argv)
    host, _, port = opts.addr.rpartition(":")

    with Client(host, int(port), name="python-" + opts.cmd) as client:
        if opts.cmd == "call":
            payload = b""
            if opts.method.startswith("math."):
                if len(opts.args) != 2:
                    print("%s takes two integers" % opts.method, file=sys.stderr)
                    return 2
                payload = struct.pack(">qq", int(opts.args[0]), int(opts.args[1]))
            elif opts.args:
                payload = " ".join(opts.args).encode()
            try:
                print(format_result(opts.method, client.call(opts.method, payload)))
            except NexoError as e:
                print(str(e), file=sys.stderr)
                return 1
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
