"""Masked-LM / next-sentence pretraining examples as TFRecord files (Google BERT's create_pretraining_data.py).

Input: UTF-8 text, one sentence per line, a blank line between documents. Output: tf.train.Example records
with the original features (input_ids, input_mask, segment_ids, masked_lm_positions, masked_lm_ids,
masked_lm_weights, next_sentence_labels), dealt round-robin over the output files.

The algorithm and its random-call order are Google's, so for a seed the output is deterministic. Two
additions:
* --do_whole_word_mask masks whole words: WordPiece `##` pieces and, for Chinese, the characters of a jieba
  word (the NEZHA paper's whole word masking, which the released script lacks).
* --docs_per_shard: the corpus is processed in shards of that many documents (read, shuffled, turned into
  dupe_factor x instances, shuffled and written before the next shard is read), so memory is bounded by
  the shard, not by the corpus times dupe_factor. Random next sentences are drawn from documents of the
  same shard. With a shard that holds the whole corpus (0) the output is exactly the original algorithm's.

The only module of utils/ that imports TensorFlow (for TFRecord writing and glob patterns).
"""
from __future__ import annotations

import collections
import os
import random
import sys
from typing import Callable, Iterable, Iterator, Optional, Sequence

import tensorflow as tf
from absl import flags, logging
from tqdm import tqdm

from utils import absl_cli, tokenization
from utils.errors import InputError, exit_on_input_error
from utils.features import TrainingInstance, create_instances_from_document
from utils.fileio import check_output_file

FLAGS = flags.FLAGS
DEFAULT_DOCS_PER_SHARD = 10000
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[MASK]")
EXAMPLES_TO_LOG = 20


# (kind, name, default, help): the original's flags and defaults (its --random_seed is an alias of --seed, the
# name every NEZHA entry uses), plus --do_whole_word_mask and --docs_per_shard.
FLAG_SPECS = (
    ("string", "input_file", None, "Input raw text file (or comma-separated list of files; globs allowed): one "
                                   "sentence per line, a blank line between documents."),
    ("string", "output_file", None, "Output TF example file (or comma-separated list of files)."),
    ("string", "vocab_file", None, "The vocabulary file that the BERT model was trained on."),
    ("bool", "do_lower_case", True, "Whether to lower case the input text. Should be True for uncased models and "
                                    "False for cased models."),
    ("bool", "do_whole_word_mask", False, "Whether to use whole word masking rather than per-WordPiece masking "
                                          "(WordPiece ## pieces, and jieba words for Chinese)."),
    ("integer", "max_seq_length", 128, "Maximum sequence length."),
    ("integer", "max_predictions_per_seq", 20, "Maximum number of masked LM predictions per sequence."),
    ("integer", "seed", 12345, "Random seed for data generation."),
    ("integer", "dupe_factor", 10, "Number of times to duplicate the input data (with different masks)."),
    ("float", "masked_lm_prob", 0.15, "Masked LM probability."),
    ("float", "short_seq_prob", 0.1, "Probability of creating sequences which are shorter than the maximum length."),
    ("integer", "docs_per_shard", DEFAULT_DOCS_PER_SHARD, "Documents processed together (new): memory is bounded by "
     "one shard, and random next sentences come from the same shard. 0 = the whole corpus in one shard (the "
     "original's behaviour)."),
)


def define_flags() -> None:
    for kind, name, default, help_text in FLAG_SPECS:
        getattr(flags, f"DEFINE_{kind}")(name, default, help_text)
    flags.DEFINE_alias("random_seed", "seed")   # the original's name


# ------------------------------------------------------------------------------------------------ reading

def expand_patterns(patterns: str, what: str = "--input_file") -> list[str]:
    """The files matched by comma-separated glob patterns, in pattern order (each pattern's matches sorted)."""
    files: list[str] = []
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise InputError(f"{what}: no file matches this pattern", pattern)
        files.extend(matched)
    if not files:
        raise InputError(f"{what} names no file")
    return files


def _open_binary(path: str):
    return tf.io.gfile.GFile(path, "rb") if "://" in path else open(path, "rb")


def read_documents(input_files: Sequence[str], tokenizer: tokenization.FullTokenizer) -> Iterator[list]:
    """Tokenized documents (lists of token lists, one per sentence line) of every file in turn.

    As the original, a line that tokenizes to nothing is skipped (it does not end a document) and empty
    documents are dropped; tokens are interned, so a shard costs a pointer per token.
    """
    for path in input_files:
        document: list = []
        try:
            with _open_binary(path) as reader:
                for number, raw in enumerate(reader, start=1):
                    try:
                        line = raw.decode("utf-8").strip()
                    except UnicodeDecodeError as err:
                        raise InputError(f"not valid UTF-8 text ({err.reason}); expected one sentence per line",
                                         path, number) from None
                    if not line:
                        if document:
                            yield document
                        document = []
                        continue
                    tokens = tokenizer.tokenize(line)
                    if tokens:
                        document.append([sys.intern(token) for token in tokens])
        except (OSError, tf.errors.OpError) as err:
            raise InputError(f"cannot read the input file ({getattr(err, 'strerror', None) or err})", path) from None
        if document:
            yield document


def shards(documents: Iterable[list], docs_per_shard: int) -> Iterator[list]:
    """Consecutive groups of `docs_per_shard` documents (all of them in one group when 0)."""
    shard: list = []
    for document in documents:
        shard.append(document)
        if docs_per_shard and len(shard) >= docs_per_shard:
            yield shard
            shard = []
    if shard:
        yield shard


# ------------------------------------------------------------------------------------------------ instances

def random_other_document(documents: list, index: int) -> Callable[[random.Random], list]:
    """Google's draw of a random-next document: up to 10 tries for one other than documents[index]."""
    def draw(rng: random.Random) -> list:
        for _ in range(10):
            other = rng.randint(0, len(documents) - 1)
            if other != index:
                break
        return documents[other]
    return draw


def create_training_instances(documents: list, vocab_words: list, rng: random.Random, max_seq_length: int,
                              dupe_factor: int, short_seq_prob: float, masked_lm_prob: float,
                              max_predictions_per_seq: int, do_whole_word_mask: bool = False,
                              progress: Optional[tqdm] = None) -> list[TrainingInstance]:
    """The instances of one shard of documents: shuffle the documents, dupe_factor passes over them,
    shuffle the instances (the original's steps, applied to the shard)."""
    rng.shuffle(documents)
    instances = []
    for _ in range(dupe_factor):
        for document_index in range(len(documents)):
            instances.extend(create_instances_from_document(
                documents[document_index], random_other_document(documents, document_index), max_seq_length,
                short_seq_prob, masked_lm_prob, max_predictions_per_seq, vocab_words, rng, do_whole_word_mask))
            if progress is not None:
                progress.update(1)
    rng.shuffle(instances)
    return instances


# ------------------------------------------------------------------------------------------------ writing

def _int_feature(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def _float_feature(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def instance_to_example(instance: TrainingInstance, tokenizer: tokenization.FullTokenizer, max_seq_length: int,
                        max_predictions_per_seq: int) -> tf.train.Example:
    """Ids zero-padded to max_seq_length, predictions zero-padded (weight 0.0) to max_predictions_per_seq."""
    input_ids = tokenizer.convert_tokens_to_ids(instance.tokens)
    padding = max_seq_length - len(input_ids)
    masked_lm_ids = tokenizer.convert_tokens_to_ids(instance.masked_lm_labels)
    prediction_padding = max_predictions_per_seq - len(masked_lm_ids)
    features = collections.OrderedDict()
    features["input_ids"] = _int_feature(input_ids + [0] * padding)
    features["input_mask"] = _int_feature([1] * len(input_ids) + [0] * padding)
    features["segment_ids"] = _int_feature(list(instance.segment_ids) + [0] * padding)
    features["masked_lm_positions"] = _int_feature(list(instance.masked_lm_positions) + [0] * prediction_padding)
    features["masked_lm_ids"] = _int_feature(masked_lm_ids + [0] * prediction_padding)
    features["masked_lm_weights"] = _float_feature([1.0] * len(masked_lm_ids) + [0.0] * prediction_padding)
    features["next_sentence_labels"] = _int_feature([1 if instance.is_random_next else 0])
    return tf.train.Example(features=tf.train.Features(feature=features))


def _log_example(instance: TrainingInstance, example: tf.train.Example) -> None:
    logging.info("*** Example ***")
    logging.info("tokens: %s", " ".join(instance.tokens))
    for name, feature in example.features.feature.items():
        values = feature.int64_list.value or feature.float_list.value
        logging.info("%s: %s", name, " ".join(str(x) for x in values))


class RoundRobinWriter:
    """TFRecord writers over the output files, each instance to the next file in turn; files are written
    under temporary names and renamed only when every shard is done."""

    def __init__(self, output_files: Sequence[str]):
        self.output_files = list(output_files)
        self.temporary = [f"{path}.tmp-{os.getpid()}" for path in self.output_files]
        for path in self.output_files:
            directory = os.path.dirname(path)
            if directory:
                tf.io.gfile.makedirs(directory)
        self.writers = [tf.io.TFRecordWriter(path) for path in self.temporary]
        self.index = 0
        self.total = 0

    def write(self, example: tf.train.Example) -> None:
        self.writers[self.index].write(example.SerializeToString())
        self.index = (self.index + 1) % len(self.writers)
        self.total += 1

    def close(self, keep: bool) -> None:
        for writer in self.writers:
            writer.close()
        try:
            for temporary, path in zip(self.temporary, self.output_files):
                if keep:
                    tf.io.gfile.rename(temporary, path, overwrite=True)
        except (OSError, tf.errors.OpError) as err:
            raise InputError(f"cannot write the output file ({getattr(err, 'strerror', None) or err})",
                             path) from None
        finally:
            for temporary in self.temporary:
                if tf.io.gfile.exists(temporary):
                    tf.io.gfile.remove(temporary)


def check_arguments(tokenizer: tokenization.FullTokenizer, max_seq_length: int, max_predictions_per_seq: int,
                    dupe_factor: int, masked_lm_prob: float, short_seq_prob: float, docs_per_shard: int) -> None:
    tokenization.require_tokens(tokenizer.vocab, SPECIAL_TOKENS, tokenizer.vocab_file)
    if max_seq_length < 5:
        raise InputError(f"--max_seq_length must be at least 5 ([CLS] a [SEP] b [SEP]), got {max_seq_length}")
    if max_predictions_per_seq < 1:
        raise InputError(f"--max_predictions_per_seq must be positive, got {max_predictions_per_seq}")
    if dupe_factor < 1:
        raise InputError(f"--dupe_factor must be positive, got {dupe_factor}")
    if not 0.0 <= masked_lm_prob <= 1.0 or not 0.0 <= short_seq_prob <= 1.0:
        raise InputError("--masked_lm_prob and --short_seq_prob must be probabilities (between 0 and 1)")
    if docs_per_shard < 0:
        raise InputError(f"--docs_per_shard must be 0 (one shard) or positive, got {docs_per_shard}")


def create_pretraining_data(input_file: str, output_file: str, vocab_file: str, do_lower_case: bool = True,
                            max_seq_length: int = 128, max_predictions_per_seq: int = 20,
                            random_seed: int = 12345, dupe_factor: int = 10, masked_lm_prob: float = 0.15,
                            short_seq_prob: float = 0.1, do_whole_word_mask: bool = False,
                            docs_per_shard: int = DEFAULT_DOCS_PER_SHARD) -> int:
    """Write the instances of the corpus `input_file` (comma-separated globs) round-robin to the files of
    `output_file` (comma-separated); return the number written."""
    tokenizer = tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)
    check_arguments(tokenizer, max_seq_length, max_predictions_per_seq, dupe_factor, masked_lm_prob,
                    short_seq_prob, docs_per_shard)
    input_files = expand_patterns(input_file)
    output_files = [p.strip() for p in output_file.split(",") if p.strip()]
    if not output_files:
        raise InputError("--output_file names no file")
    for path in output_files:
        if "://" not in path:
            check_output_file(path, "--output_file")
    logging.info("*** Reading from input files ***")
    for path in input_files:
        logging.info("  %s", path)
    rng = random.Random(random_seed)
    vocab_words = list(tokenizer.vocab.keys())
    writer = RoundRobinWriter(output_files)
    done = False
    try:
        with tqdm(desc="documents x dupe_factor", unit="doc", file=sys.stderr) as progress:
            for shard in shards(read_documents(input_files, tokenizer), docs_per_shard):
                instances = create_training_instances(
                    shard, vocab_words, rng, max_seq_length, dupe_factor, short_seq_prob, masked_lm_prob,
                    max_predictions_per_seq, do_whole_word_mask, progress)
                for instance in instances:
                    example = instance_to_example(instance, tokenizer, max_seq_length, max_predictions_per_seq)
                    if writer.total < EXAMPLES_TO_LOG:
                        _log_example(instance, example)
                    writer.write(example)
        if writer.total == 0:
            raise InputError("no document with text found (expected one sentence per line, a blank line between "
                             "documents)", ",".join(input_files))
        done = True
    finally:
        writer.close(keep=done)
    logging.info("*** Writing to output files ***")
    for path in output_files:
        logging.info("  %s", path)
    logging.info("Wrote %d total instances", writer.total)
    return writer.total


@exit_on_input_error
def main(argv: list[str]) -> None:
    del argv
    for name in ("input_file", "output_file", "vocab_file"):
        if getattr(FLAGS, name) is None:
            raise InputError(f"--{name} is required")
    create_pretraining_data(FLAGS.input_file, FLAGS.output_file, FLAGS.vocab_file, FLAGS.do_lower_case,
                            FLAGS.max_seq_length, FLAGS.max_predictions_per_seq, FLAGS.random_seed,
                            FLAGS.dupe_factor, FLAGS.masked_lm_prob, FLAGS.short_seq_prob,
                            FLAGS.do_whole_word_mask, FLAGS.docs_per_shard)


if __name__ == "__main__":
    define_flags()
    absl_cli.run(main)
