"""utils/model_config.py: every config shipped passes; a wrong type or range names the file, the key's line
and what was expected; a vocabulary larger than the config's embedding table names both files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from utils.errors import InputError
from utils.model_config import check_config, check_vocab_fits

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*ROOT.glob("NEZHA-TensorFlow/nezha/*.json"), *ROOT.glob("TinyBERT/configs/*/config.json")])

BASE = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0, "max_position_embeddings": 64, "type_vocab_size": 2,
        "initializer_range": 0.02, "use_relative_position": True}

BAD = [
    ("hidden_size", "32", 'hidden_size: expected a positive integer, found "32"'),
    ("hidden_size", None, "hidden_size: expected a positive integer, found null"),
    ("intermediate_size", 1.5, "intermediate_size: expected a positive integer, found 1.5"),
    ("num_hidden_layers", -2, "num_hidden_layers: expected a positive integer, found -2"),
    ("num_hidden_layers", True, "num_hidden_layers: expected a positive integer, found true"),
    ("hidden_dropout_prob", 1.0, "hidden_dropout_prob: expected a probability (a number from 0 to below 1), "
                                 "found 1.0"),
    ("use_relative_position", "true", 'use_relative_position: expected true or false, found "true"'),
    ("hidden_act", 3, "hidden_act: expected a string, found 3"),
    ("initializer_range", -0.02, "initializer_range: expected a number >= 0, found -0.02"),
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_passes(path):
    text = path.read_text(encoding="utf-8")
    check_config(json.loads(text), path, text)


def test_hugging_face_config_passes(minilm_dir):
    text = (minilm_dir / "config.json").read_text(encoding="utf-8")
    check_config(json.loads(text), minilm_dir / "config.json", text)


@pytest.mark.parametrize("key, value, message", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_wrong_types_and_ranges_name_the_file_line_and_key(tmp_path, key, value, message):
    path = tmp_path / "bert_config.json"
    text = json.dumps({**BASE, key: value}, indent=2)
    with pytest.raises(InputError) as err:
        check_config(json.loads(text), path, text)
    line = 1 + list(BASE).index(key) + 1                       # "{" is line 1, then one key per line
    assert str(err.value) == f"{path}:{line}: {message}"


def test_missing_vocab_size_and_heads_that_do_not_divide(tmp_path):
    values = dict(BASE)
    del values["vocab_size"]
    with pytest.raises(InputError, match="the BERT config has no vocab_size"):
        check_config(values, tmp_path / "c.json")
    with pytest.raises(InputError, match="hidden_size 32 is not a multiple of num_attention_heads 5"):
        check_config({**BASE, "num_attention_heads": 5}, tmp_path / "c.json")


def test_unknown_keys_pass_and_fit_size_may_be_null(tmp_path):
    check_config({**BASE, "directionality": "bidi", "id2label": {"0": "a"}, "fit_size": None}, tmp_path / "c")


def test_a_vocabulary_larger_than_the_embedding_table_names_both_files(tmp_path):
    vocab = {f"t{i}": i for i in range(120)}
    with pytest.raises(InputError) as err:
        check_vocab_fits(100, tmp_path / "bert_config.json", vocab, tmp_path / "vocab.txt")
    assert str(err.value) == (f"{tmp_path / 'bert_config.json'}: vocab_size 100 is too small: the vocabulary has "
                              f"120 tokens ({tmp_path / 'vocab.txt'}); use the vocab.txt the model was trained "
                              "with, or a config that matches it")
    check_vocab_fits(120, "c", vocab, "v")
    check_vocab_fits(128, "c", vocab, "v")                     # a padded table is fine
