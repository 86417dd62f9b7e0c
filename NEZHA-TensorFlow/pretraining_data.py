"""The pretraining TFRecords of utils/create_pretraining_data.py as tf.data pipelines (the original's input_fn).

Training: this rank's files (engine.shard_files, the original's `Dataset.shard(hvd.size(), hvd.rank())`) ->
repeat -> shuffle(number of files) -> interleave of TFRecordDatasets (cycle_length min(4, files), not
deterministic, as the original's sloppy parallel_interleave) -> shuffle(100) -> parse -> batch with
drop_remainder. Evaluation: every file in order, repeated, parsed and batched (drop_remainder), read for a
fixed number of steps. Ids are int32 after parsing, masked_lm_weights float32.

`check_records` reads the first records of each file before training, so that files written for another
max_seq_length / max_predictions_per_seq or vocabulary stop the run with one message naming the file and the
record instead of a TensorFlow error deep inside the input pipeline.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from utils.create_pretraining_data import expand_patterns
from utils.errors import InputError

INT_FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                "next_sentence_labels")
FEATURE_NAMES = INT_FEATURES[:5] + ("masked_lm_weights",) + INT_FEATURES[5:]
RECORDS_TO_CHECK = 20


def feature_lengths(max_seq_length: int, max_predictions_per_seq: int) -> dict[str, int]:
    return {"input_ids": max_seq_length, "input_mask": max_seq_length, "segment_ids": max_seq_length,
            "masked_lm_positions": max_predictions_per_seq, "masked_lm_ids": max_predictions_per_seq,
            "masked_lm_weights": max_predictions_per_seq, "next_sentence_labels": 1}


def name_to_features(max_seq_length: int, max_predictions_per_seq: int) -> dict[str, tf.io.FixedLenFeature]:
    """The original's FixedLenFeature spec: every feature int64 except masked_lm_weights (float32)."""
    return {name: tf.io.FixedLenFeature([length], tf.float32 if name == "masked_lm_weights" else tf.int64)
            for name, length in feature_lengths(max_seq_length, max_predictions_per_seq).items()}


def decode_record(record: tf.Tensor, features: dict[str, tf.io.FixedLenFeature]) -> dict[str, tf.Tensor]:
    """One serialized tf.train.Example -> tensors, int64 cast to int32."""
    example = tf.io.parse_single_example(record, features)
    return {name: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value
            for name, value in example.items()}


def expand_input_files(patterns: str) -> list[str]:
    """The files of a comma-separated list of globs (tf.io.gfile, so gs:// and hdfs:// work), in order."""
    return expand_patterns(patterns, "--input_file")


def check_records(files: Sequence[str], max_seq_length: int, max_predictions_per_seq: int,
                  vocab_size: Optional[int] = None, records: int = RECORDS_TO_CHECK) -> None:
    """Stop with an InputError naming the file and record when one of the first `records` records of a file is
    not a pretraining example of these lengths, or holds a token id outside the model's vocabulary."""
    expected = feature_lengths(max_seq_length, max_predictions_per_seq)
    for path in files:
        count = 0
        try:
            for count, raw in enumerate(tf.data.TFRecordDataset(path).take(records).as_numpy_iterator(), start=1):
                _check_example(raw, expected, vocab_size, path, count)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            raise InputError(f"not a readable TFRecord file after {count} record(s) ({err.message.splitlines()[0]})",
                             path) from None
        if count == 0:
            raise InputError("no record in this file (expected TFRecords from utils/create_pretraining_data.py)",
                             path)


def _check_example(raw: bytes, expected: dict[str, int], vocab_size: Optional[int], path: str,
                   number: int) -> None:
    where = f"record {number}"
    try:
        example = tf.train.Example.FromString(raw)
    except Exception:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise InputError(f"{where} is not a tf.train.Example", path) from None
    feature = example.features.feature
    for name, length in expected.items():
        if name not in feature:
            raise InputError(f"{where} has no feature {name} (expected {', '.join(FEATURE_NAMES)})", path)
        values = feature[name].float_list.value if name == "masked_lm_weights" else feature[name].int64_list.value
        if len(values) != length:
            flag = "max_predictions_per_seq" if name.startswith("masked_lm") else (
                "max_seq_length" if name != "next_sentence_labels" else None)
            hint = f" (written with another --{flag}?)" if flag else ""
            raise InputError(f"{where}: feature {name} has {len(values)} values, expected {length}{hint}", path)
    if vocab_size is not None:
        ids = np.array(list(feature["input_ids"].int64_list.value) + list(feature["masked_lm_ids"].int64_list.value))
        if ids.size and (ids.max() >= vocab_size or ids.min() < 0):
            raise InputError(f"{where}: token id {int(ids.max())} is outside the vocabulary of the BERT config "
                             f"(vocab_size {vocab_size}): the data was made with another vocab.txt", path)


def train_dataset(files: Sequence[str], batch_size: int, max_seq_length: int, max_predictions_per_seq: int,
                  seed: Optional[int] = None) -> tf.data.Dataset:
    """An endless, shuffled stream of training batches from `files` (this rank's shard)."""
    files = list(files)
    features = name_to_features(max_seq_length, max_predictions_per_seq)
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(files)).repeat()
    dataset = dataset.shuffle(buffer_size=len(files), seed=seed)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
    dataset = dataset.shuffle(buffer_size=100, seed=seed)
    dataset = dataset.map(lambda record: decode_record(record, features), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(files: Sequence[str], batch_size: int, max_seq_length: int,
                 max_predictions_per_seq: int) -> tf.data.Dataset:
    """Every file in order, repeated (evaluation reads a fixed number of batches), drop_remainder."""
    features = name_to_features(max_seq_length, max_predictions_per_seq)
    dataset = tf.data.TFRecordDataset(list(files)).repeat()
    dataset = dataset.map(lambda record: decode_record(record, features), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
