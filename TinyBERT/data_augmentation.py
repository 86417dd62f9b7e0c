r"""TinyBERT data augmentation: train.tsv -> train_aug.tsv (the original's flags and output).

    python data_augmentation.py --pretrained_bert_model ${BERT_BASE_DIR} --glove_embs ${GLOVE_EMB} \
        --glue_dir ${GLUE_DIR} --task_name ${TASK_NAME}

English GLUE tasks use BERT's masked LM for single-piece words and GloVe neighbours for the others; Chinese
tasks (lcqmc, text_clf, xnli) replace jieba words by masked-LM fillings of the same length, or by word-vector
neighbours when --glove_embs names Chinese vectors. The algorithm is in distillation/augmentation.py. Several
processes (torchrun --nproc_per_node N data_augmentation.py ...) share the sentences; rank 0 writes the file
one process would.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from distillation.augmentation import GLOVE_VOCAB_SIZE, run  # noqa: E402
from utils.errors import exit_on_input_error  # noqa: E402
from utils.tasks import DEFAULT_AUGMENT_N, TASKS  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained_bert_model", required=True, type=str,
                        help="BERT directory with config.json, weights and vocab.txt; its masked-LM head "
                             "(cls.predictions) proposes the candidates")
    parser.add_argument("--glove_embs", default=None, type=str,
                        help="word vectors: a GloVe text file, a .npy matrix (words in --glove_vocab or the "
                             ".parquet beside it) or a directory holding both; required for English tasks, "
                             "optional for Chinese ones (then multi-character words use the vectors)")
    parser.add_argument("--glue_dir", default=None, type=str,
                        help="GLUE data dir; the task's files are in glue_dir/task_name")
    parser.add_argument("--task_name", required=True, type=str,
                        help="task (e.g. CoLA, SST-2, MRPC, text_clf) whose train set is augmented")
    special = ", ".join(f"{name} {t.augment_n}" for name, t in TASKS.items() if t.augment_n != DEFAULT_AUGMENT_N)
    parser.add_argument("--N", default=None, type=int,
                        help=f"How many times is the corpus expanded? (default: the task's, the original's per-task "
                             f"value: {special}; {DEFAULT_AUGMENT_N} for the others)")
    parser.add_argument("--M", default=15, type=int,
                        help="Choose from M most-likely words in the corresponding position")
    parser.add_argument("--p", default=0.4, type=float, help="Threshold probability p to replace current word")
    # Additions to the original's flags.
    parser.add_argument("--task_dir", help="the task's directory (default glue_dir/task_name)")
    parser.add_argument("--output", help="output file (default: train_aug.tsv in the task's directory)")
    parser.add_argument("--glove_vocab", help="words of a .npy --glove_embs: a .parquet (first column) or one word "
                                              "a line")
    parser.add_argument("--glove_vocab_size", default=GLOVE_VOCAB_SIZE, type=int,
                        help="only the first words of the vectors are neighbours (the original's 100000)")
    parser.add_argument("--do_lower_case", default=True, action=argparse.BooleanOptionalAction,
                        help="lower-case the text (the original always did; --no-do_lower_case for cased models)")
    parser.add_argument("--seed", default=42, type=int, help="random seed: the same seed gives the same file")
    parser.add_argument("--batch_size", default=32, type=int,
                        help="masked copies of a sentence per forward pass (1 = one at a time, same output)")
    parser.add_argument("--max_seq_length", default=512, type=int,
                        help="longest masked-LM input; longer sentences are cut to a window around the word")
    parser.add_argument("--no_cuda", action="store_true", help="run on the CPU even when a GPU is present")
    parser.add_argument("--local_rank", type=int, default=-1,
                        help="set by torch.distributed.launch; torchrun passes LOCAL_RANK in the environment")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


@exit_on_input_error
def main(argv: list[str] | None = None) -> None:
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
