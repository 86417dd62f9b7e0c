"""Fine-tune NEZHA/BERT for extractive reading comprehension: CMRC2018 / SQuAD v1 JSON (the original
run_squad.py, derived from CMRC2018-DRCD-BERT).

Chinese is tokenized by character (squad_data.customize_tokenizer); contexts longer than the window are split
into doc_stride windows. The model is the encoder's sequence output -> `cls/squad/output_weights` [2, H] /
`cls/squad/output_bias` [2], start and end logits outside the context (input_span_mask 0) pushed down by
10000; the loss is the mean over the batch of the start and end cross-entropies, averaged.

Outputs under output_dir: model.ckpt-N every save_checkpoints_steps (the last 2 kept, as the original);
dev_predictions.json ({qas_id: answer}) and dev_nbest_predictions.json for --predict_file (--do_predict);
test_predictions.json and test_nbest_predictions.json for --eval_file (--do_eval). New: when the predicted file
has gold answers, its CMRC2018 EM/F1 (utils/cmrc2018_evaluate.py) go to eval_results.txt (dev) or
test_results.txt (eval_file); --do_train_and_eval scores every saved checkpoint on predict_file
(eval/eval_history.jsonl, eval/all_eval_points_results.txt).
"""
from __future__ import annotations

import json
import os
import random
from typing import Any, Mapping, Optional

import numpy as np
import tensorflow as tf
from absl import flags, logging

import checkpoint
import distribution
import finetuning
import finetuning_flags
import squad_data
import task_heads
from utils import absl_cli, cmrc2018_evaluate
from utils.errors import InputError, exit_on_input_error
from utils.fileio import atomic_open
from utils.tasks import SquadExample, read_squad_file

FLAGS = flags.FLAGS

finetuning_flags.define(
    finetuning_flags.MODEL + finetuning_flags.RUN + finetuning_flags.TPU,
    do_lower_case=False, max_seq_length=384, save_checkpoints_steps=1000, max_train_examples=None,
    helps={"init_checkpoint": "Initial checkpoint (usually a pre-trained NEZHA model; `none` trains from random "
                              "weights). Without --do_train: the fine-tuned checkpoint to predict with.",
           "max_seq_length": "The maximum total input sequence length after WordPiece tokenization. Longer "
                             "contexts are split into windows.",
           "do_predict": "Whether to predict --predict_file.",
           "do_eval": "Whether to predict --eval_file.",
           "do_train_and_eval": "Score every saved checkpoint on --predict_file while training (new)."})
flags.adopt_module_key_flags(finetuning_flags)  # --help lists the shared flags too
flags.DEFINE_alias("rand_seed", "seed")   # the original's name
flags.DEFINE_string("train_file", None, "SQuAD/CMRC2018 json for training.")
flags.DEFINE_string("predict_file", None, "SQuAD/CMRC2018 json for predictions (dev_predictions.json).")
flags.DEFINE_string("eval_file", None, "SQuAD/CMRC2018 json predicted with --do_eval (test_predictions.json).")
flags.DEFINE_integer("doc_stride", 128, "When splitting up a long document into chunks, how much stride to "
                     "take between chunks.")
flags.DEFINE_integer("max_query_length", 64, "The maximum number of tokens for the question. Longer questions "
                     "are truncated.")
flags.DEFINE_integer("n_best_size", 20, "The total number of n-best predictions to generate in the "
                     "nbest_predictions.json output file.")
flags.DEFINE_integer("max_answer_length", 30, "The maximum length of an answer that can be generated.")
flags.DEFINE_bool("verbose_logging", False, "Log the first features of every set.")
flags.DEFINE_integer("max_predict_examples", None, "Use only the first N questions of predict_file and "
                     "eval_file (quick runs; 0: all; new).")

KEEP_CHECKPOINT_MAX = 2       # the original's RunConfig(keep_checkpoint_max=2); all with --do_train_and_eval
METRIC_KEY = "eval_f1"


def make_loss_fn(model: task_heads.SquadModel):
    def loss_fn(batch: Mapping[str, tf.Tensor]) -> tf.Tensor:
        start_logits, end_logits = model(batch, training=True)
        return (task_heads.position_loss(start_logits, batch["start_positions"])
                + task_heads.position_loss(end_logits, batch["end_positions"])) / 2.0
    return loss_fn


def make_predict_fn(model: task_heads.SquadModel):
    @tf.function
    def predict_fn(batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        start_logits, end_logits = model(batch, training=False)
        return {"unique_ids": batch["unique_ids"], "start_logits": tf.nn.log_softmax(start_logits, axis=-1),
                "end_logits": tf.nn.log_softmax(end_logits, axis=-1)}
    return predict_fn


def load_examples(path: str, limit: Optional[int]) -> list[SquadExample]:
    """The questions of a JSON file; with a positive `limit`, only the first `limit` (0 or None: all)."""
    examples = read_squad_file(path)
    return examples[:limit] if limit else examples


def convert(examples: list[SquadExample], tokenizer: squad_data.ChineseFullTokenizer,
            is_training: bool, path: str) -> squad_data.ConvertedExamples:
    converted = squad_data.convert_examples_to_features(examples, tokenizer, FLAGS.max_seq_length,
                                                        FLAGS.doc_stride, FLAGS.max_query_length, is_training)
    print(f"{path}: {len(converted.examples)} questions, {len(converted.features)} windows", flush=True)
    if is_training:
        print(converted.stats.summary(), flush=True)
        if converted.stats.skipped_ids:
            logging.warning("questions skipped (answer not in context): %s%s",
                            ", ".join(converted.stats.skipped_ids[:10]),
                            ", ..." if len(converted.stats.skipped_ids) > 10 else "")
        if not converted.examples:
            raise InputError("no training question has its answer in its context", path)
    if FLAGS.verbose_logging:
        for feature in converted.features[:5]:
            logging.info("unique_id %d, tokens: %s, start %d, end %d", feature.unique_id, " ".join(feature.tokens),
                         feature.start_position, feature.end_position)
    return converted


def write_predictions(converted: squad_data.ConvertedExamples, outputs: Mapping[str, np.ndarray],
                      prediction_file: str, nbest_file: str) -> dict[str, str]:
    """The original's two JSON files (indent 4; answers readable, n-best ASCII-escaped as json's default)."""
    expected = np.array([f.unique_id for f in converted.features])
    if not np.array_equal(outputs["unique_ids"], expected):
        raise RuntimeError("predictions came back out of order")
    predictions, nbest = squad_data.write_predictions_data(converted, outputs["start_logits"],
                                                           outputs["end_logits"], FLAGS.n_best_size,
                                                           FLAGS.max_answer_length)
    with atomic_open(prediction_file) as handle:
        handle.write(json.dumps(predictions, ensure_ascii=False, indent=4) + "\n")
    with atomic_open(nbest_file) as handle:
        handle.write(json.dumps(nbest, indent=4) + "\n")
    print(f"wrote {prediction_file} and {nbest_file}", flush=True)
    return predictions


def score(converted: squad_data.ConvertedExamples, predictions: Mapping[str, str]) -> Optional[dict[str, Any]]:
    """CMRC2018 EM/F1 of the predictions, when every question has a gold answer."""
    if not squad_data.has_answers(converted.examples):
        return None
    result = cmrc2018_evaluate.evaluate(squad_data.examples_dataset(converted.examples), predictions)
    return {"eval_em": result["EM"], "eval_f1": result["F1"], "eval_average": result["AVERAGE"],
            "eval_total": result["TOTAL"], "eval_skip": result["SKIP"]}


def validate_flags() -> None:
    finetuning_flags.require("bert_config_file", "vocab_file", "output_dir")
    finetuning_flags.require_one_of("do_train", "do_predict", "do_eval")
    if FLAGS.do_train and not FLAGS.train_file:
        raise InputError("If `do_train` is True, then `train_file` must be specified.")
    if (FLAGS.do_predict or FLAGS.do_train_and_eval) and not FLAGS.predict_file:
        raise InputError("If `do_predict` (or `do_train_and_eval`) is True, then `predict_file` must be specified.")
    if FLAGS.do_eval and not FLAGS.eval_file:
        raise InputError("If `do_eval` is True, then `eval_file` must be specified.")
    if FLAGS.do_train_and_eval and not FLAGS.do_train:
        raise InputError("--do_train_and_eval needs --do_train=true")
    if FLAGS.max_seq_length <= FLAGS.max_query_length + 3:
        raise InputError(f"The max_seq_length ({FLAGS.max_seq_length}) must be greater than max_query_length "
                         f"({FLAGS.max_query_length}) + 3")
    finetuning_flags.require_positive("doc_stride", "n_best_size", "max_answer_length", "train_batch_size",
                                      "predict_batch_size")
    finetuning_flags.warn_ignored_tpu_flags()


def prediction_checkpoint(output_dir: str) -> str:
    """The newest checkpoint of output_dir (the Estimator's choice), else --init_checkpoint (fine-tuned)."""
    newest = checkpoint.latest_checkpoint(output_dir)
    if newest is not None:
        return newest
    chosen = FLAGS.init_checkpoint
    if chosen is None or chosen.strip().lower() in finetuning.NO_CHECKPOINT:
        raise InputError(f"prediction needs a fine-tuned checkpoint: {output_dir} has none; train with --do_train "
                         "or pass --init_checkpoint=<dir>/model.ckpt-N")
    return chosen


@exit_on_input_error
def main(argv: list[str]) -> None:
    del argv
    distribution.create_engine()  # this process's GPU, with memory growth; a lone copy among several stops
    validate_flags()
    finetuning.set_seed(FLAGS.seed)
    output_dir = FLAGS.output_dir
    tokenizer = squad_data.ChineseFullTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
    # Every input is read before a model is built, so a bad file stops the run at once.
    train = dev = test = None
    if FLAGS.do_train:
        examples = load_examples(FLAGS.train_file, FLAGS.max_train_examples)
        random.Random(FLAGS.seed).shuffle(examples)
        train = convert(examples, tokenizer, True, FLAGS.train_file)
    if FLAGS.do_predict or FLAGS.do_train_and_eval:
        dev = convert(load_examples(FLAGS.predict_file, FLAGS.max_predict_examples), tokenizer, False,
                      FLAGS.predict_file)
    if FLAGS.do_eval:
        test = convert(load_examples(FLAGS.eval_file, FLAGS.max_predict_examples), tokenizer, False,
                       FLAGS.eval_file)
    if not FLAGS.do_train:
        prediction_checkpoint(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    _, encoder = finetuning.build_encoder(FLAGS.bert_config_file, FLAGS.max_seq_length)
    model = task_heads.SquadModel(encoder)
    predict_fn = make_predict_fn(model)

    if train is not None:
        def evaluate() -> dict[str, Any]:
            outputs = finetuning.run_batches(predict_fn, squad_data.feature_arrays(dev.features, is_training=False),
                                             FLAGS.predict_batch_size, desc="evaluating")
            predictions, _ = squad_data.write_predictions_data(dev, outputs["start_logits"], outputs["end_logits"],
                                                               FLAGS.n_best_size, FLAGS.max_answer_length)
            return score(dev, predictions) or {}

        steps = finetuning.num_train_steps(len(train.examples), FLAGS.train_batch_size, FLAGS.num_train_epochs)
        settings = finetuning.TrainingSettings(
            output_dir=output_dir, num_train_steps=steps,
            num_warmup_steps=finetuning.num_warmup_steps(steps, FLAGS.warmup_proportion),
            learning_rate=FLAGS.learning_rate, save_checkpoints_steps=FLAGS.save_checkpoints_steps,
            keep_checkpoint_max=0 if FLAGS.do_train_and_eval else KEEP_CHECKPOINT_MAX)
        if checkpoint.latest_checkpoint(output_dir) is None:
            finetuning.initialize_from_checkpoint(FLAGS.init_checkpoint, model)
        batches = finetuning.train_batches(squad_data.feature_arrays(train.features, is_training=True),
                                           FLAGS.train_batch_size, seed=FLAGS.seed)
        logging.info("***** Running training: %d questions, %d windows, batch size %d, %d steps *****",
                     len(train.examples), len(train.features), FLAGS.train_batch_size, steps)
        if FLAGS.do_train_and_eval:
            finetuning.train_and_evaluate(model, make_loss_fn(model), batches, settings, evaluate, METRIC_KEY)
        else:
            finetuning.train(model, make_loss_fn(model), batches, settings)

    targets = [(dev, "dev", finetuning.EVAL_RESULTS)] if FLAGS.do_predict else []
    if test is not None:
        targets.append((test, "test", "test_results.txt"))
    if not targets:
        return
    chosen = prediction_checkpoint(output_dir)
    step = checkpoint.checkpoint_step(checkpoint.resolve_checkpoint(chosen))
    for converted, name, results_name in targets:
        arrays = squad_data.feature_arrays(converted.features, is_training=False)
        outputs = finetuning.predict_with_checkpoint(model, chosen, predict_fn, arrays, FLAGS.predict_batch_size)
        predictions = write_predictions(converted, outputs, os.path.join(output_dir, f"{name}_predictions.json"),
                                        os.path.join(output_dir, f"{name}_nbest_predictions.json"))
        result = score(converted, predictions)
        if result is not None:
            result["global_step"] = step
            finetuning.write_eval_results(os.path.join(output_dir, results_name), result)


if __name__ == "__main__":
    absl_cli.run(main)
