#!/usr/bin/env bash
# Which framework builds this machine gets, for the Makefile: prints `cpu`, or `cuda TAG` with TAG the CUDA
# build of PyTorch 2.13 that the NVIDIA driver runs. PyTorch 2.13 ships cu126 (driver 525+, GPUs from Maxwell
# to Hopper) and cu130 (driver 580+, Turing to Blackwell: compute capability 7.5+); cu132 is experimental.
# TensorFlow 2.21's CUDA build uses CUDA 12 (driver 525+). No working nvidia-smi, or an older driver: cpu.
#
#   bash scripts/detect_device.sh          NVIDIA_SMI=/path/to/nvidia-smi names another one (the tests use fakes)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NVIDIA_SMI=${NVIDIA_SMI:-nvidia-smi}

note() {
    echo "detect_device.sh: $*" >&2
}

query() {
    # The first GPU's value of one nvidia-smi field; fails when nvidia-smi is absent or cannot say.
    timeout 20 "$NVIDIA_SMI" --query-gpu="$1" --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' '
}

driver=$(query driver_version)
major=${driver%%.*}
if [[ -z "$driver" ]]; then
    echo cpu
    exit 0
fi
if ! [[ "$major" =~ ^[0-9]+$ ]] || (( major < 525 )); then
    note "NVIDIA driver '$driver' is older than 525, the oldest that TensorFlow's CUDA 12 and PyTorch's cu126" \
        "run on: CPU builds (upgrade the driver for the GPU builds)"
    echo cpu
    exit 0
fi
shown=$(query compute_cap)   # empty from an nvidia-smi older than R510
capability=""
if [[ "$shown" =~ ^[0-9]+\.[0-9]+$ ]]; then
    capability=$(( ${shown%.*} * 10 + ${shown#*.} ))
fi
if (( major >= 580 )) && [[ -z "$capability" || "$capability" -ge 75 ]]; then
    echo "cuda cu130"
else
    if [[ -n "$capability" ]] && (( capability >= 100 )); then
        note "driver $driver predates CUDA 13 (580+), which this GPU (compute capability $shown) needs for" \
            "PyTorch: cu126 has no kernels for it (upgrade the driver)"
    fi
    echo "cuda cu126"
fi
