"""The Makefile's setup: the builds each machine gets (nvidia-smi simulated), the commands `make -n` shows for
DEVICE=cpu and DEVICE=cuda, and a change of flavour run against a stand-in venv whose python records what pip
is asked to do (nothing is installed)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

FREEZE = ["torch==2.13.0+cpu", "tensorflow_cpu==2.21.0", "horovod==0.28.1", "nvidia-nccl-cu12==2.29.3",
          "numpy==2.4.6", "-e git+https://example/x@0#egg=nezha_tinybert", "tensorflow-io-gcs-filesystem==0.37.1"]


def make(*args: str) -> subprocess.CompletedProcess:
    """make in the checkout, with none of the user's settings of its variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("DEVICE", "TORCH_CUDA", "TORCH_INDEX", "NVIDIA_SMI",
                                                            "VENV", "MAKEFLAGS")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=120)


def fake_nvidia_smi(tmp_path: Path, driver: str, capability: str) -> Path:
    path = tmp_path / "nvidia-smi"
    path.write_text("#!/bin/sh\n"
                    f'case "$1" in --query-gpu=driver_version) echo "{driver}";; '
                    f'--query-gpu=compute_cap) echo "{capability}";; *) exit 2;; esac\n')
    path.chmod(0o755)
    return path


def planned(tmp_path: Path, *args: str) -> str:
    proc = make("-n", f"VENV={tmp_path / 'venv'}", *args, "venv")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cuda_venv_installs_the_cuda_builds(tmp_path):
    plan = planned(tmp_path, "DEVICE=cuda", "NVIDIA_SMI=/nonexistent")
    assert "pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" in plan
    assert '"tensorflow[and-cuda]==2.21.0" -r requirements.txt -r requirements-test.txt' in plan
    assert "tensorflow-cpu==" not in plan and "whl/cpu" not in plan
    assert "utils.devices --check cuda" in plan and ".installed-cuda" in plan


def test_cpu_venv_installs_the_cpu_builds(tmp_path):
    plan = planned(tmp_path, "DEVICE=cpu")
    assert "pip install -q torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu" in plan
    assert '"tensorflow-cpu==2.21.0" -r requirements.txt -r requirements-test.txt' in plan
    assert "and-cuda" not in plan and "/whl/cu1" not in plan
    assert "utils.devices --check cpu" in plan and ".installed-cpu" in plan


def test_requirements_leave_the_framework_builds_to_the_makefile():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert not [line for line in lines if line.startswith(("torch", "tensorflow"))]


@pytest.mark.parametrize("driver,capability,device,index", [
    ("580.65.06", "9.0", "cuda", "cu130"),     # H100, CUDA 13 driver
    ("580.65.06", "7.0", "cuda", "cu126"),     # V100: cu130 has no Volta kernels
    ("570.133.20", "8.0", "cuda", "cu126"),    # A100 on a CUDA 12.8 driver
    ("535.104.05", "8.6", "cuda", "cu126"),
    ("470.256.02", "7.5", "cpu", None),        # older than TensorFlow's CUDA 12 allows
])
def test_the_machine_chooses_the_builds(tmp_path, driver, capability, device, index):
    plan = planned(tmp_path, f"NVIDIA_SMI={fake_nvidia_smi(tmp_path, driver, capability)}")
    assert f"utils.devices --check {device}" in plan
    if index:
        assert f"--index-url https://download.pytorch.org/whl/{index}" in plan
    else:
        assert "tensorflow-cpu==2.21.0" in plan


def test_no_nvidia_smi_means_cpu_and_device_overrides(tmp_path):
    assert "tensorflow-cpu==2.21.0" in planned(tmp_path, "NVIDIA_SMI=/nonexistent")
    smi = fake_nvidia_smi(tmp_path, "580.65.06", "9.0")
    assert "tensorflow-cpu==2.21.0" in planned(tmp_path, f"NVIDIA_SMI={smi}", "DEVICE=cpu")
    assert "--index-url https://mirror.example/simple" in planned(tmp_path, f"NVIDIA_SMI={smi}",
                                                                  "TORCH_INDEX=https://mirror.example/simple")
    proc = make("-n", "DEVICE=gpu", "venv")
    assert proc.returncode != 0 and "DEVICE must be cpu or cuda, got 'gpu'" in proc.stderr


def stand_in_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A venv whose python logs its arguments and answers `pip freeze` with FREEZE."""
    venv, log = tmp_path / "venv", tmp_path / "calls.log"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\n"
                      f'echo "$*" >> "{log}"\n'
                      f'if [ "$*" = "-m pip freeze" ]; then printf "%s\\n" {" ".join(FREEZE)}; fi\n')
    python.chmod(0o755)
    return venv, log


def uninstalled(log: Path) -> list[str]:
    calls = [line.split() for line in log.read_text().splitlines() if line.startswith("-m pip uninstall")]
    return [name for call in calls for name in call[5:]]


def test_a_change_of_flavour_removes_the_other_builds_then_installs(tmp_path):
    venv, log = stand_in_venv(tmp_path)
    (venv / ".installed").touch()   # a venv from before flavours: the CPU builds
    proc = make(f"VENV={venv}", "DEVICE=cuda", "venv")
    assert proc.returncode == 0, proc.stderr
    assert uninstalled(log) == ["torch", "tensorflow_cpu", "horovod", "nvidia-nccl-cu12"]
    calls = log.read_text().splitlines()
    torch = calls.index("-m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126")
    assert calls[torch + 1].startswith("-m pip install -q tensorflow[and-cuda]==2.21.0 -r requirements.txt")
    assert calls[-1] == "-m utils.devices --check cuda"
    assert sorted(p.name for p in venv.glob(".installed*")) == [".installed-cuda"]

    log.unlink()   # back to cpu: everything of the cuda flavour goes again
    assert make(f"VENV={venv}", "DEVICE=cpu", "venv").returncode == 0
    assert uninstalled(log) == ["torch", "tensorflow_cpu", "horovod", "nvidia-nccl-cu12"]
    assert sorted(p.name for p in venv.glob(".installed*")) == [".installed-cpu"]


def test_within_a_flavour_only_the_other_tensorflow_package_is_removed(tmp_path):
    venv, log = stand_in_venv(tmp_path)
    (venv / ".installed-cuda").touch()
    os.utime(venv / ".installed-cuda", (0, 0))   # older than requirements.txt: reinstall, same flavour
    assert make(f"VENV={venv}", "DEVICE=cuda", "venv").returncode == 0
    assert uninstalled(log) == ["tensorflow_cpu"]
    log.unlink()
    proc = make(f"VENV={venv}", "DEVICE=cuda", "venv")   # up to date: nothing runs
    assert proc.returncode == 0 and not log.exists()
