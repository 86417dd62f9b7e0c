"""run_pretraining.py: the original's losses (checked against NumPy), a tiny NEZHA that learns masked LM on the
real Chinese corpus, an interrupted run that resumes from its checkpoint with the saved optimizer state,
eval_results.txt, TF1 checkpoint names, TensorBoard summaries, clear input errors, and two data-parallel
processes."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2
from absl import flags

import run_pretraining
from utils import create_pretraining_data as cpd
from utils.errors import InputError

SEQ = 64
MAX_PRED = 10
VOCAB_SIZE = 21128
STEPS = 60
INTERRUPT_AT = 30
TINY = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 32,
        "initializer_range": 0.02, "intermediate_size": 64, "max_position_embeddings": 128,
        "num_attention_heads": 2, "num_hidden_layers": 1, "type_vocab_size": 2, "vocab_size": VOCAB_SIZE,
        "use_relative_position": True}
LAUNCH_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def data(prepared_data: Path, nezha_vocab: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two tfrecord files from the first 1500 documents of the real corpus, and a tiny NEZHA config."""
    directory = tmp_path_factory.mktemp("pretraining")
    text = (prepared_data / "corpus" / "zh.txt").read_text(encoding="utf-8")
    corpus = directory / "corpus.txt"
    corpus.write_text("\n\n".join(text.split("\n\n")[:1500]) + "\n", encoding="utf-8")
    outputs = [directory / "part-0.tfrecord", directory / "part-1.tfrecord"]
    cpd.create_pretraining_data(str(corpus), ",".join(map(str, outputs)), str(nezha_vocab), max_seq_length=SEQ,
                                max_predictions_per_seq=MAX_PRED, dupe_factor=1)
    config = directory / "bert_config.json"
    config.write_text(json.dumps(TINY), encoding="utf-8")
    return {"input_file": f"{directory}/part-*.tfrecord", "config": config, "directory": directory}


def options(data: dict, output_dir: Path, **kwargs) -> run_pretraining.Options:
    settings = dict(bert_config_file=str(data["config"]), input_file=data["input_file"], output_dir=str(output_dir),
                    max_seq_length=SEQ, max_predictions_per_seq=MAX_PRED, train_batch_size=16, eval_batch_size=16,
                    learning_rate=1e-2, num_train_steps=STEPS, num_warmup_steps=5,
                    save_checkpoints_steps=INTERRUPT_AT, save_summary_steps=10, max_eval_steps=10, seed=1)
    settings.update(kwargs)
    return run_pretraining.Options(**settings)


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def trained(data: dict) -> dict:
    """A run stopped right after its checkpoint at step 30, then the same command again: it resumes and ends
    at step 60 with an evaluation. Records the state the second run restored."""
    output_dir = data["directory"] / "output"
    save, restore = run_pretraining.Pretrainer.save, run_pretraining.Pretrainer.restore
    restored: dict = {}

    def save_then_stop(self):
        prefix = save(self)
        if self.global_step == INTERRUPT_AT:
            raise Interrupted(prefix)
        return prefix

    def restore_and_record(self):
        prefix = restore(self)
        restored.update(prefix=prefix, state={name: v.numpy() for name, v in self.state().items()})
        return prefix

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_pretraining.Pretrainer, "save", save_then_stop)
        with pytest.raises(Interrupted):
            run_pretraining.run(options(data, output_dir))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_pretraining.Pretrainer, "restore", restore_and_record)
        summary = run_pretraining.run(options(data, output_dir, do_eval=True))
    return {"output_dir": output_dir, "summary": summary, "restored": restored}


def test_losses_equal_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (3, 4, 50)).astype(np.float32)
    ids = rng.integers(0, 50, (3, 4)).astype(np.int32)
    weights = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    per_example = -(np.eye(50)[ids] * log_probs).sum(-1)
    loss, per, _ = run_pretraining.masked_lm_loss(tf.constant(logits), tf.constant(ids), tf.constant(weights))
    np.testing.assert_allclose(per.numpy(), per_example, rtol=1e-5)
    np.testing.assert_allclose(float(loss), (weights * per_example).sum() / (weights.sum() + 1e-5), rtol=1e-5)
    nsp_logits = rng.normal(0, 2, (5, 2)).astype(np.float32)
    labels = np.array([[0], [1], [1], [0], [1]], np.int32)
    nsp_log_probs = nsp_logits - np.log(np.exp(nsp_logits).sum(-1, keepdims=True))
    expected = -(np.eye(2)[labels[:, 0]] * nsp_log_probs).sum(-1).mean()
    nsp, _, _ = run_pretraining.next_sentence_loss(tf.constant(nsp_logits), tf.constant(labels))
    np.testing.assert_allclose(float(nsp), expected, rtol=1e-5)


def _scalars(directory: Path, tag: str) -> dict[int, float]:
    values = {}
    for events in sorted(directory.glob("events.out.tfevents.*")):
        for raw in tf.data.TFRecordDataset(str(events)).as_numpy_iterator():
            event = event_pb2.Event.FromString(raw)
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def test_masked_lm_learns_on_real_text(trained):
    mlm = _scalars(trained["output_dir"], "mlm_loss")
    assert sorted(mlm) == [1, 10, 20, 30, 40, 50, 60]
    assert mlm[1] == pytest.approx(math.log(VOCAB_SIZE), abs=0.3)  # uniform guesses at the start
    assert (mlm[50] + mlm[60]) / 2 < mlm[1] - 2.0
    learning_rates = _scalars(trained["output_dir"], "learning_rate")
    # The rate of global step g (the step before the update, as the original): warmup lr * g / W, then
    # linear decay from lr / (1 - W / T), which equals lr at g = W.
    assert learning_rates[1] == 0.0
    for step in (10, 60):
        assert learning_rates[step] == pytest.approx(1e-2 / (1 - 5 / STEPS) * (1 - (step - 1) / STEPS), rel=1e-4)
    results = trained["summary"]["eval_results"]
    assert results["masked_lm_loss"] < math.log(VOCAB_SIZE) - 2.0
    assert results["masked_lm_accuracy"] > 0.02  # from ~1/21128 at the start


def test_eval_results_file(trained):
    lines = (trained["output_dir"] / "eval_results.txt").read_text(encoding="utf-8").splitlines()
    keys = [line.split(" = ")[0] for line in lines]
    assert keys == ["global_step", "loss", "masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy",
                    "next_sentence_loss"]
    values = dict(line.split(" = ") for line in lines)
    assert int(values["global_step"]) == STEPS
    assert 0.0 <= float(values["next_sentence_accuracy"]) <= 1.0
    assert float(values["loss"]) == pytest.approx(float(values["masked_lm_loss"])
                                                  + float(values["next_sentence_loss"]), rel=0.05)
    assert _scalars(trained["output_dir"] / "eval", "masked_lm_accuracy")[STEPS] == pytest.approx(
        float(values["masked_lm_accuracy"]), rel=1e-5)


def test_checkpoints_have_original_names_and_resume_restores_everything(trained):
    output_dir = trained["output_dir"]
    assert trained["summary"]["global_step"] == STEPS
    assert trained["summary"]["checkpoint"] == str(output_dir / f"model.ckpt-{STEPS}")
    assert (output_dir / f"model.ckpt-{INTERRUPT_AT}.index").exists()
    restored = trained["restored"]
    assert restored["prefix"] == str(output_dir / f"model.ckpt-{INTERRUPT_AT}")
    reader = tf.train.load_checkpoint(restored["prefix"])
    names = set(reader.get_variable_to_shape_map())
    for name in ("bert/embeddings/word_embeddings", "bert/encoder/layer_0/attention/self/query/kernel",
                 "cls/predictions/output_bias", "cls/seq_relationship/output_weights",
                 "bert/embeddings/word_embeddings/lamb_m", "bert/pooler/dense/kernel/lamb_v", "global_step"):
        assert name in names
    assert not any("accum_grad" in n or "position_embeddings" in n for n in names)  # NEZHA: relative positions
    # Every variable the resumed run started from (weights, LAMB slots, global_step) is the checkpoint's.
    assert set(restored["state"]) == names
    for name, value in restored["state"].items():
        np.testing.assert_array_equal(value, reader.get_tensor(name), err_msg=name)
    assert int(restored["state"]["global_step"]) == INTERRUPT_AT
    assert np.abs(restored["state"]["bert/embeddings/word_embeddings/lamb_v"]).sum() > 0
    final = tf.train.load_checkpoint(str(output_dir / f"model.ckpt-{STEPS}"))
    assert int(final.get_tensor("global_step")) == STEPS


def test_eval_only_and_input_errors(trained, data, tmp_path):
    results = run_pretraining.run(options(data, trained["output_dir"], do_train=False, do_eval=True,
                                          max_eval_steps=2))
    assert results["global_step"] == STEPS and results["eval_results"]["global_step"] == STEPS
    # The same weights given as --init_checkpoint to an empty output_dir evaluate the same (no slots, step 0).
    from_init = run_pretraining.run(options(data, tmp_path / "from_init", do_train=False, do_eval=True,
                                            max_eval_steps=2, init_checkpoint=results["checkpoint"]))
    assert from_init["checkpoint"] == results["checkpoint"] and from_init["global_step"] == 0
    for key in ("masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy", "next_sentence_loss"):
        assert from_init["eval_results"][key] == pytest.approx(results["eval_results"][key], rel=1e-6), key
    with pytest.raises(InputError, match="At least one of `do_train` or `do_eval` must be True"):
        run_pretraining.run(options(data, tmp_path, do_train=False))
    with pytest.raises(InputError, match="nothing to evaluate"):
        run_pretraining.run(options(data, tmp_path / "empty", do_train=False, do_eval=True))
    small_vocab = tmp_path / "small_vocab.json"
    small_vocab.write_text(json.dumps(dict(TINY, vocab_size=1000)), encoding="utf-8")
    with pytest.raises(InputError, match=r"part-0.tfrecord: record 1: token id \d+ is outside the vocabulary"):
        run_pretraining.run(options(data, tmp_path, bert_config_file=str(small_vocab)))
    with pytest.raises(InputError, match="input_ids has 64 values, expected 128"):
        run_pretraining.run(options(data, tmp_path, max_seq_length=128))
    with pytest.raises(InputError, match="no file matches"):
        run_pretraining.run(options(data, tmp_path, input_file=str(tmp_path / "missing-*.tfrecord")))
    with pytest.raises(InputError, match="BERT config file not found"):
        run_pretraining.run(options(data, tmp_path, bert_config_file=str(tmp_path / "none.json")))


def test_flags_have_the_original_defaults_and_match_options():
    flag_values = flags.FlagValues()
    run_pretraining.define_flags(flag_values)
    original = {"bert_config_file": None, "input_file": None, "output_dir": None, "init_checkpoint": None,
                "max_seq_length": 128, "max_predictions_per_seq": 20, "do_train": True, "do_eval": False,
                "train_batch_size": 32, "eval_batch_size": 8, "learning_rate": 5e-5, "num_train_steps": 100000,
                "num_warmup_steps": 10000, "save_checkpoints_steps": 1000, "iterations_per_loop": 1000,
                "max_eval_steps": 100, "horovod": False, "report_loss": False, "manual_fp16": False,
                "use_xla": False, "use_fp16": False, "optimizer": "lamb"}
    for name, default in original.items():
        assert flag_values[name].default == default, name
    for field in dataclasses.fields(run_pretraining.Options):
        assert field.name in flag_values, field.name
        if field.default is not dataclasses.MISSING:
            assert flag_values[field.name].default == field.default, field.name


def test_random_seed_is_the_seed_flag_under_its_original_name():
    flag_values = flags.FlagValues()
    run_pretraining.define_flags(flag_values)
    assert flag_values["seed"].default is None
    flag_values(["run_pretraining.py", "--random_seed=3"])
    assert flag_values.seed == 3


def test_run_pretraining_sh_builds_the_records_then_trains_with_its_settings(root, tmp_path, run_script_recorded):
    """The script's two command lines, as a stand-in PYTHON records them, under the older setting names
    (aliases) and every spelling of a boolean."""
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(TINY), encoding="utf-8")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("一\n二\n\n三\n四\n", encoding="utf-8")
    settings = dict(CORPUS=str(corpus), BERT_CONFIG=str(config), DATA_DIR=str(tmp_path / "records"), NUM_FILES="2",
                    OUTPUT_DIR=str(tmp_path / "out"), SEQ="64", MAX_PRED="10", BATCH="4", TRAIN_STEPS="3",
                    ACCUM_STEPS="2", RANDOM_SEED="7", WHOLE_WORD_MASK="False", USE_XLA="yes", DO_EVAL="0",
                    INIT_CHECKPOINT="none")
    done, (build, train) = run_script_recorded("run_pretraining.sh", "--display_every=1", **settings)
    assert done.returncode == 0, done.stderr
    records = [str(tmp_path / "records" / f"pretrain-0000{i}.tfrecord") for i in range(2)]
    assert build[0] == "utils/create_pretraining_data.py"
    for flag in (f"--output_file={','.join(records)}", "--do_whole_word_mask=false", "--max_seq_length=64",
                 "--max_predictions_per_seq=10", "--seed=7"):
        assert flag in build, flag
    assert train[0] == str(root / "NEZHA-TensorFlow" / "run_pretraining.py") and train[-1] == "--display_every=1"
    for flag in (f"--input_file={tmp_path / 'records'}/pretrain-*.tfrecord", f"--bert_config_file={config}",
                 "--train_batch_size=4", "--num_train_steps=3", "--gradient_accumulation_steps=2",
                 "--use_xla=true", "--use_fp16=false", "--do_eval=false", "--max_seq_length=64"):
        assert flag in train, flag
    assert not any(arg.startswith("--init_checkpoint") for arg in train)
    for bad, message in [(dict(BERT_CONFIG=str(tmp_path / "absent.json")),
                          f"error: {tmp_path / 'absent.json'}: no model config here"),
                         (dict(INIT_CHECKPOINT=str(tmp_path / "model.ckpt")),
                          f"error: {tmp_path / 'model.ckpt'}: checkpoint not found"),
                         (dict(USE_FP16="fast"), "error: USE_FP16=fast: expected a boolean")]:
        stopped, calls = run_script_recorded("run_pretraining.sh", **{**settings, **bad})
        assert stopped.returncode == 2 and calls == [] and stopped.stderr.startswith(message), stopped.stderr


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _command(root: Path, data: dict, output_dir: Path) -> list[str]:
    return [sys.executable, str(root / "NEZHA-TensorFlow" / "run_pretraining.py"),
            f"--bert_config_file={data['config']}", f"--input_file={data['input_file']}",
            f"--output_dir={output_dir}", f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={MAX_PRED}",
            "--train_batch_size=4", "--num_train_steps=3", "--num_warmup_steps=1", "--learning_rate=1e-3",
            "--save_checkpoints_steps=3", "--report_loss", "--display_every=1"]


def _env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    env.pop("TF_CONFIG", None)
    return env


def _check_two_rank_run(outputs: list[str], output_dir: Path) -> None:
    combined = "".join(outputs)
    # Only rank 0 reports, and its throughput counts both ranks' examples.
    assert combined.count("Step =      3 Throughput") == 1, combined[-3000:]
    assert sorted(p.name for p in output_dir.glob("model.ckpt-*.index")) == ["model.ckpt-3.index"]
    assert len(list(output_dir.glob("events.out.tfevents.*"))) == 1
    reader = tf.train.load_checkpoint(str(output_dir / "model.ckpt-3"))
    assert int(reader.get_tensor("global_step")) == 3


def test_two_processes_multi_worker(root, data, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = _env()
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(_command(root, data, tmp_path) + ["--distribution=multi_worker"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=LAUNCH_TIMEOUT_S)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, output in zip(procs, outputs):
        assert p.returncode == 0, output[-3000:]
    _check_two_rank_run(outputs, tmp_path)


def _horovod_available() -> bool:
    return (importlib.util.find_spec("horovod") is not None
            and importlib.util.find_spec("horovod.tensorflow.mpi_lib") is not None)


@pytest.mark.skipif(not _horovod_available(),
                    reason="Horovod is not installed (build it with `make horovod`, scripts/install_horovod.sh)")
def test_two_processes_horovod(root, data, tmp_path):
    horovodrun = shutil.which("horovodrun", path=os.path.dirname(sys.executable)) or shutil.which("horovodrun")
    assert horovodrun, "Horovod is installed but its horovodrun launcher is not on PATH"
    proc = subprocess.run([horovodrun, "-np", "2", "-H", "localhost:2", "--gloo"] + _command(root, data, tmp_path)
                          + ["--horovod"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=LAUNCH_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:]
    _check_two_rank_run([proc.stdout], tmp_path)
