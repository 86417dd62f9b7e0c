"""TinyBERT general distillation: train a small student on a pre-trained teacher's attention scores and hidden states.

    python general_distill.py --pregenerated_data ${CORPUS_JSON} --teacher_model ${BERT_BASE} \
        --student_model ${STUDENT_CONFIG_DIR} --reduce_memory --do_lower_case --train_batch_size 256 \
        --output_dir ${GENERAL_TINYBERT_DIR}

Several processes: torchrun --nproc_per_node N general_distill.py ... (DDP; gloo on CPU, NCCL on GPUs).
Resume an interrupted run: the same command with --continue_train --student_model ${GENERAL_TINYBERT_DIR}.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from distillation.general import train  # noqa: E402
from utils.errors import exit_on_input_error  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pregenerated_data", type=Path, required=True,
                        help="directory of epoch_{i}.json and epoch_{i}_metrics.json (pregenerate_training_data.py)")
    parser.add_argument("--teacher_model", default=None, type=str, required=True,
                        help="teacher directory (config.json, weights, vocab.txt): BERT, HF BERT or a converted NEZHA")
    parser.add_argument("--student_model", default=None, type=str, required=True,
                        help="directory with the student's config.json (random init); with --continue_train "
                             "a directory with its weights too (and training_state.pt to resume exactly)")
    parser.add_argument("--output_dir", default=None, type=str, required=True,
                        help="where checkpoints and log.txt go; must be new or empty unless --continue_train")
    parser.add_argument("--max_seq_length", default=128, type=int,
                        help="unused, as in the original: the length comes from epoch_{i}_metrics.json")
    parser.add_argument("--reduce_memory", action="store_true",
                        help="keep each epoch's features in memmap files (in a temporary directory under "
                             "--output_dir) instead of in RAM")
    parser.add_argument("--do_eval", action="store_true", help="unused, as in the original")
    parser.add_argument("--do_lower_case", action="store_true")
    parser.add_argument("--train_batch_size", default=32, type=int,
                        help="batch size per optimizer step and process (split into --gradient_accumulation_steps)")
    parser.add_argument("--eval_batch_size", default=8, type=int, help="unused, as in the original")
    parser.add_argument("--learning_rate", default=5e-5, type=float)
    parser.add_argument("--weight_decay", "--wd", default=1e-4, type=float,
                        help="unused, as in the original: weight decay is 0.01 (0 for biases and LayerNorm)")
    parser.add_argument("--num_train_epochs", default=3.0, type=float)
    parser.add_argument("--warmup_proportion", default=0.1, type=float,
                        help="fraction of the training steps with a linearly increasing learning rate")
    parser.add_argument("--no_cuda", action="store_true")
    parser.add_argument("--local_rank", type=int, default=-1,
                        help="set by torch.distributed.launch; torchrun passes LOCAL_RANK in the environment")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1,
                        help="micro-batches per optimizer step")
    parser.add_argument("--fp16", action="store_true",
                        help="mixed precision: float16 autocast with loss scaling on CUDA, bfloat16 autocast on CPU")
    parser.add_argument("--continue_train", action="store_true",
                        help="start from --student_model's weights; resume exactly if it holds training_state.pt")
    parser.add_argument("--eval_step", type=int, default=1000,
                        help="log to log.txt and save a checkpoint every this many optimizer steps")
    parser.add_argument("--data_url", type=str, default="", help="Huawei Cloud (moxing) only; ignored")
    return parser.parse_args(argv)


@exit_on_input_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    means = train(parse_args(argv)).means
    if means and os.environ.get("RANK", "0") == "0":
        print(" ".join(f"{key} = {value}" for key, value in sorted(means.items())))


if __name__ == "__main__":
    main()
