#!/usr/bin/env bash
# Packs the GPU check for a machine without .NET (the lent GPU machines have CUDA, Python and
# numpy, but no .NET SDK or runtime): a self-contained linux-x64 publish of Gan.Host (the .NET
# runtime inside; no ONNX Runtime or ResNet-18 files, which only emoji evaluation needs) and
# scripts/gpu-check-bundle.sh, in one .tar.xz (about 35 MB, under a device call's 64 MiB).
#   bash scripts/gpu-bundle.sh [OUT]        (default gpu-bundle.tar.xz here; git ignores it)
# On the GPU machine:
#   tar xJf gpu-bundle.tar.xz && bash gpu-bundle/gpu-check-bundle.sh [LOG] [DEVICE]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=$(realpath -m "${1:-gpu-bundle.tar.xz}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

dotnet publish Gan.Host -c Release -r linux-x64 --self-contained -p:InvariantGlobalization=true \
    -o "$work/gpu-bundle/host" -nologo -v quiet >"$work/publish.log" 2>&1 || { cat "$work/publish.log" >&2; exit 1; }
rm -rf "$work/gpu-bundle/host/models" "$work/gpu-bundle/host/onnxruntime.dll" "$work/gpu-bundle/host/libonnxruntime.so" \
    "$work/gpu-bundle/host/"*.pdb
cp scripts/gpu-check-bundle.sh scripts/gpu-check-common.sh scripts/checkpoint-diff.py "$work/gpu-bundle/"
git log --oneline -1 >"$work/gpu-bundle/COMMIT" 2>/dev/null || echo unknown >"$work/gpu-bundle/COMMIT"
tar -C "$work" -cf - gpu-bundle | xz -T0 -9 >"$out"
size=$(stat -c %s "$out")
echo "gpu-bundle: $out, $((size / 1024 / 1024)) MiB ($(cat "$work/gpu-bundle/COMMIT"))"
if [ "$size" -gt $((60 * 1024 * 1024)) ]; then
    echo "gpu-bundle: larger than 60 MiB: a device call carries at most 64 MiB with the working tree" >&2
    exit 1
fi
