#!/usr/bin/env bash
# Side-by-side speed of Gan.Functional, TorchSharp (libtorch 2.10) and PyTorch 1.13 on the seed
# models, in one run.
#   bash bench/compare.sh [MODEL ...]        (default: all five)
# Env: STEPS (default: the anchors' per-model counts, mlp 40, dcgan28 20, mbd28 20, dcgan64 6,
#      valid64 10), THREADS (default: all cores), BATCH (default: each model's, 256 for mlp and
#      64 for the others), PYTORCH=0 skips the PyTorch 1.13 columns, TORCHSHARP=0 the TorchSharp
#      one, TORCHSHARP_ANCHOR (default ../shared/bench/TorchSharpAnchor beside the repository),
#      TORCHSHARP_BIN (an anchor built by an earlier run, kept by KEEP_ANCHOR=DIR: no rebuild).
#      Every side takes 3 warm-up steps.
# The PyTorch side has the models and settings of ../shared/bench/torch_anchor.py, including its
# OPENBLAS_CORETYPE choice (the best kernel this CPU supports unless already set). The TorchSharp
# side is that anchor's .NET port (TorchSharp-cpu 0.107.0: libtorch 2.10 with oneMKL and oneDNN),
# copied and built under a temporary directory (never inside either repository), with one line
# added so that BATCH reaches it; its README explains the Debian fix-up its build applies.
# Needs: python3-torch (Debian) for PyTorch; the .NET SDK and the TorchSharp-cpu package for
# TorchSharp; libopenblas0-pthread and libdnnl2 for our fast kernels.
# Prints each side's line (model=… batch=… median_ms=… min_ms=… peak_rss_mb=…; ours adds the
# step's GFLOP and its floor at this run's sgemm ceiling) and a table of ratios, ours / peer
# (below 1 is better for us): time×ts against TorchSharp, time×pt against PyTorch as the anchor
# runs it, time×best against the fastest peer (PyTorch with OMP_WAIT_POLICY=PASSIVE, what ours
# uses, counts as a peer too), mem×best against the peer with the lowest peak RSS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(mlp dcgan28 mbd28 dcgan64 valid64)
declare -A anchor_steps=([mlp]=40 [dcgan28]=20 [mbd28]=20 [dcgan64]=6 [valid64]=10)
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    if grep -q ' avx512f' /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
    elif grep -q ' avx2' /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
fi
threads="${THREADS:-$(nproc)}"
batch="${BATCH:-}"
use_pytorch="${PYTORCH:-1}"
use_torchsharp="${TORCHSHARP:-1}"
torch_python=/usr/bin/python3
if [ "$use_pytorch" = 1 ]; then
    "$torch_python" -c 'import torch' 2>/dev/null || { echo "compare.sh: PyTorch is missing (apt-get install -y python3-torch), or run with PYTORCH=0" >&2; exit 1; }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ts_bin="${TORCHSHARP_BIN:-}"
if [ "$use_torchsharp" = 1 ] && [ -z "$ts_bin" ]; then
    anchor="${TORCHSHARP_ANCHOR:-../shared/bench/TorchSharpAnchor}"
    [ -f "$anchor/Program.cs" ] || { echo "compare.sh: no TorchSharp anchor at $anchor (set TORCHSHARP_ANCHOR, or TORCHSHARP=0)" >&2; exit 1; }
    mkdir -p "$work/anchor"
    cp "$anchor/Program.cs" "$anchor/TorchSharpAnchor.csproj" "$work/anchor/"
    # the anchor fixes each model's batch; BATCH overrides it (one added line, right after the
    # batch is looked up)
    sed -i 's|^\(\s*\)torch.set_num_threads(EnvInt("THREADS".*|&\n\1batch = EnvInt("BATCH", (int)batch);|' "$work/anchor/Program.cs"
    grep -q 'EnvInt("BATCH"' "$work/anchor/Program.cs" || { echo "compare.sh: could not add BATCH to the anchor's copy" >&2; exit 1; }
    dotnet build -c Release --artifacts-path "$work/art" "$work/anchor/TorchSharpAnchor.csproj" >"$work/anchor-build.log" 2>&1 \
        || { cat "$work/anchor-build.log" >&2; echo "compare.sh: the TorchSharp anchor did not build" >&2; exit 1; }
    ts_bin="$work/art/bin/TorchSharpAnchor/release/TorchSharpAnchor"
    if [ -n "${KEEP_ANCHOR:-}" ]; then
        rm -rf "$KEEP_ANCHOR" && cp -r "$work/art" "$KEEP_ANCHOR"
        ts_bin="$KEEP_ANCHOR/bin/TorchSharpAnchor/release/TorchSharpAnchor"
    fi
fi
[ "$use_torchsharp" = 1 ] || ts_bin=""

dotnet build -c Release Gan.Host >/dev/null
host=(dotnet Gan.Host/bin/Release/net10.0/Gan.Host.dll)

declare -A ours sharp theirs passive
echo "uptime: $(uptime)"
for m in "${models[@]}"; do
    steps="${STEPS:-${anchor_steps[$m]:-10}}"
    batch_args=()
    [ -n "$batch" ] && batch_args=(--batch "$batch")
    ours[$m]=$("${host[@]}" bench --model "$m" --steps "$steps" --threads "$threads" "${batch_args[@]}" | grep '^model=')
    echo "gan-functional $(echo "${ours[$m]}")"
    sharp[$m]=""
    if [ -n "$ts_bin" ]; then
        sharp[$m]=$(STEPS="$steps" THREADS="$threads" BATCH="$batch" "$ts_bin" "$m" 2>/dev/null | grep '^model=')
        echo "torchsharp     ${sharp[$m]}"
    fi
    theirs[$m]=""
    passive[$m]=""
    if [ "$use_pytorch" = 1 ]; then
        theirs[$m]=$(OPENBLAS_NUM_THREADS=1 "$torch_python" bench/torch_reference.py "$m" --steps "$steps" --threads "$threads" "${batch_args[@]}")
        echo "pytorch        ${theirs[$m]}"
        # the same PyTorch with its OpenMP threads sleeping instead of spinning at barriers, as
        # ours do: on a loaded machine spinning costs PyTorch several times its quiet-machine time
        passive[$m]=$(OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 "$torch_python" bench/torch_reference.py "$m" --steps "$steps" --threads "$threads" "${batch_args[@]}")
        echo "pytorch-omp-passive ${passive[$m]}"
    fi
done
echo "uptime: $(uptime)"

field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
echo
printf '%-9s %5s %8s %8s %8s %8s %8s %8s %9s %9s %7s %6s %6s %7s\n' \
    model batch ours_ms ts_ms pt_ms ptp_ms time×ts time×pt time×best floor_ms ours_mb ts_mb pt_mb mem×best
for m in "${models[@]}"; do
    o=${ours[$m]}
    s=${sharp[$m]}
    t=${theirs[$m]}
    p=${passive[$m]}
    awk -v m="$m" -v b="$(field batch "$o")" -v om="$(field median_ms "$o")" -v sm="$(field median_ms "$s")" \
        -v tm="$(field median_ms "$t")" -v pm="$(field median_ms "$p")" -v fl="$(field floor_ms "$o")" \
        -v orss="$(field peak_rss_mb "$o")" -v srss="$(field peak_rss_mb "$s")" -v trss="$(field peak_rss_mb "$t")" \
        'function ratio(a, x) { return x > 0 ? sprintf("%.2f", a / x) : "-" }
         function num(x, f) { return x > 0 ? sprintf(f, x) : "-" }
         BEGIN {
             best = 0; if (sm > 0) best = sm; if (tm > 0 && (best == 0 || tm < best)) best = tm; if (pm > 0 && (best == 0 || pm < best)) best = pm
             mem = 0; if (srss > 0) mem = srss; if (trss > 0 && (mem == 0 || trss < mem)) mem = trss
             printf "%-9s %5d %8.1f %8s %8s %8s %8s %8s %9s %9s %7d %6s %6s %7s\n", m, b, om, num(sm, "%.1f"), num(tm, "%.1f"), num(pm, "%.1f"),
                 ratio(om, sm), ratio(om, tm), ratio(om, best), num(fl, "%.1f"), orss, num(srss, "%d"), num(trss, "%d"), ratio(orss, mem)
         }'
done
