"""Convert a NEZHA (or Google BERT) TF1 checkpoint into a PyTorch directory the TinyBERT scripts load.

    python convert_nezha_checkpoint.py --tf_checkpoint nezha/model.ckpt --bert_config_file nezha/bert_config.json \
        --vocab_file nezha/vocab.txt --output_dir nezha_pytorch

The output (pytorch_model.bin, config.json, vocab.txt) serves as --teacher_model of general_distill.py and
task_distill.py, and loads in Hugging Face transformers 4.x (NezhaModel / BertModel). A checkpoint fine-tuned by
run_classifier.py (head output_weights/output_bias) becomes a classifier with the same logits (classifier_act
"none"); --label_list output_dir/label_list.txt records its label order as id2label/label2id.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from transformer.conversion import MODEL_TYPES, convert_tf_checkpoint  # noqa: E402
from utils.errors import exit_on_input_error  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tf_checkpoint", required=True,
                        help="TF1 checkpoint prefix (model.ckpt, model.ckpt-N) or a directory holding one")
    parser.add_argument("--bert_config_file", required=True, help="the checkpoint's bert_config.json")
    parser.add_argument("--vocab_file", required=True, help="the checkpoint's vocab.txt")
    parser.add_argument("--output_dir", required=True, help="directory to write the PyTorch model into")
    parser.add_argument("--model_type", choices=MODEL_TYPES, default=None,
                        help="nezha: relative positions, no position embeddings; bert: absolute positions "
                             "(default: from use_relative_position in the config)")
    parser.add_argument("--label_list", default=None,
                        help="label_list.txt written by run_classifier.py (one label per line, in logit order): "
                             "stored as id2label/label2id for a fine-tuned classifier checkpoint")
    return parser.parse_args(argv)


@exit_on_input_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    report = convert_tf_checkpoint(args.tf_checkpoint, args.bert_config_file, args.vocab_file, args.output_dir,
                                   args.model_type, args.label_list)
    print(f"{report['architecture']}: {len(report['converted'])} tensors written to {args.output_dir}; "
          f"skipped {len(report['skipped'])} optimizer/bookkeeping variables")


if __name__ == "__main__":
    main()
