"""Pick the best evaluated fine-tuning checkpoint and predict the test set with it (replaces read_tf_events.py).

Reads task_output_dir/eval/eval_history.jsonl (written by --do_train_and_eval), takes the step with the
highest dev metric (eval_accuracy; eval_entity_f1 for ner; ties go to the later step, as the original), writes
eval/all_eval_points_results.txt in the original format and task_output_dir/best_checkpoint.txt (the
checkpoint prefix), then runs scripts/run_clf_predict.sh, or scripts/run_seq_labelling_predict.sh for ner, with
the original's positional arguments. `--no_predict` only prints the best checkpoint's path.

    python select_best.py --task_name=text_clf --task_data_dir=DATA --max_seq_length=128 \
        --predict_batch_size=32 --pretrained_model_dir=nezha/ --task_output_dir=output/text_clf/
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Optional, Sequence

from eval_history import ALL_EVAL_POINTS, eval_dir, history_path, metric_for_task, write_eval_points
from utils.errors import InputError, exit_on_input_error
from utils.fileio import atomic_open

SCRIPTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
BEST_CHECKPOINT = "best_checkpoint.txt"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task_name", required=True, help="text_clf, lcqmc, xnli, a GLUE task, or ner")
    parser.add_argument("--task_data_dir", required=True, help="the task's data directory (test set inside)")
    parser.add_argument("--max_seq_length", default="128")
    parser.add_argument("--predict_batch_size", default="32")
    parser.add_argument("--pretrained_model_dir", required=True,
                        help="directory with vocab.txt and bert_config.json")
    parser.add_argument("--task_output_dir", required=True, help="the fine-tuning output_dir")
    parser.add_argument("--metric", default=None, help="the metric to maximise (default: by task)")
    parser.add_argument("--no_predict", action="store_true", help="only print the best checkpoint's path")
    return parser.parse_args(argv)


def select_best(task_output_dir: str, metric: str) -> tuple[str, dict]:
    """Write all_eval_points_results.txt and best_checkpoint.txt; return the best prefix and its entry."""
    if not os.path.exists(history_path(task_output_dir)):
        raise InputError("no evaluation history: fine-tune with --do_train_and_eval=true first (expected "
                         f"{os.path.join(eval_dir(task_output_dir), 'eval_history.jsonl')})", task_output_dir)
    best = write_eval_points(task_output_dir, metric)
    if best is None:
        raise InputError(f"no evaluation has the metric {metric}", history_path(task_output_dir))
    prefix = os.path.join(task_output_dir, best["checkpoint"])
    if not os.path.exists(prefix + ".index"):
        raise InputError(f"the best checkpoint (step {best['step']}, {metric} = {best['metrics'][metric]}) is "
                         "no longer on disk (expected PREFIX.index)", prefix)
    with atomic_open(os.path.join(task_output_dir, BEST_CHECKPOINT)) as handle:
        handle.write(prefix + "\n")
    return prefix, best


def predict_command(args: argparse.Namespace, prefix: str) -> list[str]:
    """The original's call: `bash run_clf_predict.sh task data model_dir checkpoint len batch output_dir`."""
    script = "run_seq_labelling_predict.sh" if "ner" in args.task_name.lower() else "run_clf_predict.sh"
    path = os.path.join(SCRIPTS_DIR, script)
    if not os.path.isfile(path):
        raise InputError("prediction script not found", path)
    return ["bash", path, args.task_name, args.task_data_dir, args.pretrained_model_dir, prefix,
            str(args.max_seq_length), str(args.predict_batch_size), args.task_output_dir]


@exit_on_input_error
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    metric = args.metric or metric_for_task(args.task_name)
    prefix, best = select_best(args.task_output_dir, metric)
    print(f"{os.path.join(eval_dir(args.task_output_dir), ALL_EVAL_POINTS)}: best {metric} = "
          f"{best['metrics'][metric]} at step {best['step']}", file=sys.stderr, flush=True)
    if args.no_predict:
        print(prefix, flush=True)
        return 0
    command = predict_command(args, prefix)
    print("running " + " ".join(command), file=sys.stderr, flush=True)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
