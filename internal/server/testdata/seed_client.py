"""The seed's math client, as the legacy door must keep serving it.

Standard library only. It sends each operation exactly as the original
client did, struct.pack("ihh", len(cmd), a, b) + cmd, and reads the ASCII
reply line. It checks every reply against Python's own arithmetic and
exits non-zero on the first mismatch.

usage: seed_client.py HOST PORT [COUNT] [ORDER]
  ORDER is "" (native, as the seed), "<" (little-endian) or ">" (big-endian)
"""
import random
import socket
import struct
import sys

OPS = {
    "SUMA": lambda a, b: str(a + b),
    "RESTA": lambda a, b: str(a - b),
    "MULTIPLICACION": lambda a, b: str(a * b),
    "DIVISION": lambda a, b: "ERROR DIVISION_BY_ZERO" if b == 0 else shortest(a / b),
}


def shortest(q):
    # Go's strconv.FormatFloat(q, 'f', -1, 64): shortest repr, no exponent.
    if q == 0:
        return "0"
    r = repr(q)
    if "e" in r or "E" in r:
        r = format(q, "f")  # never reached for int16 operands
    if r.endswith(".0"):
        r = r[:-2]
    return r


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    order = sys.argv[4] if len(sys.argv) > 4 else ""
    rng = random.Random(7)
    cases = [("SUMA", 3, 4), ("RESTA", 3, 10), ("MULTIPLICACION", -32768, -32768),
             ("DIVISION", 7, 2), ("DIVISION", 1, 3), ("DIVISION", 0, -5), ("DIVISION", 5, 0)]
    for _ in range(count):
        cmd = rng.choice(list(OPS))
        cases.append((cmd, rng.randint(-32768, 32767), rng.randint(-32768, 32767)))
    sock = socket.create_connection((host, port), timeout=10)
    replies = sock.makefile("rb")
    for cmd, a, b in cases:
        sock.sendall(struct.pack(order + "ihh", len(cmd), a, b) + cmd.encode())
        got = replies.readline().decode().rstrip("\n")
        want = OPS[cmd](a, b)
        if got != want:
            print("MISMATCH %s %d %d: got %r want %r" % (cmd, a, b, got, want))
            return 1
        print("%s %d %d = %s" % (cmd, a, b, got))
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
