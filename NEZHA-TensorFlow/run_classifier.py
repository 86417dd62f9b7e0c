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
from absl import app, flags, logging

import checkpoint
import classifier
import distribution
import finetuning
from utils import tokenization
from utils.errors import InputError, exit_on_input_error, require_file
from utils.tasks import get_processor

FLAGS = flags.FLAGS

flags.DEFINE_string("data_dir", None, "The input data dir. Should contain the .tsv files for the task.")
flags.DEFINE_string("bert_config_file", None, "The config json file of the pre-trained NEZHA/BERT model.")
flags.DEFINE_string("task_name", None, "The name of the task to train (lcqmc, text_clf, xnli or a GLUE task).")
flags.DEFINE_string("vocab_file", None, "The vocabulary file that the model was trained on.")
flags.DEFINE_string("output_dir", None, "The output directory where the model checkpoints will be written.")
flags.DEFINE_string("init_checkpoint", None, "Initial checkpoint (usually from a pre-trained NEZHA model); "
                    "`none` starts from random weights.")
flags.DEFINE_bool("do_lower_case", True, "Whether to lower case the input text (uncased models).")
flags.DEFINE_integer("max_seq_length", 128, "The maximum total input sequence length after WordPiece "
                     "tokenization. Longer sequences are truncated, shorter ones padded.")
flags.DEFINE_bool("do_train", False, "Whether to run training.")
flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")
flags.DEFINE_bool("do_train_and_eval", False, "Train and evaluate every saved checkpoint on the dev set.")
flags.DEFINE_bool("do_predict", False, "Whether to run the model in inference mode on the test set.")
flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")
flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")
flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predict.")
flags.DEFINE_float("learning_rate", 3e-5, "The initial learning rate for Adam.")
flags.DEFINE_float("num_train_epochs", 3.0, "Total number of training epochs to perform.")
flags.DEFINE_float("warmup_proportion", 0.1, "Proportion of training to perform linear learning rate warmup for.")
flags.DEFINE_integer("save_checkpoints_steps", 100, "How often to save the model checkpoint.")
flags.DEFINE_integer("iterations_per_loop", 1000, "Accepted for compatibility and ignored (TPU only).")
flags.DEFINE_bool("use_tpu", False, "Accepted for compatibility and ignored: this version runs on CPU/GPU.")
flags.DEFINE_string("tpu_name", None, "Accepted for compatibility and ignored (TPU only).")
flags.DEFINE_string("tpu_zone", None, "Accepted for compatibility and ignored (TPU only).")
flags.DEFINE_string("gcp_project", None, "Accepted for compatibility and ignored (TPU only).")
flags.DEFINE_string("master", None, "Accepted for compatibility and ignored (TPU only).")
flags.DEFINE_integer("num_tpu_cores", 8, "Accepted for compatibility and ignored (TPU only).")
# Additions.
flags.DEFINE_integer("max_train_examples", 0, "Use only the first N training examples (0: all), for quick runs.")
flags.DEFINE_integer("max_eval_examples", 0, "Use only the first N dev examples (0: all), for quick runs.")
flags.DEFINE_integer("keep_checkpoint_max", 0, "Checkpoints to keep (0: all, as the original).")
flags.DEFINE_integer("seed", 12345, "Random seed of initialisation, dropout and shuffling.")


def _subsample(examples: list, limit: int) -> list:
    return examples[:limit] if limit and limit > 0 else examples


def _validate_flags() -> None:
    for name in ("data_dir", "bert_config_file", "task_name", "vocab_file", "output_dir"):
        if not getattr(FLAGS, name):
            raise InputError(f"--{name} is required")
    if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict or FLAGS.do_train_and_eval):
        raise InputError("At least one of `do_train`, `do_eval`, `do_train_and_eval` or `do_predict` must be True.")
    for name in ("train_batch_size", "eval_batch_size", "predict_batch_size"):
        if getattr(FLAGS, name) < 1:
            raise InputError(f"--{name} must be positive, got {getattr(FLAGS, name)}")
    if FLAGS.use_tpu or FLAGS.tpu_name or FLAGS.master:
        logging.warning("TPU flags are accepted for compatibility and ignored: running on %s",
                        "GPU" if tf.config.list_physical_devices("GPU") else "CPU")


def _checkpoint_step(prefix: Optional[str]) -> int:
    return max(checkpoint.checkpoint_step(prefix), 0) if prefix else 0


def _load(model: classifier.ClassifierModel, path: str) -> str:
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
    model = classifier.ClassifierModel(encoder, len(label_list))
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
            return tf.reduce_mean(classifier.per_example_loss(logits, batch["label_ids"], mode))

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
    app.run(main)
