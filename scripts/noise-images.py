#!/usr/bin/env python3
"""Writes N 64x64 RGB PNGs of uniform noise (each pixel and channel uniform in 0..255, from a
fixed seed) into DIR: the noise floor of the colour metrics, scored with
`Gan.Host evaluate --images DIR --dataset emoji` (docs/quality.md). Standard library only.

Usage: python3 scripts/noise-images.py DIR [N=500] [SEED=0]
"""
import os, random, struct, sys, zlib

def png(width, height, rgb):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + rgb[y * width * 3:(y + 1) * width * 3] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")

def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    os.makedirs(out, exist_ok=True)
    for i in range(n):
        data = bytes(rng.getrandbits(8) for _ in range(64 * 64 * 3))
        with open(os.path.join(out, "noise-%04d.png" % i), "wb") as f:
            f.write(png(64, 64, data))

if __name__ == "__main__":
    main()
