"""General distillation's pregenerated data: writing epoch_{i}.json + epoch_{i}_metrics.json from a raw corpus
(pregenerate_training_data.py), and reading them back as the original PregeneratedDataset.

The instance logic is the original's (Google BERT's create_pretraining_data as adapted by Hugging Face and
TinyBERT): sentence-weighted random-next documents, front-or-back truncation, 80/10/10 masking with at
least one masked token. What changed: every random draw comes from one `random.Random` per epoch, seeded
from --seed and the epoch number, so a seeded run is reproducible whatever the number of workers and
whether documents live in memory or on disk; with --reduce_memory documents are kept in an SQLite file in
a temporary directory under the output directory (the original used a hard-coded /cache/shelf.db); whole
word masking also groups the characters of a Chinese word (jieba), not only WordPiece `##` pieces.

Reading: features are arrays of the epoch's fixed sequence length, in memory or (reduce_memory) as np.memmap
files in a temporary directory the caller chooses (the original wrote them to a hard-coded /cache); NumPy 2
dtypes replace the removed np.int / np.bool.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from utils.errors import InputError
from utils.features import create_instances_from_document
from utils.fileio import atomic_open
from utils.tokenization import BertTokenizer

from .runtime import log_to_console

logger = logging.getLogger(__name__)

Document = list[list[str]]  # sentences, each a list of WordPiece tokens
INSTANCE_KEYS = ("tokens", "segment_ids", "is_random_next", "masked_lm_positions", "masked_lm_labels")


def epoch_paths(directory: Union[str, os.PathLike], epoch: int) -> tuple[Path, Path]:
    """(epoch_{epoch}.json, epoch_{epoch}_metrics.json) in directory."""
    directory = Path(directory)
    return directory / f"epoch_{epoch}.json", directory / f"epoch_{epoch}_metrics.json"


class DocumentDatabase:
    """Tokenized documents, in a list or (reduce_memory) in an SQLite file, with the original's sampling.

    Only the per-document sentence counts stay in memory with reduce_memory: the corpus itself is read
    back one document at a time, so memory does not grow with the corpus.
    """

    def __init__(self, reduce_memory: bool = False, working_dir: Optional[Union[str, os.PathLike]] = None):
        self.reduce_memory = reduce_memory
        self.doc_lengths: list[int] = []
        self._doc_cumsum: Optional[np.ndarray] = None
        self._pending: list[tuple[int, str]] = []
        self._temp_dir = None
        self.path: Optional[str] = None
        self.documents: Optional[list[Document]] = None
        self._connection: Optional[sqlite3.Connection] = None
        if reduce_memory:
            self._temp_dir = tempfile.TemporaryDirectory(prefix=".pregenerate_", dir=working_dir)
            self.path = os.path.join(self._temp_dir.name, "documents.sqlite")
            self._connection = sqlite3.connect(self.path)
            self._connection.execute("CREATE TABLE documents (idx INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        else:
            self.documents = []

    def add_document(self, document: Document) -> None:
        if not document:
            return
        if self.reduce_memory:
            self._pending.append((len(self.doc_lengths), json.dumps(document, ensure_ascii=False)))
            if len(self._pending) >= 1000:
                self._flush()
        else:
            self.documents.append(document)
        self.doc_lengths.append(len(document))
        self._doc_cumsum = None

    def _flush(self) -> None:
        if self._pending:
            self._connection.executemany("INSERT INTO documents VALUES (?, ?)", self._pending)
            self._connection.commit()
            self._pending = []

    def finish(self) -> None:
        """Write what is still buffered; call once every document is added."""
        if self.reduce_memory:
            self._flush()

    def __len__(self) -> int:
        return len(self.doc_lengths)

    def __getitem__(self, index: int) -> Document:
        if not self.reduce_memory:
            return self.documents[index]
        row = self._connection.execute("SELECT body FROM documents WHERE idx = ?", (int(index),)).fetchone()
        return json.loads(row[0])

    def sample_doc(self, current_idx: int, rng: random.Random, sentence_weighted: bool = True) -> Document:
        """A random document other than current_idx; weighted by sentence count, as the original.

        Long documents give more random-next sentences; the cumulative sum is computed once (the original
        recomputed it on every call, with the same result).
        """
        if sentence_weighted:
            if self._doc_cumsum is None:
                self._doc_cumsum = np.cumsum(self.doc_lengths)
            cumsum_max = int(self._doc_cumsum[-1])
            rand_start = int(self._doc_cumsum[current_idx])
            rand_end = rand_start + cumsum_max - self.doc_lengths[current_idx]
            sentence_index = rng.randrange(rand_start, rand_end) % cumsum_max
            sampled_doc_index = int(np.searchsorted(self._doc_cumsum, sentence_index, side="right"))
        else:
            sampled_doc_index = (current_idx + rng.randrange(1, len(self.doc_lengths))) % len(self.doc_lengths)
        assert sampled_doc_index != current_idx
        return self[sampled_doc_index]

    def reader(self) -> "DocumentDatabase":
        """A copy for another process: the same documents, its own SQLite connection (read-only)."""
        clone = DocumentDatabase.__new__(DocumentDatabase)
        clone.__dict__.update(self.__dict__)
        clone._temp_dir = None
        clone._pending = []
        if self.reduce_memory:
            clone._connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        return clone

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_connection"] = None
        state["_temp_dir"] = None
        return state

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None

    def __enter__(self) -> "DocumentDatabase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_corpus(corpus: Union[str, os.PathLike], tokenizer, docs: DocumentDatabase) -> DocumentDatabase:
    """One sentence per line, a blank line between documents; each line becomes its WordPiece tokens."""
    corpus = Path(corpus)
    if not corpus.is_file():
        raise InputError("training corpus not found (expected a text file, one sentence per line)", corpus)
    document: Document = []
    try:
        with open(corpus, encoding="utf-8") as reader:
            for line in tqdm(reader, desc="Loading Dataset", unit=" lines"):
                line = line.strip()
                if line == "":
                    docs.add_document(document)
                    document = []
                else:
                    document.append(tokenizer.tokenize(line))
    except UnicodeDecodeError as err:
        raise InputError(f"the corpus is not UTF-8 text ({err.reason})", corpus) from None
    docs.add_document(document)
    docs.finish()
    if len(docs) <= 1:
        raise InputError(
            "no document breaks were found: documents must be separated by blank lines so that a random "
            "next sentence can come from another document (put a blank line between documents, or one "
            "after every sentence if they are unrelated)",
            corpus,
        )
    return docs


@dataclass
class GenerationOptions:
    """The instance settings of pregenerate_training_data.py's flags."""

    max_seq_len: int = 128
    short_seq_prob: float = 0.1
    masked_lm_prob: float = 0.0  # still one masked token per instance, as the original
    max_predictions_per_seq: int = 20
    do_whole_word_mask: bool = False
    bi_text: bool = True  # False: --one_seq


def epoch_seed(seed: int, epoch: int) -> str:
    """The seed of one epoch's generator: independent of which process generates it and in what order."""
    return f"pregenerate:{seed}:{epoch}"


def create_training_file(
    docs: DocumentDatabase,
    vocab_list: Sequence[str],
    options: GenerationOptions,
    output_dir: Union[str, os.PathLike],
    epoch_num: int,
    seed: int,
    position: Optional[int] = None,
) -> int:
    """Write epoch_{epoch_num}.json (one instance a line) and then epoch_{epoch_num}_metrics.json; return the count.

    Both are written to temporary files and renamed, so a file under its final name is always complete.
    """
    rng = random.Random(epoch_seed(seed, epoch_num))
    num_instances = 0
    data_path, metrics_path = epoch_paths(output_dir, epoch_num)
    with atomic_open(data_path) as epoch_file:
        for doc_idx in tqdm(range(len(docs)), desc=f"Epoch {epoch_num}", unit=" docs", position=position,
                            leave=position is None):
            doc_instances = create_instances_from_document(
                docs[doc_idx], lambda rng, index=doc_idx: docs.sample_doc(index, rng, sentence_weighted=True),
                options.max_seq_len, options.short_seq_prob, options.masked_lm_prob, options.max_predictions_per_seq,
                vocab_list, rng, options.do_whole_word_mask, options.bi_text)
            for instance in doc_instances:
                epoch_file.write(json.dumps({key: getattr(instance, key) for key in INSTANCE_KEYS}) + "\n")
            num_instances += len(doc_instances)
    metrics = {"num_training_examples": num_instances, "max_seq_len": options.max_seq_len}
    with atomic_open(metrics_path) as metrics_file:
        metrics_file.write(json.dumps(metrics))
    return num_instances


_worker_docs: Optional[DocumentDatabase] = None


def _init_worker(docs: DocumentDatabase) -> None:
    global _worker_docs
    _worker_docs = docs.reader()


def _worker_epoch(vocab_list, options, output_dir, epoch_num, seed) -> int:
    return create_training_file(_worker_docs, vocab_list, options, output_dir, epoch_num, seed, position=epoch_num)


def generate_epochs(
    docs: DocumentDatabase,
    vocab_list: Sequence[str],
    options: GenerationOptions,
    output_dir: Union[str, os.PathLike],
    epochs_to_generate: int,
    seed: int,
    num_workers: int = 1,
) -> list[int]:
    """Every epoch file, in this process or in a pool of min(num_workers, epochs) processes (one epoch a task).

    Each worker reads the documents from its own copy (in memory) or its own connection (reduce_memory);
    the output does not depend on num_workers.
    """
    if num_workers > 1 and epochs_to_generate > 1:
        with multiprocessing.Pool(min(num_workers, epochs_to_generate), initializer=_init_worker, initargs=(docs,)) as pool:
            return pool.starmap(
                _worker_epoch,
                [(vocab_list, options, output_dir, epoch, seed) for epoch in range(epochs_to_generate)],
            )
    return [
        create_training_file(docs, vocab_list, options, output_dir, epoch, seed)
        for epoch in range(epochs_to_generate)
    ]


def pregenerate(args: argparse.Namespace) -> list[int]:
    """Every epoch file pregenerate_training_data.py's flags ask for; the instance count of each epoch."""
    check_flags(args)
    log_to_console()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    logger.info("seed %d", seed)
    tokenizer = BertTokenizer.from_pretrained(args.bert_model, do_lower_case=args.do_lower_case)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    options = GenerationOptions(
        max_seq_len=args.max_seq_len, short_seq_prob=args.short_seq_prob, masked_lm_prob=args.masked_lm_prob,
        max_predictions_per_seq=args.max_predictions_per_seq, do_whole_word_mask=args.do_whole_word_mask,
        bi_text=not args.one_seq)
    with DocumentDatabase(reduce_memory=args.reduce_memory, working_dir=output_dir) as docs:
        load_corpus(args.train_corpus, tokenizer, docs)
        counts = generate_epochs(docs, list(tokenizer.vocab.keys()), options, output_dir, args.epochs_to_generate,
                                 seed, num_workers=args.num_workers)
    for epoch, count in enumerate(counts):
        logger.info("epoch %d: %d instances in %s", epoch, count, epoch_paths(output_dir, epoch)[0])
    return counts


def check_flags(args: argparse.Namespace) -> None:
    if args.num_workers < 1:
        raise InputError(f"--num_workers must be at least 1, got {args.num_workers}")
    if args.epochs_to_generate < 1:
        raise InputError(f"--epochs_to_generate must be at least 1, got {args.epochs_to_generate}")
    if args.max_seq_len < 5:
        raise InputError(f"--max_seq_len must be at least 5 ([CLS] A [SEP] B [SEP]), got {args.max_seq_len}")
    if not 0.0 <= args.short_seq_prob <= 1.0 or not 0.0 <= args.masked_lm_prob <= 1.0:
        raise InputError("--short_seq_prob and --masked_lm_prob must lie in [0, 1]")
    if args.max_predictions_per_seq < 1:
        raise InputError(f"--max_predictions_per_seq must be at least 1, got {args.max_predictions_per_seq}")


# Reading ----------------------------------------------------------------------------------------------------

def read_metrics(path: Union[str, os.PathLike]) -> dict:
    try:
        with open(path, encoding="utf-8") as reader:
            metrics = json.load(reader)
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err.msg})", path, err.lineno) from None
    if not isinstance(metrics, dict) or not all(isinstance(metrics.get(k), int) for k in ("num_training_examples", "max_seq_len")):
        raise InputError('expected {"num_training_examples": <int>, "max_seq_len": <int>}', path)
    return metrics


def discover_epochs(pregenerated_data: Union[str, os.PathLike], num_train_epochs: float) -> tuple[list[int], float]:
    """(examples per data epoch, num_data_epochs), as the original: epochs are reused cyclically when fewer exist.

    Looks for epoch_{i}.json and epoch_{i}_metrics.json for i < int(num_train_epochs); none at all is an error.
    """
    directory = Path(pregenerated_data)
    if not directory.is_dir():
        raise InputError("pregenerated data directory not found", directory)
    samples_per_epoch: list[int] = []
    for i in range(int(num_train_epochs)):
        epoch_file, metrics_file = epoch_paths(directory, i)
        if epoch_file.is_file() and metrics_file.is_file():
            samples_per_epoch.append(read_metrics(metrics_file)["num_training_examples"])
            continue
        if i == 0:
            raise InputError(
                "no training data was found: expected epoch_0.json and epoch_0_metrics.json "
                "(written by pregenerate_training_data.py)", directory
            )
        logger.warning("Only %d epochs of data are available (%s); they will be reused for %s training epochs",
                       i, directory, num_train_epochs)
        return samples_per_epoch, float(i)
    return samples_per_epoch, float(num_train_epochs)


@dataclass
class InputFeatures:
    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray
    lm_label_ids: np.ndarray
    is_next: bool


def convert_example_to_features(example: dict, tokenizer, max_seq_length: int) -> InputFeatures:
    """Token ids, mask and segments padded with 0 to max_seq_length; LM labels -1 except at masked positions."""
    tokens = example["tokens"]
    segment_ids = example["segment_ids"]
    is_random_next = example["is_random_next"]
    masked_lm_positions = example["masked_lm_positions"]
    masked_lm_labels = example["masked_lm_labels"]
    if len(tokens) > max_seq_length:
        logger.info("len(tokens): %d > max_seq_length %d: truncated", len(tokens), max_seq_length)
        tokens = tokens[:max_seq_length]
    if len(tokens) != len(segment_ids):
        logger.info("len(tokens): %d != len(segment_ids): %d, using segment 0 everywhere", len(tokens), len(segment_ids))
        segment_ids = [0] * len(tokens)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    masked_label_ids = tokenizer.convert_tokens_to_ids(masked_lm_labels)

    input_array = np.zeros(max_seq_length, dtype=np.int32)
    input_array[: len(input_ids)] = input_ids
    mask_array = np.zeros(max_seq_length, dtype=np.bool_)
    mask_array[: len(input_ids)] = True
    segment_array = np.zeros(max_seq_length, dtype=np.bool_)
    segment_array[: len(segment_ids)] = segment_ids
    lm_label_array = np.full(max_seq_length, dtype=np.int32, fill_value=-1)
    kept = [(p, i) for p, i in zip(masked_lm_positions, masked_label_ids) if p < max_seq_length]
    if kept:
        positions, ids = zip(*kept)
        lm_label_array[list(positions)] = ids
    return InputFeatures(input_array, mask_array, segment_array, lm_label_array, bool(is_random_next))


def _check_instance(example, path: Path, line: int) -> None:
    if not isinstance(example, dict) or any(key not in example for key in INSTANCE_KEYS):
        raise InputError(f"expected a JSON object with keys {', '.join(INSTANCE_KEYS)}", path, line)
    if not example["tokens"] or len(example["masked_lm_positions"]) != len(example["masked_lm_labels"]):
        raise InputError("empty tokens, or masked_lm_positions and masked_lm_labels of different lengths", path, line)
    if any(not isinstance(p, int) or p < 0 or p >= len(example["tokens"]) for p in example["masked_lm_positions"]):
        raise InputError("masked_lm_positions must be indices into tokens", path, line)


class PregeneratedDataset(Dataset):
    """One epoch of pregenerated instances as five int64 tensors per item, the original's dataset.

    `epoch` is the training epoch; the data epoch read is int(epoch % num_data_epochs). With reduce_memory
    the arrays are np.memmap files in a temporary directory under `working_dir` (default: the system's),
    deleted by close().
    """

    def __init__(self, training_path: Union[str, os.PathLike], epoch: int, tokenizer, num_data_epochs: float,
                 reduce_memory: bool = False, working_dir: Optional[Union[str, os.PathLike]] = None,
                 show_progress: bool = True):
        self.vocab = tokenizer.vocab
        self.tokenizer = tokenizer
        self.epoch = epoch
        self.data_epoch = int(epoch % num_data_epochs)
        data_file, metrics_file = epoch_paths(training_path, self.data_epoch)
        if not data_file.is_file() or not metrics_file.is_file():
            raise InputError(f"epoch {self.data_epoch} data not found (expected {data_file.name} and "
                             f"{metrics_file.name})", training_path)
        metrics = read_metrics(metrics_file)
        num_samples = metrics["num_training_examples"]
        seq_len = metrics["max_seq_len"]
        self.seq_len = seq_len
        self._temp_dir = None
        if reduce_memory:
            if working_dir is not None:
                os.makedirs(working_dir, exist_ok=True)
            self._temp_dir = tempfile.TemporaryDirectory(prefix=".memmap_", dir=working_dir)
            folder = Path(self._temp_dir.name)

            def array(name, dtype, shape, fill=0):
                values = np.memmap(folder / f"{name}.memmap", mode="w+", dtype=dtype, shape=shape)
                values[:] = fill
                return values
        else:
            def array(name, dtype, shape, fill=0):
                return np.full(shape, fill, dtype=dtype)
        input_ids = array("input_ids", np.int32, (num_samples, seq_len))
        input_masks = array("input_masks", np.bool_, (num_samples, seq_len))
        segment_ids = array("segment_ids", np.bool_, (num_samples, seq_len))
        lm_label_ids = array("lm_label_ids", np.int32, (num_samples, seq_len), fill=-1)
        is_nexts = array("is_nexts", np.bool_, (num_samples,))
        logger.info("Loading training examples for epoch %d from %s", epoch, data_file)
        count = 0
        with open(data_file, encoding="utf-8") as reader:
            for line_number, line in enumerate(
                tqdm(reader, total=num_samples, desc="Training examples", disable=not show_progress), start=1
            ):
                if count >= num_samples:
                    raise InputError(f"more instances than num_training_examples = {num_samples} in {metrics_file.name}",
                                     data_file, line_number)
                try:
                    example = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(f"not a JSON instance ({err.msg})", data_file, line_number) from None
                _check_instance(example, data_file, line_number)
                features = convert_example_to_features(example, tokenizer, seq_len)
                input_ids[count] = features.input_ids
                segment_ids[count] = features.segment_ids
                input_masks[count] = features.input_mask
                lm_label_ids[count] = features.lm_label_ids
                is_nexts[count] = features.is_next
                count += 1
        if count != num_samples:
            raise InputError(f"{count} instances, but {metrics_file.name} says num_training_examples = {num_samples}",
                             data_file)
        logger.info("Loading complete!")
        self.num_samples = num_samples
        self.input_ids = input_ids
        self.input_masks = input_masks
        self.segment_ids = segment_ids
        self.lm_label_ids = lm_label_ids
        self.is_nexts = is_nexts

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, item: int):
        return (
            torch.tensor(self.input_ids[item].astype(np.int64)),
            torch.tensor(self.input_masks[item].astype(np.int64)),
            torch.tensor(self.segment_ids[item].astype(np.int64)),
            torch.tensor(self.lm_label_ids[item].astype(np.int64)),
            torch.tensor(int(self.is_nexts[item])),
        )

    def close(self) -> None:
        """Drop the arrays and delete the memmap files (reduce_memory)."""
        for name in ("input_ids", "input_masks", "segment_ids", "lm_label_ids", "is_nexts"):
            setattr(self, name, None)
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None
