"""The seed's math client: a random operation every 10 seconds, sent as
struct.pack("ihh", len(cmd), a, b) + cmd, exactly as the original did, to
nexo's legacy door. Standard library only.

usage: python3 seed_client.py [HOST] [PORT] [--every SECONDS] [--count N]
"""
import argparse
import random
import socket
import struct
import time

COMMANDS = ["SUMA", "RESTA", "MULTIPLICACION", "DIVISION"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host", nargs="?", default="127.0.0.1")
    ap.add_argument("port", nargs="?", type=int, default=7071)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--count", type=int, default=0, help="stop after N operations (0: forever)")
    opts = ap.parse_args()
    sock = socket.create_connection((opts.host, opts.port))
    replies = sock.makefile("rb")
    n = 0
    while True:
        cmd = random.choice(COMMANDS)
        a, b = random.randint(-32768, 32767), random.randint(-32768, 32767)
        sock.sendall(struct.pack("ihh", len(cmd), a, b) + cmd.encode())
        reply = replies.readline().decode().rstrip("\n")
        if not reply:
            print("server closed the connection")
            return 1
        print("%s %d %d -> %s" % (cmd, a, b, reply), flush=True)
        n += 1
        if opts.count and n >= opts.count:
            return 0
        time.sleep(opts.every)


if __name__ == "__main__":
    raise SystemExit(main())
