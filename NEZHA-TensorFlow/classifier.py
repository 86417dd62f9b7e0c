"""Sentence and sentence-pair classification on NEZHA (the library behind run_classifier.py; the model is
task_heads.ClassifierModel).

Features are the original's: `[CLS] a [SEP] (b [SEP])`, segment ids 0/1, a pair truncated by popping from
the longer side, zero padding to max_seq_length. Scores: the mean cross-entropy, or for a regression task
(sts-b, one output) the mean squared error, computed here in NumPy from the logits, with the task's metrics.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
from absl import logging
from tqdm import tqdm

from utils import tokenization
from utils.errors import InputError
from utils.features import encode_pair
from utils.fileio import atomic_open
from utils.metrics import compute_metrics
from utils.tasks import DataProcessor, InputExample

LABEL_LIST = "label_list.txt"
FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "label_ids")


def convert_examples_to_features(examples: Sequence[InputExample], label_list: Sequence[Optional[str]],
                                 max_seq_length: int, tokenizer: tokenization.FullTokenizer,
                                 output_mode: str = "classification",
                                 desc: str = "features") -> dict[str, np.ndarray]:
    """Input ids, mask, segment ids [N, S] and labels [N] (int ids, or float values for regression).

    An example without a label (a GLUE test set) gets label 0; `has_labels` in the caller decides whether
    test metrics are computed.
    """
    label_map = {label: i for i, label in enumerate(label_list)}
    count = len(examples)
    input_ids = np.zeros([count, max_seq_length], np.int32)
    input_mask = np.zeros([count, max_seq_length], np.int32)
    segment_ids = np.zeros([count, max_seq_length], np.int32)
    labels = np.zeros([count], np.float32 if output_mode == "regression" else np.int32)
    for index, example in enumerate(tqdm(examples, desc=desc, unit="example", leave=False, mininterval=2.0)):
        tokens_b = tokenizer.tokenize(example.text_b) if example.text_b is not None else None
        tokens, input_ids[index], input_mask[index], segment_ids[index] = encode_pair(
            tokenizer.tokenize(example.text_a), tokens_b, max_seq_length, tokenizer)
        if example.label is not None:
            if output_mode == "regression":
                labels[index] = float(example.label)
            elif example.label in label_map:
                labels[index] = label_map[example.label]
            else:
                raise InputError(f"example {example.guid}: label {example.label!r} is not in the label list "
                                 f"({', '.join(map(str, label_list))})")
        if index < 3:
            logging.info("*** Example %s ***\ntokens: %s\ninput_ids: %s\nlabel: %s", example.guid,
                         " ".join(tokens), " ".join(map(str, input_ids[index, :len(tokens)])), example.label)
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids, "label_ids": labels}


# ------------------------------------------------------------------------------------------------ labels

def write_label_list(output_dir: str, labels: Sequence[str]) -> str:
    path = os.path.join(output_dir, LABEL_LIST)
    with atomic_open(path) as handle:
        for label in labels:
            handle.write(f"{label}\n")
    return path


def read_label_list(output_dir: str) -> Optional[list[str]]:
    """The labels written at training time (one per line), or None when output_dir has none."""
    path = os.path.join(output_dir, LABEL_LIST)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        labels = [line.rstrip("\n") for line in handle if line.strip()]
    if not labels:
        raise InputError("empty label list (expected one label per line)", path)
    return labels


def label_list_for(processor: DataProcessor, data_dir: str, output_dir: str, do_train: bool) -> list:
    """Training writes the task's labels to output_dir/label_list.txt; evaluation and prediction read them
    from there (falling back to the task's own labels when a fresh output_dir has none)."""
    if processor.output_mode == "regression":
        return [None]
    if do_train:
        labels = [str(label) for label in processor.get_labels(data_dir)]
        write_label_list(output_dir, labels)
        return labels
    labels = read_label_list(output_dir)
    if labels is None:
        labels = [str(label) for label in processor.get_labels(data_dir)]
        logging.warning("%s has no %s: using the task's labels %s", output_dir, LABEL_LIST, labels)
    return labels


# ------------------------------------------------------------------------------------------------ scores

def numpy_per_example_loss(logits: np.ndarray, labels: np.ndarray, output_mode: str) -> np.ndarray:
    if output_mode == "regression":
        return np.square(logits[:, 0] - labels.astype(np.float64))
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels.astype(np.int64)]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def predictions_of(logits: np.ndarray, output_mode: str) -> np.ndarray:
    return logits[:, 0] if output_mode == "regression" else np.argmax(logits, axis=-1)


def evaluation_metrics(task_name: str, output_mode: str, logits: np.ndarray, labels: np.ndarray,
                       batch_size: int, global_step: int) -> dict[str, Any]:
    """The original's keys (eval_accuracy, eval_loss = mean per-example loss, loss = mean of the per-batch
    mean losses, global_step) plus the task's own metrics as eval_<name> (eval_mcc, eval_f1, eval_corr...)."""
    losses = numpy_per_example_loss(logits, labels, output_mode)
    batch_means = [losses[i:i + batch_size].mean() for i in range(0, len(losses), batch_size)]
    preds = predictions_of(logits, output_mode)
    metrics: dict[str, Any] = {"eval_loss": float(losses.mean()), "loss": float(np.mean(batch_means)),
                               "global_step": int(global_step)}
    if output_mode != "regression":
        metrics["eval_accuracy"] = float((preds == labels).mean())
    for key, value in compute_metrics(task_name, preds, labels).items():
        if key != "acc":
            metrics[f"eval_{key}"] = float(value)
    return metrics


def write_test_predictions(output_dir: str, examples: Sequence[InputExample], logits: np.ndarray,
                           label_list: Sequence[Optional[str]], output_mode: str) -> None:
    """test_results.tsv: Google BERT's one line of tab-separated class probabilities per example (the
    predicted value for regression); test_predictions.tsv: `guid<TAB>prediction` with a header."""
    with atomic_open(os.path.join(output_dir, "test_results.tsv")) as handle:
        if output_mode == "regression":
            for value in logits[:, 0]:
                handle.write(f"{float(value)}\n")
        else:
            for row in softmax(logits.astype(np.float64)):
                handle.write("\t".join(str(float(p)) for p in row) + "\n")
    preds = predictions_of(logits, output_mode)
    with atomic_open(os.path.join(output_dir, "test_predictions.tsv")) as handle:
        handle.write("guid\tprediction\n")
        for example, pred in zip(examples, preds):
            text = f"{float(pred)}" if output_mode == "regression" else str(label_list[int(pred)])
            handle.write(f"{example.guid}\t{text}\n")
