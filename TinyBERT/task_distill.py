"""Task-specific TinyBERT distillation (intermediate layers, then --pred_distill) and --do_eval.

    python task_distill.py --teacher_model $FT_TEACHER --student_model $GENERAL_TINYBERT --data_dir $TASK_DIR \
        --task_name text_clf --output_dir $TMP_TINYBERT --do_lower_case --aug_train
    python task_distill.py --pred_distill --teacher_model $FT_TEACHER --student_model $TMP_TINYBERT \
        --data_dir $TASK_DIR --task_name text_clf --output_dir $TINYBERT --learning_rate 3e-5 --eval_step 100
    python task_distill.py --do_eval --student_model $TINYBERT --data_dir $TASK_DIR --task_name text_clf \
        --output_dir $EVAL_DIR

Several processes: torchrun --nproc_per_node N task_distill.py ... (DDP; gloo on CPU, NCCL on GPUs), with
--train_batch_size the total batch over all of them. Flags and defaults are the original's; --fp16 and
--local_rank are additions.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from distillation.task import run  # noqa: E402
from utils.errors import exit_on_input_error  # noqa: E402


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
    parser.add_argument("--train_batch_size", default=32, type=int,
                        help="Total batch size for training (over every process under torchrun).")
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
    parser.add_argument("--local_rank", type=int, default=-1,
                        help="Set by torch.distributed.launch; torchrun passes LOCAL_RANK in the environment.")
    return parser.parse_args(argv)


@exit_on_input_error
def main(argv: Optional[Sequence[str]] = None) -> dict:
    return run(parse_args(argv)).results


if __name__ == "__main__":
    main()
