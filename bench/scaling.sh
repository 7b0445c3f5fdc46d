#!/usr/bin/env bash
# How the step scales: time per image at batch 16, 64 and 256 on 1 and 2 threads, for
# Gan.Functional and TorchSharp (libtorch 2.10), each model in its own process (bench/compare.sh
# with PYTORCH=0; the TorchSharp anchor is built once).
#   bash bench/scaling.sh [MODEL ...]        (default: all five)
# Env: STEPS (default 5 timed steps after 3 warm-ups per point), BATCHES (default "16 64 256"),
#      THREADS_LIST (default "1 2"), TORCHSHARP_ANCHOR as for compare.sh.
# Prints one row per model, batch and thread count: ms per step and per image on each side, the
# ratio ours / TorchSharp, and the per-image speed-up of 2 threads over 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(mlp dcgan28 mbd28 dcgan64 valid64)
steps="${STEPS:-5}"
keep=$(mktemp -d)
trap 'rm -rf "$keep"' EXIT
rows="$keep/rows"
: >"$rows"
first=1
for b in ${BATCHES:-16 64 256}; do
    for t in ${THREADS_LIST:-1 2}; do
        if [ $first = 1 ]; then
            out=$(STEPS=$steps BATCH=$b THREADS=$t PYTORCH=0 KEEP_ANCHOR="$keep/anchor" bash bench/compare.sh "${models[@]}")
            first=0
        else
            out=$(STEPS=$steps BATCH=$b THREADS=$t PYTORCH=0 TORCHSHARP_BIN="$keep/anchor/bin/TorchSharpAnchor/release/TorchSharpAnchor" bash bench/compare.sh "${models[@]}")
        fi
        echo "$out" | grep -E '^(gan-functional|torchsharp|uptime)'
        for m in "${models[@]}"; do
            o=$(echo "$out" | grep "^gan-functional model=$m ")
            s=$(echo "$out" | grep "^torchsharp     model=$m " || true)
            echo "$m $b $t $(sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p' <<<"$o") $(sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p' <<<"$s")" >>"$rows"
        done
    done
done
echo
printf '%-9s %5s %7s %9s %9s %10s %10s %8s %10s %10s\n' model batch threads ours_ms ts_ms ours_ms/img ts_ms/img ours/ts ours_2t/1t ts_2t/1t
sort -k1,1 -k2,2n -k3,3n "$rows" | awk '
    { key = $1 " " $2; ours[key, $3] = $4; ts[key, $3] = $5; order[++n] = $0 }
    END {
        for (i = 1; i <= n; i++) {
            split(order[i], f, " "); m = f[1]; b = f[2]; t = f[3]; o = f[4]; s = f[5]; key = m " " b
            sp_o = (t == 2 && ours[key, 1] > 0) ? sprintf("%.2f", ours[key, 1] / o) : "-"
            sp_s = (t == 2 && ts[key, 1] > 0 && s > 0) ? sprintf("%.2f", ts[key, 1] / s) : "-"
            printf "%-9s %5d %7d %9.1f %9s %10.3f %10s %8s %10s %10s\n", m, b, t, o, (s > 0 ? sprintf("%.1f", s) : "-"), o / b,
                (s > 0 ? sprintf("%.3f", s / b) : "-"), (s > 0 ? sprintf("%.2f", o / s) : "-"), sp_o, sp_s
        }
    }'
