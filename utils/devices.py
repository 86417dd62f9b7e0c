"""The framework builds installed and the devices each framework sees (`make devices`).

    python -m utils.devices                print TensorFlow's and PyTorch's builds and devices
    python -m utils.devices --check cuda   also exit 2 unless the builds are those of that flavour (cpu or cuda):
                                           one TensorFlow package, and CUDA builds of both for cuda

`make venv` runs the check after installing, so that a CUDA build that pip did not get (an unreachable index, a
CPU wheel found first) stops the install instead of training on the CPU unnoticed. The only module of utils/
that imports both frameworks: a diagnostic, not shared code.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from typing import Optional

from utils.errors import InputError, exit_on_input_error

TF_PACKAGES = {"cpu": "tensorflow-cpu", "cuda": "tensorflow"}


def _version(package: str) -> Optional[str]:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def tensorflow_report() -> tuple[list[str], bool]:
    """Lines describing TensorFlow's build and GPUs, and whether it is a CUDA build."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    packages = [p for p in TF_PACKAGES.values() if _version(p)]
    cuda = tf.test.is_built_with_cuda()
    build = tf.sysconfig.get_build_info()
    lines = [f"TensorFlow {tf.__version__} ({', '.join(packages) or 'no pip package'}): "
             + (f"CUDA {build.get('cuda_version')}, cuDNN {build.get('cudnn_version')}" if cuda else "CPU build")]
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        major, minor = details.get("compute_capability", (0, 0))
        lines.append(f"  {gpu.name}: {details.get('device_name', 'GPU')}, compute capability {major}.{minor}"
                     f"{'' if (major, minor) >= (8, 0) else ' (no bfloat16: --use_bf16 needs 8.0)'}")
    if not gpus:
        lines.append("  no GPU: runs on the CPU")
    return lines, cuda


def torch_report() -> tuple[list[str], bool]:
    """Lines describing PyTorch's build and GPUs, and whether it is a CUDA build."""
    import torch

    cuda = torch.version.cuda is not None
    lines = [f"PyTorch {torch.__version__}: " + (f"CUDA {torch.version.cuda}" if cuda else "CPU build")]
    for index in range(torch.cuda.device_count() if cuda and torch.cuda.is_available() else 0):
        props = torch.cuda.get_device_properties(index)
        lines.append(f"  cuda:{index}: {props.name}, compute capability {props.major}.{props.minor}, "
                     f"{props.total_memory / 2 ** 30:.0f} GiB")
    if len(lines) == 1:
        lines.append("  no GPU: runs on the CPU" if not cuda else
                     "  no GPU visible (no NVIDIA driver, or one too old for this CUDA build: see nvidia-smi)")
    return lines, cuda


def problems(flavour: str, tf_cuda: bool, torch_cuda: bool) -> list[str]:
    """Why the installed builds are not those of `flavour`."""
    found = [p for p in TF_PACKAGES.values() if _version(p)]
    wanted = TF_PACKAGES[flavour]
    issues = []
    if found != [wanted]:
        issues.append(f"the {flavour} setup needs {wanted} alone, found {', '.join(found) or 'none'}: "
                      "remove the venv and run make again")
    if flavour == "cuda" and not tf_cuda:
        issues.append("TensorFlow is not a CUDA build")
    if flavour == "cuda" and not torch_cuda:
        issues.append("PyTorch is a CPU build: PyTorch's CUDA index was not reached (set TORCH_INDEX to a "
                      "mirror of https://download.pytorch.org/whl/cu126 or cu130)")
    return issues


@exit_on_input_error
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", choices=sorted(TF_PACKAGES), help="exit 2 unless these are the flavour's builds")
    args = parser.parse_args(argv)
    tf_lines, tf_cuda = tensorflow_report()
    torch_lines, torch_cuda = torch_report()
    print("\n".join(tf_lines + torch_lines), flush=True)
    if args.check:
        if args.check == "cpu" and torch_cuda:
            print("note: PyTorch is a CUDA build on a CPU setup (it runs; TORCH_INDEX="
                  "https://download.pytorch.org/whl/cpu installs the smaller CPU one)", file=sys.stderr)
        issues = problems(args.check, tf_cuda, torch_cuda)
        if issues:
            raise InputError(f"--check {args.check}: {'; '.join(issues)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
