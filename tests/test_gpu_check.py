"""`make gpu-check` (scripts/gpu_check.sh) where it cannot run: without a GPU it says why and succeeds, without
building anything; with a GPU but the CPU builds it says so and fails."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("DEVICE", "NVIDIA_SMI", "MAKEFLAGS")}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**environ, **env}, timeout=120)


def stand_in(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_without_a_gpu_make_gpu_check_says_why_and_exits_0():
    plan = run(["make", "--no-print-directory", "-n", "gpu-check", "NVIDIA_SMI=/nonexistent/nvidia-smi"])
    assert plan.returncode == 0 and "pip" not in plan.stdout   # no venv is built for it
    proc = run(["make", "--no-print-directory", "gpu-check", "NVIDIA_SMI=/nonexistent/nvidia-smi"])
    assert proc.returncode == 0, proc.stderr
    assert "gpu-check: no NVIDIA GPU on this machine (/nonexistent/nvidia-smi lists none): nothing to check" \
        in proc.stdout and "GPU figures stay unmeasured" in proc.stdout


def test_a_gpu_with_the_cpu_builds(tmp_path):
    smi = stand_in(tmp_path / "nvidia-smi", '#!/bin/sh\necho "GPU 0: NVIDIA H200 (UUID: GPU-0)"\n')
    proc = run(["bash", str(SCRIPT)], NVIDIA_SMI=str(smi), DEVICE="cpu")
    assert proc.returncode == 0 and "DEVICE=cpu, so the venv has the CPU builds" in proc.stdout
    python = stand_in(tmp_path / "python", '#!/bin/sh\n[ "$*" = "-m utils.devices --check cuda" ] && exit 2\n'
                                           "echo unexpected: $* >&2; exit 3\n")
    proc = run(["bash", str(SCRIPT)], NVIDIA_SMI=str(smi), PYTHON=str(python))
    assert proc.returncode == 2 and "gpu-check on GPU 0: NVIDIA H200" in proc.stdout
    assert f"error: {python}: the venv lacks the CUDA builds (make DEVICE=cuda venv installs them)" in proc.stderr
    assert "unexpected" not in proc.stderr
