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
from absl import app, flags, logging

import checkpoint
import distribution
import finetuning
import modeling
import ner_data
from utils import metrics, tokenization
from utils.errors import InputError, exit_on_input_error
from utils.tasks import NerSentence, read_ner_file

FLAGS = flags.FLAGS

flags.DEFINE_string("data_dir", None, "Directory with train.txt, dev.txt and test.txt (`char tag` lines).")
flags.DEFINE_string("bert_config_file", None, "The config json file of the pre-trained model.")
flags.DEFINE_string("task_name", None, "The name of the task to train (only `ner`).")
flags.DEFINE_string("vocab_file", None, "The vocabulary file that the model was trained on.")
flags.DEFINE_string("output_dir", None, "Where checkpoints, predictions and results are written.")
flags.DEFINE_string("init_checkpoint", None, "Initial checkpoint (usually a pre-trained NEZHA model; `none` "
                    "trains from random weights). With --do_predict and without --do_train: the fine-tuned "
                    "checkpoint to predict with.")
flags.DEFINE_bool("do_lower_case", True, "Whether to lower case the input text (uncased models).")
flags.DEFINE_integer("max_seq_length", 128, "The maximum total input sequence length after WordPiece "
                     "tokenization. Longer sentences are split into overlapping windows.")
flags.DEFINE_bool("do_train", False, "Whether to run training.")
flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")
flags.DEFINE_bool("do_train_and_eval", False, "Whether to evaluate every saved checkpoint on the dev set "
                  "while training.")
flags.DEFINE_bool("do_predict", False, "Whether to run the model on the test set.")
flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")
flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")
flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predict.")
flags.DEFINE_float("learning_rate", 3e-5, "The initial learning rate for Adam.")
flags.DEFINE_float("num_train_epochs", 3.0, "Total number of training epochs to perform.")
flags.DEFINE_float("warmup_proportion", 0.1, "Proportion of training to perform linear learning rate warmup "
                   "for. E.g., 0.1 = 10% of training.")
flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint.")
flags.DEFINE_integer("iterations_per_loop", 1000, "Accepted for compatibility and ignored (TPU only).")
flags.DEFINE_bool("use_tpu", False, "Accepted for compatibility and ignored: this version runs on CPU/GPU.")
flags.DEFINE_string("tpu_name", None, "Accepted for compatibility and ignored (TPU only).")
flags.DEFINE_string("tpu_zone", None, "Accepted for compatibility and ignored (TPU only).")
flags.DEFINE_string("gcp_project", None, "Accepted for compatibility and ignored (TPU only).")
flags.DEFINE_string("master", None, "Accepted for compatibility and ignored (TPU only).")
flags.DEFINE_integer("num_tpu_cores", 8, "Accepted for compatibility and ignored (TPU only).")
flags.DEFINE_integer("window_stride", 128, "Tokens between the starts of consecutive windows of a sentence "
                     "longer than max_seq_length - 2 tokens (new; the original truncated such sentences).")
flags.DEFINE_integer("max_train_examples", 0, "Use only the first N training sentences (0: all), for quick runs.")
flags.DEFINE_integer("max_eval_examples", 0, "Use only the first N dev sentences (0: all), for quick runs.")
flags.DEFINE_integer("max_predict_examples", 0, "Use only the first N test sentences (0: all), for quick runs.")
flags.DEFINE_integer("keep_checkpoint_max", 0, "Checkpoints to keep (0: all, as the original).")
flags.DEFINE_integer("seed", 12345, "Seed of initialisation, dropout and shuffling.")

TASK_NAME = "ner"
METRIC_KEY = "eval_entity_f1"
DROPOUT_RATE = 0.1   # the original's keep_prob 0.9 on the sequence output
ENTITY_TYPES = ("PER", "ORG", "LOC")   # always reported, so every evaluation has the same keys


class NerModel(tf.Module):
    """Encoder `bert/...` and the token classification head `output_weights`/`output_bias`."""

    def __init__(self, encoder: modeling.BertModel, config: modeling.BertConfig):
        super().__init__(name=None)
        self.bert = encoder
        self.head = modeling.DenseHead(ner_data.NUM_LABELS, config.hidden_size, "", config.initializer_range)

    def __call__(self, batch: Mapping[str, tf.Tensor], training: bool) -> tf.Tensor:
        """Logits [B, S, 11] in float32."""
        output = self.bert(batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                           training=training).sequence_output
        output = modeling.dropout(output, DROPOUT_RATE, training)
        hidden = output.shape[-1]
        logits = self.head(tf.reshape(output, [-1, hidden]))
        return tf.reshape(logits, [tf.shape(output)[0], tf.shape(output)[1], ner_data.NUM_LABELS])


def token_losses(logits: tf.Tensor, label_ids: tf.Tensor) -> tf.Tensor:
    """Cross-entropy of every position [B, S] (padding positions included, label 0, as the original)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(label_ids, tf.int32), logits=logits)


def make_loss_fn(model: NerModel) -> Callable[[Mapping[str, tf.Tensor]], tf.Tensor]:
    def loss_fn(batch: Mapping[str, tf.Tensor]) -> tf.Tensor:
        return tf.reduce_sum(token_losses(model(batch, training=True), batch["label_ids"]))
    return loss_fn


def make_predict_fn(model: NerModel) -> Callable[[Mapping[str, tf.Tensor]], dict[str, tf.Tensor]]:
    @tf.function
    def predict_fn(batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        logits = model(batch, training=False)
        return {"predictions": tf.argmax(logits, axis=-1, output_type=tf.int32),
                "loss": tf.reduce_sum(token_losses(logits, batch["label_ids"]), axis=-1)}
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
    for name in ("data_dir", "bert_config_file", "task_name", "vocab_file", "output_dir"):
        if getattr(FLAGS, name) is None:
            raise InputError(f"--{name} is required")
    if FLAGS.task_name.lower() != TASK_NAME:
        raise InputError(f"Task not found: {FLAGS.task_name} (this script runs task `ner` only)")
    if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict or FLAGS.do_train_and_eval):
        raise InputError("At least one of `do_train`, `do_eval`, `do_train_and_eval` or `do_predict` must be True.")
    for name in ("train_batch_size", "eval_batch_size", "predict_batch_size", "max_seq_length"):
        if getattr(FLAGS, name) < 1:
            raise InputError(f"--{name} must be positive, got {getattr(FLAGS, name)}")
    if FLAGS.window_stride < 1:
        raise InputError(f"--window_stride must be positive, got {FLAGS.window_stride}")
    if FLAGS.use_tpu or FLAGS.master or FLAGS.tpu_name:
        logging.warning("TPU flags are accepted for compatibility and ignored")


def run() -> None:
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
    config, encoder = finetuning.build_encoder(FLAGS.bert_config_file, FLAGS.max_seq_length)
    model = NerModel(encoder, config)
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


@exit_on_input_error
def main(argv: list[str]) -> None:
    del argv
    distribution.create_engine()  # this process's GPU, with memory growth; a lone copy among several stops
    run()


if __name__ == "__main__":
    app.run(main)
