"""utils/training_state.py: one list of training-state names, read by the TF loader (NEZHA-TensorFlow/
checkpoint.py) and the PyTorch converter (TinyBERT/transformer/tf_checkpoint.py). It covers what either
skipped before (their former rules are kept below as the reference), and both now skip the same names of a
checkpoint that TF1 optimizers really wrote."""
from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

import checkpoint
from transformer import tf_checkpoint
from utils.training_state import is_training_state

# The two rules before they were merged, verbatim.
_LOADER_RULE = re.compile(
    r"(^|/)(adam_m|adam_v|lamb_m|lamb_v|Adam|Adam_1|accum_grad|global_step|loss_scale|current_loss_scale|"
    r"good_steps|bad_steps|beta1_power|beta2_power)$|(^|/)(AdamWeightDecayOptimizer|LossScale)")
_CONVERTER_SLOTS = ("adam_m", "adam_v", "lamb_m", "lamb_v")
_CONVERTER_RULE = re.compile(
    r"(^|/)(global_step|loss_scale|good_steps|bad_steps|current_loss_scale|beta1_power|beta2_power)$"
    r"|AdamWeightDecayOptimizer|LossScale")

MODEL_WEIGHTS = [
    "bert/embeddings/word_embeddings", "bert/embeddings/token_type_embeddings",
    "bert/embeddings/position_embeddings", "bert/embeddings/LayerNorm/gamma", "bert/embeddings/LayerNorm/beta",
    "bert/encoder/layer_0/attention/self/query/kernel", "bert/encoder/layer_11/attention/output/dense/bias",
    "bert/encoder/layer_3/intermediate/dense/kernel", "bert/encoder/layer_3/output/LayerNorm/gamma",
    "bert/pooler/dense/kernel", "cls/predictions/transform/dense/kernel", "cls/predictions/output_bias",
    "cls/seq_relationship/output_weights", "output_weights", "output_bias", "cls/squad/output_weights",
]
STATE = [
    "global_step", "loss_scale", "current_loss_scale", "good_steps", "bad_steps", "beta1_power", "beta2_power",
    "LossScaleOptimizer/current_loss_scale", "OptimizeLoss/LossScale/good_steps",
    "AdamWeightDecayOptimizer/learning_rate", "bert/AdamWeightDecayOptimizer_1/step",
    "train/LossScaleManager/counter", "tower_0/amp_LossScale/counter",
] + [f"{weight}/{slot}" for weight in MODEL_WEIGHTS[::3]
     for slot in ("adam_m", "adam_v", "lamb_m", "lamb_v", "Adam", "Adam_1", "accum_grad")]


def _skipped_before(name: str) -> tuple[bool, bool]:
    converter = name.split("/")[-1] in _CONVERTER_SLOTS or _CONVERTER_RULE.search(name) is not None
    return _LOADER_RULE.search(name) is not None, converter


@pytest.mark.parametrize("name", MODEL_WEIGHTS + STATE)
def test_the_list_is_the_union_of_both_former_rules(name):
    loader, converter = _skipped_before(name)
    assert is_training_state(name) == (loader or converter)
    assert is_training_state(name) == (name in STATE)


def test_names_the_former_rules_disagreed_on():
    """The names on which the former rules disagreed: each one is now training state for both."""
    assert _skipped_before("tower_0/amp_LossScale/counter") == (False, True)
    assert _skipped_before("bert/pooler/dense/kernel/Adam_1") == (True, False)
    assert _skipped_before("bert/pooler/dense/kernel/accum_grad") == (True, False)


def _tf1_checkpoint(prefix: str) -> tuple[str, list[str]]:
    """A checkpoint as TF1 training code leaves it: weights, tf.compat.v1 Adam's slots and beta powers, and
    slots, step and loss-scale state under the original's names; returns its prefix and the weights."""
    weights = ["bert/pooler/dense/kernel", "bert/pooler/dense/bias", "output_weights", "output_bias"]
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.get_variable(name, initializer=tf.constant(np.full([3, 3], 0.1, np.float32)))
                     for name in weights]
        loss = tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])
        train_op = tf.compat.v1.train.AdamOptimizer(0.1).minimize(
            loss, global_step=tf.compat.v1.train.get_or_create_global_step())
        for name in weights:
            for slot in ("lamb_m", "lamb_v", "accum_grad"):
                tf.compat.v1.get_variable(f"{name}/{slot}", [3, 3], trainable=False)
        for name in ("loss_scale", "LossScaleOptimizer/current_loss_scale", "good_steps"):
            tf.compat.v1.get_variable(name, [], trainable=False)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(train_op)
            return saver.save(session, prefix), weights


def test_tf_loader_and_pytorch_converter_skip_the_same_training_state(tmp_path):
    prefix, weights = _tf1_checkpoint(str(tmp_path / "model.ckpt"))
    names = sorted(tf.train.load_checkpoint(prefix).get_variable_to_shape_map())
    assert {"beta1_power", "beta2_power", "output_bias/Adam", "output_bias/Adam_1"} <= set(names)
    state = sorted(set(names) - set(weights))
    report = checkpoint.load_checkpoint(prefix, {name: tf.Variable(tf.zeros([3, 3])) for name in weights})
    assert report.loaded == sorted(weights) and report.unexpected == [] and report.skipped == state
    state_dict, skipped = tf_checkpoint.read_tf_checkpoint(prefix)
    assert skipped == state
    assert sorted(state_dict) == ["bert.pooler.dense.bias", "bert.pooler.dense.weight", "classifier.bias",
                                  "classifier.weight"]
