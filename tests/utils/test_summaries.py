"""utils/summaries.py: TensorBoard scalars in TensorBoard's run layout, read back by TensorBoard's own event
reader; rank-0-only writing, flushing at each write, closing on exceptions, and no tensorboard import where no
summaries are written."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_accumulator, plugin_event_multiplexer
from tensorboard.util import tensor_util

from utils import summaries
from utils.errors import InputError


def _run_python(root: Path, code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def test_train_and_eval_runs_as_tensorboard_sees_them(tmp_path: Path):
    with summaries.open_writer(tmp_path / summaries.TRAIN_RUN) as train, \
            summaries.open_writer(tmp_path / summaries.EVAL_RUN) as evaluation:
        for step in (1, 10, 20):
            train.write(step, {"loss": 3.0 / step, "learning_rate": np.float32(1e-4 * step),
                               "examples_per_sec": 250})
        evaluation.write(20, {"eval_accuracy": np.float64(0.75), "eval_loss": 0.5})

    # TensorBoard's multiplexer, pointed at output_dir as `tensorboard --logdir` would be, finds both runs.
    multiplexer = plugin_event_multiplexer.EventMultiplexer(size_guidance={plugin_event_accumulator.TENSORS: 0})
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    assert sorted(multiplexer.Runs()) == ["eval", "train"]
    tags = multiplexer.PluginRunToTagToContent("scalars")
    assert sorted(tags["train"]) == ["examples_per_sec", "learning_rate", "loss"]
    assert sorted(tags["eval"]) == ["eval_accuracy", "eval_loss"]
    loss = multiplexer.Tensors("train", "loss")
    assert [event.step for event in loss] == [1, 10, 20]
    values = [float(tensor_util.make_ndarray(event.tensor_proto)) for event in loss]
    assert values == pytest.approx([3.0, 0.3, 0.15], rel=1e-6)  # float32, as tf.summary.scalar stores them
    assert tensor_util.make_ndarray(loss[0].tensor_proto).dtype == np.float32

    train_scalars = summaries.read_scalars(tmp_path / "train")
    assert train_scalars["learning_rate"] == [(1, pytest.approx(1e-4)), (10, pytest.approx(1e-3)),
                                              (20, pytest.approx(2e-3))]
    assert train_scalars["examples_per_sec"] == [(1, 250.0), (10, 250.0), (20, 250.0)]
    assert all(math.isfinite(v) for points in train_scalars.values() for _, v in points)
    assert summaries.read_scalars(tmp_path / "eval") == {"eval_accuracy": [(20, 0.75)], "eval_loss": [(20, 0.5)]}
    names = [os.path.basename(p) for p in summaries.event_files(tmp_path / "train")]
    assert len(names) == 1 and names[0].startswith("events.out.tfevents.")


def test_each_write_is_on_disk_before_close_and_a_new_run_adds_a_file(tmp_path: Path, monkeypatch):
    # Files 9 and 10 of this process, in one second: TensorBoard still reads them in the order written.
    monkeypatch.setattr(summaries, "_file_numbers", iter(range(9, 11)))
    monkeypatch.setattr(summaries.time, "time", lambda: 1796175294.5)
    writer = summaries.open_writer(tmp_path)
    assert summaries.event_files(tmp_path) == []           # nothing written yet: no file
    writer.write(5, {"loss": 1.5})
    assert summaries.read_scalars(tmp_path) == {"loss": [(5, 1.5)]}   # flushed, the writer still open
    writer.write(6, {})                                     # nothing to record
    writer.close()
    writer.close()
    with summaries.open_writer(tmp_path) as resumed:        # a restarted run appends a second file
        resumed.write(7, {"loss": 1.25})
    assert len(summaries.event_files(tmp_path)) == 2
    assert summaries.read_scalars(tmp_path) == {"loss": [(5, 1.5), (7, 1.25)]}


def test_an_exception_closes_the_file_with_what_was_written(tmp_path: Path):
    with pytest.raises(RuntimeError):
        with summaries.open_writer(tmp_path) as writer:
            writer.write(1, {"loss": 2.0})
            raise RuntimeError("training failed")
    assert summaries.read_scalars(tmp_path) == {"loss": [(1, 2.0)]}
    with pytest.raises(ValueError, match="closed"):
        writer.write(2, {"loss": 1.0})


def test_other_ranks_write_nothing(tmp_path: Path):
    with summaries.open_writer(tmp_path / "train", enabled=False) as writer:
        writer.write(1, {"loss": 1.0})
    assert not (tmp_path / "train").exists()


def test_reading_a_directory_without_event_files_is_an_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="no TensorBoard event files"):
        summaries.read_scalars(tmp_path)


def test_no_tensorboard_import_unless_summaries_are_written(root: Path, tmp_path: Path):
    run = _run_python(root, f"""
import sys
from utils import summaries
with summaries.open_writer({str(tmp_path)!r}, enabled=False) as writer:
    writer.write(1, {{"loss": 1.0}})
assert not any(name.split(".")[0] == "tensorboard" for name in sys.modules), "tensorboard imported"
summaries.open_writer({str(tmp_path)!r}).write(1, {{"loss": 1.0}})
assert "tensorboard" in sys.modules and "tensorflow" not in sys.modules and "torch" not in sys.modules
""")
    assert run.returncode == 0, run.stderr
    assert len(summaries.event_files(tmp_path)) == 1


def test_without_the_tensorboard_package_training_goes_on_with_one_warning(root: Path, tmp_path: Path):
    run = _run_python(root, f"""
import sys
sys.modules["tensorboard"] = None   # as if it were not installed
from utils import summaries
from utils.errors import InputError
for _ in range(3):
    with summaries.open_writer({str(tmp_path / "train")!r}) as writer:
        writer.write(1, {{"loss": 1.0}})
try:
    summaries.open_writer({str(tmp_path / "other")!r}).write(1, {{"loss": 1.0}})
    summaries.read_scalars({str(tmp_path)!r})
except InputError as err:
    print("read:", err)
""")
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("no TensorBoard summaries are written") == 1, run.stderr
    assert "pip install tensorboard==2.21.0" in run.stderr
    assert not (tmp_path / "train").exists() and not (tmp_path / "other").exists()
    assert "read: " in run.stdout and "no TensorBoard event files" in run.stdout
