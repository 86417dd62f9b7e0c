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


def _checkpoint_step(path: Optional[str]) -> int:
    if not path or path.strip().lower() in finetuning.NO_CHECKPOINT:
        return 0
    return max(checkpoint.checkpoint_step(checkpoint.resolve_checkpoint(path)), 0)


@exit_on_input_error
def main(argv: list[str]) -> None:
    del argv
    _validate_flags()
    finetuning.set_seed(FLAGS.seed)
    do_train = FLAGS.do_train or FLAGS.do_train_and_eval
    do_eval = FLAGS.do_eval or FLAGS.do_train_and_eval
    task_name = FLAGS.task_name.lower()
    processor = get_processor(task_name)
    mode = processor.output_mode
    output_dir = FLAGS.output_dir
    os.makedirs(output_dir, exist_ok=True)
    tokenizer = tokenization.FullTokenizer(require_file(FLAGS.vocab_file, "--vocab_file"), FLAGS.do_lower_case)
    _, encoder = finetuning.build_encoder(FLAGS.bert_config_file, FLAGS.max_seq_length)
    train_examples = []
    if do_train:      # read (and validate) the training set before anything is written
        train_examples = _subsample(processor.get_train_examples(FLAGS.data_dir), FLAGS.max_train_examples)
    label_list = classifier.label_list_for(processor, FLAGS.data_dir, output_dir, do_train)
    model = classifier.ClassifierModel(encoder, len(label_list))
    init_report = finetuning.initialize_from_checkpoint(FLAGS.init_checkpoint, model)

    def features_of(examples: list, desc: str) -> dict:
        return classifier.convert_examples_to_features(examples, label_list, FLAGS.max_seq_length, tokenizer,
                                                       mode, desc=desc)

    @tf.function(reduce_retracing=True)
    def logits_of(batch):
        return {"logits": model(batch, training=False)}

    eval_examples = eval_features = None
    if do_eval:
        eval_examples = _subsample(processor.get_dev_examples(FLAGS.data_dir), FLAGS.max_eval_examples)
        eval_features = features_of(eval_examples, "dev features")

    def evaluate(global_step: int = 0) -> dict:
        logits = finetuning.run_batches(logits_of, eval_features, FLAGS.eval_batch_size, "evaluating")["logits"]
        return classifier.evaluation_metrics(task_name, mode, logits, eval_features["label_ids"],
                                             FLAGS.eval_batch_size, global_step)

    global_step = _checkpoint_step(FLAGS.init_checkpoint)
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
        global_step = result.global_step
    elif do_eval or FLAGS.do_predict:
        if init_report is None and not FLAGS.do_train:
            logging.warning("evaluating/predicting with random weights (--init_checkpoint=none)")
        elif init_report is not None and init_report.missing:
            logging.warning("%s lacks the classification head (%s): results come from a random head; pass a "
                            "fine-tuned output_dir/model.ckpt-N", init_report.prefix, ", ".join(init_report.missing))

    if do_eval:
        metrics = evaluate(global_step)
        finetuning.write_eval_results(os.path.join(output_dir, finetuning.EVAL_RESULTS), metrics)

    if FLAGS.do_predict:
        test_examples = processor.get_test_examples(FLAGS.data_dir)
        test_features = features_of(test_examples, "test features")
        logits = finetuning.run_batches(logits_of, test_features, FLAGS.predict_batch_size, "predicting")["logits"]
        classifier.write_test_predictions(output_dir, test_examples, logits, label_list, mode)
        if all(example.label is not None for example in test_examples):
            metrics = classifier.evaluation_metrics(task_name, mode, logits, test_features["label_ids"],
                                                    FLAGS.predict_batch_size, global_step)
            finetuning.write_eval_results(os.path.join(output_dir, finetuning.EVAL_DIR, "test_results.txt"),
                                          metrics)
        print(f"wrote {os.path.join(output_dir, 'test_results.tsv')} ({len(test_examples)} examples)", flush=True)


if __name__ == "__main__":
    app.run(main)
