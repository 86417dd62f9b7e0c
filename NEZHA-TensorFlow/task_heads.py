"""The fine-tuning models side by side: the encoder `bert/...` under each task's head, with the original's TF1
names (modeling.DenseHead), and the loss each head is trained with. Logits come back in float32.

  ClassifierModel  pooled output -> dropout 0.1 (training) -> `output_weights` [labels, H] / `output_bias`
                   (run_classifier.py; one output for a regression task)
  NerModel         sequence output -> dropout 0.1 (training) -> `output_weights` [11, H] / `output_bias` [11]
                   per token (run_classifier_ner.py)
  SquadModel       sequence output -> `cls/squad/output_weights` [2, H] / `cls/squad/output_bias` [2] per token:
                   start and end logits, pushed down by 10000 outside [CLS] and the context (run_squad.py)
"""
from __future__ import annotations

from typing import Mapping

import tensorflow as tf

import modeling

HEAD_DROPOUT = 0.1          # the original's keep_prob=0.9 before the classifier and NER heads
SPAN_MASK_ADDER = -10000.0
Batch = Mapping[str, tf.Tensor]


class _TaskModel(tf.Module):
    def __init__(self, encoder: modeling.BertModel, num_outputs: int, dropout_rate: float = HEAD_DROPOUT,
                 scope: str = ""):
        super().__init__(name=None)
        self.bert = encoder
        self.dropout_rate = dropout_rate
        self.head = modeling.DenseHead(num_outputs, encoder.config.hidden_size, scope,
                                       encoder.config.initializer_range)

    def _encode(self, batch: Batch, training: bool) -> modeling.BertOutput:
        return self.bert(batch["input_ids"], batch["input_mask"], batch["segment_ids"], training=training)

    def _per_token(self, sequence_output: tf.Tensor) -> tf.Tensor:
        """The head applied to every position: [B, S, H] -> [B, S, num_outputs]."""
        logits = self.head(tf.reshape(sequence_output, [-1, sequence_output.shape[-1]]))
        shape = tf.shape(sequence_output)
        return tf.reshape(logits, [shape[0], shape[1], self.head.output_bias.shape[0]])


class ClassifierModel(_TaskModel):
    def __call__(self, batch: Batch, training: bool = False) -> tf.Tensor:
        """Logits [B, num_labels]."""
        pooled = self._encode(batch, training).pooled_output
        return self.head(modeling.dropout(pooled, self.dropout_rate, training))


class NerModel(_TaskModel):
    def __call__(self, batch: Batch, training: bool = False) -> tf.Tensor:
        """Logits [B, S, num_labels]."""
        output = self._encode(batch, training).sequence_output
        return self._per_token(modeling.dropout(output, self.dropout_rate, training))


class SquadModel(_TaskModel):
    def __init__(self, encoder: modeling.BertModel):
        super().__init__(encoder, 2, dropout_rate=0.0, scope="cls/squad")

    def __call__(self, batch: Batch, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """Start and end logits [B, S]."""
        logits = self._per_token(self._encode(batch, training).sequence_output)
        adder = (1.0 - tf.cast(batch["input_span_mask"], tf.float32)) * SPAN_MASK_ADDER
        return logits[:, :, 0] + adder, logits[:, :, 1] + adder


# ------------------------------------------------------------------------------------------------ losses

def per_example_loss(logits: tf.Tensor, labels: tf.Tensor, output_mode: str) -> tf.Tensor:
    """Classification: cross-entropy -sum(one_hot * log_softmax) per example, or the squared error for
    regression."""
    if output_mode == "regression":
        return tf.square(logits[:, 0] - tf.cast(labels, tf.float32))
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1], dtype=tf.float32)
    return -tf.reduce_sum(one_hot * log_probs, axis=-1)


def token_losses(logits: tf.Tensor, label_ids: tf.Tensor) -> tf.Tensor:
    """NER: the cross-entropy of every position [B, S] (padding positions included, label 0, as the
    original, which summed them over the batch)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(label_ids, tf.int32), logits=logits)


def position_loss(logits: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
    """Reading comprehension: the mean over the batch of -log_softmax(logits) at the gold positions (the
    original averaged the start and end losses)."""
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    one_hot = tf.one_hot(tf.cast(positions, tf.int32), tf.shape(logits)[-1], dtype=tf.float32)
    return -tf.reduce_mean(tf.reduce_sum(one_hot * log_probs, axis=-1))
