"""NEZHA-base training throughput on one GPU (`make gpu-check`): sequences/s of the forward + backward step at
length 128 in fp32 (TF32 where the GPU has it, TensorFlow's default), fp16 (with loss scaling) and bf16, each
with and without XLA, beside Hugging Face's PyTorch NezhaModel in fp32/TF32 and with AMP (fp16 with a
GradScaler, bf16), and the GPU's matmul peak per dtype measured in the same run.

The step and its model FLOPs are bench_nezha_model's: the encoder in training mode (dropout on), loss = sum of
the last hidden state times a fixed random tensor, gradients of every weight. Each figure is the median of the
timed steps after warm-up steps (tracing, XLA compilation, autotuning). Utilization = model FLOP/s over the
matmul peak of the step's compute dtype (N x N chained products, the better of TensorFlow and PyTorch).
Targets (issue 15): fp16 and bf16 at least 3x the fp32 sequences/s (NVIDIA's BERT-TF2 gets 3-4x on a V100,
which has no TF32); our best utilization at least that of Hugging Face's with AMP. PyTorch runs first and
empties its cache, then TensorFlow, whose memory grows as it needs (distribution.create_engine). bf16 runs
where the GPU has it (compute capability 8.0+). --quick: the tiny config cut to 2 layers, batch 4, 2 timed
steps, small matmuls: a smoke run, on the CPU too.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "NEZHA-TensorFlow"))
sys.path.insert(0, str(ROOT))

import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

import distribution  # noqa: E402
import modeling  # noqa: E402
from bench_nezha_model import LENGTH, model_flops_per_token, pytorch_step, tensorflow_step  # noqa: E402
from utils.errors import InputError  # noqa: E402

DTYPES = {"fp32": (tf.float32, torch.float32), "fp16": (tf.float16, torch.float16),
          "bf16": (tf.bfloat16, torch.bfloat16)}
FP16_LOSS_SCALE = 2.0 ** 12
TARGET_SPEEDUP = 3.0
CHAIN = 4   # matmuls per timed call of the peak measurement


def _median_seconds(step: Callable[[], float], warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peaks(n: int, cuda: bool, dtypes: list[str]) -> dict[str, float]:
    """FLOP/s of chained n x n products per dtype: the better of TensorFlow and PyTorch, each its fastest of 5."""
    peaks = {}
    for name in dtypes:
        tf_dtype, torch_dtype = DTYPES[name]
        rng = np.random.default_rng(0)
        a_np, b_np = rng.standard_normal((n, n)), rng.standard_normal((n, n)) / np.sqrt(n)
        a, b = tf.constant(a_np, tf_dtype), tf.constant(b_np, tf_dtype)

        @tf.function
        def tf_chain():
            c = a
            for _ in range(CHAIN):
                c = tf.matmul(c, b)
            return c[0, 0]

        device = "cuda" if cuda else "cpu"
        ta = torch.tensor(a_np, dtype=torch_dtype, device=device)
        tb = torch.tensor(b_np, dtype=torch_dtype, device=device)

        def torch_chain():
            c = ta
            for _ in range(CHAIN):
                c = torch.mm(c, tb)
            return float(c[0, 0])

        fastest = min(min(_median_seconds(call, 1, 1) for _ in range(5))
                      for call in (lambda: float(tf_chain()), torch_chain))
        peaks[name] = CHAIN * 2.0 * n ** 3 / fastest
    return peaks


def _bf16_unsupported(cuda: bool) -> str:
    """Why bfloat16 cannot run here ('' where it can)."""
    try:
        distribution.require_bfloat16()
    except InputError as err:
        return str(err)
    if cuda and not torch.cuda.is_bf16_supported():
        return "PyTorch reports no bfloat16 support on this GPU"
    return ""


def run(quick: bool) -> dict:
    engine = distribution.create_engine()   # this GPU alone, memory growth on
    cuda = engine.gpu is not None and torch.cuda.is_available()
    if not cuda and not quick:
        raise SystemExit("gpu_nezha_training needs a GPU (make gpu-check runs it on one); --quick runs a smoke "
                         "test on the CPU")
    config = modeling.BertConfig.from_json_file(
        ROOT / "NEZHA-TensorFlow" / "nezha" / ("bert_config_tiny.json" if quick else "bert_config.json"))
    batch, warmup, steps, matmul_n = (4, 1, 2, 256) if quick else (32, 3, 10, 8192)
    if quick:
        config.num_hidden_layers = 2
    torch.backends.cuda.matmul.allow_tf32 = True   # PyTorch's fp32 as TensorFlow's: TF32 on Ampere and later
    torch.backends.cudnn.allow_tf32 = True
    skipped = {}
    reason = _bf16_unsupported(cuda)
    if reason:
        skipped["bf16"] = reason
    dtypes = [name for name in DTYPES if name not in skipped]
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, config.vocab_size, (batch, LENGTH)).astype(np.int32)
    weights = rng.standard_normal((batch, LENGTH, config.hidden_size)).astype(np.float32)
    device = "cuda" if cuda else "cpu"

    seconds: dict[str, dict[str, float]] = {"hf_pytorch": {}, "ours": {}}
    for name in dtypes:
        key = "fp32" if name == "fp32" else f"amp_{name}"
        step = pytorch_step(config, ids, weights, device=device, amp_dtype=None if name == "fp32" else DTYPES[name][1])
        seconds["hf_pytorch"][key] = _median_seconds(step, warmup, steps)
        del step
    if cuda:
        torch.cuda.empty_cache()
    for name in dtypes:
        for jit in (False, True):
            step = tensorflow_step(config, ids, weights, jit=jit, compute_dtype=DTYPES[name][0],
                                   loss_scale=FP16_LOSS_SCALE if name == "fp16" else 1.0)
            seconds["ours"][f"{name}_xla" if jit else name] = _median_seconds(step, warmup, steps)
            del step
    peaks = matmul_peaks(matmul_n, cuda, dtypes)

    flops_per_token = model_flops_per_token(config, LENGTH)
    details = tf.config.experimental.get_device_details(tf.config.get_visible_devices("GPU")[0]) if cuda else {}
    result: dict = {"device": details.get("device_name", "cpu"),
                    "compute_capability": ".".join(map(str, details.get("compute_capability", ()))) or "-",
                    "batch_size": batch, "seq_length": LENGTH, "num_hidden_layers": config.num_hidden_layers,
                    "timed_steps": steps, "model_gflop_per_token": round(flops_per_token / 1e9, 4),
                    "matmul_tflop_per_s": {name: round(peak / 1e12, 2) for name, peak in peaks.items()}}
    utilization: dict[str, float] = {}
    for engine_name, measured in seconds.items():
        result[engine_name] = {}
        for key, duration in measured.items():
            sequences_per_s = batch / duration
            dtype = next(name for name in DTYPES if name in key)
            utilization[f"{engine_name}.{key}"] = sequences_per_s * LENGTH * flops_per_token / peaks[dtype]
            result[engine_name][key] = {"sequences_per_s": round(sequences_per_s, 2),
                                        "utilization": round(utilization[f"{engine_name}.{key}"], 3)}
    result.update(_targets(result, utilization))
    if skipped:
        result["skipped"] = skipped
    return result


def _targets(result: dict, utilization: dict[str, float]) -> dict:
    """Speedups of fp16 and bf16 over fp32 (the better of with and without XLA each) and the utilization of our
    best low-precision step over Hugging Face's best AMP step, against the targets."""
    ours = result["ours"]

    def best(name: str) -> float:
        return max(ours[key]["sequences_per_s"] for key in (name, f"{name}_xla"))

    figures: dict = {}
    for name in ("fp16", "bf16"):
        if name in ours:
            figures[f"{name}_speedup_over_fp32"] = round(best(name) / best("fp32"), 3)
    figures["target_speedup"] = TARGET_SPEEDUP
    figures["meets_speedup_target"] = all(v >= TARGET_SPEEDUP for k, v in figures.items() if k.endswith("_fp32"))
    low = [v for k, v in utilization.items() if k.startswith("ours.") and "fp32" not in k]
    amp = [v for k, v in utilization.items() if k.startswith("hf_pytorch.amp_")]
    figures["utilization_ratio_ours_over_hf_amp"] = round(max(low) / max(amp), 3)
    figures["meets_utilization_target"] = bool(max(low) >= max(amp))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a tiny model (runs on CPU too)")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
