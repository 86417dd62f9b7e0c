"""Learning curves and result charts as PNG files, drawn from the files the runs already write.

    python utils/plots.py --demo_dir output/demo              # the demo's curves, beside its results.md
    python utils/plots.py --bench bench/results/latest.json   # the headline ratios: bench/results/latest.png

Readers turn each kind of output into panels: pretraining (run_pretraining.py's TensorBoard summaries, or its
eval_results.txt), fine-tuning (eval/eval_history.jsonl: the dev metrics of every checkpoint), distillation
(general distillation's log.txt and task distillation's eval_results.txt, appended `key = value` blocks),
teacher against student (a dict) and the benchmarks' ratios (bench/results/latest.json). `draw` lays panels
out in a grid of PANEL_INCHES each at DPI. A missing or empty input is an InputError naming the file.

matplotlib is imported inside `draw` only, and only its object-oriented API on the Agg canvas: pyplot, with
its backend search and its global figures, never is, so drawing needs no display and nothing that trains
imports matplotlib.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import textwrap
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

from utils.errors import InputError, exit_on_input_error
from utils.fileio import atomic_open, read_json_lines, read_key_value_blocks, read_key_values
from utils.summaries import EVAL_RUN, event_files, read_scalars

PathLike = Union[str, os.PathLike]
Points = list[tuple[float, float]]

PANEL_INCHES = (4.8, 3.6)
DPI = 100
MAX_COLUMNS = 3
BAR_INCHES = 0.3                      # per bar of the benchmark chart, plus BENCH_MARGIN_INCHES
BENCH_MARGIN_INCHES = 1.2
BENCH_WIDTH_INCHES = 9.6
MARKERS_UP_TO = 30                    # points per line drawn with markers (a few evaluations stay visible)
LABEL_CHARS = 14                      # the labels under vertical bars wrap at this width


@dataclass
class Curves:
    """Lines over steps, one per label."""

    title: str
    ylabel: str
    series: dict[str, Points]
    xlabel: str = "step"

    def draw(self, axes: Any) -> None:
        for label, points in self.series.items():
            steps, values = zip(*points)
            axes.plot(steps, values, label=label, marker="o" if len(points) <= MARKERS_UP_TO else None,
                      markersize=4)
        axes.set(title=self.title, xlabel=self.xlabel, ylabel=self.ylabel)
        axes.grid(alpha=0.3)
        if len(self.series) > 1:
            axes.legend(fontsize="small")


@dataclass
class Bars:
    """One bar per label, each with its value written on it; `reference` draws a line (1.0 for ratios)."""

    title: str
    ylabel: str
    values: dict[str, float]
    horizontal: bool = False
    reference: Optional[float] = None

    def draw(self, axes: Any) -> None:
        labels, values = list(self.values), list(self.values.values())
        if self.horizontal:
            bars = axes.barh(labels, values, color="tab:blue")
            axes.invert_yaxis()
            axes.set(title=self.title, xlabel=self.ylabel)
            if self.reference is not None:
                axes.axvline(self.reference, color="grey", linewidth=1)
        else:
            bars = axes.bar([textwrap.fill(label, LABEL_CHARS) for label in labels], values,
                            color=[f"C{index}" for index in range(len(values))])
            axes.set(title=self.title, ylabel=self.ylabel)
            if self.reference is not None:
                axes.axhline(self.reference, color="grey", linewidth=1)
        axes.bar_label(bars, fmt="%.3g", padding=2)
        axes.margins(0.12)


Panel = Union[Curves, Bars]


def grid(count: int) -> tuple[int, int]:
    """(rows, columns) for `count` panels: one row of up to MAX_COLUMNS, else as few rows as fit, evenly."""
    rows = math.ceil(count / MAX_COLUMNS)
    return rows, math.ceil(count / rows)


def draw(panels: Sequence[Panel], path: PathLike, title: str = "",
         size_inches: Optional[tuple[float, float]] = None) -> tuple[int, int]:
    """Write the panels as one PNG (atomically) and return its (width, height) in pixels: PANEL_INCHES x DPI
    per panel of the grid unless size_inches is given."""
    if not panels:
        raise InputError("nothing to draw", path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, columns = grid(len(panels))
    width, height = size_inches or (PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows)
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for panel, panel_axes in zip(panels, axes):
        panel.draw(panel_axes)
    for unused in axes[len(panels):]:
        unused.set_axis_off()
    if title:
        figure.suptitle(title)
    with atomic_open(path, "wb") as handle:
        canvas.print_png(handle)
    return round(width * DPI), round(height * DPI)


# ------------------------------------------------------------------------------------------------ readers

def _number(value: Any, path: PathLike, line: Optional[int] = None) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"expected a number, got {value!r}", path, line) from None


def _require(path: PathLike, what: str) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{what} not found", path)
    return path


def _step_series(blocks: Sequence[Mapping[str, Any]], keys: Sequence[str], path: PathLike) -> dict[str, Points]:
    """{key: [(global_step, value), ...]} over `key = value` blocks, each holding its global_step."""
    series: dict[str, dict[int, float]] = {key: {} for key in keys}
    for block in blocks:
        if "global_step" not in block:
            raise InputError(f"a block without global_step (keys {', '.join(sorted(block))})", path)
        step = int(_number(block["global_step"], path))
        for key in keys:
            if key in block:
                series[key][step] = _number(block[key], path)
    return {key: sorted(points.items()) for key, points in series.items() if points}


def _blocks(path: PathLike, what: str) -> list[dict[str, str]]:
    blocks = read_key_value_blocks(_require(path, what))
    if not blocks:
        raise InputError(f"{what} holds no `key = value` lines", path)
    return blocks


def pretraining_panels(pretrain_dir: PathLike) -> list[Curves]:
    """Masked-LM loss (training summaries and evaluations) and masked-LM accuracy (evaluations) of a
    run_pretraining.py output_dir: its event files (train in output_dir, eval in output_dir/eval), else for
    the evaluations its eval_results.txt."""
    pretrain_dir = _require(pretrain_dir, "pretraining output directory")
    train = read_scalars(pretrain_dir) if event_files(pretrain_dir) else {}
    eval_dir = os.path.join(pretrain_dir, EVAL_RUN)
    results = os.path.join(pretrain_dir, "eval_results.txt")
    if event_files(eval_dir):
        evaluated = read_scalars(eval_dir)
    elif os.path.isfile(results):
        evaluated = _step_series(_blocks(results, "eval_results.txt"), ("masked_lm_loss", "masked_lm_accuracy"),
                                 results)
    else:
        evaluated = {}
    loss = {name: points for name, points in (("train", train.get("mlm_loss")),
                                              ("eval", evaluated.get("masked_lm_loss"))) if points}
    panels = []
    if loss:
        panels.append(Curves("pretraining: masked LM loss", "loss", loss))
    if evaluated.get("masked_lm_accuracy"):
        panels.append(Curves("pretraining: masked LM accuracy", "accuracy",
                             {"eval": evaluated["masked_lm_accuracy"]}))
    if not panels:
        raise InputError("no pretraining curves here (expected events.out.tfevents.* with mlm_loss, eval/ event "
                         "files or eval_results.txt)", pretrain_dir)
    return panels


def history_panel(path: PathLike, metrics: Sequence[str], title: str) -> Curves:
    """The dev metrics of every evaluated checkpoint, from a fine-tuning run's eval/eval_history.jsonl
    (`{"step": N, "checkpoint": ..., "metrics": {...}}` per line; a later line of a step replaces it)."""
    path = _require(path, "evaluation history (eval/eval_history.jsonl, written by --do_train_and_eval)")
    series: dict[str, dict[int, float]] = {metric: {} for metric in metrics}
    for number, entry in read_json_lines(path):
        if not isinstance(entry, dict) or "step" not in entry or not isinstance(entry.get("metrics"), dict):
            raise InputError("expected a JSON object with step and metrics", path, number)
        for metric in metrics:
            if metric in entry["metrics"]:
                series[metric][int(_number(entry["step"], path, number))] = _number(entry["metrics"][metric],
                                                                                     path, number)
    found = {metric: sorted(points.items()) for metric, points in series.items() if points}
    if not found:
        raise InputError(f"no evaluation in the history has {' or '.join(metrics)}", path)
    return Curves(title, "dev metric", found)


def distillation_panels(stage: str, path: PathLike) -> list[Curves]:
    """One distillation stage from its appended `key = value` blocks (general distillation's log.txt, task
    distillation's eval_results.txt): every `*loss*` key over global_step, and the dev metrics where the stage
    evaluated (the prediction-layer stage)."""
    blocks = _blocks(path, f"{stage} results")
    keys = sorted({key for block in blocks for key in block if key != "global_step"})
    losses = _step_series(blocks, [key for key in keys if "loss" in key], path)
    metrics = _step_series(blocks, [key for key in keys if "loss" not in key], path)
    panels = [Curves(f"{stage}: losses", "loss", losses)] if losses else []
    if metrics:
        panels.append(Curves(f"{stage}: dev metric", "dev metric", metrics))
    if not panels:
        raise InputError("no loss or metric values in the blocks", path)
    return panels


def comparison_panel(values: Mapping[str, Optional[float]], title: str, ylabel: str) -> Bars:
    """Teacher against student (or any few models) on one metric; models without a value are left out."""
    present = {name: float(value) for name, value in values.items() if value is not None}
    if not present:
        raise InputError(f"no values to compare for {title}")
    return Bars(title, ylabel, present)


def headline_ratios(results: Mapping[str, Any]) -> dict[str, float]:
    """The measured ratios of a bench/results JSON: numeric figures named `*ratio*` or `*speedup*`, except
    the paper's and the targets (quoted, not measured here), labelled `benchmark: figure`."""
    ratios: dict[str, float] = {}

    def visit(bench: str, prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                visit(bench, f"{prefix}.{key}" if prefix else key, inner)
            return
        name = prefix.rsplit(".", 1)[-1]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
                and ("ratio" in name or "speedup" in name) and not name.startswith(("paper_", "target_")):
            ratios[f"{bench.removeprefix('bench_')}: {prefix}"] = float(value)

    for bench, figures in sorted(results.get("benchmarks", {}).items()):
        visit(bench, "", figures)
    return ratios


def plot_bench(results_path: PathLike, output: Optional[PathLike] = None) -> str:
    """The headline ratios of a bench results JSON as one horizontal bar chart (a line at 1x); written to
    `output`, by default beside the JSON with .png. Its height grows with the number of ratios."""
    results_path = _require(results_path, "benchmark results (bench/results/latest.json, from make bench)")
    try:
        with open(results_path, encoding="utf-8") as handle:
            results = json.load(handle)
    except json.JSONDecodeError as err:
        raise InputError(f"expected the JSON that bench/run_all.py writes ({err.msg})", results_path,
                         err.lineno) from None
    if not isinstance(results, dict):
        raise InputError("expected the JSON object that bench/run_all.py writes", results_path)
    ratios = headline_ratios(results)
    if not ratios:
        raise InputError("no measured ratio (a figure named *ratio* or *speedup*) in the results", results_path)
    device = results.get("device", {}).get("device", "unknown device")
    title = f"headline ratios (1x = parity), make bench {results.get('date', 'undated')}, {device}"
    output = os.fspath(output) if output else os.path.splitext(results_path)[0] + ".png"
    draw([Bars("", "ratio", ratios, horizontal=True, reference=1.0)], output, title,
         size_inches=(BENCH_WIDTH_INCHES, BENCH_MARGIN_INCHES + BAR_INCHES * len(ratios)))
    return output


# ------------------------------------------------------------------------------------------------ the demo

# Where scripts/demo.sh leaves each run (paths relative to DEMO_DIR).
DEMO_PRETRAINING = "nezha_pretrain"
DEMO_FINETUNING = (("ChnSenti", "chnsenti_nezha", ("eval_accuracy",)),
                   ("People's Daily NER", "ner_nezha", ("eval_entity_f1",)),
                   ("reading comprehension", "cmrc_nezha", ("eval_em", "eval_f1")))
DEMO_DISTILLATION = (("general distillation", "general_tinybert/log.txt"),
                     ("task distillation, intermediate", "tinybert_chnsenti/intermediate/eval_results.txt"),
                     ("task distillation, prediction", "tinybert_chnsenti/pred/eval_results.txt"))
DEMO_HISTORY = os.path.join("eval", "eval_history.jsonl")


def _best(path: str, metric: str) -> Optional[float]:
    if not os.path.isfile(path):
        return None
    return max(value for _, value in history_panel(path, [metric], "").series[metric])


def _last(path: str, key: str) -> Optional[float]:
    return _number(read_key_values(path)[key], path) if os.path.isfile(path) else None


def demo_plots(demo_dir: PathLike) -> dict[str, list[Panel]]:
    """The panels of each demo PNG (file name -> panels) from what the demo's steps left; a step that has
    not run is left out (as demo_report.py reports a missing row), a file that is there but wrong is an
    InputError."""
    demo_dir = _require(demo_dir, "demo output directory")

    def path(*parts: str) -> str:
        return os.path.join(demo_dir, *parts)

    plots: dict[str, list[Panel]] = {}
    if os.path.isdir(path(DEMO_PRETRAINING)):
        plots["pretraining.png"] = [*pretraining_panels(path(DEMO_PRETRAINING))]
    finetuning: list[Panel] = [history_panel(path(run, DEMO_HISTORY), metrics, f"fine-tuning: {task}")
                               for task, run, metrics in DEMO_FINETUNING if os.path.isfile(path(run, DEMO_HISTORY))]
    if finetuning:
        plots["finetuning.png"] = finetuning
    distillation: list[Panel] = [panel for stage, results in DEMO_DISTILLATION if os.path.isfile(path(results))
                                 for panel in distillation_panels(stage, path(results))]
    if distillation:
        plots["distillation.png"] = distillation
    compared = {"NEZHA teacher": _best(path("chnsenti_nezha", DEMO_HISTORY), "eval_accuracy"),
                "teacher in PyTorch": _last(path("teacher_eval", "eval_results.txt"), "acc"),
                "TinyBERT student": _last(path("tinybert_eval", "eval_results.txt"), "acc")}
    if any(value is not None for value in compared.values()):
        plots["teacher_vs_student.png"] = [comparison_panel(compared, "ChnSenti: teacher vs student",
                                                            "dev accuracy")]
    return plots


def plot_demo(demo_dir: PathLike) -> list[str]:
    """Draw every demo PNG into demo_dir; return their paths (an InputError when no step has run)."""
    plots = demo_plots(demo_dir)
    if not plots:
        raise InputError("no demo outputs to plot here (run make demo, or scripts/demo.sh)", demo_dir)
    written = []
    for name, panels in plots.items():
        draw(panels, os.path.join(demo_dir, name))
        written.append(os.path.join(os.fspath(demo_dir), name))
    return written


@exit_on_input_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--demo_dir", help="the output directory of scripts/demo.sh; its PNGs are written there")
    source.add_argument("--bench", help="a results JSON of bench/run_all.py (bench/results/latest.json)")
    parser.add_argument("--output", help="where the --bench chart goes (default: beside the JSON, as .png)")
    args = parser.parse_args(argv)
    if args.output and not args.bench:
        raise InputError("--output goes with --bench (the demo's PNGs go into --demo_dir)")
    written = plot_demo(args.demo_dir) if args.demo_dir else [plot_bench(args.bench, args.output)]
    for path in written:
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
