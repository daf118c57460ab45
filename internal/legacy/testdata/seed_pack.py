"""Prints the golden packets exactly as the seed's Python client packs them.

python3 seed_pack.py | diff - packets.golden
"""
import struct

CASES = [("SUMA", 3, 4), ("RESTA", -1, 32767), ("MULTIPLICACION", -32768, 2), ("DIVISION", 7, 0)]
for order, name in (("<", "LittleEndian"), (">", "BigEndian")):
    for cmd, a, b in CASES:
        packet = struct.pack(order + "ihh", len(cmd), a, b) + cmd.encode()
        print(name, cmd, a, b, packet.hex())
