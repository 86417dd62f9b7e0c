"""Raw corpus -> per-epoch JSON-lines training instances for general distillation (TinyBERT's pregeneration).

The instance logic is the original's (Google BERT's create_pretraining_data as adapted by Hugging Face and
TinyBERT): sentence-weighted random-next documents, front-or-back truncation, 80/10/10 masking with at
least one masked token. What changed: every random draw comes from one `random.Random` per epoch, seeded
from --seed and the epoch number, so a seeded run is reproducible whatever the number of workers and
whether documents live in memory or on disk; with --reduce_memory documents are kept in an SQLite file in
a temporary directory under the output directory (the original used a hard-coded /cache/shelf.db); whole
word masking also groups the characters of a Chinese word (jieba), not only WordPiece `##` pieces.
"""
from __future__ import annotations

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
from tqdm import tqdm

from utils.errors import InputError
from utils.features import create_masked_lm_predictions, truncate_seq_pair
from utils.fileio import atomic_open

logger = logging.getLogger(__name__)

Document = list[list[str]]  # sentences, each a list of WordPiece tokens


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


def create_instances_from_document(
    doc_database: DocumentDatabase,
    doc_idx: int,
    max_seq_length: int,
    short_seq_prob: float,
    masked_lm_prob: float,
    max_predictions_per_seq: int,
    whole_word_mask: bool,
    vocab_list: Sequence[str],
    rng: random.Random,
    bi_text: bool = True,
) -> list[dict]:
    """The training instances of one document: [CLS] A [SEP] B [SEP] pairs, B the true or a random next segment.

    Without bi_text (--one_seq) B is never random: a one-segment chunk gets B = ["."], as the original.
    """
    document = doc_database[doc_idx]
    max_num_tokens = max_seq_length - 3
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)

    instances = []
    current_chunk: list[list[str]] = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                a_end = 1
                if len(current_chunk) >= 2:
                    a_end = rng.randrange(1, len(current_chunk))
                tokens_a = [token for chunk in current_chunk[:a_end] for token in chunk]
                tokens_b: list[str] = []
                if bi_text and (len(current_chunk) == 1 or rng.random() < 0.5):
                    is_random_next = True
                    target_b_length = target_seq_length - len(tokens_a)
                    random_document = doc_database.sample_doc(doc_idx, rng, sentence_weighted=True)
                    random_start = rng.randrange(0, len(random_document))
                    for j in range(random_start, len(random_document)):
                        tokens_b.extend(random_document[j])
                        if len(tokens_b) >= target_b_length:
                            break
                    i -= len(current_chunk) - a_end  # the unused segments start the next chunk
                else:
                    is_random_next = False
                    tokens_b = [token for chunk in current_chunk[a_end:] for token in chunk]
                if not tokens_a:
                    tokens_a = ["."]
                if not tokens_b:
                    tokens_b = ["."]
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)

                tokens = ["[CLS]"] + tokens_a + ["[SEP]"] + tokens_b + ["[SEP]"]
                segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                tokens, masked_lm_positions, masked_lm_labels = create_masked_lm_predictions(
                    tokens, masked_lm_prob, max_predictions_per_seq, vocab_list, rng, whole_word_mask)
                instances.append({
                    "tokens": tokens,
                    "segment_ids": segment_ids,
                    "is_random_next": is_random_next,
                    "masked_lm_positions": masked_lm_positions,
                    "masked_lm_labels": masked_lm_labels,
                })
            current_chunk = []
            current_length = 0
        i += 1
    return instances


@dataclass
class GenerationOptions:
    """The instance settings of pregenerate_training_data.py's flags."""

    max_seq_len: int = 128
    short_seq_prob: float = 0.1
    masked_lm_prob: float = 0.0
    max_predictions_per_seq: int = 20
    do_whole_word_mask: bool = False
    bi_text: bool = True


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
    output_dir = Path(output_dir)
    num_instances = 0
    with atomic_open(output_dir / f"epoch_{epoch_num}.json") as epoch_file:
        for doc_idx in tqdm(range(len(docs)), desc=f"Epoch {epoch_num}", unit=" docs", position=position, leave=position is None):
            doc_instances = create_instances_from_document(
                docs, doc_idx,
                max_seq_length=options.max_seq_len,
                short_seq_prob=options.short_seq_prob,
                masked_lm_prob=options.masked_lm_prob,
                max_predictions_per_seq=options.max_predictions_per_seq,
                whole_word_mask=options.do_whole_word_mask,
                vocab_list=vocab_list,
                rng=rng,
                bi_text=options.bi_text,
            )
            for instance in doc_instances:
                epoch_file.write(json.dumps(instance) + "\n")
            num_instances += len(doc_instances)
    metrics = {"num_training_examples": num_instances, "max_seq_len": options.max_seq_len}
    with atomic_open(output_dir / f"epoch_{epoch_num}_metrics.json") as metrics_file:
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
