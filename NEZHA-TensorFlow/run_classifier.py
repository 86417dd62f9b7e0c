"""Fine-tune NEZHA on a classification task: lcqmc, text_clf (ChnSenti), xnli and the GLUE tasks.

The original's flags and outputs: output_dir/label_list.txt, model.ckpt-N every save_checkpoints_steps (all
kept), eval_results.txt (`eval_accuracy`, `eval_loss`, `global_step`, `loss`), with --do_train_and_eval an
evaluation on dev of every checkpoint (eval/eval_history.jsonl, eval/all_eval_points_results.txt), and with
--do_predict the test set scored with --init_checkpoint (after training in the same run: the trained model):
test_results.tsv (class probabilities), test_predictions.tsv (guid, label) and, when test.tsv has labels,
eval/test_results.txt.
"""
from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf
from absl import flags, logging

import checkpoint
import classifier
import distribution
import finetuning
import finetuning_flags
import task_heads
from utils import absl_cli, tokenization
from utils.errors import exit_on_input_error, require_file
from utils.tasks import get_processor

FLAGS = flags.FLAGS

finetuning_flags.define(
    finetuning_flags.MODEL + finetuning_flags.RUN + finetuning_flags.TASK + finetuning_flags.TPU,
    helps={"task_name": "The name of the task to train (lcqmc, text_clf, xnli or a GLUE task)."})
flags.adopt_module_key_flags(finetuning_flags)  # --help lists the shared flags too


def _subsample(examples: list, limit: int) -> list:
    return examples[:limit] if limit and limit > 0 else examples


def _validate_flags() -> None:
    finetuning_flags.require("data_dir", "bert_config_file", "task_name", "vocab_file", "output_dir")
    finetuning_flags.require_one_of("do_train", "do_eval", "do_train_and_eval", "do_predict")
    finetuning_flags.require_positive("train_batch_size", "eval_batch_size", "predict_batch_size")
    finetuning_flags.warn_ignored_tpu_flags()


def _checkpoint_step(prefix: Optional[str]) -> int:
    return max(checkpoint.checkpoint_step(prefix), 0) if prefix else 0


def _load(model: task_heads.ClassifierModel, path: str) -> str:
    """Load a checkpoint (prefix or directory) into the model; warn when it lacks the classification head."""
    report = checkpoint.load_checkpoint(path, model, log_missing=False)
    if report.missing:
        logging.warning("%s lacks %s: those weights are random; pass a fine-tuned output_dir/model.ckpt-N",
                        report.prefix, ", ".join(report.missing))
    return report.prefix


@exit_on_input_error
def main(argv: list[str]) -> None:
    del argv
    distribution.create_engine()  # this process's GPU, with memory growth; a lone copy among several stops
    _validate_flags()
    finetuning.set_seed(FLAGS.seed)
    do_train = FLAGS.do_train or FLAGS.do_train_and_eval
    do_eval = FLAGS.do_eval or FLAGS.do_train_and_eval
    task_name = FLAGS.task_name.lower()
    processor = get_processor(task_name)
    mode = processor.output_mode
    output_dir = FLAGS.output_dir
    tokenizer = tokenization.FullTokenizer(require_file(FLAGS.vocab_file, "--vocab_file"), FLAGS.do_lower_case)
    _, encoder = finetuning.build_encoder(FLAGS.bert_config_file, FLAGS.max_seq_length)
    # Every needed set is read first: bad data stops the run before anything is trained or written.
    data_dir = FLAGS.data_dir
    train_examples = _subsample(processor.get_train_examples(data_dir), FLAGS.max_train_examples) if do_train else []
    eval_examples = _subsample(processor.get_dev_examples(data_dir), FLAGS.max_eval_examples) if do_eval else []
    test_examples = processor.get_test_examples(data_dir) if FLAGS.do_predict else []
    os.makedirs(output_dir, exist_ok=True)
    label_list = classifier.label_list_for(processor, data_dir, output_dir, do_train)
    model = task_heads.ClassifierModel(encoder, len(label_list))
    init_report = finetuning.initialize_from_checkpoint(FLAGS.init_checkpoint, model)
    loaded = init_report.prefix if init_report is not None else None

    def features_of(examples: list, desc: str) -> dict:
        return classifier.convert_examples_to_features(examples, label_list, FLAGS.max_seq_length, tokenizer,
                                                       mode, desc=desc)

    @tf.function(reduce_retracing=True)
    def logits_of(batch):
        return {"logits": model(batch, training=False)}

    eval_features = features_of(eval_examples, "dev features") if do_eval else None

    def evaluate(global_step: int = 0) -> dict:
        logits = finetuning.run_batches(logits_of, eval_features, FLAGS.eval_batch_size, "evaluating")["logits"]
        return classifier.evaluation_metrics(task_name, mode, logits, eval_features["label_ids"],
                                             FLAGS.eval_batch_size, global_step)

    trained_step = None
    if do_train:
        train_features = features_of(train_examples, "train features")
        steps = finetuning.num_train_steps(len(train_examples), FLAGS.train_batch_size, FLAGS.num_train_epochs)
        logging.info("***** Running training *****  examples = %d, batch size = %d, steps = %d",
                     len(train_examples), FLAGS.train_batch_size, steps)
        settings = finetuning.TrainingSettings(
            output_dir, steps, finetuning.num_warmup_steps(steps, FLAGS.warmup_proportion), FLAGS.learning_rate,
            FLAGS.save_checkpoints_steps, keep_checkpoint_max=FLAGS.keep_checkpoint_max)
        batches = finetuning.train_batches(train_features, FLAGS.train_batch_size, seed=FLAGS.seed)

        def loss_fn(batch):
            logits = model(batch, training=True)
            return tf.reduce_mean(task_heads.per_example_loss(logits, batch["label_ids"], mode))

        if FLAGS.do_train_and_eval:
            result, best = finetuning.train_and_evaluate(model, loss_fn, batches, settings, evaluate,
                                                         finetuning.metric_for_task(task_name))
            if best is not None:
                print(f"best checkpoint: {best['checkpoint']} ({best['metrics']})", flush=True)
        else:
            result = finetuning.train(model, loss_fn, batches, settings)
        trained_step = result.global_step

    if do_eval:
        step = trained_step
        if step is None:        # as the Estimator: the newest checkpoint of output_dir, else init_checkpoint
            newest = checkpoint.latest_checkpoint(output_dir)
            if newest is not None and newest != loaded:
                loaded = _load(model, newest)
            step = _checkpoint_step(loaded)
        metrics = evaluate(step)
        finetuning.write_eval_results(os.path.join(output_dir, finetuning.EVAL_RESULTS), metrics)

    if FLAGS.do_predict:
        step = trained_step
        if step is None:        # the original scored the test set with init_checkpoint
            if init_report is None:
                logging.warning("predicting with random weights (--init_checkpoint=none)")
            elif loaded != init_report.prefix:
                loaded = _load(model, init_report.prefix)
            step = _checkpoint_step(loaded)
        test_features = features_of(test_examples, "test features")
        logits = finetuning.run_batches(logits_of, test_features, FLAGS.predict_batch_size, "predicting")["logits"]
        classifier.write_test_predictions(output_dir, test_examples, logits, label_list, mode)
        if all(example.label is not None for example in test_examples):
            metrics = classifier.evaluation_metrics(task_name, mode, logits, test_features["label_ids"],
                                                    FLAGS.predict_batch_size, step)
            finetuning.write_eval_results(os.path.join(output_dir, finetuning.EVAL_DIR, "test_results.txt"),
                                          metrics)
        print(f"wrote {os.path.join(output_dir, 'test_results.tsv')} ({len(test_examples)} examples)", flush=True)


if __name__ == "__main__":
    absl_cli.run(main)
