"""NEZHA on a GPU (`make gpu-check`; skipped, with the reason, where TensorFlow sees none): the pretraining step
(run_pretraining.Pretrainer: MLM + NSP, LAMB, clipping) learns a repeated batch in float16 with dynamic loss
scaling and in bfloat16 (or refuses bfloat16 below compute capability 8.0), XLA gives the steps the graph
gives, and MultiWorker with one worker trains on the GPU with NCCL collectives. No test assumes a number of
GPUs: each uses the first."""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import distribution
import modeling
import run_pretraining
from utils import launcher
from utils.errors import InputError

pytestmark = pytest.mark.gpu("tensorflow")
ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("dist_worker.py")
SEQ, MAX_PRED, BATCH = 64, 10, 16


def _config(dropout: float = 0.1) -> modeling.BertConfig:
    config = modeling.BertConfig.from_json_file(ROOT / "NEZHA-TensorFlow" / "nezha" / "bert_config_tiny.json")
    config.num_hidden_layers = 2
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
    return config


def _batch(vocab_size: int) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(0)
    positions = np.sort(np.stack([rng.choice(np.arange(1, SEQ - 1), MAX_PRED, replace=False)
                                  for _ in range(BATCH)]), axis=1)
    return {"input_ids": tf.constant(rng.integers(1000, vocab_size, (BATCH, SEQ)), tf.int32),
            "input_mask": tf.ones((BATCH, SEQ), tf.int32),
            "segment_ids": tf.constant(np.repeat([[0] * (SEQ // 2) + [1] * (SEQ // 2)], BATCH, 0), tf.int32),
            "masked_lm_positions": tf.constant(positions, tf.int32),
            "masked_lm_ids": tf.constant(rng.integers(1000, vocab_size, (BATCH, MAX_PRED)), tf.int32),
            "masked_lm_weights": tf.ones((BATCH, MAX_PRED), tf.float32),
            "next_sentence_labels": tf.constant(rng.integers(0, 2, (BATCH, 1)), tf.int32)}


def _trainer(config: modeling.BertConfig, **precision) -> run_pretraining.Pretrainer:
    options = run_pretraining.Options(bert_config_file="", input_file="", output_dir="", max_seq_length=SEQ,
                                      max_predictions_per_seq=MAX_PRED, train_batch_size=BATCH,
                                      learning_rate=1e-3, num_train_steps=1000, num_warmup_steps=0, **precision)
    tf.random.set_seed(0)
    return run_pretraining.Pretrainer(config, options, distribution.Engine())


def _on_gpu(trainer: run_pretraining.Pretrainer) -> bool:
    return all("GPU" in v.device for v in trainer.model_variables.values())


def test_fp16_skips_overflowing_steps_halves_the_scale_and_learns():
    config = _config()
    trainer = _trainer(config, use_fp16=True)
    batches = itertools.repeat(_batch(config.vocab_size))
    scales, losses = [], []
    for _ in range(150):
        result = trainer.train_step(batches)
        scales.append(float(result["loss_scale"]))
        if bool(result["applied"]):
            losses.append(float(result["loss"]))
        if len(losses) == 40:
            break
    assert _on_gpu(trainer) and trainer.model.bert.compute_dtype == tf.float16
    # 2^32 times float16 gradients overflows: those updates are skipped, and every 2 the scale halves
    assert scales[0] == 2.0 ** 32 and scales[-1] < 2.0 ** 24 and np.isfinite(scales[-1])
    assert len(losses) == 40 and trainer.global_step == 40, f"{len(losses)} updates applied in 150 steps"
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


def test_bfloat16_learns_where_the_gpu_has_it_and_is_refused_below_compute_capability_8():
    gpu = tf.config.list_physical_devices("GPU")[0]
    capability = tuple(tf.config.experimental.get_device_details(gpu)["compute_capability"])
    config = _config()
    if capability < (8, 0):
        with pytest.raises(InputError, match="--use_bf16 needs a GPU of compute capability 8.0"):
            _trainer(config, use_bf16=True)
        return
    trainer = _trainer(config, use_bf16=True)
    assert trainer.train_step.loss_scale is None   # bfloat16 has float32's range: no loss scaling
    batches = itertools.repeat(_batch(config.vocab_size))
    losses = [float(trainer.train_step(batches)["loss"]) for _ in range(40)]
    assert _on_gpu(trainer) and trainer.model.bert.compute_dtype == tf.bfloat16
    assert trainer.global_step == 40 and np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


def test_xla_steps_match_the_graph_steps():
    config = _config(dropout=0.0)
    graph, xla = _trainer(config), _trainer(config, use_xla=True)
    for a, b in zip(graph.model_variables.values(), xla.model_variables.values()):
        b.assign(a)
    batches = itertools.repeat(_batch(config.vocab_size))
    for _ in range(5):
        expected, got = graph.train_step(batches), xla.train_step(batches)
        np.testing.assert_allclose(float(got["loss"]), float(expected["loss"]), rtol=2e-3)
    assert _on_gpu(xla) and xla.global_step == 5
    for a, b in zip(graph.model_variables.values(), xla.model_variables.values()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=2e-2, atol=2e-4, err_msg=a.name)


def _load_worker():
    spec = importlib.util.spec_from_file_location("nezha_dist_worker_gpu", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_multi_worker_with_one_worker_trains_on_the_gpu_with_nccl(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in launcher.VARIABLES}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1",
               TF_CONFIG=json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}"]},
                                     "task": {"type": "worker", "index": 0}}))
    proc = subprocess.run([sys.executable, str(WORKER), "--distribution", "multi_worker", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = dict(np.load(tmp_path / "rank0.npz"))
    assert str(result["gpu"]).startswith("/physical_device:GPU:") and str(result["communication"]) == "NCCL"
    assert int(result["size"]) == 1 and float(result["collective_sum"]) == 1.0
    worker = _load_worker()
    weights, x, y = worker.make_problem()
    expected = worker.train(distribution.Engine(), weights, x[:, :worker.PER_RANK_BATCH],
                            y[:, :worker.PER_RANK_BATCH], worker.BASE_LR)
    for name in weights:
        np.testing.assert_allclose(result[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=name)
