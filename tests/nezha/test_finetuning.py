"""The shared fine-tuning core: initialisation from a pre-trained checkpoint, training with resume, the
per-checkpoint evaluation history and the choice of the best checkpoint."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import checkpoint
import classifier
import eval_history
import finetuning
import modeling
import task_heads
from utils.errors import InputError

TINY = {"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
        "use_relative_position": True}
SEQ = 8


def write_config(directory, **overrides) -> str:
    path = os.path.join(directory, "bert_config.json")
    with open(path, "w") as handle:
        json.dump({**TINY, **overrides}, handle)
    return path


def toy_features(count: int = 96, seed: int = 0) -> dict[str, np.ndarray]:
    """Label 1 when token 7 occurs: learnable by a one-layer model in a few dozen steps."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(10, 40, size=(count, SEQ)).astype(np.int32)
    labels = rng.integers(0, 2, size=count).astype(np.int32)
    ids[labels == 1, rng.integers(1, SEQ, size=int(labels.sum()))] = 7
    ids[:, 0] = 1
    return {"input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": np.zeros_like(ids),
            "label_ids": labels}


def new_model(config_file: str, seed: int = 1) -> task_heads.ClassifierModel:
    tf.random.set_seed(seed)
    _, encoder = finetuning.build_encoder(config_file, SEQ)
    return task_heads.ClassifierModel(encoder, 2, dropout_rate=0.0)


def loss_fn_of(model):
    def loss_fn(batch):
        return tf.reduce_mean(task_heads.per_example_loss(model(batch, training=True), batch["label_ids"],
                                                          "classification"))
    return loss_fn


def settings_of(output_dir, steps=30, save=10, learning_rate=2e-3) -> finetuning.TrainingSettings:
    return finetuning.TrainingSettings(str(output_dir), steps, 3, learning_rate, save)


def weights(model) -> dict[str, np.ndarray]:
    return {name: v.numpy() for name, v in checkpoint.named_variables(model).items()}


class Interrupt(Exception):
    pass


def test_resume_after_interruption_continues_at_the_saved_step(tmp_path):
    config = write_config(tmp_path)
    features = toy_features()
    reference = new_model(config)
    full = finetuning.train(reference, loss_fn_of(reference), finetuning.train_batches(features, 8),
                            settings_of(tmp_path / "full"))
    assert full.global_step == 30
    assert [checkpoint.checkpoint_step(p) for p in checkpoint.all_checkpoints(tmp_path / "full")] == [10, 20, 30]

    def stop_at_20(step, prefix):
        if step == 20:
            raise Interrupt()

    first = new_model(config)
    with pytest.raises(Interrupt):
        finetuning.train(first, loss_fn_of(first), finetuning.train_batches(features, 8),
                         settings_of(tmp_path / "cut"), on_checkpoint=stop_at_20)
    resumed_model = new_model(config, seed=99)          # a different start: everything must come from model.ckpt-20
    resumed = finetuning.train(resumed_model, loss_fn_of(resumed_model), finetuning.train_batches(features, 8),
                               settings_of(tmp_path / "cut"))
    assert resumed.global_step == 30
    assert [checkpoint.checkpoint_step(p) for p in resumed.checkpoints] == [30]
    # Same weights, Adam slots, step and data order as the uninterrupted run.
    final_full, final_resumed = weights(reference), weights(resumed_model)
    for name in final_full:
        np.testing.assert_allclose(final_resumed[name], final_full[name], rtol=1e-5, atol=1e-6, err_msg=name)
    again = finetuning.train(resumed_model, loss_fn_of(resumed_model), finetuning.train_batches(features, 8),
                             settings_of(tmp_path / "cut"))
    assert again.global_step == 30 and again.checkpoints == []


def test_checkpoints_keep_the_original_names(tmp_path):
    config = write_config(tmp_path)
    model = new_model(config)
    finetuning.train(model, loss_fn_of(model), finetuning.train_batches(toy_features(), 8),
                     settings_of(tmp_path, steps=5, save=100))
    names = set(tf.train.load_checkpoint(str(tmp_path / "model.ckpt-5")).get_variable_to_shape_map())
    assert {"global_step", "output_weights", "output_bias", "output_weights/adam_m",
            "bert/encoder/layer_0/attention/self/query/kernel",
            "bert/encoder/layer_0/attention/self/query/kernel/adam_v", "bert/pooler/dense/kernel"} <= names
    assert tf.train.load_checkpoint(str(tmp_path / "model.ckpt-5")).get_tensor("output_weights").shape == (2, 16)


def test_init_from_a_pretrained_checkpoint_loads_every_encoder_variable(tmp_path, capsys):
    config_file = write_config(tmp_path)
    config = modeling.BertConfig.from_json_file(config_file)
    pretrained = modeling.BertForPreTraining(config)
    state = checkpoint.named_variables(pretrained)
    state["global_step"] = tf.Variable(1000, dtype=tf.int64, name="global_step")
    state["bert/pooler/dense/kernel/lamb_m"] = tf.zeros([16, 16])
    prefix = checkpoint.save_checkpoint(tmp_path / "pretrained", state, step=1000)

    model = new_model(config_file, seed=7)
    report = finetuning.initialize_from_checkpoint(prefix, model)
    assert sorted(report.missing) == ["output_bias", "output_weights"]
    assert not [n for n in report.missing if n.startswith("bert/")]
    assert report.unexpected and all(n.startswith("cls/") for n in report.unexpected)
    for name, value in weights(model).items():
        if name.startswith("bert/"):
            np.testing.assert_array_equal(value, state[name].numpy(), err_msg=name)
    printed = capsys.readouterr().out
    assert "output_weights" in printed and f"loaded {len(report.loaded)} variables" in printed


def test_init_checkpoint_errors_say_what_to_put_where(tmp_path, capsys):
    config = write_config(tmp_path)
    model = new_model(config)
    with pytest.raises(InputError, match="NEZHA-TensorFlow/nezha/"):
        finetuning.initialize_from_checkpoint(None, model)
    with pytest.raises(InputError, match="model.ckpt.index.*NEZHA-TensorFlow/nezha/") as err:
        finetuning.initialize_from_checkpoint(str(tmp_path / "nezha" / "model.ckpt"), model)
    assert "model.ckpt" in str(err.value)
    assert finetuning.initialize_from_checkpoint("none", model) is None
    other = checkpoint.save_checkpoint(tmp_path / "other", {"something/else": tf.zeros([2])})
    with pytest.raises(InputError, match="none of the encoder"):
        finetuning.initialize_from_checkpoint(other, model)


def test_max_seq_length_is_checked_only_for_absolute_positions(tmp_path):
    relative = write_config(tmp_path)
    assert finetuning.load_config(relative, 64).use_relative_position
    absolute = write_config(tmp_path / "..", use_relative_position=False)
    finetuning.load_config(absolute, 16)
    with pytest.raises(InputError, match="only trained up to sequence length 16"):
        finetuning.load_config(absolute, 17)


def test_train_and_evaluate_records_every_checkpoint_and_picks_the_best(tmp_path):
    config = write_config(tmp_path)
    features = toy_features()
    dev = toy_features(64, seed=1)
    model = new_model(config)

    @tf.function(reduce_retracing=True)
    def logits_of(batch):
        return {"logits": model(batch, training=False)}

    def evaluate():
        logits = finetuning.run_batches(logits_of, dev, 24)["logits"]
        return classifier.evaluation_metrics("text_clf", "classification", logits, dev["label_ids"], 24, 0)

    result, best = finetuning.train_and_evaluate(model, loss_fn_of(model), finetuning.train_batches(features, 8),
                                                 settings_of(tmp_path, steps=60, save=20), evaluate,
                                                 "eval_accuracy")
    history = eval_history.read_eval_history(tmp_path)
    assert [e["step"] for e in history] == [20, 40, 60]
    assert [e["metrics"]["global_step"] for e in history] == [20, 40, 60]
    accuracies = [e["metrics"]["eval_accuracy"] for e in history]
    assert best["metrics"]["eval_accuracy"] == max(accuracies) > 0.9      # token 7 is learnt
    lines = (tmp_path / "eval" / "all_eval_points_results.txt").read_text().splitlines()
    assert lines == [f"step {s}: {a}" for s, a in zip([20, 40, 60], accuracies)] + \
        [f"----best_result: {max(accuracies)}"]
    assert result.global_step == 60


def test_checkpoints_saved_without_evaluation_are_caught_up(tmp_path):
    config = write_config(tmp_path)
    model = new_model(config)
    finetuning.train(model, loss_fn_of(model), finetuning.train_batches(toy_features(), 8),
                     settings_of(tmp_path, steps=20, save=10))
    final = weights(model)
    eval_history.append_eval_history(tmp_path, 10, str(tmp_path / "model.ckpt-10"), {"eval_accuracy": 0.5})
    seen = []

    def evaluate():
        seen.append(model.head.output_bias.numpy().copy())
        return {"eval_accuracy": 0.75}

    history = finetuning.evaluate_checkpoints(model, tmp_path, evaluate)
    assert [e["step"] for e in history] == [10, 20] and len(seen) == 1
    np.testing.assert_array_equal(seen[0], final["output_bias"])
    for name, value in weights(model).items():
        np.testing.assert_array_equal(value, final[name])


def test_best_entry_ties_go_to_the_later_step(tmp_path):
    for step, accuracy in [(100, 0.8), (200, 0.9), (300, 0.9), (400, 0.85)]:
        eval_history.append_eval_history(tmp_path, step, f"model.ckpt-{step}", {"eval_accuracy": accuracy})
    history = eval_history.read_eval_history(tmp_path)
    assert eval_history.best_entry(history, "eval_accuracy")["step"] == 300
    assert eval_history.write_eval_points(tmp_path, "eval_accuracy")["checkpoint"] == "model.ckpt-300"
    (tmp_path / "eval" / "eval_history.jsonl").write_text('{"step": 1, "metrics": {}}\nnot json\n')
    with pytest.raises(InputError, match="eval_history.jsonl:2: expected a JSON object"):
        eval_history.read_eval_history(tmp_path)


def test_run_batches_pads_the_last_batch_and_keeps_order():
    features = {"x": np.arange(10, dtype=np.float32)[:, None]}
    shapes = []

    def double(batch):
        shapes.append(tuple(batch["x"].shape))
        return {"y": batch["x"][:, 0] * 2}

    outputs = finetuning.run_batches(double, features, 4)
    np.testing.assert_array_equal(outputs["y"], np.arange(10) * 2)
    assert shapes == [(4, 1)] * 3


def test_num_train_steps_as_the_original():
    assert finetuning.num_train_steps(1000, 32, 3.0) == 93
    assert finetuning.num_warmup_steps(93, 0.1) == 9
    with pytest.raises(InputError, match="no training step"):
        finetuning.num_train_steps(10, 32, 1.0)


def test_a_vocabulary_larger_than_the_config_stops_before_the_encoder_is_built(tmp_path):
    config_file = write_config(tmp_path)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(f"t{i}\n" for i in range(TINY["vocab_size"] + 1)), encoding="utf-8")
    with pytest.raises(InputError) as err:
        finetuning.build_encoder(config_file, SEQ, vocab_file=vocab)
    assert err.value.path == config_file
    assert f"vocab_size {TINY['vocab_size']} is too small: the vocabulary has 41 tokens ({vocab})" in err.value.message
    vocab.write_text("".join(f"t{i}\n" for i in range(TINY["vocab_size"])), encoding="utf-8")
    config, _ = finetuning.build_encoder(config_file, SEQ, vocab_file=vocab)
    assert config.vocab_size == TINY["vocab_size"]


# The original's defaults of the flags each entry shares with another (reference: original-nezha-tensorflow.md
# section 5), and the new ones.
SHARED_DEFAULTS = {"init_checkpoint": None, "do_train": False, "do_eval": False, "do_predict": False,
                   "train_batch_size": 32, "predict_batch_size": 8, "learning_rate": 3e-5, "num_train_epochs": 3.0,
                   "warmup_proportion": 0.1, "iterations_per_loop": 1000, "use_tpu": False, "num_tpu_cores": 8,
                   "do_train_and_eval": False, "seed": 12345}
ENTRY_DEFAULTS = {
    "run_classifier": {**SHARED_DEFAULTS, "do_lower_case": True, "max_seq_length": 128, "eval_batch_size": 8,
                       "save_checkpoints_steps": 100, "max_train_examples": 0, "keep_checkpoint_max": 0},
    "run_classifier_ner": {**SHARED_DEFAULTS, "do_lower_case": True, "max_seq_length": 128, "eval_batch_size": 8,
                           "save_checkpoints_steps": 1000, "window_stride": 128, "max_predict_examples": 0},
    "run_squad": {**SHARED_DEFAULTS, "do_lower_case": False, "max_seq_length": 384, "save_checkpoints_steps": 1000,
                  "doc_stride": 128, "max_query_length": 64, "n_best_size": 20, "max_answer_length": 30,
                  "verbose_logging": False, "max_train_examples": None, "rand_seed": 12345},
    "extract_features": {"init_checkpoint": None, "do_lower_case": True, "max_seq_length": 128, "batch_size": 32,
                         "use_tpu": False, "num_tpu_cores": 8},
}


@pytest.mark.parametrize("entry", sorted(ENTRY_DEFAULTS))
def test_entries_keep_their_flag_defaults_and_the_seed_names(entry, root):
    """Each entry in its own process (they define the same flags): its defaults, and the seed under its
    original name where it had one (run_squad.py's --rand_seed sets --seed)."""
    import subprocess
    import sys

    code = ("import json, sys; from absl import flags; import {0}; F = flags.FLAGS; F(sys.argv[:1] + {1!r}); "
            "print(json.dumps([{{n: F[n].default for n in F}}, F.seed if 'seed' in F else None]))")
    extra = ["--rand_seed=7"] if entry == "run_squad" else []
    run = subprocess.run([sys.executable, "-c", code.format(entry, extra)], capture_output=True, text=True,
                         timeout=120, cwd=root / "NEZHA-TensorFlow",
                         env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert run.returncode == 0, run.stderr[-2000:]
    defaults, seed = json.loads(run.stdout.strip().splitlines()[-1])
    assert {name: defaults.get(name, "absent") for name in ENTRY_DEFAULTS[entry]} == ENTRY_DEFAULTS[entry]
    assert seed == (7 if entry == "run_squad" else defaults.get("seed"))
