#!/usr/bin/env bash
# Side-by-side speed of Gan.Functional and PyTorch on the seed models, in one run.
#   bash bench/compare.sh [MODEL ...]        (default: all five)
# Env: STEPS (default: the anchor's per-model counts, mlp 40, dcgan28 20, mbd28 20, dcgan64 6,
#      valid64 10), THREADS (default: all cores). Both sides take 3 warm-up steps.
# The PyTorch side has the models and settings of /work/shared/bench/torch_anchor.py, including
# its OPENBLAS_CORETYPE choice (the best kernel this CPU supports unless already set).
# Needs: python3-torch (Debian) for the reference; libopenblas0-pthread for our fast GEMM.
# Prints each side's line (model=… batch=… median_ms=… min_ms=… peak_rss_mb=…) and a table of
# time and memory ratios (ours / PyTorch; below 1 is better for us): time× against PyTorch as the
# anchor runs it, time×p against PyTorch with OMP_WAIT_POLICY=PASSIVE (what ours uses).
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
torch_python=/usr/bin/python3
"$torch_python" -c 'import torch' 2>/dev/null || { echo "compare.sh: PyTorch is missing (apt-get install -y python3-torch)" >&2; exit 1; }

dotnet build -c Release Gan.Host >/dev/null
host=(dotnet Gan.Host/bin/Release/net10.0/Gan.Host.dll)

declare -A ours theirs passive
echo "uptime: $(uptime)"
for m in "${models[@]}"; do
    steps="${STEPS:-${anchor_steps[$m]:-10}}"
    ours[$m]=$("${host[@]}" bench --model "$m" --steps "$steps" --threads "$threads" | grep '^model=')
    echo "gan-functional $(echo "${ours[$m]}")"
    theirs[$m]=$(OPENBLAS_NUM_THREADS=1 "$torch_python" bench/torch_reference.py "$m" --steps "$steps" --threads "$threads")
    echo "pytorch        ${theirs[$m]}"
    # the same PyTorch with its OpenMP threads sleeping instead of spinning at barriers, as ours
    # do: on a loaded machine spinning costs PyTorch several times its quiet-machine time
    passive[$m]=$(OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 "$torch_python" bench/torch_reference.py "$m" --steps "$steps" --threads "$threads")
    echo "pytorch-omp-passive ${passive[$m]}"
done
echo "uptime: $(uptime)"

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
echo
printf '%-9s %6s %10s %10s %7s %12s %8s %9s %9s %7s\n' model batch ours_ms torch_ms time× passive_ms time×p ours_mb torch_mb mem×
for m in "${models[@]}"; do
    o=${ours[$m]}
    t=${theirs[$m]}
    p=${passive[$m]}
    awk -v m="$m" -v b="$(field batch "$o")" -v om="$(field median_ms "$o")" -v tm="$(field median_ms "$t")" \
        -v pm="$(field median_ms "$p")" -v orss="$(field peak_rss_mb "$o")" -v trss="$(field peak_rss_mb "$t")" \
        'BEGIN { printf "%-9s %6d %10.1f %10.1f %7.2f %12.1f %8.2f %9d %9d %7.2f\n", m, b, om, tm, om / tm, pm, om / pm, orss, trss, orss / trss }'
done
