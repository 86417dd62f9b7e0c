"""Mixed precision in modeling.py: float32 master variables cast on read, float16/bfloat16 encoder, float32
embeddings, LayerNorm statistics, pooler and heads (the original's compute_type custom getter)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import modeling

CONFIG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
              max_position_embeddings=32, type_vocab_size=2, use_relative_position=True)
LOW = [("float16", 0.03), ("bfloat16", 0.15)]


def models(dtype: str) -> tuple[modeling.BertForPreTraining, modeling.BertForPreTraining]:
    """A float32 model and a `dtype` model with the same weights."""
    config = modeling.BertConfig(**CONFIG)
    full = modeling.BertForPreTraining(config)
    low = modeling.BertForPreTraining(config, compute_dtype=dtype)
    rng = np.random.default_rng(0)
    for a, b in zip(full.variables, low.variables):
        assert a.name == b.name
        value = rng.normal(0, 0.1, a.shape).astype(np.float32) + (1.0 if a.name.endswith("gamma:0") else 0.0)
        a.assign(value)
        b.assign(value)
    return full, low


def inputs():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 64, (2, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 8:] = 0
    return ids, mask, (np.arange(12)[None, :] >= 6).astype(np.int32).repeat(2, 0), np.array([[1, 3], [2, 4]])


@pytest.mark.parametrize("dtype,tolerance", LOW)
def test_low_precision_outputs_are_close_to_float32(dtype, tolerance):
    full, low = models(dtype)
    ids, mask, types, positions = inputs()
    expected, got = full(ids, mask, types, positions), low(ids, mask, types, positions)
    for name in ("masked_lm_logits", "next_sentence_logits"):
        a, b = getattr(expected, name).numpy(), getattr(got, name)
        assert b.dtype == tf.float32
        assert 0 < np.abs(a - b.numpy()).max() < tolerance * max(1.0, np.abs(a).max())
    for a, b in zip(expected.bert.all_encoder_layers, got.bert.all_encoder_layers):
        assert b.dtype == tf.float32 and 0 < np.abs(a.numpy() - b.numpy()).max() < tolerance * 4
    # embeddings run in float32 whatever the compute dtype
    np.testing.assert_allclose(expected.bert.embedding_output.numpy(), got.bert.embedding_output.numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_encoder_matmuls_run_in_the_compute_dtype_and_variables_stay_float32(dtype):
    _, low = models(dtype)
    ids, mask, types, positions = inputs()
    assert all(v.dtype == tf.float32 for v in low.variables)
    graph = tf.function(lambda: low(ids, mask, types, positions).masked_lm_logits).get_concrete_function().graph
    matmul_types = {op.get_attr("T") for op in graph.get_operations()
                    if op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum")}
    assert tf.as_dtype(dtype) in matmul_types and tf.float32 in matmul_types   # encoder low, heads float32
    with tf.GradientTape() as tape:
        out = low(ids, mask, types, positions, training=True)
        loss = tf.reduce_sum(out.masked_lm_logits ** 2) + tf.reduce_sum(out.next_sentence_logits)
    grads = tape.gradient(loss, low.trainable_variables)
    assert all(g is not None and g.dtype == tf.float32 for g in grads)
    assert all(np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in grads)


def test_float16_layer_norm_does_not_underflow():
    """Variance of 1e-4-scale activations is ~1e-8: below float16's range; epsilon 1e-12 is 0 in float16."""
    norm = modeling.LayerNorm("probe/LayerNorm", 32)
    x = (np.random.default_rng(2).normal(size=(4, 32)) * 1e-4).astype(np.float16)
    x32 = x.astype(np.float64)
    expected = (x32 - x32.mean(-1, keepdims=True)) / np.sqrt(x32.var(-1, keepdims=True) + 1e-12)
    got = norm(tf.constant(x))
    assert got.dtype == tf.float16
    np.testing.assert_allclose(got.numpy().astype(np.float64), expected, atol=5e-3)
    assert np.float16(1e-12) == 0   # why the statistics are not computed in float16


@pytest.mark.parametrize("dtype,tolerance", LOW)
def test_xla_compiles_low_precision_and_matches_eager(dtype, tolerance):
    _, low = models(dtype)
    ids, mask, types, positions = inputs()
    eager = low(ids, mask, types, positions).masked_lm_logits.numpy()
    compiled = tf.function(lambda *a: low(*a).masked_lm_logits, jit_compile=True)(ids, mask, types, positions)
    assert np.isfinite(compiled.numpy()).all()
    assert np.abs(compiled.numpy() - eager).max() < tolerance * max(1.0, np.abs(eager).max())


def test_unknown_compute_dtype_is_refused():
    with pytest.raises(Exception, match="compute dtype must be float32, float16 or bfloat16"):
        modeling.BertModel(modeling.BertConfig(**CONFIG), compute_dtype="float64")
