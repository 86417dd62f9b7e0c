"""The flags the NEZHA fine-tuning entries share (run_classifier.py, run_classifier_ner.py, run_squad.py; the
model flags also extract_features.py), each defined once here, and the checks they share.

An entry defines the groups it has; a keyword argument gives the entry's own default where the original
entries differ (the table holds run_classifier.py's), `helps` the entry's own help where the flag means more
there (which file --do_predict reads, what --init_checkpoint is without --do_train):

    finetuning_flags.define(finetuning_flags.MODEL + finetuning_flags.RUN + finetuning_flags.TPU,
                            save_checkpoints_steps=1000, helps={"do_predict": "Whether to predict --predict_file."})
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional

import tensorflow as tf
from absl import flags, logging

from utils.errors import InputError

FLAGS = flags.FLAGS


class Flag(NamedTuple):
    define: Callable[..., Any]
    default: Any
    help: str


_IGNORED = "Accepted for compatibility and ignored (TPU only)."
SHARED: dict[str, Flag] = {
    # model
    "bert_config_file": Flag(flags.DEFINE_string, None, "The config json file of the pre-trained NEZHA/BERT model."),
    "vocab_file": Flag(flags.DEFINE_string, None, "The vocabulary file that the model was trained on."),
    "init_checkpoint": Flag(flags.DEFINE_string, None, "Initial checkpoint (usually from a pre-trained NEZHA "
                            "model); `none` starts from random weights."),
    "do_lower_case": Flag(flags.DEFINE_bool, True, "Whether to lower case the input text (uncased models)."),
    "max_seq_length": Flag(flags.DEFINE_integer, 128, "The maximum total input sequence length after WordPiece "
                           "tokenization. Longer sequences are truncated, shorter ones padded."),
    # a fine-tuning run
    "output_dir": Flag(flags.DEFINE_string, None, "The output directory where the model checkpoints will be "
                       "written."),
    "do_train": Flag(flags.DEFINE_bool, False, "Whether to run training."),
    "do_eval": Flag(flags.DEFINE_bool, False, "Whether to run eval on the dev set."),
    "do_train_and_eval": Flag(flags.DEFINE_bool, False, "Train and evaluate every saved checkpoint on the dev set."),
    "do_predict": Flag(flags.DEFINE_bool, False, "Whether to run the model in inference mode on the test set."),
    "train_batch_size": Flag(flags.DEFINE_integer, 32, "Total batch size for training."),
    "predict_batch_size": Flag(flags.DEFINE_integer, 8, "Total batch size for predict."),
    "learning_rate": Flag(flags.DEFINE_float, 3e-5, "The initial learning rate for Adam."),
    "num_train_epochs": Flag(flags.DEFINE_float, 3.0, "Total number of training epochs to perform."),
    "warmup_proportion": Flag(flags.DEFINE_float, 0.1, "Proportion of training to perform linear learning rate "
                              "warmup for. E.g., 0.1 = 10% of training."),
    "save_checkpoints_steps": Flag(flags.DEFINE_integer, 100, "How often to save the model checkpoint."),
    "max_train_examples": Flag(flags.DEFINE_integer, 0, "Use only the first N training examples (0: all), for "
                               "quick runs."),
    "seed": Flag(flags.DEFINE_integer, 12345, "Seed of Python, NumPy and TensorFlow (initialisation, dropout, "
                 "shuffling)."),
    # a task read from --data_dir, evaluated on its dev set
    "data_dir": Flag(flags.DEFINE_string, None, "The input data dir. Should contain the .tsv files for the task."),
    "task_name": Flag(flags.DEFINE_string, None, "The name of the task to train."),
    "eval_batch_size": Flag(flags.DEFINE_integer, 8, "Total batch size for eval."),
    "max_eval_examples": Flag(flags.DEFINE_integer, 0, "Use only the first N dev examples (0: all), for quick "
                              "runs."),
    "keep_checkpoint_max": Flag(flags.DEFINE_integer, 0, "Checkpoints to keep (0: all, as the original)."),
    # the original's TPU flags
    "iterations_per_loop": Flag(flags.DEFINE_integer, 1000, _IGNORED),
    "use_tpu": Flag(flags.DEFINE_bool, False, "Accepted for compatibility and ignored: this version runs on "
                    "CPU/GPU."),
    "tpu_name": Flag(flags.DEFINE_string, None, _IGNORED),
    "tpu_zone": Flag(flags.DEFINE_string, None, _IGNORED),
    "gcp_project": Flag(flags.DEFINE_string, None, _IGNORED),
    "master": Flag(flags.DEFINE_string, None, _IGNORED),
    "num_tpu_cores": Flag(flags.DEFINE_integer, 8, _IGNORED),
}
MODEL = ("bert_config_file", "vocab_file", "init_checkpoint", "do_lower_case", "max_seq_length")
RUN = ("output_dir", "do_train", "do_eval", "do_train_and_eval", "do_predict", "train_batch_size",
       "predict_batch_size", "learning_rate", "num_train_epochs", "warmup_proportion", "save_checkpoints_steps",
       "max_train_examples", "seed")
TASK = ("data_dir", "task_name", "eval_batch_size", "max_eval_examples", "keep_checkpoint_max")
TPU = ("iterations_per_loop", "use_tpu", "tpu_name", "tpu_zone", "gcp_project", "master", "num_tpu_cores")


def define(names: Iterable[str], helps: Optional[Mapping[str, str]] = None, **defaults: Any) -> None:
    """Define the named shared flags, with the entry's own defaults and helps where given."""
    names, helps = list(names), helps or {}
    unknown = (set(defaults) | set(helps)) - set(names)
    if unknown:
        raise ValueError(f"not among the flags defined: {', '.join(sorted(unknown))}")
    for name in names:
        flag = SHARED[name]
        flag.define(name, defaults.get(name, flag.default), helps.get(name, flag.help))


def require(*names: str) -> None:
    for name in names:
        if getattr(FLAGS, name) in (None, ""):
            raise InputError(f"--{name} is required")


def require_one_of(*names: str) -> None:
    """The original's check that the run has something to do."""
    if not any(getattr(FLAGS, name) for name in names):
        listed = ", ".join(f"`{name}`" for name in names[:-1])
        raise InputError(f"At least one of {listed} or `{names[-1]}` must be True.")


def require_positive(*names: str) -> None:
    for name in names:
        if getattr(FLAGS, name) < 1:
            raise InputError(f"--{name} must be positive, got {getattr(FLAGS, name)}")


def warn_ignored_tpu_flags() -> None:
    if any(name in FLAGS and FLAGS[name].value for name in ("use_tpu", "tpu_name", "master")):
        logging.warning("TPU flags are accepted for compatibility and ignored: running on %s",
                        "GPU" if tf.config.list_physical_devices("GPU") else "CPU")
