#!/usr/bin/env bash
# Where a convolutional model's step spends its oneDNN time, primitive by primitive: each
# convolution (kind, implementation, direction, problem) and each layout reorder, in ms per step,
# from oneDNN's own verbose timing (ONEDNN_VERBOSE=1). The engine keeps NCHW/OIHW buffers and
# oneDNN's fast kernels want blocked layouts, so every call reorders its operands in and its
# output back; this shows what that costs next to the convolutions themselves.
#   bash bench/dnnl-profile.sh MODEL [STEPS]     (default 4 timed steps)
# Env: TOP (rows shown, default 25); TORCHSHARP_BIN (a TorchSharp anchor built by
#      `KEEP_ANCHOR=DIR bash bench/compare.sh`): the same table for libtorch 2.10's bundled
#      oneDNN 3.7 on the same model, for comparison.
# Verbose mode costs time of its own, so the step times it prints are not benchmarks; use the
# shares and the per-call times, and bench/compare.sh for speed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model=${1:?usage: bash bench/dnnl-profile.sh MODEL [STEPS]}
steps=${2:-4}
top=${TOP:-25}
threads=$(nproc)

# aggregate FILE STEPS: verbose exec lines (oneDNN 2.x "onednn_verbose,exec,cpu,…" and 3.x
# "onednn_verbose,v1,primitive,exec,cpu,…") summed per primitive and divided by the step count
aggregate() {
    awk -F, -v steps="$2" -v top="$top" '
        /^onednn_verbose/ {
            e = 0
            for (i = 1; i <= NF; i++) if ($i == "exec") { e = i; break }
            if (e == 0 || $(e + 1) != "cpu") next
            kind = $(e + 2); impl = $(e + 3); dir = (kind == "reorder") ? "" : $(e + 4)
            key = kind " " impl " " dir " " $(NF - 1)
            ms[key] += $NF; calls[key]++; total[kind] += $NF
        }
        END {
            n = 0
            for (k in ms) order[++n] = k
            for (i = 2; i <= n; i++) { k = order[i]; for (j = i - 1; j >= 1 && ms[order[j]] < ms[k]; j--) order[j + 1] = order[j]; order[j + 1] = k }
            printf "%10s %7s %9s  %s\n", "ms/step", "calls", "ms/call", "primitive (kind, implementation, direction, problem)"
            for (i = 1; i <= n && i <= top; i++) { k = order[i]; printf "%10.2f %7.1f %9.3f  %s\n", ms[k] / steps, calls[k] / steps, ms[k] / calls[k], k }
            all = 0; for (k in total) all += total[k]
            for (k in total) printf "total %-14s %8.1f ms/step (%4.1f%%)\n", k, total[k] / steps, 100 * total[k] / all
        }' "$1"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dotnet build -c Release Gan.Host >/dev/null
echo "== gan-functional: $model, $steps timed steps + 3 warm-up + 1 counting, $threads threads ($(uptime))"
ONEDNN_VERBOSE=1 DNNL_VERBOSE=1 dotnet Gan.Host/bin/Release/net10.0/Gan.Host.dll bench --model "$model" \
    --steps "$steps" --warmup 3 --threads "$threads" >"$work/ours.txt" 2>&1
grep -m1 'info,oneDNN' "$work/ours.txt" || true
grep '^model=' "$work/ours.txt" || { cat "$work/ours.txt" >&2; exit 1; }
aggregate "$work/ours.txt" $((steps + 4))

if [ -n "${TORCHSHARP_BIN:-}" ]; then
    echo
    echo "== torchsharp: $model, $steps timed steps + 3 warm-up"
    ONEDNN_VERBOSE=1 STEPS="$steps" THREADS="$threads" "$TORCHSHARP_BIN" "$model" >"$work/ts.txt" 2>&1
    grep -m1 'info,oneDNN' "$work/ts.txt" || true
    grep '^model=' "$work/ts.txt" || { cat "$work/ts.txt" >&2; exit 1; }
    aggregate "$work/ts.txt" $((steps + 3))
fi
