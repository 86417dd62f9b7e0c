"""Pregenerate the training instances of TinyBERT's general distillation: epoch_{i}.json and epoch_{i}_metrics.json.

    python pregenerate_training_data.py --train_corpus corpus.txt --bert_model ${BERT_BASE_DIR} \
        --reduce_memory --do_lower_case --epochs_to_generate 3 --output_dir ${CORPUS_JSON_DIR}

The corpus holds one sentence per line with a blank line between documents; only vocab.txt of --bert_model
is read. Every flag of the original keeps its default; --seed (new) makes the output reproducible.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from distillation.pregenerated import pregenerate  # noqa: E402
from utils.errors import exit_on_input_error  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_corpus", type=Path, required=True,
                        help="text file: one sentence per line, a blank line between documents")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--bert_model", type=str, required=True,
                        help="model directory holding vocab.txt (or the vocabulary file itself)")
    parser.add_argument("--do_lower_case", action="store_true")
    parser.add_argument("--do_whole_word_mask", action="store_true",
                        help="mask whole words: WordPiece ## pieces together, and Chinese words (jieba) together")
    parser.add_argument("--reduce_memory", action="store_true",
                        help="keep the tokenized documents on disk (SQLite in a temporary directory under "
                             "--output_dir) instead of in memory")
    parser.add_argument("--num_workers", type=int, default=1,
                        help="processes generating epochs in parallel (one epoch each)")
    parser.add_argument("--epochs_to_generate", type=int, default=3, help="number of epochs of data to pregenerate")
    parser.add_argument("--max_seq_len", type=int, default=128)
    parser.add_argument("--short_seq_prob", type=float, default=0.1,
                        help="probability of making a short sentence as a training example")
    parser.add_argument("--masked_lm_prob", type=float, default=0.0,
                        help="probability of masking each token for the LM task (at least one token is "
                             "always masked, as in the original)")
    parser.add_argument("--max_predictions_per_seq", type=int, default=20,
                        help="maximum number of tokens to mask in each sequence")
    parser.add_argument("--data_url", type=str, default="", help="Huawei Cloud (moxing) only; ignored")
    parser.add_argument("--one_seq", action="store_true", help="never sample a random next segment")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (new): the same seed gives the same files whatever --num_workers "
                             "and --reduce_memory; default a fresh random seed, as the original")
    return parser.parse_args(argv)


@exit_on_input_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    pregenerate(parse_args(argv))


if __name__ == "__main__":
    main()
