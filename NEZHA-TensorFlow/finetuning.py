"""What every NEZHA fine-tuning entry shares (run_classifier.py, run_classifier_ner.py, run_squad.py): the
encoder and its initialisation, the training loop the original got from tf.estimator, per-checkpoint
evaluation bookkeeping and prediction with a chosen checkpoint.

An entry builds a `tf.Module` holding the encoder (`build_encoder`) and its head (modeling.DenseHead, whose
TF1 names are `output_weights`/`output_bias` or `cls/squad/...`), so that `checkpoint.named_variables(model)`
gives the original's checkpoint names. Features are a dict of equal-length NumPy arrays; a batch is the same
dict of tensors. Then:

    config, encoder = build_encoder(FLAGS.bert_config_file, FLAGS.max_seq_length)
    model = MyTaskModel(encoder, ...)                                  # tf.Module: encoder + head
    initialize_from_checkpoint(FLAGS.init_checkpoint, model)           # or "none": random initialisation
    settings = TrainingSettings(output_dir, num_train_steps(n, bs, epochs), ..., save_checkpoints_steps)
    train(model, loss_fn, train_batches(features, bs), settings)       # resumes from output_dir, saves all
    # or, for --do_train_and_eval, evaluating each checkpoint on dev as it is saved:
    train_and_evaluate(model, loss_fn, train_batches(...), settings, evaluate_fn, metric_key="eval_accuracy")
    outputs = predict_with_checkpoint(model, checkpoint_path, predict_fn, features, batch_size)

`loss_fn(batch)` returns the scalar loss (it is traced inside tf.function with training=True dropout);
`evaluate_fn()` returns a dict of metrics of the model's current weights (the history adds `global_step`);
`predict_fn(batch)` (wrap it in tf.function) returns a dict of per-example tensors whose first axis is the
batch.

Files written under output_dir, in the original's names and formats: `model.ckpt-N` (encoder `bert/...`, the
head, `global_step` and the AdamWeightDecay slots `<var>/adam_m|adam_v`, every save_checkpoints_steps steps
and at the last step, all kept); `eval/eval_history.jsonl` (one `{"step", "checkpoint", "metrics"}` object per
evaluated checkpoint, replacing read_tf_events.py's event files) and `eval/all_eval_points_results.txt`
(`step N: value` lines and `----best_result: max`); `eval_results.txt` (`key = value`, written by the entry
through `write_eval_results`). The history functions live in eval_history.py (free of TensorFlow, for
select_best.py) and are re-exported here.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Union

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

import checkpoint
import modeling
import optimization
# Re-exported: the entries reach the evaluation history through this module.
from eval_history import (ALL_EVAL_POINTS, EVAL_DIR, EVAL_HISTORY, append_eval_history, best_entry,  # noqa: F401
                          eval_dir, metric_for_task, plain, read_eval_history, write_eval_points)
from utils.errors import InputError, require_file
from utils.fileio import write_key_values
from utils.model_config import check_vocab_fits
from utils.tokenization import load_vocab

Features = Mapping[str, np.ndarray]
Batch = dict[str, tf.Tensor]
PathLike = Union[str, os.PathLike]

EVAL_RESULTS = "eval_results.txt"
NO_CHECKPOINT = ("none", "")
MODEL_DIR_HINT = ("put the released NEZHA files (model.ckpt.index, model.ckpt.data-00000-of-00001) in "
                  "NEZHA-TensorFlow/nezha/ and pass --init_checkpoint=NEZHA-TensorFlow/nezha/model.ckpt, or pass "
                  "--init_checkpoint=none to fine-tune from random weights")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow (initialisation, dropout, shuffling) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)


# ------------------------------------------------------------------------------------------------ encoder

def load_config(bert_config_file: PathLike, max_seq_length: int) -> modeling.BertConfig:
    """The BERT config, with the original's check that max_seq_length fits the absolute position table
    (NEZHA's functional relative positions have no such limit)."""
    config = modeling.BertConfig.from_json_file(require_file(bert_config_file, "--bert_config_file"))
    if max_seq_length < 3:
        raise InputError(f"--max_seq_length must be at least 3 ([CLS] x [SEP]), got {max_seq_length}")
    if not getattr(config, "use_relative_position", False) and max_seq_length > config.max_position_embeddings:
        raise InputError(f"Cannot use sequence length {max_seq_length} because the BERT model was only trained "
                         f"up to sequence length {config.max_position_embeddings}", bert_config_file)
    return config


def build_encoder(bert_config_file: PathLike, max_seq_length: int,
                  compute_dtype: modeling.DTypeLike = tf.float32,
                  vocab_file: Optional[PathLike] = None) -> tuple[modeling.BertConfig, modeling.BertModel]:
    """The config and a freshly initialised encoder under the original scope `bert`; with `vocab_file`,
    first the check that every token id of the vocabulary has a row in the embedding table."""
    config = load_config(bert_config_file, max_seq_length)
    if vocab_file is not None:
        check_vocab_fits(config.vocab_size, bert_config_file, load_vocab(vocab_file), vocab_file)
    return config, modeling.BertModel(config, compute_dtype=compute_dtype)


def initialize_from_checkpoint(init_checkpoint: Optional[str], model: tf.Module,
                               encoder_prefix: str = "bert/") -> Optional[checkpoint.LoadReport]:
    """Load --init_checkpoint into `model` by TF1 name (the original's init_from_checkpoint) and print what
    was loaded; "none" keeps the random initialisation. A head absent from a pre-trained checkpoint is
    expected; an encoder variable absent is reported, and a checkpoint without any is an error."""
    if init_checkpoint is None:
        raise InputError(f"--init_checkpoint is required: {MODEL_DIR_HINT}")
    if init_checkpoint.strip().lower() in NO_CHECKPOINT:
        print("init_checkpoint=none: every variable keeps its random initialisation", flush=True)
        return None
    try:
        prefix = checkpoint.resolve_checkpoint(init_checkpoint)
    except InputError as err:
        raise InputError(f"{err.message}; {MODEL_DIR_HINT}", err.path) from None
    report = checkpoint.load_checkpoint(prefix, model, log_missing=False)
    encoder_missing = [n for n in report.missing if n.startswith(encoder_prefix)]
    print(f"init_checkpoint {report.prefix}: loaded {len(report.loaded)} variables, skipped "
          f"{len(report.skipped)} optimizer/step variables", flush=True)
    others = [n for n in report.missing if not n.startswith(encoder_prefix)]
    if others:
        print(f"  initialised randomly (not in the checkpoint): {', '.join(others)}", flush=True)
    if report.unexpected:
        print(f"  not used by this model: {', '.join(report.unexpected)}", flush=True)
    if not any(n.startswith(encoder_prefix) for n in report.loaded):
        raise InputError(f"none of the encoder's {encoder_prefix}* variables is in this checkpoint (is it a "
                         "BERT/NEZHA checkpoint with the original names?)", report.prefix)
    if encoder_missing:
        print(f"  WARNING: {len(encoder_missing)} encoder variables are missing and stay random: "
              f"{', '.join(encoder_missing)}", flush=True)
    return report


# ------------------------------------------------------------------------------------------------ data

def num_train_steps(num_examples: int, train_batch_size: int, num_train_epochs: float) -> int:
    """The original's int(len(train_examples) / train_batch_size * num_train_epochs)."""
    steps = int(num_examples / train_batch_size * num_train_epochs)
    if steps < 1:
        raise InputError(f"{num_examples} training examples, batch size {train_batch_size} and "
                         f"{num_train_epochs} epochs give no training step")
    return steps


def num_warmup_steps(train_steps: int, warmup_proportion: float) -> int:
    return int(train_steps * warmup_proportion)


class TrainBatches:
    """Training batches of exactly batch_size: the examples of each epoch in a fresh random order, drawn
    from a NumPy generator of its own (not TensorFlow's global seed), so a resumed run sees exactly the
    batches an uninterrupted one would have seen from that step on."""

    def __init__(self, features: Features, batch_size: int, seed: int = 12345):
        self.features = {name: np.asarray(values) for name, values in features.items()}
        self.num_examples = len(next(iter(self.features.values())))
        if batch_size < 1 or not self.num_examples:
            raise InputError(f"cannot make training batches of {batch_size} from {self.num_examples} examples")
        self.batch_size = batch_size
        self.seed = seed

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def from_step(self, step: int = 0) -> Iterator[Batch]:
        """The batches from `step` on (the stream of epoch permutations, batch_size examples at a time)."""
        position = step * self.batch_size
        epoch, offset = divmod(position, self.num_examples)
        order = self._epoch_order(epoch)[offset:]
        while True:
            while len(order) < self.batch_size:
                epoch += 1
                order = np.concatenate([order, self._epoch_order(epoch)])
            rows, order = order[:self.batch_size], order[self.batch_size:]
            yield {name: tf.convert_to_tensor(values[rows]) for name, values in self.features.items()}

    def __iter__(self) -> Iterator[Batch]:
        return self.from_step(0)


def train_batches(features: Features, batch_size: int, seed: int = 12345) -> TrainBatches:
    """The training input: repeated, shuffled (a full permutation per epoch, where the original's
    shuffle(100) buffer mixed only neighbours), batches of exactly batch_size (drop_remainder)."""
    return TrainBatches(features, batch_size, seed)


def run_batches(fn: Callable[[Batch], Mapping[str, tf.Tensor]], features: Features, batch_size: int,
                desc: str = "predicting") -> dict[str, np.ndarray]:
    """Apply `fn` to every example in order (no shuffle, nothing dropped) and concatenate its outputs.

    The last batch is padded with copies of its last row, so `fn` sees one shape only, and trimmed after.
    """
    names = list(features)
    total = len(features[names[0]]) if names else 0
    outputs: dict[str, list[np.ndarray]] = {}
    for start in tqdm(range(0, total, batch_size), desc=desc, unit="batch", leave=False):
        stop = min(start + batch_size, total)
        batch = {}
        for name in names:
            rows = np.asarray(features[name][start:stop])
            if stop - start < batch_size:
                rows = np.concatenate([rows, np.repeat(rows[-1:], batch_size - (stop - start), axis=0)])
            batch[name] = tf.convert_to_tensor(rows)
        for key, value in fn(batch).items():
            outputs.setdefault(key, []).append(np.asarray(value)[:stop - start])
    return {key: np.concatenate(parts) for key, parts in outputs.items()}


# ------------------------------------------------------------------------------------------------ training

@dataclass
class TrainingSettings:
    """The original Estimator's training configuration (fine-tuning: AdamWeightDecay, clip 1.0, keep all)."""

    output_dir: str
    num_train_steps: int
    num_warmup_steps: int
    learning_rate: float
    save_checkpoints_steps: int
    keep_checkpoint_max: int = 0          # 0 keeps every checkpoint, as the original's RunConfig
    optimizer: str = "adam"
    clip_norm: float = 1.0


@dataclass
class TrainResult:
    global_step: int
    loss: Optional[float]                 # the last step's loss (None when there was nothing left to train)
    checkpoints: list = field(default_factory=list)   # prefixes saved by this call


def _checkpoint_tensors(model: tf.Module, step: optimization.TrainStep) -> dict[str, tf.Variable]:
    tensors = checkpoint.named_variables(model)
    tensors.update(step.state_variables())
    return tensors


def train(model: tf.Module, loss_fn: Callable[[Batch], tf.Tensor],
          batches: Union[TrainBatches, tf.data.Dataset], settings: TrainingSettings,
          on_checkpoint: Optional[Callable[[int, str], None]] = None) -> TrainResult:
    """Train `model` until settings.num_train_steps, resuming from the newest checkpoint of output_dir.

    After an interruption the weights, optimizer slots and global_step come back from the newest complete
    `model.ckpt-N` (like an Estimator restarted on its model_dir, init_checkpoint is then irrelevant) and the
    input continues after the N batches already consumed (`batches`: train_batches(...), or any repeated
    tf.data.Dataset of batches, which is skipped). `on_checkpoint(step, prefix)` runs after each save, while the
    model's weights are the saved ones.
    """
    if settings.save_checkpoints_steps < 1:
        raise InputError(f"--save_checkpoints_steps must be positive, got {settings.save_checkpoints_steps}")
    os.makedirs(settings.output_dir, exist_ok=True)
    optimizer = optimization.create_optimizer(settings.learning_rate, settings.num_train_steps,
                                              settings.num_warmup_steps, optimizer=settings.optimizer)
    step = optimization.build_train_step(loss_fn, model.trainable_variables, optimizer,
                                         clip_norm=settings.clip_norm)
    newest = checkpoint.latest_checkpoint(settings.output_dir)
    if newest is not None:
        checkpoint.load_checkpoint(newest, _checkpoint_tensors(model, step), log_missing=False)
        print(f"resuming from {newest} at step {int(step.global_step.numpy())}", flush=True)
    global_step = int(step.global_step.numpy())
    result = TrainResult(global_step, None)
    if global_step >= settings.num_train_steps:
        logging.info("%s is already at step %d of %d: nothing to train", settings.output_dir, global_step,
                     settings.num_train_steps)
        return result
    if isinstance(batches, TrainBatches):
        iterator: Iterator[Batch] = batches.from_step(global_step)
    else:
        iterator = iter(batches.skip(global_step))
    progress = tqdm(total=settings.num_train_steps, initial=global_step, desc="training", unit="step")
    try:
        while global_step < settings.num_train_steps:
            outputs = step(iterator)
            global_step = int(outputs["global_step"].numpy())
            result.loss = float(outputs["loss"].numpy())
            progress.update(1)
            progress.set_postfix(loss=f"{result.loss:.4f}", lr=f"{float(outputs['learning_rate']):.2e}")
            if global_step % settings.save_checkpoints_steps == 0 or global_step == settings.num_train_steps:
                prefix = checkpoint.save_checkpoint(settings.output_dir, _checkpoint_tensors(model, step),
                                                    step=global_step, max_to_keep=settings.keep_checkpoint_max)
                result.checkpoints.append(prefix)
                if on_checkpoint is not None:
                    on_checkpoint(global_step, prefix)
    finally:
        progress.close()
    result.global_step = global_step
    logging.info("trained to step %d, loss = %s", global_step, result.loss)
    return result


# ------------------------------------------------------------------------------------------------ evaluation

def write_eval_results(path: PathLike, metrics: Mapping[str, Any]) -> None:
    """The original's `key = value` results file (eval_results.txt, eval/test_results.txt)."""
    write_key_values(path, {k: plain(v) for k, v in metrics.items()})
    print(f"***** Eval results: {os.fspath(path)} *****", flush=True)
    for key in sorted(metrics):
        print(f"  {key} = {plain(metrics[key])}", flush=True)


def evaluate_checkpoints(model: tf.Module, output_dir: PathLike,
                         evaluate_fn: Callable[[], Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate every complete checkpoint of output_dir that eval_history lacks (those saved while an
    evaluation was not running, e.g. before an interruption), then leave the newest one's weights loaded."""
    done = {e["step"] for e in read_eval_history(output_dir)}
    pending = [p for p in checkpoint.all_checkpoints(output_dir) if checkpoint.checkpoint_step(p) not in done]
    for prefix in pending:
        checkpoint.load_checkpoint(prefix, model, log_missing=False)
        step = checkpoint.checkpoint_step(prefix)
        append_eval_history(output_dir, step, prefix, {**evaluate_fn(), "global_step": step})
    if pending:
        checkpoint.load_checkpoint(checkpoint.latest_checkpoint(output_dir), model, log_missing=False)
    return read_eval_history(output_dir)


def train_and_evaluate(model: tf.Module, loss_fn: Callable[[Batch], tf.Tensor],
                       batches: Union[TrainBatches, tf.data.Dataset],
                       settings: TrainingSettings, evaluate_fn: Callable[[], Mapping[str, Any]],
                       metric_key: str) -> tuple[TrainResult, Optional[dict[str, Any]]]:
    """--do_train_and_eval: train, evaluating each checkpoint on dev as it is saved, then catch up with any
    checkpoint not yet evaluated and write eval/all_eval_points_results.txt. Returns the training result and
    the best history entry."""

    def evaluate_saved(step: int, prefix: str) -> None:
        metrics = {**evaluate_fn(), "global_step": step}
        append_eval_history(settings.output_dir, step, prefix, metrics)
        logging.info("step %d: %s", step, metrics)

    result = train(model, loss_fn, batches, settings, on_checkpoint=evaluate_saved)
    evaluate_checkpoints(model, settings.output_dir, evaluate_fn)
    return result, write_eval_points(settings.output_dir, metric_key)


# ------------------------------------------------------------------------------------------------ prediction

def predict_with_checkpoint(model: tf.Module, checkpoint_path: PathLike,
                            predict_fn: Callable[[Batch], Mapping[str, tf.Tensor]], features: Features,
                            batch_size: int, desc: str = "predicting") -> dict[str, np.ndarray]:
    """Load a fine-tuned checkpoint (prefix, file of it, or directory: its newest) into `model` and return
    `predict_fn`'s outputs for every example, in order. Every model variable must be in the checkpoint: a
    pre-trained one without the task head is refused."""
    report = checkpoint.load_checkpoint(checkpoint_path, model, log_missing=False)
    if report.missing:
        raise InputError(f"this checkpoint lacks {len(report.missing)} variables of the fine-tuned model "
                         f"({', '.join(report.missing[:5])}{', ...' if len(report.missing) > 5 else ''}): "
                         "predict with a checkpoint written by fine-tuning (output_dir/model.ckpt-N)",
                         report.prefix)
    print(f"predicting with {report.prefix}", flush=True)
    return run_batches(predict_fn, features, batch_size, desc=desc)
