"""scripts/install_horovod.sh --plan: the features a Horovod build gets from what the machine offers (NCCL with
a CUDA TensorFlow, a toolkit of its CUDA version and NCCL; MPI with mpicxx; gloo always), with TensorFlow, nvcc
and mpicxx simulated by stand-ins."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install_horovod.sh"


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def stand_in_python(tmp_path: Path, cuda: str, nccl_dir: Path | None) -> Path:
    """Answers the script's two questions: TensorFlow's version and CUDA, and where pip's NCCL is."""
    return executable(tmp_path / "python", "#!/bin/sh\n"
                      'case "$2" in\n'
                      f'  *get_build_info*) echo "2.21.0 {cuda}";;\n'
                      f'  *nvidia.nccl*) {f"echo {nccl_dir}" if nccl_dir else "exit 1"};;\n'
                      "  *) exit 1;;\n"
                      "esac\n")


def plan(tmp_path: Path, python: Path, cuda_home: Path | None = None, mpi: bool = False) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if mpi:
        executable(bin_dir / "mpicxx", "#!/bin/sh\n")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHON": str(python), "HOME": str(tmp_path)}
    if cuda_home:
        env["HOROVOD_CUDA_HOME"] = str(cuda_home)
    proc = subprocess.run(["bash", str(SCRIPT), "--plan"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def toolkit(tmp_path: Path, release: str) -> Path:
    home = tmp_path / f"cuda-{release}"
    executable(home / "bin" / "nvcc", f'#!/bin/sh\necho "Cuda compilation tools, release {release}, V{release}.1"\n')
    return home


def pip_nccl(tmp_path: Path) -> Path:
    package = tmp_path / "site-packages" / "nvidia" / "nccl"
    (package / "include").mkdir(parents=True)
    (package / "include" / "nccl.h").write_text("#define NCCL_MAJOR 2\n")
    (package / "lib").mkdir()
    (package / "lib" / "libnccl.so.2").write_text("")
    return package


def test_cuda_tensorflow_with_a_matching_toolkit_and_nccl_builds_nccl(tmp_path):
    nccl = pip_nccl(tmp_path)
    out = plan(tmp_path, stand_in_python(tmp_path, "12", nccl), toolkit(tmp_path, "12.9"))
    assert out.splitlines()[0] == "Horovod 0.28.1 for TensorFlow 2.21.0: NCCL GPU operations, controllers: gloo"
    assert f"NCCL from {nccl / 'lib'}, CUDA toolkit {tmp_path / 'cuda-12.9'}" in out


def test_mpi_where_mpicxx_is_found(tmp_path):
    out = plan(tmp_path, stand_in_python(tmp_path, "12", pip_nccl(tmp_path)), toolkit(tmp_path, "12.9"), mpi=True)
    assert "NCCL GPU operations, controllers: MPI gloo" in out and "no MPI" not in out


def test_without_a_toolkit_of_tensorflows_cuda_no_gpu_operations(tmp_path):
    out = plan(tmp_path, stand_in_python(tmp_path, "12", pip_nccl(tmp_path)), toolkit(tmp_path, "13.0"))
    assert "no GPU operations, controllers: gloo" in out
    assert f"no CUDA 12 toolkit (TensorFlow's CUDA) found, only {tmp_path / 'cuda-13.0'} (CUDA 13)" in out
    out = plan(tmp_path, stand_in_python(tmp_path, "12", None), toolkit(tmp_path, "12.9"))
    assert "no NCCL: neither HOROVOD_NCCL_HOME nor TensorFlow's nvidia-nccl-cu12 package" in out


def test_cpu_tensorflow_builds_gloo_only(tmp_path):
    out = plan(tmp_path, stand_in_python(tmp_path, "-", None), toolkit(tmp_path, "12.9"))
    assert out.splitlines()[:3] == ["Horovod 0.28.1 for TensorFlow 2.21.0: no GPU operations, controllers: gloo",
                                    "  no NCCL: TensorFlow is the CPU build",
                                    "  no MPI: no mpicxx on PATH (Debian: apt-get install libopenmpi-dev "
                                    "openmpi-bin)"]


def test_the_real_venv_plans_what_this_machine_offers():
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(SCRIPT), "--plan"], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Horovod 0.28.1 for TensorFlow ")
    import tensorflow as tf

    if not tf.test.is_built_with_cuda():
        assert "no NCCL: TensorFlow is the CPU build" in proc.stdout
