#!/usr/bin/env bash
# `make gpu-check`: the GPU tests (pytest -m gpu), then the GPU benchmarks, on the first GPU (under 8 minutes on
# one GPU). The benchmarks write bench/results/gpu-<device>.json and .md (bench/run_all.py --gpu). Where there
# is no NVIDIA GPU (no working nvidia-smi) or DEVICE=cpu, it says so and exits 0.
#
#   bash scripts/gpu_check.sh        PYTHON: the venv's python; NVIDIA_SMI: another nvidia-smi
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NVIDIA_SMI=${NVIDIA_SMI:-nvidia-smi}

# The GPU tests, run with `pytest -m gpu`. TinyBERT's (fp16 with GradScaler, bf16, torchrun 1-GPU NCCL) are
# added to this list.
GPU_TESTS=(
    tests/nezha/test_gpu.py
)
# The GPU benchmarks: bench/ modules whose run(quick) returns the figures, each run in its own process.
# TinyBERT's (4x312 and BERT-base inference and general distillation in fp32, fp16 and bf16; augmentation with
# batching on and off) are added to this list.
GPU_BENCHMARKS=(
    gpu_nezha_training
)

if ! gpus=$(timeout 20 "$NVIDIA_SMI" -L 2>/dev/null) || [[ -z "$gpus" ]]; then
    echo "gpu-check: no NVIDIA GPU on this machine ($NVIDIA_SMI lists none): nothing to check; the GPU tests" \
        "skip under make test and the README's GPU figures stay unmeasured."
    exit 0
fi
if [[ "${DEVICE:-}" == cpu ]]; then
    echo "gpu-check: DEVICE=cpu, so the venv has the CPU builds: nothing to check on the GPU."
    exit 0
fi
cd "$ROOT"
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}   # one GPU: the figures are per GPU
echo "gpu-check on ${gpus%%$'\n'*} (CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES)"
"$PYTHON" -m utils.devices --check cuda \
    || fail "$PYTHON: the venv lacks the CUDA builds (make DEVICE=cuda venv installs them)"

start=$SECONDS
"$PYTHON" -m pytest -m gpu -p no:cacheprovider -q "${GPU_TESTS[@]}"
tests=$?
echo "gpu-check: GPU tests exit status $tests, $((SECONDS - start)) s"
"$PYTHON" bench/run_all.py --gpu "${GPU_BENCHMARKS[@]}"
benchmarks=$?
echo "gpu-check: GPU benchmarks exit status $benchmarks, $((SECONDS - start)) s in all"
(( tests == 0 && benchmarks == 0 ))
