"""The record of every evaluated fine-tuning checkpoint, and the choice of the best one (no TensorFlow).

The original's Estimator wrote dev metrics as event files under output_dir/eval/ and read_tf_events.py read
them back; here each evaluation is one JSON line of output_dir/eval/eval_history.jsonl,
`{"step": N, "checkpoint": "model.ckpt-N", "metrics": {"eval_accuracy": ..., ...}}`, and
eval/all_eval_points_results.txt keeps read_tf_events.py's format: `step N: value` lines in step order, then
`----best_result: max`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Union

from utils.errors import InputError
from utils.fileio import atomic_open
from utils.tasks import get_task

PathLike = Union[str, os.PathLike]

EVAL_DIR = "eval"
EVAL_HISTORY = "eval_history.jsonl"
ALL_EVAL_POINTS = "all_eval_points_results.txt"


def metric_for_task(task_name: str) -> str:
    """The metric that picks the best checkpoint: the task's primary metric (utils/tasks.py) under the name
    NEZHA's scripts record it: eval_accuracy for accuracy (the original's key), else eval_<key> (CoLA's
    eval_mcc and STS-B's eval_corr as TinyBERT chose them, ner's eval_entity_f1, cmrc2018's eval_f1)."""
    key = get_task(task_name).primary_metric
    return "eval_accuracy" if key == "acc" else f"eval_{key.lower()}"


def eval_dir(output_dir: PathLike) -> str:
    return os.path.join(os.fspath(output_dir), EVAL_DIR)


def history_path(output_dir: PathLike) -> str:
    return os.path.join(eval_dir(output_dir), EVAL_HISTORY)


def plain(value: Any) -> Any:
    """NumPy or TensorFlow scalars as Python numbers, for JSON and `key = value` files."""
    if hasattr(value, "numpy"):
        value = value.numpy()
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    return value


def read_eval_history(output_dir: PathLike) -> list[dict[str, Any]]:
    """The evaluated checkpoints of output_dir by step, one entry per step (a later evaluation of the same
    step replaces an earlier one)."""
    path = history_path(output_dir)
    if not os.path.exists(path):
        return []
    entries: dict[int, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry["metrics"], dict):
                    raise TypeError
                entries[int(entry["step"])] = entry
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise InputError("expected a JSON object with step and metrics", path, number) from None
    return [entries[step] for step in sorted(entries)]


def append_eval_history(output_dir: PathLike, step: int, checkpoint_path: str,
                        metrics: Mapping[str, Any]) -> None:
    """Add one evaluation to eval/eval_history.jsonl (the whole file is replaced atomically)."""
    path = history_path(output_dir)
    previous = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            previous = handle.read()
    entry = {"step": int(step), "checkpoint": os.path.basename(checkpoint_path),
             "metrics": {key: plain(value) for key, value in metrics.items()}}
    with atomic_open(path) as handle:
        handle.write(previous)
        handle.write(json.dumps(entry, ensure_ascii=False) + "\n")


def best_entry(history: list[dict[str, Any]], metric_key: str) -> dict[str, Any]:
    """The entry with the highest metric; ties go to the later step, as read_tf_events.py's dict did."""
    scored = [entry for entry in history if metric_key in entry["metrics"]]
    if not scored:
        raise InputError(f"no evaluation in the history has the metric {metric_key}")
    return max(scored, key=lambda entry: (entry["metrics"][metric_key], entry["step"]))


def write_eval_points(output_dir: PathLike, metric_key: str) -> Optional[dict[str, Any]]:
    """eval/all_eval_points_results.txt in read_tf_events.py's format; returns the best entry (None when
    nothing has been evaluated with that metric)."""
    history = [entry for entry in read_eval_history(output_dir) if metric_key in entry["metrics"]]
    if not history:
        return None
    best = best_entry(history, metric_key)
    with atomic_open(os.path.join(eval_dir(output_dir), ALL_EVAL_POINTS)) as handle:
        for entry in history:
            handle.write(f"step {entry['step']}: {entry['metrics'][metric_key]}\n")
        handle.write(f"----best_result: {best['metrics'][metric_key]}\n")
    return best
