"""Task-specific TinyBERT distillation (intermediate layers, then --pred_distill) and --do_eval.

    python task_distill.py --teacher_model $FT_TEACHER --student_model $GENERAL_TINYBERT --data_dir $TASK_DIR \
        --task_name text_clf --output_dir $TMP_TINYBERT --do_lower_case --aug_train
    python task_distill.py --pred_distill --teacher_model $FT_TEACHER --student_model $TMP_TINYBERT \
        --data_dir $TASK_DIR --task_name text_clf --output_dir $TINYBERT --learning_rate 3e-5 --eval_step 100
    python task_distill.py --do_eval --student_model $TINYBERT --data_dir $TASK_DIR --task_name text_clf \
        --output_dir $EVAL_DIR

Flags and defaults are the original's; --fp16 is an addition (the original had none).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from task_trainer import (  # noqa: E402
    PREDICTIONS_NAME,
    RESULTS_NAME,
    DistillSetup,
    distill,
    evaluate,
    load_task_model,
    make_loader,
    set_seed,
    write_predictions,
)
from utils.errors import InputError, exit_on_input_error  # noqa: E402
from utils.fileio import write_key_values  # noqa: E402
from utils.tasks import get_processor  # noqa: E402
from utils.tokenization import FullTokenizer  # noqa: E402

logger = logging.getLogger(__name__)
_HANDLERS: list[logging.Handler] = []


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, type=str,
                        help="The input data dir. Should contain the .tsv files (or other data files) for the task.")
    parser.add_argument("--teacher_model", default=None, type=str,
                        help="The fine-tuned teacher directory (not needed with --do_eval).")
    parser.add_argument("--student_model", required=True, type=str,
                        help="The student model directory (config.json, weights, vocab.txt).")
    parser.add_argument("--task_name", required=True, type=str, help="The name of the task to train.")
    parser.add_argument("--output_dir", required=True, type=str,
                        help="The output directory where the model predictions and checkpoints will be written.")
    parser.add_argument("--cache_dir", default="", type=str,
                        help="Accepted for compatibility; unused, as in the original.")
    parser.add_argument("--max_seq_length", default=128, type=int,
                        help="The maximum total input sequence length after WordPiece tokenization.")
    parser.add_argument("--do_eval", action="store_true", help="Whether to run eval on the dev set.")
    parser.add_argument("--do_lower_case", action="store_true",
                        help="Set this flag if you are using an uncased model.")
    parser.add_argument("--train_batch_size", default=32, type=int, help="Total batch size for training.")
    parser.add_argument("--eval_batch_size", default=32, type=int, help="Total batch size for eval.")
    parser.add_argument("--learning_rate", default=5e-5, type=float, help="The initial learning rate for Adam.")
    parser.add_argument("--weight_decay", "--wd", default=1e-4, type=float,
                        help="Accepted for compatibility; as in the original, weight decay is 0.01 (0 for biases "
                             "and LayerNorm).")
    parser.add_argument("--num_train_epochs", default=3.0, type=float,
                        help="Total number of training epochs to perform.")
    parser.add_argument("--warmup_proportion", default=0.1, type=float,
                        help="Proportion of training to perform linear learning rate warmup for (--pred_distill).")
    parser.add_argument("--no_cuda", action="store_true", help="Whether not to use CUDA when available")
    parser.add_argument("--seed", type=int, default=42, help="random seed for initialization")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1,
                        help="Number of updates steps to accumulate before performing a backward/update pass.")
    parser.add_argument("--aug_train", action="store_true", help="Train on train_aug.tsv instead of train.tsv.")
    parser.add_argument("--eval_step", type=int, default=50,
                        help="Evaluate (and save) every this many optimizer steps.")
    parser.add_argument("--pred_distill", action="store_true",
                        help="Prediction-layer distillation (default: intermediate layers).")
    parser.add_argument("--data_url", type=str, default="", help="Huawei Cloud (moxing) only; ignored.")
    parser.add_argument("--temperature", type=float, default=1.0, help="Softmax temperature of --pred_distill.")
    parser.add_argument("--fp16", action="store_true",
                        help="Mixed precision: float16 autocast with loss scaling on CUDA, bfloat16 autocast on CPU.")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    if args.gradient_accumulation_steps < 1:
        raise InputError(f"--gradient_accumulation_steps should be >= 1, got {args.gradient_accumulation_steps}")
    if args.train_batch_size < args.gradient_accumulation_steps:
        raise InputError(f"--train_batch_size {args.train_batch_size} is smaller than "
                         f"--gradient_accumulation_steps {args.gradient_accumulation_steps}")
    if args.eval_step < 1:
        raise InputError(f"--eval_step should be >= 1, got {args.eval_step}")
    if args.temperature <= 0:
        raise InputError(f"--temperature should be > 0, got {args.temperature}")
    if not args.do_eval:
        if not args.teacher_model:
            raise InputError("--teacher_model is required for distillation (only --do_eval runs without it)")
        if os.path.isdir(args.output_dir) and os.listdir(args.output_dir):
            raise InputError("output directory already exists and is not empty", args.output_dir)


def setup_logging(output_dir: str) -> None:
    """The original's console format, and its debug_layer_loss.log kept in output_dir instead of the CWD."""
    os.makedirs(output_dir, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(message)s", datefmt="%m/%d %I:%M:%S %p")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    while _HANDLERS:  # a second run in the same process logs to its own directory only
        handler = _HANDLERS.pop()
        root.removeHandler(handler)
        handler.close()
    for handler in (logging.StreamHandler(sys.stdout),
                    logging.FileHandler(os.path.join(output_dir, "debug_layer_loss.log"), encoding="utf-8")):
        handler.setFormatter(fmt)
        root.addHandler(handler)
        _HANDLERS.append(handler)


def run_eval(args: argparse.Namespace, setup: DistillSetup, eval_loader_for) -> dict[str, float]:
    """Evaluate the student on the dev set: output_dir/eval_results.txt and eval_predictions.tsv (MNLI: also -MM)."""
    student = load_task_model(args.student_model, setup.task_name, setup.label_list, "student")
    student.model.to(setup.device).eval()
    tasks = [(setup.task_name, args.output_dir)]
    if setup.task_name == "mnli":
        tasks.append(("mnli-mm", args.output_dir + "-MM"))
    results = {}
    for task, directory in tasks:
        examples, loader = eval_loader_for(task)
        output = evaluate(student, task, loader, setup.processor.output_mode, setup.device, args.fp16)
        logger.info("***** Eval results (%s) ***** %s", task,
                    ", ".join(f"{k} = {v}" for k, v in sorted(output.result.items())))
        write_key_values(os.path.join(directory, RESULTS_NAME), output.result)
        write_predictions(os.path.join(directory, PREDICTIONS_NAME), examples, output, setup.label_list,
                          setup.processor.output_mode)
        results.update({(k if task == setup.task_name else f"{task}_{k}"): v for k, v in output.result.items()})
    return results


@exit_on_input_error
def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    check_args(args)
    setup_logging(args.output_dir)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    n_gpu = torch.cuda.device_count() if device.type == "cuda" else 1
    logger.info("device: %s n_gpu: %d", device, n_gpu)
    set_seed(args.seed)

    task_name = args.task_name.lower()
    processor = get_processor(task_name)
    label_list = processor.get_labels(args.data_dir)
    tokenizer = FullTokenizer.from_pretrained(args.student_model, do_lower_case=args.do_lower_case)
    setup = DistillSetup(processor, task_name, label_list, tokenizer, device, n_gpu)

    def eval_loader_for(name: str):
        if name not in setup.eval_sets:
            examples = get_processor(name).get_dev_examples(args.data_dir)
            setup.eval_sets[name] = (examples, make_loader(examples, processor, label_list, tokenizer,
                                                           args.max_seq_length, args.eval_batch_size, train=False))
        return setup.eval_sets[name]

    if args.do_eval:
        return run_eval(args, setup, eval_loader_for)
    if args.aug_train:
        train_examples = processor.get_aug_examples(args.data_dir)
    else:
        train_examples = processor.get_train_examples(args.data_dir)
    return distill(args, setup, train_examples, eval_loader_for)


if __name__ == "__main__":
    main()
