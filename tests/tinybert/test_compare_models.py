"""compare_models.py: parameter counts against the closed-form BERT count, and a speed ratio from real runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import compare_models
from transformer.modeling import BertConfig, TinyBertForSequenceClassification


def closed_form_parameters(v: int, h: int, layers: int, inter: int, positions: int, labels: int) -> int:
    embeddings = v * h + positions * h + 2 * h + 2 * h  # words, positions, 2 token types, LayerNorm
    layer = 4 * (h * h + h) + 2 * h + (h * inter + inter) + (inter * h + h) + 2 * h
    return embeddings + layers * layer + (h * h + h) + (h * labels + labels)


def save(directory: Path, vocab: Path, fit_size: int | None = None, **shape) -> None:
    torch.manual_seed(0)
    config = BertConfig(21128, intermediate_size=4 * shape["hidden_size"], max_position_embeddings=64, **shape)
    model = TinyBertForSequenceClassification(config, num_labels=2, fit_size=fit_size)
    model.save_pretrained(directory, vocab)


def test_parameters_and_speed_on_real_chnsenti(tmp_path: Path, prepared_data: Path, nezha_vocab: Path) -> None:
    save(tmp_path / "teacher", nezha_vocab, hidden_size=128, num_hidden_layers=4, num_attention_heads=4)
    save(tmp_path / "student", nezha_vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, fit_size=128)
    out = tmp_path / "compare.json"
    compare_models.main(["--teacher_model", str(tmp_path / "teacher"), "--student_model", str(tmp_path / "student"),
                         "--data_dir", str(prepared_data / "chnsenti"), "--task_name", "text_clf",
                         "--max_seq_length", "64", "--batch_size", "16", "--max_batches", "6",
                         "--output_file", str(out)])
    result = json.loads(out.read_text())
    assert result["teacher_parameters"] == closed_form_parameters(21128, 128, 4, 512, 64, 2)
    assert result["student_parameters"] == closed_form_parameters(21128, 32, 1, 128, 64, 2)
    assert result["parameter_ratio"] == pytest.approx(result["teacher_parameters"] / result["student_parameters"],
                                                      abs=0.01)
    assert result["examples"] == 96
    assert result["speed_ratio"] > 1.5  # 4x128 against 1x32: the student must be clearly faster
