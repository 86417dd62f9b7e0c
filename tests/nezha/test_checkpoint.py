"""checkpoint.py: TF1 checkpoints written by tf.compat.v1 graph code load by name; ours load in TF1 code;
saving is crash-safe and prunes as keep_checkpoint_max."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

import checkpoint
import modeling
from utils.errors import InputError

TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=32, type_vocab_size=2)


def model_arrays(model: tf.Module, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0.0, 0.3, variable.shape).astype(np.float32)
            for name, variable in checkpoint.named_variables(model).items()}


def write_tf1_checkpoint(prefix: str, arrays: dict[str, np.ndarray], step: int, slots: tuple[str, ...]) -> str:
    """What the original's Estimator wrote: tf.compat.v1 variables by name, optimizer slots, global_step."""
    graph = tf.Graph()
    with graph.as_default():
        for name, value in arrays.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
            for slot in slots:
                tf.compat.v1.get_variable(f"{name}/{slot}", initializer=tf.constant(np.full_like(value, 0.5)),
                                          trainable=False)
        global_step = tf.compat.v1.train.get_or_create_global_step()
        tf.compat.v1.get_variable("loss_scale", initializer=tf.constant(2.0 ** 32), trainable=False)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(global_step.assign(step))
            return saver.save(session, prefix, global_step=step)


def read_with_tf1_saver(prefix: str, names: dict[str, tuple[tuple[int, ...], tf.DType]]) -> dict[str, np.ndarray]:
    """Restore by name with a tf.compat.v1 Saver, as code written for the original does."""
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.get_variable(name, shape=shape, dtype=dtype)
                     for name, (shape, dtype) in names.items()}
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session(graph=graph) as session:
            saver.restore(session, prefix)
            return session.run(variables)


def ids_batch(seed: int):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 50, (2, 9)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask, np.zeros_like(ids)


def assign(model: tf.Module, arrays: dict[str, np.ndarray]) -> None:
    for name, variable in checkpoint.named_variables(model).items():
        variable.assign(arrays[name])


def test_tf1_nezha_checkpoint_with_slots_loads_and_gives_the_same_outputs(tmp_path):
    config = modeling.BertConfig(use_relative_position=True, **TINY)
    model = modeling.BertForPreTraining(config)
    arrays = model_arrays(model, 1)
    prefix = write_tf1_checkpoint(str(tmp_path / "model.ckpt"), arrays, 7,
                                  slots=("adam_m", "adam_v", "lamb_m", "lamb_v"))
    report = checkpoint.load_checkpoint(prefix, model)
    assert report.missing == [] and report.unexpected == []
    assert "global_step" in report.skipped and "loss_scale" in report.skipped
    assert "bert/encoder/layer_1/output/dense/kernel/lamb_m" in report.skipped
    assert len(report.skipped) == 4 * len(arrays) + 2 and len(report.loaded) == len(arrays)
    for name, variable in checkpoint.named_variables(model).items():
        np.testing.assert_array_equal(variable.numpy(), arrays[name])
    reference = modeling.BertForPreTraining(config)
    assign(reference, arrays)
    ids, mask, types = ids_batch(2)
    ours, theirs = model(ids, mask, types), reference(ids, mask, types)
    np.testing.assert_array_equal(ours.masked_lm_logits.numpy(), theirs.masked_lm_logits.numpy())
    np.testing.assert_array_equal(ours.bert.pooled_output.numpy(), theirs.bert.pooled_output.numpy())
    # a directory means its newest checkpoint, as tf.train.load_checkpoint does
    assert checkpoint.load_checkpoint(tmp_path, model).prefix == os.path.normpath(prefix)


def test_training_state_loads_when_asked_for_by_name(tmp_path):
    model = modeling.BertModel(modeling.BertConfig(use_relative_position=True, **TINY))
    arrays = model_arrays(model, 3)
    prefix = write_tf1_checkpoint(str(tmp_path / "model.ckpt"), arrays, 11, slots=("lamb_m",))
    name = "bert/pooler/dense/kernel"
    state = {"global_step": tf.Variable(0, dtype=tf.int64), f"{name}/lamb_m": tf.Variable(tf.zeros([16, 16]))}
    report = checkpoint.load_checkpoint(prefix, {**checkpoint.named_variables(model), **state})
    assert int(state["global_step"].numpy()) == 11
    np.testing.assert_array_equal(state[f"{name}/lamb_m"].numpy(), 0.5)
    assert f"{name}/lamb_m" not in report.skipped and "bert/encoder/layer_0/output/dense/bias/lamb_m" in report.skipped


def test_google_bert_checkpoint_with_position_embeddings(tmp_path, caplog):
    absolute = modeling.BertForPreTraining(modeling.BertConfig(use_relative_position=False, **TINY))
    arrays = model_arrays(absolute, 4)
    assert arrays["bert/embeddings/position_embeddings"].shape == (32, 16)
    prefix = write_tf1_checkpoint(str(tmp_path / "bert_model.ckpt"), arrays, 0, slots=("adam_m", "adam_v"))
    report = checkpoint.load_checkpoint(prefix, absolute)
    assert report.missing == [] and report.unexpected == []
    np.testing.assert_array_equal(absolute.bert.embeddings.position_embeddings.numpy(),
                                  arrays["bert/embeddings/position_embeddings"])
    # into a NEZHA (relative) config the absolute table is unused, and said so
    relative = modeling.BertModel(modeling.BertConfig(use_relative_position=True, **TINY))
    with caplog.at_level(logging.WARNING):
        report = checkpoint.load_checkpoint(prefix, relative)
    assert "bert/embeddings/position_embeddings" in report.unexpected
    assert "bert/embeddings/position_embeddings" in caplog.text


def test_missing_names_are_reported_and_keep_their_values(tmp_path, caplog):
    config = modeling.BertConfig(use_relative_position=True, **TINY)
    encoder = modeling.BertModel(config)
    prefix = checkpoint.save_checkpoint(tmp_path, checkpoint.named_variables(encoder))
    classifier = modeling.DenseHead(3, 16)
    before = classifier.output_weights.numpy()
    with caplog.at_level(logging.WARNING):
        report = checkpoint.load_checkpoint(prefix, {**checkpoint.named_variables(encoder),
                                                     **checkpoint.named_variables(classifier)})
    assert report.missing == ["output_bias", "output_weights"]
    assert "output_weights" in caplog.text
    np.testing.assert_array_equal(classifier.output_weights.numpy(), before)


def test_shape_mismatch_names_variable_and_shapes_and_assigns_nothing(tmp_path):
    small = modeling.BertModel(modeling.BertConfig(use_relative_position=True, **TINY))
    prefix = checkpoint.save_checkpoint(tmp_path, checkpoint.named_variables(small))
    bigger = modeling.BertModel(modeling.BertConfig(use_relative_position=True, **{**TINY, "intermediate_size": 20}))
    before = bigger.embeddings.word_embeddings.numpy()
    with pytest.raises(InputError, match=r"bert/encoder/layer_0/intermediate/dense/bias has shape \[24\] in the "
                                         r"checkpoint but \[20\] in the model") as err:
        checkpoint.load_checkpoint(prefix, bigger)
    assert err.value.path == prefix
    np.testing.assert_array_equal(bigger.embeddings.word_embeddings.numpy(), before)


def test_missing_and_corrupt_checkpoints_are_input_errors(tmp_path):
    model = modeling.DenseHead(2, 4)
    with pytest.raises(InputError, match="checkpoint not found") as err:
        checkpoint.load_checkpoint(tmp_path / "nothing.ckpt", model)
    assert err.value.path.endswith("nothing.ckpt")
    with pytest.raises(InputError, match="no complete TensorFlow checkpoint"):
        checkpoint.load_checkpoint(tmp_path, model)
    prefix = checkpoint.save_checkpoint(tmp_path / "a", checkpoint.named_variables(model))
    with open(prefix + ".index", "wb") as handle:
        handle.write(b"not an index")
    with pytest.raises(InputError, match="cannot read") as err:
        checkpoint.load_checkpoint(prefix, model)
    assert err.value.path == prefix
    prefix = checkpoint.save_checkpoint(tmp_path / "b", checkpoint.named_variables(model))
    data = prefix + ".data-00000-of-00001"
    with open(data, "r+b") as handle:
        handle.truncate(os.path.getsize(data) // 2)
    with pytest.raises(InputError, match=r"cannot read (variable|this)") as err:
        checkpoint.load_checkpoint(prefix, model)
    assert err.value.path == prefix
    assert checkpoint.resolve_checkpoint(prefix + ".index") == prefix


def test_our_checkpoint_restores_in_a_tf1_saver_with_extra_tensors(tmp_path):
    model = modeling.BertForPreTraining(modeling.BertConfig(use_relative_position=True, **TINY))
    names = checkpoint.named_variables(model)
    extra = {"global_step": tf.constant(42, tf.int64),
             "bert/pooler/dense/kernel/lamb_m": tf.fill([16, 16], 0.25)}
    prefix = checkpoint.save_checkpoint(tmp_path, {**names, **extra}, step=42)
    assert prefix == os.path.join(str(tmp_path), "model.ckpt-42")
    assert tf.train.latest_checkpoint(str(tmp_path)) == prefix
    wanted = {name: (tuple(v.shape), tf.float32) for name, v in names.items()}
    wanted["global_step"] = ((), tf.int64)
    wanted["bert/pooler/dense/kernel/lamb_m"] = ((16, 16), tf.float32)
    restored = read_with_tf1_saver(prefix, wanted)
    for name, variable in names.items():
        np.testing.assert_array_equal(restored[name], variable.numpy())
    assert restored["global_step"] == 42
    np.testing.assert_array_equal(restored["bert/pooler/dense/kernel/lamb_m"], 0.25)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.ckpt-42.data-00000-of-00001",
                                            "model.ckpt-42.index"]


def test_keep_checkpoint_max_prunes_oldest_and_zero_keeps_all(tmp_path):
    head = modeling.DenseHead(2, 3)
    names = checkpoint.named_variables(head)
    for step in (1, 2, 3, 4):
        checkpoint.save_checkpoint(tmp_path / "two", names, step=step, max_to_keep=2)
        checkpoint.save_checkpoint(tmp_path / "all", names, step=step, max_to_keep=0)
    kept = checkpoint.all_checkpoints(tmp_path / "two")
    assert [checkpoint.checkpoint_step(p) for p in kept] == [3, 4]
    assert not any(name.startswith("model.ckpt-1.") for name in os.listdir(tmp_path / "two"))
    state = tf.train.get_checkpoint_state(str(tmp_path / "two"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["model.ckpt-3", "model.ckpt-4"]
    assert [checkpoint.checkpoint_step(p) for p in checkpoint.all_checkpoints(tmp_path / "all")] == [1, 2, 3, 4]


def test_a_save_interrupted_before_its_index_leaves_the_previous_one_newest(tmp_path, monkeypatch):
    head = modeling.DenseHead(2, 3)
    names = checkpoint.named_variables(head)
    good = checkpoint.save_checkpoint(tmp_path, names, step=1)
    real_replace = os.replace

    def crash_on_index(src, dst):
        if dst.endswith(".index"):
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", crash_on_index)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(tmp_path, names, step=2)
    monkeypatch.undo()
    assert os.path.exists(tmp_path / "model.ckpt-2.data-00000-of-00001")
    assert checkpoint.latest_checkpoint(tmp_path) == good
    assert tf.train.latest_checkpoint(str(tmp_path)) == good
    assert checkpoint.load_checkpoint(tmp_path, head).prefix == good
    # a re-save of the same step replaces the half-written one
    assert checkpoint.save_checkpoint(tmp_path, names, step=2) == checkpoint.latest_checkpoint(tmp_path)


KILLED_SAVER = textwrap.dedent("""
    import sys, tensorflow as tf
    sys.path.insert(0, sys.argv[2])
    import checkpoint
    step = 0
    while True:
        step += 1
        tensors = {"global_step": tf.constant(step, tf.int64),
                   **{f"w{i}": tf.fill([1024, 1024], float(step)) for i in range(6)}}
        checkpoint.save_checkpoint(sys.argv[1], tensors, step=step, max_to_keep=2)
    """)


def test_kill_9_during_saves_leaves_the_newest_complete_checkpoint_usable(tmp_path, root):
    out = tmp_path / "ckpt"
    process = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(out), str(root / "NEZHA-TensorFlow")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(checkpoint.all_checkpoints(out) if out.exists() else []) < 2:
            time.sleep(0.05)
        time.sleep(0.137)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    newest = checkpoint.latest_checkpoint(out)
    assert newest is not None and tf.train.latest_checkpoint(str(out)) is not None
    step = checkpoint.checkpoint_step(newest)
    values = {"global_step": tf.Variable(0, dtype=tf.int64), "w5": tf.Variable(tf.zeros([1024, 1024]))}
    checkpoint.load_checkpoint(newest, values)
    assert int(values["global_step"].numpy()) == step
    np.testing.assert_array_equal(values["w5"].numpy(), float(step))
    # the next save cleans up the killed process's temporary folder
    checkpoint.save_checkpoint(out, {"x": tf.constant(1.0)}, step=step + 1)
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-ckpt-")]
