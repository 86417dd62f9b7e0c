"""bench/gpu_nezha_training.py's targets from measured figures (hand-computed here): the best of with and
without XLA per precision, low precision against fp32, and our best low-precision utilization against
Hugging Face's best AMP one. The measurement itself needs a GPU: make gpu-check runs it."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("gpu_nezha_training", ROOT / "bench" / "gpu_nezha_training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_targets_take_the_better_of_xla_and_graph_and_compare_low_precision_with_fp32():
    bench = load_bench()
    ours = {"fp32": 100.0, "fp32_xla": 120.0, "fp16": 300.0, "fp16_xla": 390.0, "bf16": 350.0, "bf16_xla": 300.0}
    result = {"ours": {k: {"sequences_per_s": v} for k, v in ours.items()}}
    utilization = {"ours.fp32_xla": 0.9, "ours.fp16_xla": 0.5, "ours.bf16": 0.45,
                   "hf_pytorch.fp32": 0.95, "hf_pytorch.amp_fp16": 0.4, "hf_pytorch.amp_bf16": 0.38}
    figures = bench._targets(result, utilization)
    assert figures["fp16_speedup_over_fp32"] == 3.25 and figures["bf16_speedup_over_fp32"] == 2.917
    assert figures["meets_speedup_target"] is False      # bf16: 350 / 120 < 3
    assert figures["utilization_ratio_ours_over_hf_amp"] == 1.25 and figures["meets_utilization_target"]
    del result["ours"]["bf16"], result["ours"]["bf16_xla"]   # a GPU without bfloat16: fp16 alone decides
    assert bench._targets(result, utilization)["meets_speedup_target"] is True
