"""Fine-tune NEZHA/BERT for People's Daily style NER (the original run_classifier_ner.py, task `ner`).

Data: data_dir/{train,dev,test}.txt, one `char tag` per line, a blank line after each sentence. The model is
the encoder's sequence output -> dropout 0.1 (training) -> `output_weights` [11, H] / `output_bias` [11]; the
loss is the original's sum of token cross-entropies over the batch and every position, padding included.

Outputs under output_dir: label2id.pkl; model.ckpt-N every save_checkpoints_steps (all kept);
eval/eval_history.jsonl with every checkpoint's dev scores (--do_train_and_eval); eval_results.txt and
dev_predictions.txt (--do_eval); token_test.txt, test_predictions.txt (`char gold pred`) and
eval/test_results.txt (--do_predict). Scores: the original's token-level eval_precision/eval_recall/eval_f and
the entity-level eval_entity_precision/eval_entity_recall/eval_entity_f1 (overall and per type), by which
select_best.py picks the best checkpoint.

Changes from the original: sentences longer than max_seq_length - 2 tokens are split into overlapping windows
(--window_stride) instead of being truncated; every blank line ends a sentence (the original merged
sentences not ending in 。 and dropped the last one); the test evaluation runs only with --do_predict, with
--init_checkpoint (a fine-tuned checkpoint, or a directory: its newest) or, after training in the same run,
with the trained model, and it writes per-character predictions; a character the tokenizer drops keeps a
place as [UNK].
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import flags, logging

import checkpoint
import distribution
import finetuning
import finetuning_flags
import ner_data
import task_heads
from utils import absl_cli, metrics, tokenization
from utils.errors import InputError, exit_on_input_error
from utils.tasks import NerSentence, read_ner_file

FLAGS = flags.FLAGS

finetuning_flags.define(
    finetuning_flags.MODEL + finetuning_flags.RUN + finetuning_flags.TASK + finetuning_flags.TPU,
    save_checkpoints_steps=1000,
    helps={"data_dir": "Directory with train.txt, dev.txt and test.txt (`char tag` lines).",
           "task_name": "The name of the task to train (only `ner`).",
           "init_checkpoint": "Initial checkpoint (usually a pre-trained NEZHA model; `none` trains from random "
                              "weights). With --do_predict and without --do_train: the fine-tuned checkpoint to "
                              "predict with.",
           "max_seq_length": "The maximum total input sequence length after WordPiece tokenization. Longer "
                             "sentences are split into overlapping windows."})
flags.adopt_module_key_flags(finetuning_flags)  # --help lists the shared flags too
flags.DEFINE_integer("window_stride", 128, "Tokens between the starts of consecutive windows of a sentence "
                     "longer than max_seq_length - 2 tokens (new; the original truncated such sentences).")
flags.DEFINE_integer("max_predict_examples", 0, "Use only the first N test sentences (0: all), for quick runs.")

TASK_NAME = "ner"
METRIC_KEY = "eval_entity_f1"
ENTITY_TYPES = ("PER", "ORG", "LOC")   # always reported, so every evaluation has the same keys


def make_loss_fn(model: task_heads.NerModel) -> Callable[[Mapping[str, tf.Tensor]], tf.Tensor]:
    def loss_fn(batch: Mapping[str, tf.Tensor]) -> tf.Tensor:
        return tf.reduce_sum(task_heads.token_losses(model(batch, training=True), batch["label_ids"]))
    return loss_fn


def make_predict_fn(model: task_heads.NerModel) -> Callable[[Mapping[str, tf.Tensor]], dict[str, tf.Tensor]]:
    @tf.function
    def predict_fn(batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        logits = model(batch, training=False)
        return {"predictions": tf.argmax(logits, axis=-1, output_type=tf.int32),
                "loss": tf.reduce_sum(task_heads.token_losses(logits, batch["label_ids"]), axis=-1)}
    return predict_fn


class NerSet:
    """Sentences of one file with their window features."""

    def __init__(self, sentences: Sequence[NerSentence], tokenizer: tokenization.FullTokenizer,
                 max_seq_length: int, window_stride: int):
        self.sentences = list(sentences)
        self.features = ner_data.convert_sentences(self.sentences, tokenizer, max_seq_length, window_stride)
        self.arrays = ner_data.feature_arrays(self.features)


def load_set(path: str, limit: int, tokenizer: tokenization.FullTokenizer) -> NerSet:
    sentences = read_ner_file(path)
    if limit > 0:
        sentences = sentences[:limit]
    data = NerSet(sentences, tokenizer, FLAGS.max_seq_length, FLAGS.window_stride)
    windowed = len(data.features) - len(data.sentences)
    logging.info("%s: %d sentences, %d windows%s", path, len(data.sentences), len(data.features),
                 f" ({windowed} extra windows for long sentences)" if windowed else "")
    return data


def score(data: NerSet, outputs: Mapping[str, np.ndarray], batch_size: int) -> tuple[dict[str, Any], list]:
    """Token-level (the original's) and entity-level scores of predictions over a set, and the tags."""
    predictions = outputs["predictions"]
    token = metrics.ner_token_scores(data.arrays["label_ids"], predictions, num_labels=ner_data.NUM_LABELS)
    tags = ner_data.assemble_predictions(data.features, predictions, data.sentences)
    entity = metrics.ner_entity_scores([s.tags for s in data.sentences], tags)
    result: dict[str, Any] = {
        "eval_precision": token["precision"], "eval_recall": token["recall"], "eval_f": token["f"],
        "eval_entity_precision": entity["precision"], "eval_entity_recall": entity["recall"],
        "eval_entity_f1": entity["f1"],
        # the Estimator's `loss`: the training loss (summed over a batch) averaged over the evaluation batches
        "loss": float(np.mean(outputs["loss"]) * batch_size),
    }
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    for kind in sorted(set(ENTITY_TYPES) | set(entity["per_type"])):
        for name, value in entity["per_type"].get(kind, zero).items():
            result[f"eval_entity_{kind}_{name}"] = value
    return result, tags


def validate_flags() -> None:
    finetuning_flags.require("data_dir", "bert_config_file", "task_name", "vocab_file", "output_dir")
    if FLAGS.task_name.lower() != TASK_NAME:
        raise InputError(f"Task not found: {FLAGS.task_name} (this script runs task `ner` only)")
    finetuning_flags.require_one_of("do_train", "do_eval", "do_train_and_eval", "do_predict")
    finetuning_flags.require_positive("train_batch_size", "eval_batch_size", "predict_batch_size", "max_seq_length",
                                      "window_stride")
    finetuning_flags.warn_ignored_tpu_flags()


@exit_on_input_error
def main(argv: list[str]) -> None:
    del argv
    distribution.create_engine()  # this process's GPU, with memory growth; a lone copy among several stops
    validate_flags()
    do_train = FLAGS.do_train or FLAGS.do_train_and_eval
    do_eval = FLAGS.do_eval or FLAGS.do_train_and_eval
    output_dir = FLAGS.output_dir
    if FLAGS.do_predict and not do_train and (
            FLAGS.init_checkpoint is None or FLAGS.init_checkpoint.strip().lower() in finetuning.NO_CHECKPOINT):
        raise InputError("--do_predict needs a fine-tuned checkpoint: pass --init_checkpoint=<output_dir>/"
                         "model.ckpt-N (run_seq_labelling_predict.sh does)")
    finetuning.set_seed(FLAGS.seed)
    tokenizer = tokenization.FullTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)

    def load(split: str, limit: int, wanted: bool) -> NerSet | None:
        return load_set(os.path.join(FLAGS.data_dir, f"{split}.txt"), limit, tokenizer) if wanted else None

    train = load("train", FLAGS.max_train_examples, do_train)
    dev = load("dev", FLAGS.max_eval_examples, do_eval)
    test = load("test", FLAGS.max_predict_examples, FLAGS.do_predict)
    os.makedirs(output_dir, exist_ok=True)
    ner_data.write_label_map(output_dir)
    _, encoder = finetuning.build_encoder(FLAGS.bert_config_file, FLAGS.max_seq_length)
    model = task_heads.NerModel(encoder, ner_data.NUM_LABELS)
    predict_fn = make_predict_fn(model)

    def evaluate() -> dict[str, Any]:
        outputs = finetuning.run_batches(predict_fn, dev.arrays, FLAGS.eval_batch_size, desc="evaluating")
        return score(dev, outputs, FLAGS.eval_batch_size)[0]

    if train is not None:
        steps = finetuning.num_train_steps(len(train.features), FLAGS.train_batch_size, FLAGS.num_train_epochs)
        settings = finetuning.TrainingSettings(
            output_dir=output_dir, num_train_steps=steps,
            num_warmup_steps=finetuning.num_warmup_steps(steps, FLAGS.warmup_proportion),
            learning_rate=FLAGS.learning_rate, save_checkpoints_steps=FLAGS.save_checkpoints_steps,
            keep_checkpoint_max=FLAGS.keep_checkpoint_max)
        if checkpoint.latest_checkpoint(output_dir) is None:
            finetuning.initialize_from_checkpoint(FLAGS.init_checkpoint, model)
        batches = finetuning.train_batches(train.arrays, FLAGS.train_batch_size, seed=FLAGS.seed)
        logging.info("***** Running training: %d windows, batch size %d, %d steps *****", len(train.features),
                     FLAGS.train_batch_size, steps)
        if FLAGS.do_train_and_eval:
            finetuning.train_and_evaluate(model, make_loss_fn(model), batches, settings, evaluate, METRIC_KEY)
        else:
            finetuning.train(model, make_loss_fn(model), batches, settings)

    if dev is not None:
        newest = checkpoint.latest_checkpoint(output_dir)
        if newest is not None:
            checkpoint.load_checkpoint(newest, model, log_missing=False)
        else:
            finetuning.initialize_from_checkpoint(FLAGS.init_checkpoint, model)
        outputs = finetuning.run_batches(predict_fn, dev.arrays, FLAGS.eval_batch_size, desc="evaluating")
        result, tags = score(dev, outputs, FLAGS.eval_batch_size)
        result["global_step"] = max(checkpoint.checkpoint_step(newest), 0) if newest else 0
        ner_data.write_predictions(os.path.join(output_dir, "dev_predictions.txt"), dev.sentences, tags)
        finetuning.write_eval_results(os.path.join(output_dir, finetuning.EVAL_RESULTS), result)

    if test is not None:
        ner_data.write_tokens(os.path.join(output_dir, "token_test.txt"), test.features)
        chosen = checkpoint.latest_checkpoint(output_dir) if do_train else FLAGS.init_checkpoint
        outputs = finetuning.predict_with_checkpoint(model, chosen, predict_fn, test.arrays,
                                                     FLAGS.predict_batch_size)
        result, tags = score(test, outputs, FLAGS.predict_batch_size)
        result["global_step"] = max(checkpoint.checkpoint_step(checkpoint.resolve_checkpoint(chosen)), 0)
        ner_data.write_predictions(os.path.join(output_dir, "test_predictions.txt"), test.sentences, tags)
        finetuning.write_eval_results(os.path.join(finetuning.eval_dir(output_dir), "test_results.txt"), result)
        print(f"wrote {os.path.join(output_dir, 'test_predictions.txt')} ({len(test.sentences)} sentences)",
              flush=True)


if __name__ == "__main__":
    absl_cli.run(main)
