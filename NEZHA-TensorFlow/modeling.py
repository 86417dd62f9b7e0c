"""NEZHA (and Google BERT) for TensorFlow 2: config, encoder, pooler and the pre-training heads.

The formulas are those of the 2019 NEZHA `modeling.py` (reference section 1): functional relative positions
built from the shifted index clip(j - i, -K, K) + K, added to the attention scores before scaling and to the
values after attention dropout; absolute position embeddings only when `use_relative_position` is false;
post-LayerNorm blocks, tanh GELU, LayerNorm epsilon 1e-12, truncated-normal(0.02) initialisation.

Every weight is a plain float32 `tf.Variable` whose name is the TF1 name (`bert/encoder/layer_0/attention/
self/query/kernel`), so a checkpoint written by the original is read by name lookup (checkpoint.py) and the
optimisers name their slots `<var>/lamb_m` as the original did. Modules are `tf.Module`s: call them eagerly or
inside `tf.function` (with or without `jit_compile=True`).

Mixed precision follows the original's `compute_type` custom getter: variables stay float32 and are cast to
the compute dtype (float16 or bfloat16) when read; embeddings, the pooler and the heads run in float32. Two
things are computed in float32 where the original used float16: LayerNorm (its epsilon 1e-12 underflows to
0 in float16) and the attention softmax (together with the -10000 mask adder).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from typing import Any, Callable, NamedTuple, Optional, Union

import numpy as np
import tensorflow as tf

from utils.errors import InputError
from utils.model_config import check_config

LAYER_NORM_EPSILON = 1e-12
MASK_ADDER = -10000.0
DEFAULT_MAX_RELATIVE_POSITION = 64

DTypeLike = Union[tf.dtypes.DType, str]
COMPUTE_DTYPES = (tf.float32, tf.float16, tf.bfloat16)


@dataclasses.dataclass
class BertConfig:
    """The original's configuration object; unknown JSON keys (directionality, pooler_*) are kept, unused."""

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 16
    initializer_range: float = 0.02
    use_relative_position: bool = False
    # The original hard-codes 64 inside attention_layer; configurable here (the PyTorch port reads it too).
    max_relative_position: int = DEFAULT_MAX_RELATIVE_POSITION

    @classmethod
    def from_dict(cls, json_object: dict[str, Any]) -> "BertConfig":
        if "vocab_size" not in json_object:
            raise InputError("the BERT config has no vocab_size")
        config = cls(vocab_size=None)
        for key, value in json_object.items():
            config.__dict__[key] = value
        return config

    @classmethod
    def from_json_file(cls, json_file: Union[str, os.PathLike]) -> "BertConfig":
        try:
            with tf.io.gfile.GFile(os.fspath(json_file), "r") as reader:
                text = reader.read()
        except (tf.errors.OpError, OSError, UnicodeDecodeError):
            raise InputError("BERT config file not found or unreadable (expected a JSON file)", json_file) from None
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON: {err.msg}", json_file, err.lineno) from None
        if not isinstance(values, dict):
            raise InputError("expected a JSON object of BERT config values", json_file)
        check_config(values, json_file, text)
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.__dict__)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def gelu(x: tf.Tensor) -> tf.Tensor:
    """The original's GELU: the tanh approximation (not the exact erf form)."""
    cdf = 0.5 * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))
    return x * cdf


def get_activation(activation: Any) -> Optional[Callable[[tf.Tensor], tf.Tensor]]:
    """`linear`/""/None -> None, `relu`, `gelu` (tanh form), `tanh`; callables pass through."""
    if not isinstance(activation, str):
        return activation
    name = activation.lower()
    if name in ("", "linear"):
        return None
    functions = {"relu": tf.nn.relu, "gelu": gelu, "tanh": tf.tanh}
    if name not in functions:
        raise InputError(f"Unsupported activation: {activation} (expected linear, relu, gelu or tanh)")
    return functions[name]


def truncated_normal(initializer_range: float = 0.02) -> Callable[[list[int]], tf.Tensor]:
    """tf.truncated_normal_initializer(stddev=initializer_range): resampled beyond two standard deviations."""
    return lambda shape: tf.random.truncated_normal(shape, stddev=initializer_range, dtype=tf.float32)


def zeros(shape: list[int]) -> tf.Tensor:
    return tf.zeros(shape, tf.float32)


def ones(shape: list[int]) -> tf.Tensor:
    return tf.ones(shape, tf.float32)


def new_variable(name: str, shape: list[int], initializer: Callable[[list[int]], tf.Tensor]) -> tf.Variable:
    """A float32 variable named exactly `name` (the TF1 name), whatever name scope the caller is in."""
    with tf.init_scope(), tf.name_scope(""):
        return tf.Variable(initializer(shape), name=name, trainable=True)


def as_compute_dtype(dtype: DTypeLike) -> tf.dtypes.DType:
    dtype = tf.as_dtype(dtype)
    if dtype not in COMPUTE_DTYPES:
        raise InputError(f"compute dtype must be float32, float16 or bfloat16, got {dtype.name}")
    return dtype


def dropout(x: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
    if not training or not rate:
        return x
    return tf.nn.dropout(x, rate=rate)


class Dense(tf.Module):
    """tf.layers.dense with the original's names `<scope>/kernel` [in, out] and `<scope>/bias` [out]."""

    def __init__(self, scope: str, in_size: int, out_size: int, initializer_range: float,
                 activation: Any = None):
        super().__init__(name=None)
        self.kernel = new_variable(f"{scope}/kernel", [in_size, out_size], truncated_normal(initializer_range))
        self.bias = new_variable(f"{scope}/bias", [out_size], zeros)
        self.activation = get_activation(activation)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = tf.matmul(x, tf.cast(self.kernel, x.dtype)) + tf.cast(self.bias, x.dtype)
        return self.activation(y) if self.activation is not None else y


class LayerNorm(tf.Module):
    """contrib layer_norm over the last axis, epsilon 1e-12, `<scope>/beta|gamma`; statistics in float32."""

    def __init__(self, scope: str, size: int):
        super().__init__(name=None)
        self.beta = new_variable(f"{scope}/beta", [size], zeros)
        self.gamma = new_variable(f"{scope}/gamma", [size], ones)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        x32 = tf.cast(x, tf.float32)
        mean, variance = tf.nn.moments(x32, axes=[-1], keepdims=True)
        y = tf.nn.batch_normalization(x32, mean, variance, offset=self.beta, scale=self.gamma,
                                      variance_epsilon=LAYER_NORM_EPSILON)
        return tf.cast(y, x.dtype)


def relative_position_table(max_relative_position: int, depth: int) -> np.ndarray:
    """The sinusoid table [2K+1, depth] of the original, built in float64 and returned as float32.

    Row p is the shifted index clip(j - i, -K, K) + K (not the signed distance the paper writes):
    table[p, 2m] = sin(p / 10000^(2m/depth)), table[p, 2m+1] = cos(same).
    """
    positions = np.arange(2 * max_relative_position + 1, dtype=np.float64)[:, None]
    pairs = np.arange(depth // 2, dtype=np.float64)[None, :]
    angles = positions / np.power(10000.0, 2.0 * pairs / depth)
    table = np.zeros([2 * max_relative_position + 1, depth], dtype=np.float64)
    table[:, 0:2 * (depth // 2):2] = np.sin(angles)
    table[:, 1:2 * (depth // 2):2] = np.cos(angles)
    return table.astype(np.float32)


def relative_position_index(length: tf.Tensor, max_relative_position: int) -> tf.Tensor:
    """idx[i, j] = clip(j - i, -K, K) + K for query position i and key position j, [length, length] int32."""
    positions = tf.range(length)
    distance = positions[None, :] - positions[:, None]
    return tf.clip_by_value(distance, -max_relative_position, max_relative_position) + max_relative_position


class RelativePositions(tf.Module):
    """R[i, j, :] = table[idx[i, j]]: one constant [S, S, depth] tensor per forward pass, shared by every
    layer and head and by keys and values (nothing trainable)."""

    def __init__(self, max_relative_position: int, depth: int):
        super().__init__(name=None)
        self.max_relative_position = int(max_relative_position)
        self.table = relative_position_table(self.max_relative_position, depth)

    def __call__(self, length: tf.Tensor, dtype: tf.dtypes.DType) -> tf.Tensor:
        index = relative_position_index(length, self.max_relative_position)
        return tf.saturate_cast(tf.gather(tf.constant(self.table), index), dtype)


def sequence_length(input_ids: tf.Tensor) -> Union[int, tf.Tensor]:
    """The static length when known (so shapes stay static under XLA), else the dynamic one."""
    static = input_ids.shape[1]
    return static if static is not None else tf.shape(input_ids)[1]


class Embeddings(tf.Module):
    """word + token type (+ absolute position, only without relative positions) -> LayerNorm -> dropout."""

    def __init__(self, config: BertConfig, scope: str, use_one_hot_embeddings: bool = False):
        super().__init__(name=None)
        init = truncated_normal(config.initializer_range)
        self.config = config
        self.use_one_hot_embeddings = use_one_hot_embeddings
        self.word_embeddings = new_variable(f"{scope}/word_embeddings", [config.vocab_size, config.hidden_size], init)
        self.token_type_embeddings = new_variable(f"{scope}/token_type_embeddings",
                                                  [config.type_vocab_size, config.hidden_size], init)
        self.position_embeddings = None
        if not config.use_relative_position:
            self.position_embeddings = new_variable(f"{scope}/position_embeddings",
                                                    [config.max_position_embeddings, config.hidden_size], init)
        self.layer_norm = LayerNorm(f"{scope}/LayerNorm", config.hidden_size)

    def _lookup(self, table: tf.Variable, ids: tf.Tensor, one_hot: bool) -> tf.Tensor:
        if one_hot:
            return tf.einsum("bsv,vh->bsh", tf.one_hot(ids, table.shape[0], dtype=tf.float32), table)
        return tf.gather(table, ids)

    def __call__(self, input_ids: tf.Tensor, token_type_ids: tf.Tensor, training: bool) -> tf.Tensor:
        output = self._lookup(self.word_embeddings, input_ids, self.use_one_hot_embeddings)
        # The original always used the one-hot product here (numerically a gather).
        output += self._lookup(self.token_type_embeddings, token_type_ids, one_hot=False)
        if self.position_embeddings is not None:
            length = sequence_length(input_ids)
            limit = self.config.max_position_embeddings
            if isinstance(length, int):
                if length > limit:
                    raise InputError(f"sequence length {length} is longer than max_position_embeddings {limit} "
                                     "of the BERT config (absolute position embeddings)")
            else:
                tf.debugging.assert_less_equal(length, limit, message="sequence length is longer than "
                                               "max_position_embeddings of the BERT config")
            output += self.position_embeddings[:length][None, :, :]
        output = self.layer_norm(output)
        return dropout(output, self.config.hidden_dropout_prob, training)


class Attention(tf.Module):
    """Multi-head self-attention `<layer>/attention/self/{query,key,value}`, with NEZHA's relative terms."""

    def __init__(self, config: BertConfig, scope: str):
        super().__init__(name=None)
        hidden = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_size = hidden // config.num_attention_heads
        self.dropout_rate = config.attention_probs_dropout_prob
        init_range = config.initializer_range
        self.query = Dense(f"{scope}/query", hidden, hidden, init_range)
        self.key = Dense(f"{scope}/key", hidden, hidden, init_range)
        self.value = Dense(f"{scope}/value", hidden, hidden, init_range)

    def _heads(self, x: tf.Tensor, batch: Any, length: Any) -> tf.Tensor:
        """[B*S, N*H] -> [B, N, S, H]."""
        return tf.transpose(tf.reshape(x, [batch, length, self.num_heads, self.head_size]), [0, 2, 1, 3])

    def __call__(self, x: tf.Tensor, batch: Any, length: Any, mask_adder: tf.Tensor,
                 relative: Optional[tf.Tensor], training: bool) -> tf.Tensor:
        q = self._heads(self.query(x), batch, length)
        k = self._heads(self.key(x), batch, length)
        v = self._heads(self.value(x), batch, length)
        scores = tf.matmul(q, k, transpose_b=True)                       # [B, N, S, S]
        if relative is not None:
            scores += tf.einsum("bnih,ijh->bnij", q, relative)            # q_i . R[i, j], before scaling
        scores = tf.cast(scores, tf.float32) * (1.0 / math.sqrt(float(self.head_size))) + mask_adder
        probs = tf.cast(tf.nn.softmax(scores, axis=-1), x.dtype)
        probs = dropout(probs, self.dropout_rate, training)
        context = tf.matmul(probs, v)                                     # [B, N, S, H]
        if relative is not None:
            context += tf.einsum("bnij,ijh->bnih", probs, relative)       # sum_j P[i, j] R[i, j], after dropout
        context = tf.transpose(context, [0, 2, 1, 3])
        return tf.reshape(context, [-1, self.num_heads * self.head_size])


class TransformerLayer(tf.Module):
    """One post-LN block `bert/encoder/layer_k`: attention, add & norm, GELU feed-forward, add & norm."""

    def __init__(self, config: BertConfig, scope: str):
        super().__init__(name=None)
        hidden, init_range = config.hidden_size, config.initializer_range
        self.dropout_rate = config.hidden_dropout_prob
        self.attention = Attention(config, f"{scope}/attention/self")
        self.attention_output = Dense(f"{scope}/attention/output/dense", hidden, hidden, init_range)
        self.attention_norm = LayerNorm(f"{scope}/attention/output/LayerNorm", hidden)
        self.intermediate = Dense(f"{scope}/intermediate/dense", hidden, config.intermediate_size, init_range,
                                  activation=config.hidden_act)
        self.output = Dense(f"{scope}/output/dense", config.intermediate_size, hidden, init_range)
        self.output_norm = LayerNorm(f"{scope}/output/LayerNorm", hidden)

    def __call__(self, x: tf.Tensor, batch: Any, length: Any, mask_adder: tf.Tensor,
                 relative: Optional[tf.Tensor], training: bool) -> tf.Tensor:
        context = self.attention(x, batch, length, mask_adder, relative, training)
        attended = self.attention_norm(dropout(self.attention_output(context), self.dropout_rate, training) + x)
        inner = self.intermediate(attended)
        return self.output_norm(dropout(self.output(inner), self.dropout_rate, training) + attended)


class BertOutput(NamedTuple):
    """What the original's BertModel getters returned; all float32, shapes [B, S, H] unless stated."""

    sequence_output: tf.Tensor
    pooled_output: tf.Tensor          # [B, H]: tanh(dense(first token))
    all_encoder_layers: list          # every layer's output, the last equals sequence_output
    embedding_output: tf.Tensor       # after embedding LayerNorm and dropout


class BertModel(tf.Module):
    """The NEZHA/BERT encoder under `scope` (default `bert`): embeddings, encoder layers and pooler.

    `compute_dtype` is the original's compute_type (float16 under --manual_fp16; bfloat16 added).
    Dropout is applied only when called with training=True (the original's is_training).
    """

    def __init__(self, config: BertConfig, compute_dtype: DTypeLike = tf.float32, scope: str = "bert",
                 use_one_hot_embeddings: bool = False):
        super().__init__(name=None)
        if config.hidden_size % config.num_attention_heads != 0:
            raise InputError(f"The hidden size ({config.hidden_size}) is not a multiple of the number of "
                             f"attention heads ({config.num_attention_heads})")
        self.config = copy.deepcopy(config)
        self.compute_dtype = as_compute_dtype(compute_dtype)
        self.scope = scope
        self.embeddings = Embeddings(config, f"{scope}/embeddings", use_one_hot_embeddings)
        self.relative_positions = None
        if config.use_relative_position:
            self.relative_positions = RelativePositions(
                getattr(config, "max_relative_position", DEFAULT_MAX_RELATIVE_POSITION),
                config.hidden_size // config.num_attention_heads)
        self.layers = [TransformerLayer(config, f"{scope}/encoder/layer_{k}")
                       for k in range(config.num_hidden_layers)]
        self.pooler = Dense(f"{scope}/pooler/dense", config.hidden_size, config.hidden_size,
                            config.initializer_range, activation="tanh")

    def get_embedding_table(self) -> tf.Variable:
        """The word embeddings [V, H], tied to the masked-LM decoder."""
        return self.embeddings.word_embeddings

    def __call__(self, input_ids: tf.Tensor, input_mask: Optional[tf.Tensor] = None,
                 token_type_ids: Optional[tf.Tensor] = None, training: bool = False) -> BertOutput:
        """input_ids, input_mask (1 = real token, 0 = padding; default all ones), token_type_ids (default
        zeros): int [B, S]."""
        input_ids = tf.convert_to_tensor(input_ids)
        if input_mask is None:
            input_mask = tf.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = tf.zeros_like(input_ids)
        batch = input_ids.shape[0] if input_ids.shape[0] is not None else tf.shape(input_ids)[0]
        length = sequence_length(input_ids)
        embedding_output = self.embeddings(input_ids, token_type_ids, training)
        # mask[b, i, j] = input_mask[b, j]: broadcast over heads and query positions.
        mask = tf.cast(tf.convert_to_tensor(input_mask), tf.float32)[:, None, None, :]
        mask_adder = (1.0 - mask) * MASK_ADDER
        relative = None
        if self.relative_positions is not None:
            relative = self.relative_positions(length, self.compute_dtype)
        x = tf.reshape(tf.saturate_cast(embedding_output, self.compute_dtype), [-1, self.config.hidden_size])
        layers = []
        for layer in self.layers:
            x = layer(x, batch, length, mask_adder, relative, training)
            layers.append(tf.cast(tf.reshape(x, [batch, length, self.config.hidden_size]), tf.float32))
        sequence_output = layers[-1] if layers else embedding_output
        pooled_output = self.pooler(sequence_output[:, 0])
        return BertOutput(sequence_output, pooled_output, layers, embedding_output)


def gather_indexes(sequence_tensor: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
    """The vectors of `sequence_tensor` [B, S, H] at `positions` [B, P], as [B, P, H]."""
    return tf.gather(sequence_tensor, tf.cast(positions, tf.int32), batch_dims=1)


class MaskedLMHead(tf.Module):
    """`cls/predictions`: transform (dense + activation + LayerNorm), decoder tied to the word embeddings,
    `output_bias`. Runs in float32, as the original."""

    def __init__(self, config: BertConfig, embedding_table: tf.Variable, scope: str = "cls/predictions"):
        super().__init__(name=None)
        self.embedding_table = embedding_table
        self.transform = Dense(f"{scope}/transform/dense", config.hidden_size, config.hidden_size,
                               config.initializer_range, activation=config.hidden_act)
        self.layer_norm = LayerNorm(f"{scope}/transform/LayerNorm", config.hidden_size)
        self.output_bias = new_variable(f"{scope}/output_bias", [config.vocab_size], zeros)

    def __call__(self, sequence_output: tf.Tensor, positions: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Logits [B, P, V] at `positions` [B, P] (the original's masked_lm_positions), or [B, S, V]."""
        x = tf.cast(sequence_output, tf.float32)
        if positions is not None:
            x = gather_indexes(x, positions)
        x = self.layer_norm(self.transform(x))
        return tf.matmul(x, self.embedding_table, transpose_b=True) + self.output_bias


class DenseHead(tf.Module):
    """A head with the original's TF1 names `<scope>/output_weights` [num_outputs, H] (truncated normal 0.02)
    and `<scope>/output_bias` [num_outputs] (zeros); logits = x . W^T + b in float32.

    scope "" gives the top-level names of the classifier and NER heads, `cls/squad` the reading-comprehension
    head, `cls/seq_relationship` the next-sentence head.
    """

    def __init__(self, num_outputs: int, input_size: int, scope: str = "", initializer_range: float = 0.02):
        super().__init__(name=None)
        prefix = f"{scope}/" if scope else ""
        self.output_weights = new_variable(f"{prefix}output_weights", [num_outputs, input_size],
                                           truncated_normal(initializer_range))
        self.output_bias = new_variable(f"{prefix}output_bias", [num_outputs], zeros)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(tf.cast(x, tf.float32), self.output_weights, transpose_b=True) + self.output_bias


class PreTrainingOutput(NamedTuple):
    masked_lm_logits: tf.Tensor       # [B, P, V] (or [B, S, V] without positions)
    next_sentence_logits: tf.Tensor   # [B, 2]; label 0 = IsNext, 1 = random next sentence
    bert: BertOutput


class BertForPreTraining(tf.Module):
    """The encoder with the original's pre-training heads `cls/predictions` and `cls/seq_relationship`."""

    def __init__(self, config: BertConfig, compute_dtype: DTypeLike = tf.float32, scope: str = "bert"):
        super().__init__(name=None)
        self.bert = BertModel(config, compute_dtype=compute_dtype, scope=scope)
        self.masked_lm = MaskedLMHead(config, self.bert.get_embedding_table())
        self.next_sentence = DenseHead(2, config.hidden_size, "cls/seq_relationship", config.initializer_range)

    def __call__(self, input_ids: tf.Tensor, input_mask: Optional[tf.Tensor] = None,
                 token_type_ids: Optional[tf.Tensor] = None, masked_lm_positions: Optional[tf.Tensor] = None,
                 training: bool = False) -> PreTrainingOutput:
        outputs = self.bert(input_ids, input_mask, token_type_ids, training=training)
        return PreTrainingOutput(self.masked_lm(outputs.sequence_output, masked_lm_positions),
                                 self.next_sentence(outputs.pooled_output), outputs)
