#!/usr/bin/env bash
# The prepared GPU check (issue 17): run it on a machine with an NVIDIA GPU, its driver
# (libcuda.so.1) and the .NET 10 SDK. About 5 minutes; no network needed once NuGet packages are
# restored (the build restores them). It
#   1. builds the solution (Release),
#   2. lists the devices and stops (exit 2) when there is no CUDA device,
#   3. runs the ILGPU backend's kernel, op and gradient tests on the GPU (Gan.Tests' Ilgpu*Tests with
#      GAN_TEST_DEVICE=cuda:0),
#   4. trains one step of each seed model on the GPU and on the CPU and compares the checkpoints
#      (Gan.Host.Tests' DeviceTrainingTests with GAN_TEST_DEVICE/GAN_TEST_MODELS),
#   5. runs `bench --device cuda:0 --model all`.
# Everything it prints also goes to the log file (default gpu-check-<UTC time>.log here; or the
# first argument). Exit status: 0 when every stage passed, 1 when one failed, 2 without a GPU.
#
#   bash scripts/gpu-check.sh [LOG] [DEVICE]      # DEVICE: cuda:0 (default), cuda:1, ...
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG=${1:-gpu-check-$(date -u +%Y%m%dT%H%M%SZ).log}
DEVICE=${2:-cuda:0}
SEED_MODELS=mlp,dcgan28,mbd28,dcgan64,valid64,toy2d
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

exec > >(tee "$LOG") 2>&1

source scripts/gpu-check-common.sh

machine
if ! command -v dotnet >/dev/null; then
    echo "gpu-check: dotnet is not installed: install the .NET 10 SDK, then run this again."
    exit 2
fi
dotnet --version
git log --oneline -1 2>/dev/null || true

stage "build (Release)"
run build 300 dotnet build Gan.sln -c Release -v quiet -nologo
[ "${#FAILED[@]}" -eq 0 ] || { echo "gpu-check: the build failed; nothing else can run."; exit 1; }
HOST=(dotnet Gan.Host/bin/Release/net10.0/Gan.Host.dll)

stage "devices"
DEVICES=$("${HOST[@]}" devices 2>&1)
echo "$DEVICES"
if ! grep -q "^${DEVICE} " <<<"$DEVICES"; then
    echo
    echo "gpu-check: FAILED: no CUDA device ${DEVICE} here (see the cuda line above: the NVIDIA driver's"
    echo "libcuda.so.1 must be on the library path, and the device visible, e.g. CUDA_VISIBLE_DEVICES)."
    exit 2
fi

stage "the ILGPU backend's op and gradient tests on ${DEVICE}"
run op-tests 240 env GAN_TEST_DEVICE="$DEVICE" dotnet test Gan.Tests -c Release --no-build --nologo \
    --filter "FullyQualifiedName~Ilgpu" --logger "console;verbosity=normal"

stage "one training step of each seed model on ${DEVICE} against the CPU"
run train-steps 300 env GAN_TEST_DEVICE="$DEVICE" GAN_TEST_MODELS="$SEED_MODELS" dotnet test Gan.Host.Tests -c Release \
    --no-build --nologo --filter "FullyQualifiedName~DeviceTrainingTests" --logger "console;verbosity=normal"

stage "bench --device ${DEVICE} --model all"
run bench 300 "${HOST[@]}" bench --device "$DEVICE" --model all --steps 10 --warmup 3
stage "bench --device cpu --model all (the same machine's CPU, for comparison)"
run bench-cpu 240 "${HOST[@]}" bench --device cpu --model all --steps 3 --warmup 1

stage "summary"
if [ "${#FAILED[@]}" -eq 0 ]; then
    echo "gpu-check: every stage passed on ${DEVICE}; the log is ${LOG}"
    exit 0
fi
echo "gpu-check: FAILED stages: ${FAILED[*]}; the log is ${LOG}"
exit 1
