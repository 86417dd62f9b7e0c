"""bench/run_all.py: --only re-measures some benchmarks and keeps the others' last figures from the same device."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "bench" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kept_figures_only_from_a_run_of_the_same_kind_on_the_same_device(tmp_path: Path):
    run_all = load_run_all()
    latest = tmp_path / "latest.json"
    cpu = {"device": "CPU: X (2 cores)"}
    previous = {"date": "2026-11-20", "quick": False, "device": cpu,
                "benchmarks": {"bench_a": {"x": 1.0}, "bench_b": {"y": 2.0, "measured": "2026-11-01"}}}
    latest.write_text(json.dumps(previous))
    now = {"quick": False, "device": cpu}
    assert run_all._kept_figures(latest, now) == {"bench_a": {"measured": "2026-11-20", "x": 1.0},
                                                  "bench_b": {"measured": "2026-11-01", "y": 2.0}}
    assert run_all._kept_figures(latest, {"quick": True, "device": cpu}) == {}
    assert run_all._kept_figures(latest, {"quick": False, "device": {"device": "NVIDIA H100"}}) == {}
    assert run_all._kept_figures(tmp_path / "missing.json", now) == {}
    table = run_all.to_markdown({"date": "2026-11-25", "quick": False, "device": cpu,
                                 "benchmarks": run_all._kept_figures(latest, now)})
    assert "| measured | 2026-11-20 |" in table and "| y | 2 |" in table


def test_gpu_runs_are_named_by_their_device_and_say_how_they_were_made():
    run_all = load_run_all()
    assert run_all.gpu_results_name("NVIDIA H200") == "gpu-nvidia-h200"
    assert run_all.gpu_results_name("NVIDIA A100-SXM4-80GB") == "gpu-nvidia-a100-sxm4-80gb"
    results = {"date": "2026-12-02", "quick": False, "device": {"device": "NVIDIA H200"},
               "benchmarks": {"gpu_nezha_training": {"ours": {"fp16": {"sequences_per_s": 812.5}}}}}
    table = run_all.to_markdown(results, "gpu-nvidia-h200")
    assert table.startswith("Last run 2026-12-02 on NVIDIA H200 (`make gpu-check`;")
    assert "raw figures in bench/results/gpu-nvidia-h200.json" in table
    assert "| ours.fp16.sequences_per_s | 812.5 |" in table
    assert "(`make bench`;" in run_all.to_markdown(results)
