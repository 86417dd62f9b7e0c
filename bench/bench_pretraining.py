"""NEZHA pretraining throughput: examples/s and tokens/s of the full training step of run_pretraining.py (MLM +
NSP heads, LAMB, global-norm clipping) for the tiny and base configs, fp32 with and without XLA, and bfloat16
where a GPU runs it (on CPU, bfloat16 matmuls are emulated and an order of magnitude slower: not measured).

Each figure is the median of the timed steps after two warm-up steps (tracing/compilation), on a fixed random
batch (no input pipeline). Model FLOPs utilization uses bench_nezha_model's encoder FLOPs per token plus the
masked-LM head (transform H x H and decoder H x V at every prediction, forward + backward = 3 x forward)
against the best float32 matmul FLOP/s measured in the same run (before and after). Peak memory: the GPU
allocator's peak per configuration, or the process's maximum resident set size on CPU (cumulative).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "NEZHA-TensorFlow"))
sys.path.insert(0, str(ROOT))

import tensorflow as tf  # noqa: E402

import distribution  # noqa: E402
import modeling  # noqa: E402
import run_pretraining  # noqa: E402
from bench_nezha_model import model_flops_per_token  # noqa: E402

CONFIGS = {"tiny": "bert_config_tiny.json", "base": "bert_config.json"}
SEQ = 128
MAX_PRED = 20
MATMUL_N = 2048


def flops_per_example(config: modeling.BertConfig, seq: int, max_pred: int) -> float:
    """Training FLOPs of one example: the encoder at every token and the masked-LM head at every prediction."""
    head = 6 * max_pred * (config.hidden_size ** 2 + config.hidden_size * config.vocab_size)
    return seq * model_flops_per_token(config, seq) + head


def _batch(config: modeling.BertConfig, batch_size: int) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(0)
    positions = np.sort(np.stack([rng.choice(np.arange(1, SEQ - 1), MAX_PRED, replace=False)
                                  for _ in range(batch_size)]), axis=1)
    return {"input_ids": tf.constant(rng.integers(1000, config.vocab_size, (batch_size, SEQ)), tf.int32),
            "input_mask": tf.ones((batch_size, SEQ), tf.int32),
            "segment_ids": tf.constant(np.repeat([[0] * (SEQ // 2) + [1] * (SEQ // 2)], batch_size, 0), tf.int32),
            "masked_lm_positions": tf.constant(positions, tf.int32),
            "masked_lm_ids": tf.constant(rng.integers(1000, config.vocab_size, (batch_size, MAX_PRED)), tf.int32),
            "masked_lm_weights": tf.ones((batch_size, MAX_PRED), tf.float32),
            "next_sentence_labels": tf.constant(rng.integers(0, 2, (batch_size, 1)), tf.int32)}


def measure(config: modeling.BertConfig, batch_size: int, use_xla: bool, use_bf16: bool, steps: int) -> float:
    """Median seconds of one training step."""
    options = run_pretraining.Options(bert_config_file="", input_file="", output_dir="", max_seq_length=SEQ,
                                      max_predictions_per_seq=MAX_PRED, train_batch_size=batch_size,
                                      learning_rate=1e-4, num_train_steps=1000, num_warmup_steps=10,
                                      use_xla=use_xla, use_bf16=use_bf16)
    trainer = run_pretraining.Pretrainer(config, options, distribution.Engine())
    batches = itertools.repeat(_batch(config, batch_size))
    for _ in range(2):
        float(trainer.train_step(batches)["loss"])
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        float(trainer.train_step(batches)["loss"])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops(repeats: int = 10) -> float:
    """Peak float32 matmul FLOP/s: the fastest of `repeats` N x N products (a shared machine slows some)."""
    x = tf.random.normal((MATMUL_N, MATMUL_N))
    matmul = tf.function(lambda: tf.matmul(x, x))
    matmul().numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul().numpy()
        times.append(time.perf_counter() - start)
    return 2.0 * MATMUL_N ** 3 / min(times)


def _peak_memory_mb(gpu: bool) -> float:
    if gpu:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(quick: bool) -> dict:
    gpu = bool(tf.config.list_physical_devices("GPU"))
    steps = 3 if quick else 5
    result: dict = {"device": tf.config.experimental.get_device_details(
        tf.config.list_physical_devices("GPU")[0]).get("device_name", "GPU") if gpu else "cpu",
        "cpu_count": os.cpu_count(), "seq_length": SEQ, "max_predictions_per_seq": MAX_PRED,
        "timed_steps": steps}
    peak = matmul_flops()
    result["matmul_gflop_per_s"] = round(peak / 1e9, 1)
    variants = [("fp32", False, False), ("fp32_xla", True, False)]
    if gpu:
        variants += [("bf16", False, True), ("bf16_xla", True, True)]
    for name, filename in CONFIGS.items():
        config = modeling.BertConfig.from_json_file(ROOT / "NEZHA-TensorFlow" / "nezha" / filename)
        batch_size = 32 if name == "tiny" or gpu else 4
        if quick and name == "base":
            config.num_hidden_layers = 2
        result[f"{name}_batch_size"] = batch_size
        result[f"{name}_num_hidden_layers"] = config.num_hidden_layers
        per_example = flops_per_example(config, SEQ, MAX_PRED)
        for variant, use_xla, use_bf16 in variants:
            if gpu:
                tf.config.experimental.reset_memory_stats("GPU:0")
            seconds = measure(config, batch_size, use_xla, use_bf16, steps)
            examples_per_s = batch_size / seconds
            key = f"{name}_{variant}"
            result[f"{key}_examples_per_s"] = round(examples_per_s, 2)
            result[f"{key}_tokens_per_s"] = round(examples_per_s * SEQ, 1)
            result[f"{key}_mfu"] = round(examples_per_s * per_example / peak, 3)
            result[f"{key}_peak_memory_mb"] = round(_peak_memory_mb(gpu), 1)
        result[f"{name}_xla_speedup"] = round(result[f"{name}_fp32_xla_examples_per_s"]
                                              / result[f"{name}_fp32_examples_per_s"], 3)
    # Measured again at the end, the better of the two is the peak the utilizations are relative to.
    final_peak = matmul_flops()
    if final_peak > peak:
        for key in [k for k in result if k.endswith("_mfu")]:
            result[key] = round(result[key] * peak / final_peak, 3)
        result["matmul_gflop_per_s"] = round(final_peak / 1e9, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed steps; the base config cut to 2 layers")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
