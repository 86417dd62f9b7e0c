r"""TinyBERT data augmentation: train.tsv -> train_aug.tsv (the original's flags and output).

    python data_augmentation.py --pretrained_bert_model ${BERT_BASE_DIR} --glove_embs ${GLOVE_EMB} \
        --glue_dir ${GLUE_DIR} --task_name ${TASK_NAME}

English GLUE tasks use BERT's masked LM for single-piece words and GloVe neighbours for the others; Chinese
tasks (lcqmc, text_clf, xnli) replace jieba words by masked-LM fillings of the same length, or by word-vector
neighbours when --glove_embs names Chinese vectors. The algorithm is in augmentation.py.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
for _path in (str(_ROOT), str(_ROOT / "TinyBERT")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import torch  # noqa: E402

from augmentation import (  # noqa: E402
    GLOVE_VOCAB_SIZE, AugmentStats, DataAugmentor, MaskedLMCandidates, WordVectors, augment_file, default_n,
)
from transformer.modeling import BertForMaskedLM  # noqa: E402
from utils.errors import InputError, exit_on_input_error  # noqa: E402
from utils.tasks import DEFAULT_AUGMENT_N, TASKS, get_processor  # noqa: E402
from utils.tokenization import FullTokenizer  # noqa: E402

logger = logging.getLogger(__name__)


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
    parser.add_argument("--task_dir", default=None, type=str,
                        help="the task's directory (default glue_dir/task_name)")
    parser.add_argument("--output", default=None, type=str,
                        help="output file (default: train_aug.tsv in the task's directory)")
    parser.add_argument("--glove_vocab", default=None, type=str,
                        help="words of a .npy --glove_embs: a .parquet (first column) or one word a line")
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
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def check_args(args: argparse.Namespace) -> None:
    if args.glue_dir is None and args.task_dir is None:
        raise InputError("give --glue_dir (the task's files are then in glue_dir/task_name) or --task_dir")
    if args.N is not None and args.N < 0:
        raise InputError(f"--N must be 0 or more, got {args.N}")
    if args.M < 1:
        raise InputError(f"--M must be at least 1, got {args.M}")
    if not 0.0 <= args.p <= 1.0:
        raise InputError(f"--p is a probability (0 to 1), got {args.p}")
    if args.batch_size < 1:
        raise InputError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.glove_vocab_size < 1:
        raise InputError(f"--glove_vocab_size must be at least 1, got {args.glove_vocab_size}")


def run(args: argparse.Namespace) -> AugmentStats:
    """Augment the task's training file as the flags say; returns the counts and the speed."""
    check_args(args)
    processor = get_processor(args.task_name)
    chinese = processor.chinese
    if not chinese and args.glove_embs is None:
        raise InputError(f"task {args.task_name} is English: --glove_embs (GloVe vectors for multi-piece words) "
                         "is required")
    task_dir = args.task_dir or os.path.join(args.glue_dir, args.task_name)
    input_path = processor.train_path(task_dir)
    output_path = args.output or os.path.join(task_dir, "train_aug.tsv")
    n = default_n(args.task_name) if args.N is None else args.N
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    logger.info("task %s (%s), N=%d M=%d p=%s seed=%d, device %s", processor.name,
                "Chinese" if chinese else "English", n, args.M, args.p, args.seed, device)

    tokenizer = FullTokenizer.from_pretrained(args.pretrained_bert_model, do_lower_case=args.do_lower_case)
    model, info = BertForMaskedLM.from_pretrained(args.pretrained_bert_model, output_loading_info=True)
    if any(key.startswith("cls.predictions") for key in info["missing_keys"]):
        logger.warning("%s has no masked-LM head: candidates come from a randomly initialised one",
                       args.pretrained_bert_model)
    model.to(device).eval()
    vectors = None
    if args.glove_embs is not None:
        vectors = WordVectors.load(args.glove_embs, args.glove_vocab_size, args.glove_vocab)
    mlm = MaskedLMCandidates(model, tokenizer, args.M, chinese, args.max_seq_length, args.batch_size, device)
    augmentor = DataAugmentor(mlm, tokenizer, vectors, args.M, n, args.p, args.seed, chinese)
    return augment_file(augmentor, processor, input_path, output_path, progress=not args.no_progress)


@exit_on_input_error
def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s -   %(message)s",
                        datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO)
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
