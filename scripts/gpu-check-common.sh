# Shared by scripts/gpu-check.sh and scripts/gpu-check-bundle.sh (sourced, not run): the stage
# headers, the bounded stage runner and the machine summary. FAILED collects failed stages.
FAILED=()
stage() { printf '\n=== %s (%s UTC)\n' "$*" "$(date -u +%T)"; }
# run NAME SECONDS CMD...: one stage, bounded in time; a failure is recorded and the check goes on
run() {
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        printf -- '--- %s: passed in %ds\n' "$name" $((SECONDS - start))
    else
        [ "$rc" -eq 124 ] && printf -- '--- %s: stopped after %ds (time limit)\n' "$name" "$limit"
        printf -- '--- %s: FAILED (exit %d) after %ds\n' "$name" "$rc" $((SECONDS - start))
        FAILED+=("$name")
    fi
}
# machine: the "machine" stage's common lines (time, kernel, the GPUs nvidia-smi sees)
machine() {
    stage "machine"
    date -u
    uname -srm
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used --format=csv
    return 0
}
