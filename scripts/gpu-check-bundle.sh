#!/usr/bin/env bash
# The GPU check for a machine without .NET, run from the bundle scripts/gpu-bundle.sh makes
# (a self-contained Gan.Host in host/, this script, checkpoint-diff.py). Needs the NVIDIA driver
# (libcuda.so.1), Python 3 with numpy, and for cuBLAS a libcublas.so.13/.12 on the library path
# (pip's nvidia-cublas keeps it under site-packages/nvidia/…: this script adds that directory
# to the library path when Python finds it there). About 5 minutes. It
#   1. lists the devices and stops (exit 2) without a CUDA device,
#   2. trains toy2d and each seed model for a few steps on the device and on this machine's CPU
#      (the same seed and data: random MNIST-sized images made here) and compares the checkpoints
#      as Gan.Host.Tests' DeviceTrainingTests does (checkpoint-diff.py),
#   3. runs `bench --device DEVICE --model all`, then the same on the CPU for comparison.
# Everything it prints also goes to the log (default gpu-check-<UTC time>.log in the current
# directory). Exit status: 0 when every stage passed, 1 when one failed, 2 without a GPU.
#   bash gpu-bundle/gpu-check-bundle.sh [LOG] [DEVICE]      # DEVICE: cuda:0 (default), cuda:1, ...
# Env: MODELS (comma-separated, default toy2d and every seed model), BENCH=0 skips stage 3 (for a
# trial of the bundle on a machine without a GPU: DEVICE ilgpu-cpu, MODELS=toy2d,mlp BENCH=0).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG=${1:-gpu-check-$(date -u +%Y%m%dT%H%M%SZ).log}
DEVICE=${2:-cuda:0}
HOST=("$here/host/Gan.Host")
PY=${PYTHON:-python3}
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_CLI_TELEMETRY_OPTOUT=1

exec > >(tee "$LOG") 2>&1

source "$here/gpu-check-common.sh"

machine
echo "bundle: $(cat "$here/COMMIT" 2>/dev/null)"
# the directory of the first libcublas.so.* under pip's nvidia packages (their layout differs
# between CUDA versions)
cublas_dir=$("$PY" - 2>/dev/null <<'PYEOF' || true
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
hits = sorted(p for r in roots for p in glob.glob(os.path.join(r, "**", "libcublas.so.*"), recursive=True))
print(os.path.dirname(hits[0]) if hits else "")
PYEOF
)
if [ -n "$cublas_dir" ] && [ -d "$cublas_dir" ]; then
    export LD_LIBRARY_PATH="$cublas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "cuBLAS from pip's nvidia-cublas: $cublas_dir ($(ls "$cublas_dir" | grep -o 'libcublas\.so\.[0-9]*' | sort -u | tr '\n' ' '))"
fi

stage "devices"
DEVICES=$("${HOST[@]}" devices 2>&1)
echo "$DEVICES"
if ! grep -q "^${DEVICE} " <<<"$DEVICES"; then
    echo
    echo "gpu-check-bundle: FAILED: no CUDA device ${DEVICE} here (see the cuda line above)."
    exit 2
fi

stage "a few training steps of toy2d and each seed model on ${DEVICE} against the CPU"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# 24 random 28x28 images as an MNIST training file (IDX, unsigned bytes)
"$PY" - "$work/data/train-images-idx3-ubyte" <<'PYEOF'
import os, struct, sys
import numpy as np
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack(">I3I", 0x803, 24, 28, 28))
    f.write(np.random.default_rng(5).integers(0, 256, 24 * 28 * 28, dtype=np.uint8).tobytes())
PYEOF
steps() {
    local common=(train --model "$1" --epochs 1 --seed 3 --no-eval)
    case $1 in
    toy2d) echo "${common[@]} --batch-size 4 --dataset ring8 --train-size 12" ;;
    dcgan64 | valid64) echo "${common[@]} --batch-size 8 --dataset stacked-mnist --data-dir $work/data --train-size 8" ;;
    *) echo "${common[@]} --batch-size 8 --data-dir $work/data --train-size 8" ;;
    esac
}
# train_and_compare MODEL: the same run on the device and on the CPU (each within 200 s), then
# the checkpoints compared
train_and_compare() {
    local model=$1 args side start=$SECONDS
    read -r -a args <<<"$(steps "$model")"
    for side in "$DEVICE" cpu; do
        if ! timeout --kill-after=10 200 "${HOST[@]}" "${args[@]}" --device "$side" --out "$work/$model-$side" \
            >"$work/$model-$side.log" 2>&1; then
            tail -20 "$work/$model-$side.log"
            return 1
        fi
        head -2 "$work/$model-$side.log"
    done
    "$PY" "$here/checkpoint-diff.py" "$work/$model-$DEVICE" "$work/$model-cpu" "$model on $DEVICE vs cpu"
}
IFS=, read -r -a models <<<"${MODELS:-toy2d,mlp,dcgan28,mbd28,dcgan64,valid64}"
for model in "${models[@]}"; do
    start=$SECONDS
    if train_and_compare "$model"; then
        printf -- '--- train-%s: passed in %ds\n' "$model" $((SECONDS - start))
    else
        printf -- '--- train-%s: FAILED after %ds\n' "$model" $((SECONDS - start))
        FAILED+=("train-$model")
    fi
done

if [ "${BENCH:-1}" != 0 ]; then
stage "bench --device ${DEVICE} --model all"
run bench 300 "${HOST[@]}" bench --device "$DEVICE" --model all --steps 10 --warmup 3
stage "bench --device cpu --model all (this machine's CPU, for comparison)"
run bench-cpu 240 "${HOST[@]}" bench --device cpu --model all --steps 3 --warmup 1
fi

stage "summary"
if [ "${#FAILED[@]}" -eq 0 ]; then
    echo "gpu-check-bundle: every stage passed on ${DEVICE}; log: $LOG"
    exit 0
fi
echo "gpu-check-bundle: FAILED stages: ${FAILED[*]}; log: $LOG"
exit 1
