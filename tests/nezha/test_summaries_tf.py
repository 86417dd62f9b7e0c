"""utils/summaries.py against run_pretraining.py's TensorFlow summaries: the same scalars written both ways
read back the same, through TensorBoard's reader and through TensorFlow's record reader (the one
test_run_pretraining.py uses), so run_pretraining can move onto the shared writer without changing its files'
tags, steps or values."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

import run_pretraining
from utils import summaries

STEPS = {1: {"loss": 10.25, "mlm_loss": 9.9, "nsp_loss": 0.69, "learning_rate": 0.0, "examples_per_sec": 31.5},
         100: {"loss": 7.5, "mlm_loss": 7.0, "nsp_loss": 0.5, "learning_rate": 1e-4, "examples_per_sec": 33.25,
               "loss_scale": 32768.0}}


def _tf_records(directory: Path) -> dict[str, dict[int, float]]:
    values: dict[str, dict[int, float]] = {}
    for events in sorted(directory.glob("events.out.tfevents.*")):
        for raw in tf.data.TFRecordDataset(str(events)).as_numpy_iterator():
            event = event_pb2.Event.FromString(raw)
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars"
                assert value.tensor.dtype == tf.float32.as_datatype_enum
                values.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def test_shared_writer_matches_run_pretrainings_tensorflow_summaries(tmp_path: Path):
    tf_dir, shared_dir = tmp_path / "tensorflow", tmp_path / "shared"
    writer = tf.summary.create_file_writer(str(tf_dir))
    for step, values in STEPS.items():
        run_pretraining.write_scalars(writer, step, {k: tf.constant(v) for k, v in values.items()})
    writer.close()
    with summaries.open_writer(shared_dir) as shared:
        for step, values in STEPS.items():
            shared.write(step, {k: tf.constant(v) for k, v in values.items()})   # eager tensors, as TF has them

    from_tf, from_shared = summaries.read_scalars(tf_dir), summaries.read_scalars(shared_dir)
    assert from_shared == from_tf
    assert from_tf["loss_scale"] == [(100, 32768.0)]
    assert from_tf["mlm_loss"] == [(1, pytest.approx(9.9)), (100, 7.0)]
    assert _tf_records(shared_dir) == _tf_records(tf_dir)
    assert _tf_records(shared_dir)["learning_rate"] == {1: 0.0, 100: pytest.approx(np.float32(1e-4))}


def test_pretraining_curves_from_tensorflow_written_summaries(tmp_path: Path):
    from utils import plots

    for directory, rows in ((tmp_path, STEPS), (tmp_path / "eval", {100: {"masked_lm_accuracy": 0.25,
                                                                          "masked_lm_loss": 6.0}})):
        writer = tf.summary.create_file_writer(str(directory))
        for step, values in rows.items():
            run_pretraining.write_scalars(writer, step, values)
        writer.close()
    loss, accuracy = plots.pretraining_panels(tmp_path)
    assert loss.series == {"train": [(1, pytest.approx(9.9)), (100, 7.0)], "eval": [(100, 6.0)]}
    assert accuracy.series == {"eval": [(100, 0.25)]}
    assert plots.draw([loss, accuracy], tmp_path / "pretraining.png") == (960, 360)
    assert (tmp_path / "pretraining.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
