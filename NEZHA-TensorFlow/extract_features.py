"""Extract pre-computed feature vectors from a NEZHA/BERT checkpoint (Google's extract_features.py).

Input: one example per line, `text_a` or `text_a ||| text_b`. Output: one JSON object per line,
`{"linex_index": i, "features": [{"token": t, "layers": [{"index": -1, "values": [...]}, ...]}, ...]}`,
the activations of the requested encoder layers (-1 = last) for every token of the example, rounded to 6
decimals, as the original wrote them. The output file appears only when complete.
"""
from __future__ import annotations

import collections
import json
import re
from typing import Iterator, NamedTuple, Optional

import numpy as np
import tensorflow as tf
from absl import flags, logging
from tqdm import tqdm

import checkpoint
import distribution
import finetuning_flags
import modeling
from utils import absl_cli, tokenization
from utils.errors import InputError, exit_on_input_error, require_file
from utils.features import encode_pair
from utils.fileio import atomic_open

FLAGS = flags.FLAGS

finetuning_flags.define(finetuning_flags.MODEL + ("use_tpu", "master", "num_tpu_cores"),
                        helps={"init_checkpoint": "Initial checkpoint (usually from a pre-trained BERT/NEZHA model)."})
flags.adopt_module_key_flags(finetuning_flags)  # --help lists the shared flags too
flags.DEFINE_string("input_file", None, "Text file, one example per line: text_a or `text_a ||| text_b`.")
flags.DEFINE_string("output_file", None, "JSON-lines output file.")
flags.DEFINE_string("layers", "-1,-2,-3,-4", "Comma-separated encoder layer indexes (negative from the top).")
flags.DEFINE_integer("batch_size", 32, "Batch size for predictions.")
flags.DEFINE_bool("use_one_hot_embeddings", False, "Look word embeddings up by a one-hot product (the "
                  "original's TPU path; numerically the same as a gather).")


class InputExample(NamedTuple):
    unique_id: int
    text_a: str
    text_b: Optional[str]


class InputFeatures(NamedTuple):
    unique_id: int
    tokens: list
    input_ids: list
    input_mask: list
    input_type_ids: list


def read_examples(input_file: str) -> list[InputExample]:
    """One example per line; `a ||| b` makes a pair (a blank line is an example of no tokens, as Google's)."""
    examples = []
    try:
        with open(input_file, encoding="utf-8") as reader:
            for unique_id, line in enumerate(reader):
                line = line.strip()
                match = re.match(r"^(.*) \|\|\| (.*)$", line)
                if match is None:
                    examples.append(InputExample(unique_id, line, None))
                else:
                    examples.append(InputExample(unique_id, match.group(1), match.group(2)))
    except UnicodeDecodeError as err:
        raise InputError(f"not valid UTF-8 ({err.reason})", input_file, _first_invalid_line(input_file)) from None
    except OSError as err:
        raise InputError(f"cannot read the input file ({err.strerror})", input_file) from None
    return examples


def _first_invalid_line(path: str) -> Optional[int]:
    """The line of the first invalid UTF-8 byte (the decoder reports only an offset within its buffer)."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def convert_examples_to_features(examples: list[InputExample], seq_length: int,
                                 tokenizer: tokenization.FullTokenizer) -> Iterator[InputFeatures]:
    """[CLS] a [SEP] (b [SEP]) with segment ids 0/1, zero-padded to seq_length."""
    for example in examples:
        tokens_b = tokenizer.tokenize(example.text_b) if example.text_b is not None else None
        yield InputFeatures(example.unique_id, *encode_pair(tokenizer.tokenize(example.text_a), tokens_b,
                                                            seq_length, tokenizer))


def parse_layers(text: str, num_layers: int) -> list[int]:
    try:
        indexes = [int(x) for x in text.split(",")]
    except ValueError:
        raise InputError(f"--layers must be comma-separated integers, got {text!r}") from None
    for index in indexes:
        if not -num_layers <= index < num_layers:
            raise InputError(f"--layers: layer {index} does not exist in a model of {num_layers} layers")
    return indexes


def feature_lines(model: modeling.BertModel, features: list[InputFeatures], layer_indexes: list[int],
                  batch_size: int) -> Iterator[str]:
    """The original's JSON line for each example, in input order."""
    seq_length = len(features[0].input_ids) if features else 0
    spec = tf.TensorSpec([None, seq_length], tf.int32)

    @tf.function(input_signature=[spec, spec, spec])
    def layers_of(input_ids, input_mask, input_type_ids):
        outputs = model(input_ids, input_mask, input_type_ids, training=False)
        return [outputs.all_encoder_layers[index] for index in layer_indexes]

    for start in tqdm(range(0, len(features), batch_size), desc="extracting", unit="batch"):
        chunk = features[start:start + batch_size]
        arrays = [np.array([getattr(f, field) for f in chunk], np.int32)
                  for field in ("input_ids", "input_mask", "input_type_ids")]
        outputs = [layer.numpy() for layer in layers_of(*arrays)]
        for row, feature in enumerate(chunk):
            tokens = []
            for position, token in enumerate(feature.tokens):
                layers = [collections.OrderedDict(
                    [("index", index), ("values", [round(float(x), 6) for x in outputs[j][row, position]])])
                    for j, index in enumerate(layer_indexes)]
                tokens.append(collections.OrderedDict([("token", token), ("layers", layers)]))
            yield json.dumps(collections.OrderedDict([("linex_index", feature.unique_id),
                                                      ("features", tokens)])) + "\n"


def extract_features(input_file: str, output_file: str, bert_config_file: str, init_checkpoint: str,
                     vocab_file: str, layers: str = "-1,-2,-3,-4", max_seq_length: int = 128,
                     do_lower_case: bool = True, batch_size: int = 32,
                     use_one_hot_embeddings: bool = False) -> int:
    """Write the JSON lines of every example of input_file to output_file; return the number of examples."""
    config = modeling.BertConfig.from_json_file(require_file(bert_config_file, "--bert_config_file"))
    layer_indexes = parse_layers(layers, config.num_hidden_layers)
    if max_seq_length < 3:
        raise InputError(f"--max_seq_length must be at least 3 ([CLS] x [SEP]), got {max_seq_length}")
    if not config.use_relative_position and max_seq_length > config.max_position_embeddings:
        raise InputError(f"Cannot use sequence length {max_seq_length} because the BERT model was only trained "
                         f"up to sequence length {config.max_position_embeddings}", bert_config_file)
    if batch_size < 1:
        raise InputError(f"--batch_size must be positive, got {batch_size}")
    tokenizer = tokenization.FullTokenizer(vocab_file=require_file(vocab_file, "--vocab_file"),
                                           do_lower_case=do_lower_case)
    examples = read_examples(require_file(input_file, "--input_file"))
    features = list(convert_examples_to_features(examples, max_seq_length, tokenizer))
    model = modeling.BertModel(config, use_one_hot_embeddings=use_one_hot_embeddings)
    report = checkpoint.load_checkpoint(init_checkpoint, model)
    if not report.loaded:
        raise InputError("none of the model's variables is in this checkpoint (is it a BERT/NEZHA checkpoint "
                         "with the original names?)", report.prefix)
    with atomic_open(output_file) as writer:
        for line in feature_lines(model, features, layer_indexes, batch_size):
            writer.write(line)
    logging.info("wrote %d examples to %s", len(features), output_file)
    return len(features)


@exit_on_input_error
def main(argv: list[str]) -> None:
    del argv
    distribution.create_engine()  # this process's GPU, with memory growth; a lone copy among several stops
    finetuning_flags.require("input_file", "output_file", "bert_config_file", "init_checkpoint", "vocab_file")
    finetuning_flags.warn_ignored_tpu_flags()
    extract_features(FLAGS.input_file, FLAGS.output_file, FLAGS.bert_config_file, FLAGS.init_checkpoint,
                     FLAGS.vocab_file, layers=FLAGS.layers, max_seq_length=FLAGS.max_seq_length,
                     do_lower_case=FLAGS.do_lower_case, batch_size=FLAGS.batch_size,
                     use_one_hot_embeddings=FLAGS.use_one_hot_embeddings)


if __name__ == "__main__":
    absl_cli.run(main)
