"""Measure how much smaller and faster a student is than its teacher, on real task inputs.

    python compare_models.py --teacher_model TEACHER_DIR --student_model STUDENT_DIR \
        --data_dir DATA --task_name text_clf --max_seq_length 128 --output_file compare.json

The measurement (distillation/comparison.py): the same dev batches through both models, alternating, the
median batch times' ratio; parameters as inference counts them (fit_dense left out).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from distillation.comparison import compare  # noqa: E402
from utils.errors import exit_on_input_error  # noqa: E402
from utils.fileio import write_json  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher_model", required=True, help="teacher directory (e.g. a converted NEZHA classifier)")
    parser.add_argument("--student_model", required=True, help="distilled student directory")
    parser.add_argument("--data_dir", required=True, help="task directory whose dev set is encoded")
    parser.add_argument("--task_name", required=True, help="task whose processor reads the dev set")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_batches", type=int, default=20, help="dev batches timed")
    parser.add_argument("--do_lower_case", action="store_true")
    parser.add_argument("--output_file", help="JSON file for the figures (also printed)")
    return parser.parse_args(argv)


@exit_on_input_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    result = compare(args.teacher_model, args.student_model, args.data_dir, args.task_name, args.max_seq_length,
                     args.batch_size, args.max_batches, args.do_lower_case)
    for key, value in result.items():
        print(f"{key} = {value}")
    if args.output_file:
        write_json(args.output_file, result)


if __name__ == "__main__":
    main()
