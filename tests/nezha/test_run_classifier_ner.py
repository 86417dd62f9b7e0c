"""run_classifier_ner.py and ner_data.py: conversion as the original, windows for long sentences, a tiny
NEZHA that learns People's Daily NER, the output files and the scripts."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ner_data
from utils.fileio import read_key_values
from utils.tasks import NerSentence, read_ner_file
from utils.tokenization import FullTokenizer

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "NEZHA-TensorFlow" / "run_classifier_ner.py"
TINY_CONFIG = {
    "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 64,
    "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 512,
    "num_attention_heads": 2, "num_hidden_layers": 1, "type_vocab_size": 2, "vocab_size": 21128,
    "use_relative_position": True,
}


def env() -> dict[str, str]:
    values = dict(os.environ, OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="2", TF_NUM_INTEROP_THREADS="1",
                  TF_CPP_MIN_LOG_LEVEL="2", PYTHON=sys.executable)
    values["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), values.get("PYTHONPATH")]))
    return values


@pytest.fixture(scope="module")
def tokenizer(nezha_vocab: Path) -> FullTokenizer:
    return FullTokenizer(nezha_vocab)


@pytest.fixture(scope="module")
def vocab(nezha_vocab: Path) -> dict[str, int]:
    with open(nezha_vocab, encoding="utf-8") as handle:
        return {line.rstrip("\n"): index for index, line in enumerate(handle)}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ner_config") / "bert_config.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return path


# ------------------------------------------------------------------------------------------------ conversion

def test_hand_made_sentence_gives_the_original_ids_and_x_labels(tokenizer, vocab):
    # "unaffable" is one `char` field that WordPiece splits: its first piece keeps the tag, the others get X.
    sentence = NerSentence(["江", "泽", "民", "unaffable", "访", "华"],
                           ["B-PER", "I-PER", "I-PER", "O", "O", "B-LOC"], line=1)
    pieces = tokenizer.tokenize("unaffable")
    assert len(pieces) > 1
    [feature] = ner_data.convert_sentence(0, sentence, tokenizer, max_seq_length=16, window_stride=8)
    tokens = ["[CLS]", "江", "泽", "民", *pieces, "访", "华", "[SEP]"]
    assert feature.tokens == tokens
    assert feature.input_ids == [vocab[t] for t in tokens] + [0] * (16 - len(tokens))
    assert feature.input_mask == [1] * len(tokens) + [0] * (16 - len(tokens))
    assert feature.segment_ids == [0] * 16
    # 1-based ids in the original order: O=1 B-PER=2 I-PER=3 B-ORG=4 I-ORG=5 B-LOC=6 I-LOC=7 X=8 [CLS]=9 [SEP]=10
    x = [8] * (len(pieces) - 1)
    assert feature.label_ids == [9, 2, 3, 3, 1, *x, 1, 6, 10] + [0] * (16 - len(tokens))
    first_piece = 4
    assert feature.predicted_chars == {1: 0, 2: 1, 3: 2, first_piece: 3, first_piece + len(pieces): 4,
                                       first_piece + len(pieces) + 1: 5}
    assert ner_data.LABEL_MAP == {"O": 1, "B-PER": 2, "I-PER": 3, "B-ORG": 4, "I-ORG": 5, "B-LOC": 6,
                                  "I-LOC": 7, "X": 8, "[CLS]": 9, "[SEP]": 10}
    assert ner_data.NUM_LABELS == 11


def test_a_character_the_tokenizer_drops_keeps_its_place(tokenizer):
    sentence = NerSentence(["北", "\x07", "京"], ["B-LOC", "O", "I-LOC"], line=1)
    [feature] = ner_data.convert_sentence(0, sentence, tokenizer, max_seq_length=8, window_stride=4)
    assert feature.tokens == ["[CLS]", "北", "[UNK]", "京", "[SEP]"]
    assert feature.predicted_chars == {1: 0, 2: 1, 3: 2}


def test_window_spans_and_most_context_choice_by_hand():
    spans = ner_data.window_spans(10, max_tokens=4, stride=2)
    assert spans == [(0, 4), (2, 4), (4, 4), (6, 4)]
    # token 2: window 0 has min(2, 1) = 1 token of context on its poorer side, window 1 min(0, 3) = 0;
    # token 3: window 0 min(3, 0) = 0, window 1 min(1, 2) = 1
    assert [ner_data.best_window(spans, t) for t in range(10)] == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert ner_data.window_spans(3, max_tokens=4, stride=2) == [(0, 3)]
    # a stride longer than the window still covers everything (no gap)
    assert ner_data.window_spans(9, max_tokens=4, stride=10) == [(0, 4), (4, 4), (8, 1)]


def test_long_sentence_windows_cover_every_character_once(tokenizer):
    text = ("新华社北京十二月三十一日电国家主席江泽民发表一九九八年新年讲话迈向充满希望的新世纪" * 6
            + "hello") * 2
    chars = list(text)
    tags = ["B-LOC" if c == "北" else "I-LOC" if c == "京" else "O" for c in chars]
    sentence = NerSentence(chars, tags, line=1)
    features = ner_data.convert_sentence(7, sentence, tokenizer, max_seq_length=32, window_stride=10)
    assert len(features) > 10
    assert all(len(f.input_ids) == 32 and len(f.tokens) <= 32 for f in features)
    assert all(f.sentence_index == 7 for f in features)
    owners = [c for f in features for c in f.predicted_chars.values()]
    assert sorted(owners) == list(range(len(chars)))
    # each predicted position holds that character's first token and its own tag id
    for f in features:
        for position, char in f.predicted_chars.items():
            assert f.tokens[position] == tokenizer.tokenize(chars[char])[0]
            assert f.label_ids[position] == ner_data.LABEL_MAP[tags[char]]
    # the gold ids read back through the windows give the gold tags, one per character
    gold_ids = np.asarray([f.label_ids for f in features])
    sentences = [NerSentence([], [], 1)] * 7 + [sentence]
    assembled = ner_data.assemble_predictions(features, gold_ids, sentences)
    assert assembled[7] == tags
    # a per-window constant prediction shows which window each character was read from: never an edge one
    # when a window with more context exists (here: the middle of the previous window's overlap)
    marks = np.stack([np.full(32, ner_data.LABEL_MAP["B-PER"] if i % 2 else ner_data.LABEL_MAP["B-ORG"])
                      for i in range(len(features))])
    chosen = ner_data.assemble_predictions(features, marks, sentences)[7]
    spans = ner_data.window_spans(len(ner_data.tokenize_sentence(sentence, tokenizer).tokens), 30, 10)
    first = ner_data.tokenize_sentence(sentence, tokenizer).first_token
    for char, tag in enumerate(chosen):
        window = ner_data.best_window(spans, first[char])
        assert tag == ("B-PER" if window % 2 else "B-ORG")


def test_predicted_non_tags_read_as_o():
    assert [ner_data.id_to_tag(i) for i in range(11)] == [
        "O", "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "O", "O", "O"]


# ------------------------------------------------------------------------------------------------ the entry

def run_entry(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(ENTRY), *args], env=env(), capture_output=True, text=True,
                            timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


SCRIPT = ROOT / "scripts" / "run_seq_labelling.sh"


@pytest.fixture(scope="module")
def trained(prepared_data: Path, tiny_config: Path, tmp_path_factory) -> Path:
    """scripts/run_seq_labelling.sh, run from another directory: a tiny random-init NEZHA trained briefly on
    real People's Daily sentences, every checkpoint scored on dev, the best one labelling the test set."""
    output_dir = tmp_path_factory.mktemp("ner_run")
    settings = dict(DATA_DIR=str(prepared_data / "peoples_daily_ner"), BERT_CONFIG=str(tiny_config),
                    INIT_CHECKPOINT="none", OUTPUT_DIR=str(output_dir), MAX_SEQ_LENGTH="64", WINDOW_STRIDE="32",
                    TRAIN_BATCH_SIZE="32", EVAL_BATCH_SIZE="64", PREDICT_BATCH_SIZE="64", EPOCHS="1", LR="2e-3",
                    SAVE_STEPS="50", MAX_TRAIN_EXAMPLES="2500", MAX_EVAL_EXAMPLES="300", MAX_PREDICT_EXAMPLES="200")
    result = subprocess.run(["bash", str(SCRIPT)], env={**env(), **settings}, cwd=tmp_path_factory.mktemp("cwd"),
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return output_dir


def test_tiny_model_learns_entities_on_dev(trained: Path, prepared_data: Path, tokenizer):
    results = read_key_values(trained / "eval_results.txt")
    for key in ("eval_precision", "eval_recall", "eval_f", "eval_entity_precision", "eval_entity_recall",
                "eval_entity_f1", "eval_entity_LOC_f1", "eval_entity_PER_f1", "loss", "global_step"):
        assert key in results, key
    # always predicting O (the majority tag) scores 0 entity F1
    assert float(results["eval_entity_f1"]) > 0.05
    assert float(results["eval_f"]) > 0.1
    sentences = read_ner_file(prepared_data / "peoples_daily_ner" / "train.txt")[:2500]
    windows = len(ner_data.convert_sentences(sentences, tokenizer, 64, 32))
    assert windows > len(sentences)
    steps = int(windows / 32 * 1.0)
    assert int(results["global_step"]) == steps
    history = [json.loads(line) for line in (trained / "eval" / "eval_history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == list(range(50, steps, 50)) + [steps]
    assert all("eval_entity_f1" in h["metrics"] for h in history)
    assert history[-1]["metrics"]["eval_entity_f1"] == pytest.approx(float(results["eval_entity_f1"]))


def test_prediction_files(trained: Path, prepared_data: Path):
    sentences = read_ner_file(prepared_data / "peoples_daily_ner" / "test.txt")[:200]
    blocks = (trained / "test_predictions.txt").read_text(encoding="utf-8").split("\n\n")
    assert blocks[-1] == ""
    blocks = blocks[:-1]
    assert len(blocks) == len(sentences)
    tags = set(ner_data.CHAR_TAGS)
    for sentence, block in zip(sentences, blocks):
        lines = [line.split(" ") for line in block.split("\n")]
        assert [line[0] for line in lines] == sentence.chars
        assert [line[1] for line in lines] == sentence.tags
        assert all(len(line) == 3 and line[2] in tags for line in lines)
    assert any(line.split(" ")[2] != "O" for block in blocks for line in block.split("\n"))
    # labelled with the checkpoint of the best dev entity F1, which select_best.py chose
    history = [json.loads(line) for line in (trained / "eval" / "eval_history.jsonl").read_text().splitlines()]
    best = max(history, key=lambda h: (h["metrics"]["eval_entity_f1"], h["step"]))
    assert (trained / "best_checkpoint.txt").read_text().strip() == str(trained / best["checkpoint"])
    test_results = read_key_values(trained / "eval" / "test_results.txt")
    assert int(test_results["global_step"]) == best["step"]
    assert float(test_results["eval_entity_f1"]) > 0.05
    assert (trained / "eval" / "all_eval_points_results.txt").read_text().splitlines()[-1] == (
        f"----best_result: {best['metrics']['eval_entity_f1']}")
    # token_test.txt: every window's tokens, [CLS] and [SEP] included, no padding
    tokens = (trained / "token_test.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert tokens.count("[CLS]") == tokens.count("[SEP]") >= len(sentences)
    assert "[PAD]" not in tokens and "" not in tokens
    with open(trained / "label2id.pkl", "rb") as handle:
        assert pickle.load(handle) == ner_data.LABEL_MAP
    assert len((trained / "dev_predictions.txt").read_text(encoding="utf-8").split("\n\n")) == 301


def test_bad_tag_line_stops_with_the_file_and_line(tiny_config: Path, nezha_vocab: Path, tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.txt").write_text("新 O\n华 B-LOC\n\n社 O\n北 B-PLACE\n", encoding="utf-8")
    result = run_entry("--task_name=ner", "--do_predict=true", f"--data_dir={data}", f"--vocab_file={nezha_vocab}",
                       f"--bert_config_file={tiny_config}", "--init_checkpoint=whatever",
                       f"--output_dir={tmp_path / 'out'}", check=False)
    assert result.returncode == 2
    assert f"{data / 'test.txt'}:5:" in result.stderr and "B-PLACE" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "test_predictions.txt").exists()


def test_script_stops_without_a_checkpoint(prepared_data: Path, tmp_path: Path):
    settings = dict(DATA_DIR=str(prepared_data / "peoples_daily_ner"), INIT_CHECKPOINT=str(tmp_path / "model.ckpt"),
                    OUTPUT_DIR=str(tmp_path / "out"))
    result = subprocess.run(["bash", str(SCRIPT)], env={**env(), **settings}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'model.ckpt'}: checkpoint not found")
    assert "INIT_CHECKPOINT=none" in result.stderr
    assert not (tmp_path / "out").exists()
    # the prediction script (the original's positional arguments) with a checkpoint that is not there
    predict = subprocess.run(["bash", str(ROOT / "scripts" / "run_seq_labelling_predict.sh"), "ner",
                              str(prepared_data / "peoples_daily_ner"), str(tmp_path), str(tmp_path / "model.ckpt-9"),
                              "64", "8", str(tmp_path / "out")], env=env(), capture_output=True, text=True,
                             timeout=60)
    assert predict.returncode == 2
    assert predict.stderr.startswith(f"error: {tmp_path / 'model.ckpt-9'}: checkpoint not found")
    assert not (tmp_path / "out").exists()
