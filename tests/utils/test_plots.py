"""utils/plots.py: learning curves and charts from fixture histories in the formats the runs write, drawn to
valid PNGs of the documented size; missing or empty inputs are clear InputErrors; matplotlib is imported only
where a plot is drawn."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from utils import plots, summaries
from utils.errors import InputError

PANEL_PX = (480, 360)   # PANEL_INCHES at DPI


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature, the CRCs (PIL's verify) and that
    something was drawn (a blank canvas has one colour)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size == (width, height)
        assert len(image.convert("RGB").getcolors(1 << 24)) > 20
    return width, height


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def history(path: Path, rows: list[tuple[int, dict]]) -> Path:
    return write(path, "".join(json.dumps({"step": step, "checkpoint": f"model.ckpt-{step}", "metrics": metrics})
                               + "\n" for step, metrics in rows))


def pretraining_run(directory: Path) -> Path:
    """Summaries laid out as run_pretraining.py writes them: train in output_dir, evaluation in eval/."""
    with summaries.open_writer(directory) as train:
        for step in (1, 10, 20, 30):
            train.write(step, {"loss": 11.0 - step / 10, "mlm_loss": 10.0 - step / 10, "learning_rate": 1e-3})
    with summaries.open_writer(directory / "eval") as evaluation:
        evaluation.write(30, {"masked_lm_accuracy": 0.061, "masked_lm_loss": 6.5, "loss": 7.2})
    write(directory / "eval_results.txt", "global_step = 30\nmasked_lm_accuracy = 0.061\nmasked_lm_loss = 6.5\n")
    return directory


GENERAL_LOG = ("att_loss = 0.9\nglobal_step = 9\nloss = 2.0\nrep_loss = 1.1\n"
               "att_loss = 0.7\nglobal_step = 19\nloss = 1.5\nrep_loss = 0.8\n")
PRED_RESULTS = ("acc = 0.6\ncls_loss = 0.7\neval_loss = 0.68\nglobal_step = 100\nloss = 0.7\n"
                "acc = 0.7\ncls_loss = 0.5\neval_loss = 0.6\nglobal_step = 200\nloss = 0.5\n")


def demo_dir(root: Path) -> Path:
    pretraining_run(root / "nezha_pretrain")
    history(root / "chnsenti_nezha" / "eval" / "eval_history.jsonl",
            [(200, {"eval_accuracy": 0.66, "eval_loss": 0.6}), (400, {"eval_accuracy": 0.71, "eval_loss": 0.55})])
    history(root / "ner_nezha" / "eval" / "eval_history.jsonl", [(250, {"eval_entity_f1": 0.3})])
    write(root / "general_tinybert" / "log.txt", GENERAL_LOG)
    write(root / "tinybert_chnsenti" / "intermediate" / "eval_results.txt",
          "att_loss = 0.3\nglobal_step = 100\nloss = 0.9\nrep_loss = 0.6\n")
    write(root / "tinybert_chnsenti" / "pred" / "eval_results.txt", PRED_RESULTS)
    write(root / "teacher_eval" / "eval_results.txt", "acc = 0.72\neval_loss = 0.5\nglobal_step = 0\n")
    write(root / "tinybert_eval" / "eval_results.txt", "acc = 0.7\neval_loss = 0.6\nglobal_step = 0\n")
    return root


def test_pretraining_curves_from_the_event_files(tmp_path: Path):
    loss, accuracy = plots.pretraining_panels(pretraining_run(tmp_path / "run"))
    assert loss.series["train"] == [(1, 9.899999618530273), (10, 9.0), (20, 8.0), (30, 7.0)]
    assert loss.series["eval"] == [(30, 6.5)]
    assert accuracy.series == {"eval": [(30, pytest.approx(0.061))]}
    assert plots.draw([loss, accuracy], tmp_path / "p.png", "pretraining") == (960, 360)
    assert png_size(tmp_path / "p.png") == (2 * PANEL_PX[0], PANEL_PX[1])


def test_pretraining_accuracy_from_eval_results_alone(tmp_path: Path):
    write(tmp_path / "eval_results.txt", "global_step = 150\nmasked_lm_accuracy = 0.05\nmasked_lm_loss = 7.0\n")
    loss, accuracy = plots.pretraining_panels(tmp_path)
    assert loss.series == {"eval": [(150, 7.0)]} and accuracy.series == {"eval": [(150, 0.05)]}
    with pytest.raises(InputError, match="pretraining output directory not found"):
        plots.pretraining_panels(tmp_path / "missing")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InputError, match="no pretraining curves"):
        plots.pretraining_panels(tmp_path / "nothing")


def test_dev_metric_per_checkpoint_from_the_eval_history(tmp_path: Path):
    path = history(tmp_path / "eval_history.jsonl",
                   [(100, {"eval_f1": 20.0, "eval_em": 10.0}), (200, {"eval_f1": 31.0, "eval_em": 18.5}),
                    (100, {"eval_f1": 22.0, "eval_em": 11.0})])   # step 100 evaluated again: the later counts
    panel = plots.history_panel(path, ["eval_em", "eval_f1"], "reading")
    assert panel.series == {"eval_em": [(100, 11.0), (200, 18.5)], "eval_f1": [(100, 22.0), (200, 31.0)]}
    assert plots.draw([panel], tmp_path / "h.png") == PANEL_PX
    assert png_size(tmp_path / "h.png") == PANEL_PX


def test_missing_empty_or_broken_histories_are_input_errors(tmp_path: Path):
    with pytest.raises(InputError, match="evaluation history.*not found"):
        plots.history_panel(tmp_path / "missing.jsonl", ["eval_accuracy"], "t")
    with pytest.raises(InputError, match="no evaluation in the history has eval_accuracy"):
        plots.history_panel(write(tmp_path / "empty.jsonl", ""), ["eval_accuracy"], "t")
    with pytest.raises(InputError, match=r"bad.jsonl:2: expected one JSON value"):
        plots.history_panel(write(tmp_path / "bad.jsonl", '{"step": 1, "metrics": {}}\n{oops\n'), ["x"], "t")
    with pytest.raises(InputError, match=r"shape.jsonl:1: expected a JSON object with step and metrics"):
        plots.history_panel(write(tmp_path / "shape.jsonl", '[1, 2]\n'), ["x"], "t")
    with pytest.raises(InputError, match="holds no `key = value` lines"):
        plots.distillation_panels("general", write(tmp_path / "log.txt", "\n"))
    with pytest.raises(InputError, match="general results not found"):
        plots.distillation_panels("general", tmp_path / "absent" / "log.txt")
    with pytest.raises(InputError, match="expected a number, got 'nan-ish'"):
        plots.distillation_panels("task", write(tmp_path / "r.txt", "global_step = 1\nloss = nan-ish\n"))
    with pytest.raises(InputError, match="nothing to draw"):
        plots.draw([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_distillation_losses_per_stage_and_the_prediction_stages_metric(tmp_path: Path):
    (general,) = plots.distillation_panels("general", write(tmp_path / "log.txt", GENERAL_LOG))
    assert general.series == {"att_loss": [(9, 0.9), (19, 0.7)], "loss": [(9, 2.0), (19, 1.5)],
                              "rep_loss": [(9, 1.1), (19, 0.8)]}
    losses, metric = plots.distillation_panels("prediction", write(tmp_path / "eval_results.txt", PRED_RESULTS))
    assert sorted(losses.series) == ["cls_loss", "eval_loss", "loss"]
    assert metric.series == {"acc": [(100, 0.6), (200, 0.7)]}
    assert plots.draw([general, losses, metric], tmp_path / "d.png") == (3 * PANEL_PX[0], PANEL_PX[1])
    assert png_size(tmp_path / "d.png") == (1440, 360)
    assert plots.grid(4) == (2, 2) and plots.grid(5) == (2, 3) and plots.grid(7) == (3, 3)


def test_teacher_vs_student_bars(tmp_path: Path):
    panel = plots.comparison_panel({"teacher": 0.718, "student": 0.712, "absent": None}, "ChnSenti", "accuracy")
    assert panel.values == {"teacher": 0.718, "student": 0.712}
    plots.draw([panel], tmp_path / "c.png")
    assert png_size(tmp_path / "c.png") == PANEL_PX
    with pytest.raises(InputError, match="no values to compare"):
        plots.comparison_panel({"teacher": None}, "ChnSenti", "accuracy")


BENCH = {"date": "2026-12-01", "device": {"device": "CPU: test (2 cores)"}, "benchmarks": {
    "bench_tinybert_inference": {"tinybert_speedup_ratio": 16.93, "paper_speedup_ratio_k80": 9.4,
                                 "bert_base_seq_per_s": 7.1, "bert_base_ours_vs_hf_ratio": 1.04},
    "bench_nezha_model": {"utilization_ratio_ours_over_hf_pytorch": 1.095, "target_utilization_ratio": 0.8,
                          "meets_target": True},
    "bench_general_distill": {"pregeneration": {"speedup_2_workers": 1.54, "instances_per_epoch": 9195}}}}


def test_headline_ratios_of_the_benchmarks(tmp_path: Path):
    assert plots.headline_ratios(BENCH) == {
        "general_distill: pregeneration.speedup_2_workers": 1.54,
        "nezha_model: utilization_ratio_ours_over_hf_pytorch": 1.095,
        "tinybert_inference: tinybert_speedup_ratio": 16.93,
        "tinybert_inference: bert_base_ours_vs_hf_ratio": 1.04}
    results = write(tmp_path / "latest.json", json.dumps(BENCH))
    assert plots.plot_bench(results) == str(tmp_path / "latest.png")
    assert png_size(tmp_path / "latest.png") == (960, 120 + 30 * 4)   # BENCH_MARGIN + BAR per ratio, at DPI


def test_bench_inputs_that_cannot_be_plotted(tmp_path: Path):
    with pytest.raises(InputError, match="benchmark results.*not found"):
        plots.plot_bench(tmp_path / "latest.json")
    with pytest.raises(InputError, match="no measured ratio"):
        plots.plot_bench(write(tmp_path / "none.json", json.dumps({"benchmarks": {"b": {"wall_s": 3.0}}})))
    with pytest.raises(InputError, match=r"broken.json:1: expected the JSON"):
        plots.plot_bench(write(tmp_path / "broken.json", "{"))


def test_demo_command_draws_every_stage_beside_the_results(tmp_path: Path, capsys):
    demo = demo_dir(tmp_path / "demo")
    plots.main(["--demo_dir", str(demo)])
    sizes = {name: png_size(demo / name) for name in
             ("pretraining.png", "finetuning.png", "distillation.png", "teacher_vs_student.png")}
    assert sizes == {"pretraining.png": (960, 360), "finetuning.png": (960, 360),   # ChnSenti and NER ran
                     "distillation.png": (960, 720),                               # 3 loss panels + dev metric
                     "teacher_vs_student.png": (480, 360)}
    assert capsys.readouterr().out.count("wrote ") == 4
    compared = plots.demo_plots(demo)["teacher_vs_student.png"][0]
    assert compared.values == {"NEZHA teacher": 0.71, "teacher in PyTorch": 0.72, "TinyBERT student": 0.7}


def test_a_partial_demo_draws_what_ran_and_an_empty_one_stops_with_one_line(root: Path, tmp_path: Path):
    partial = tmp_path / "partial"
    pretraining_run(partial / "nezha_pretrain")
    assert plots.plot_demo(partial) == [str(partial / "pretraining.png")]
    (tmp_path / "empty").mkdir()
    run = subprocess.run([sys.executable, str(root / "utils" / "plots.py"), "--demo_dir", str(tmp_path / "empty")],
                         env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"error: {tmp_path / 'empty'}: no demo outputs to plot here (run "
                                               "make demo, or scripts/demo.sh)"]


def test_importing_the_modules_imports_no_plotting_or_tensorboard(root: Path):
    code = ("import sys\nimport utils.plots, utils.summaries, utils.progress\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'tensorboard', 'tensorflow'}))")
    run = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(root)),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
