"""Training throughput (forward + backward) of the NEZHA-base encoder, ours (TensorFlow) beside Hugging Face's
PyTorch NezhaModel, as model FLOPs utilization against a large float32 matmul measured in the same run.

Both run the same shape (NEZHA-base: 12 layers, hidden 768, 12 heads, intermediate 3072, relative positions;
sequence length 128, batch 8; --quick: 2 layers, batch 2) in training mode (dropout on), loss = sum of the
last hidden state times a fixed random tensor, gradients of every weight. Steps of the two are interleaved so
that a busy machine slows both alike; each figure is the median of the timed steps. Ours runs as one
tf.function, with and without XLA (jit_compile); the better one is "ours".

Model FLOPs per token (forward + backward = 3 x forward, multiply-add = 2 FLOPs):
    6 * L * (4 H^2 + 2 H I)            the dense layers: Q, K, V, attention output, the two feed-forward ones
  + 3 * L * 2 * S * H * (2 + 2)        attention: q.k and P.v, and NEZHA's q.R and P.R relative terms
Embedding lookups, LayerNorm, softmax and the pooler (one token per sequence) are not counted.
Utilization = achieved model FLOP/s / the better of TensorFlow's and PyTorch's float32 matmul FLOP/s
(N x N, N = 2048), so the ratio of two utilizations is the ratio of their throughputs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "NEZHA-TensorFlow"))
sys.path.insert(0, str(ROOT))

import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

import modeling  # noqa: E402

LENGTH = 128
TARGET_RATIO = 0.8
MATMUL_N = 2048


def model_flops_per_token(config: modeling.BertConfig, length: int) -> float:
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    dense = 6 * layers * (4 * hidden ** 2 + 2 * hidden * inner)
    products = 4 if config.use_relative_position else 2
    attention = 3 * layers * 2 * length * hidden * products
    return float(dense + attention)


def _median_seconds(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops() -> dict[str, float]:
    """float32 N x N matmul FLOP/s of each framework on this CPU."""
    a = np.random.default_rng(0).standard_normal((MATMUL_N, MATMUL_N)).astype(np.float32)
    x = tf.constant(a)
    tf_matmul = tf.function(lambda: tf.matmul(x, x))
    tf_matmul()
    t = torch.from_numpy(a)
    torch.mm(t, t)
    flops = 2.0 * MATMUL_N ** 3
    return {"tensorflow": flops / _median_seconds(lambda: tf_matmul().numpy(), 5),
            "pytorch": flops / _median_seconds(lambda: torch.mm(t, t), 5)}


def _unscale(grad, loss_scale: float):
    if isinstance(grad, tf.IndexedSlices):   # the embedding tables' gradients
        return tf.IndexedSlices(grad.values / loss_scale, grad.indices, grad.dense_shape)
    return grad / loss_scale


def tensorflow_step(config: modeling.BertConfig, ids: np.ndarray, weights: np.ndarray, jit: bool,
                    compute_dtype: tf.dtypes.DType = tf.float32, loss_scale: float = 1.0):
    """One forward + backward step of our encoder as a callable that returns the loss (a host sync); float16
    scales the loss by `loss_scale` and the gradients back, as loss scaling does."""
    model = modeling.BertModel(config, compute_dtype=compute_dtype)
    ids, weights = tf.constant(ids), tf.constant(weights)

    @tf.function(jit_compile=jit)
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(model(ids, training=True).sequence_output, tf.float32) * weights)
            scaled = loss * loss_scale if loss_scale != 1.0 else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        return loss, [_unscale(g, loss_scale) for g in grads if g is not None] if loss_scale != 1.0 else grads

    return lambda: float(step()[0])


def pytorch_step(config: modeling.BertConfig, ids: np.ndarray, weights: np.ndarray, device: str = "cpu",
                 amp_dtype: torch.dtype | None = None):
    """The same step in Hugging Face's NezhaModel, on `device`, under autocast to `amp_dtype` if given (with a
    GradScaler for float16 on CUDA, as AMP training does)."""
    import transformers

    torch.manual_seed(0)
    hf_config = transformers.NezhaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        hidden_act="gelu_new", max_relative_position=config.max_relative_position,
        # Only the size of its precomputed relative table (one per layer): the weights do not depend on it.
        max_position_embeddings=LENGTH, type_vocab_size=config.type_vocab_size)
    model = transformers.NezhaModel(hf_config).to(device).train()
    ids, weights = torch.from_numpy(ids).long().to(device), torch.from_numpy(weights).to(device)
    scaler = torch.amp.GradScaler(device) if amp_dtype == torch.float16 and device == "cuda" else None
    unscaled = torch.optim.SGD(model.parameters(), lr=0.0)   # what GradScaler unscales (never stepped)

    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = (model(input_ids=ids).last_hidden_state.float() * weights).sum()
        if scaler is None:
            loss.backward()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(unscaled)
            scaler.update()
        return float(loss.detach())

    return step


def run(quick: bool) -> dict:
    config = modeling.BertConfig.from_json_file(ROOT / "NEZHA-TensorFlow" / "nezha" / "bert_config.json")
    batch, repeats = (2, 3) if quick else (8, 5)
    if quick:
        config.num_hidden_layers = 2
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, config.vocab_size, (batch, LENGTH)).astype(np.int32)
    weights = rng.standard_normal((batch, LENGTH, config.hidden_size)).astype(np.float32)
    with tf.device("/CPU:0"):
        steps = {"ours_tf_function": tensorflow_step(config, ids, weights, jit=False),
                 "ours_xla": tensorflow_step(config, ids, weights, jit=True),
                 "hf_pytorch": pytorch_step(config, ids, weights)}
        for step in steps.values():
            step()   # trace / compile / warm up
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(repeats):
            for name, step in steps.items():
                times[name].append(_median_seconds(step, 1))
        peaks = matmul_flops()
    peak = max(peaks.values())
    flops_per_token = model_flops_per_token(config, LENGTH)
    tokens = batch * LENGTH
    result: dict = {"device": "cpu", "num_hidden_layers": config.num_hidden_layers, "batch_size": batch,
                    "seq_length": LENGTH, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "model_gflop_per_token": round(flops_per_token / 1e9, 4),
                    "matmul_gflop_per_s_tensorflow": round(peaks["tensorflow"] / 1e9, 1),
                    "matmul_gflop_per_s_pytorch": round(peaks["pytorch"] / 1e9, 1)}
    utilization = {}
    for name, measured in times.items():
        tokens_per_s = tokens / statistics.median(measured)
        utilization[name] = tokens_per_s * flops_per_token / peak
        result[f"tokens_per_s_{name}"] = round(tokens_per_s, 1)
        result[f"model_gflop_per_s_{name}"] = round(tokens_per_s * flops_per_token / 1e9, 1)
        result[f"utilization_{name}"] = round(utilization[name], 3)
    ours = max(("ours_tf_function", "ours_xla"), key=utilization.get)
    result["ours_best"] = ours
    result["utilization_ratio_ours_over_hf_pytorch"] = round(utilization[ours] / utilization["hf_pytorch"], 3)
    result["target_utilization_ratio"] = TARGET_RATIO
    result["meets_target"] = bool(utilization[ours] >= TARGET_RATIO * utilization["hf_pytorch"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers, batch 2, 3 timed steps (under a minute)")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
