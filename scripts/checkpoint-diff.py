#!/usr/bin/env python3
"""Compares two runs' newest checkpoints (safetensors, read with numpy alone) the way
Gan.Host.Tests' DeviceTrainingTests compares a device's run with the CPU's: the same tensors
(names, dtypes, shapes); train.* and *.step exactly equal; every element within LOOSE of
1 + the CPU tensor's largest magnitude; each group of tensors (G's variables, D's, each
optimizer moment of each, the EMA: the name less its last two parts) within RELATIVE in the L2
norm. Float32 kernels that sum in another order differ in the last bits, and a training step
amplifies that where it divides by small numbers (BatchNorm's spread, Adam's sqrt(v)); a device
that did not train would leave the Adam moments at 0, a difference of 1.

    python3 checkpoint-diff.py DEVICE_RUN CPU_RUN [LABEL]

Prints one line; exit status 0 when within tolerance, 1 when not."""
import glob
import json
import os
import struct
import sys

import numpy as np

RELATIVE, LOOSE = 2e-2, 1e-2
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def newest(run):
    files = sorted(glob.glob(os.path.join(run, "checkpoints", "*.safetensors")))
    if not files:
        sys.exit(f"checkpoint-diff: no checkpoints/*.safetensors under {run}")
    return files[-1]


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[name] = (info["dtype"], info["shape"], np.frombuffer(body[start:end], DTYPES[info["dtype"]]))
    return tensors


def group(name):
    parts = name.split(".")
    return ".".join(parts[:-2]) if len(parts) >= 3 else name


def main():
    device_run, cpu_run = sys.argv[1], sys.argv[2]
    label = sys.argv[3] if len(sys.argv) > 3 else device_run
    on_device, on_cpu = read(newest(device_run)), read(newest(cpu_run))
    problems = []
    sig = lambda ts: [(k, d, tuple(s)) for k, (d, s, _) in sorted(ts.items())]
    if sig(on_device) != sig(on_cpu):
        problems.append("the checkpoints hold different tensors (names, dtypes or shapes)")
    worst, groups = ("", 0.0), {}
    for name, (_, _, b) in on_cpu.items():
        if name not in on_device:
            continue
        a = on_device[name][2].astype(np.float64)
        b = b.astype(np.float64)
        scale = 1 + (np.abs(b).max() if b.size else 0)
        distance = (np.abs(a - b).max() if b.size else 0) / scale
        if not np.isfinite(distance):
            problems.append(f"{name} is not finite")
            continue
        if (name.startswith("train.") or name.endswith(".step")) and distance != 0:
            problems.append(f"{name} differs")
        if distance > worst[1]:
            worst = (name, distance)
        d, nrm = groups.get(group(name), (0.0, 0.0))
        groups[group(name)] = (d + float(((a - b) ** 2).sum()), nrm + float((b**2).sum()))
    rel = max(
        ((g, (d / n) ** 0.5 if n > 0 else d**0.5) for g, (d, n) in groups.items()), key=lambda x: x[1], default=("", 0.0)
    )
    if rel[1] > RELATIVE:
        problems.append(f"{rel[0]} differs by {rel[1]:.3g} in the L2 norm (> {RELATIVE})")
    if worst[1] > LOOSE:
        problems.append(f"{worst[0]} differs by {worst[1]:.3g} (> {LOOSE}) of 1 + max |cpu|")
    print(
        f"{label}: {len(on_cpu)} tensors in {len(groups)} groups; largest relative L2 difference of a group "
        f"{rel[1]:.3g} ({rel[0]}); largest element difference {worst[1]:.3g} ({worst[0]})"
        + ("" if not problems else "; FAILED: " + "; ".join(problems))
    )
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
