"""TinyBERT's data augmentation: words replaced by masked-LM or word-vector neighbours, N variants a sentence.

The algorithm of the original data_augmentation.py (Jiao et al. 2020, Alg. 1): a sentence is split into words;
every word made of letters that is not a stop word gets M candidates, from the masked LM when it is a single
WordPiece and from GloVe cosine neighbours otherwise; each of N variants replaces every such word, with
probability p, by a randomly chosen candidate. Chinese sentences are split into jieba words; a word of L
characters gets the M most likely L-character fillings of L consecutive [MASK]s (or its word-vector neighbours
when vectors are given and L > 1).

What is faster here: all masked copies of one sentence go through the model in one no_grad forward (chunks of
`batch_size`; a chunk of 1 runs the same code), only the masked positions go through the vocabulary projection,
and the neighbours of all a sentence's words come from one matrix product over unit vectors, cached per word.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from transformer.modeling import BertForMaskedLM
from utils.errors import InputError, require_file
from utils.fileio import atomic_open
from utils.tasks import DataProcessor, get_processor, get_task, read_tsv
from utils.tokenization import FullTokenizer, is_cjk_char

from .runtime import Runtime, log_to_console, seed_everything, setup_runtime

logger = logging.getLogger(__name__)

# The original's list (NLTK's English stop words): these words are never replaced.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his
himself she she's her hers herself it it's its itself they them their theirs themselves this that that'll these
those am is are was were be been being have has had having do does did doing a an the and but if or because as
until while of at by for with about against between into through during before after above below to from up down
in out on off over under again further then once here there all any both each few more most other some such no
nor not only own same so than too very s t can will just don don't should should've now d ll m o re ve y ain
aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn
mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn
wouldn't 's 're
""".split())

GLOVE_VOCAB_SIZE = 100000
_ENGLISH_WORD = re.compile("[a-z]+")


def default_n(task_name: str) -> int:
    """N of a task when --N is not given: its augment_n in utils/tasks.py (the original's table, else 30)."""
    return get_task(task_name).augment_n


# Word vectors ------------------------------------------------------------------------------------------------

@dataclass
class WordVectors:
    """The first `vocab_size` words of a GloVe-style file as unit vectors; nearest neighbours by cosine."""

    words: list[str]
    unit: np.ndarray  # [V, D] float32; rows of zero vectors (and '<unk>') stay zero and are never neighbours
    index: dict[str, int] = field(init=False)
    _usable: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {word: i for i, word in enumerate(self.words)}
        self._usable = np.abs(self.unit).sum(axis=1) > 0

    @classmethod
    def from_matrix(cls, words: Sequence[str], matrix: np.ndarray) -> "WordVectors":
        matrix = np.asarray(matrix, dtype=np.float32).copy()
        for i, word in enumerate(words):
            if word == "<unk>":
                matrix[i] = 0.0
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
        return cls(list(words), unit)

    @classmethod
    def load(cls, path: str | os.PathLike, vocab_size: int = GLOVE_VOCAB_SIZE,
             vocab_path: Optional[str | os.PathLike] = None) -> "WordVectors":
        """A GloVe text file (`word v1 ... vD` a line), or a .npy matrix with its words (a .parquet whose first
        column holds them, or a text file of one word a line): `vocab_path`, else the one .parquet beside the
        .npy. A directory holding one .npy is read the same way."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = _single_file(path, ".npy", "a .npy matrix of word vectors")
        require_file(path, "word vectors")
        if not path.endswith(".npy"):
            return cls._load_text(path, vocab_size)
        if vocab_path is None:
            vocab_path = _single_file(os.path.dirname(os.path.abspath(path)), ".parquet",
                                      "the .parquet word list of the .npy vectors (or give --glove_vocab)")
        matrix = np.load(path, mmap_mode="r")
        if matrix.ndim != 2:
            raise InputError(f"expected a 2-D matrix of word vectors, found shape {matrix.shape}", path)
        words = _read_words(os.fspath(vocab_path), min(vocab_size, matrix.shape[0]))
        if len(words) < min(vocab_size, matrix.shape[0]):
            raise InputError(f"has {len(words)} words but the vectors have {matrix.shape[0]} rows", vocab_path)
        return cls.from_matrix(words, np.asarray(matrix[: len(words)]))

    @classmethod
    def _load_text(cls, path: str, vocab_size: int) -> "WordVectors":
        words: list[str] = []
        rows: list[np.ndarray] = []
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if len(words) == vocab_size:
                    break
                items = line.rstrip().split(" ")
                if len(items) < 2:
                    raise InputError("expected `word value1 value2 ...` (a GloVe text line)", path, number)
                try:
                    vector = np.asarray(items[1:], dtype=np.float32)
                except ValueError:
                    raise InputError("expected numbers after the word (a GloVe text line)", path, number) from None
                if rows and vector.shape != rows[0].shape:
                    raise InputError(f"expected {rows[0].shape[0]} values after the word, found {vector.shape[0]}",
                                     path, number)
                words.append(items[0])
                rows.append(vector)
        if not words:
            raise InputError("no word vectors found (the file is empty)", path)
        return cls.from_matrix(words, np.stack(rows))

    def neighbours(self, words: Sequence[str], count: int) -> list[list[str]]:
        """The `count` nearest words (cosine, itself excluded) of each word; [] for a word without a vector.

        One [k, D] x [D, V] product for all k words. A title-case word gets title-case neighbours (the
        original's rule for cased models); lookup falls back to the lower-cased word.
        """
        keys = [word if word in self.index else word.lower() for word in words]
        rows = [self.index.get(key, -1) for key in keys]
        result: list[list[str]] = [[] for _ in words]
        found = [i for i, row in enumerate(rows) if row >= 0 and self._usable[row]]
        if not found:
            return result
        ids = np.asarray([rows[i] for i in found])
        scores = self.unit[ids] @ self.unit.T  # [k, V] cosine similarities
        scores[:, ~self._usable] = -np.inf
        scores[np.arange(len(ids)), ids] = -np.inf
        count = min(count, scores.shape[1] - 1)
        top = np.argpartition(-scores, count - 1, axis=1)[:, :count] if count > 0 else np.zeros((len(ids), 0), int)
        for slot, i in enumerate(found):
            order = top[slot][np.argsort(-scores[slot, top[slot]], kind="stable")]
            neighbours = [self.words[j] for j in order if np.isfinite(scores[slot, j])]
            if words[i].istitle():
                neighbours = [w.title() for w in neighbours]
            result[i] = neighbours
        return result


def _single_file(directory: str, suffix: str, what: str) -> str:
    matches = sorted(name for name in os.listdir(directory) if name.endswith(suffix))
    if len(matches) != 1:
        raise InputError(f"expected exactly one *{suffix} file here ({what}), found {len(matches)}", directory)
    return os.path.join(directory, matches[0])


def _read_words(path: str, count: int) -> list[str]:
    require_file(path, "word list of the vectors")
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return [str(word) for word in table.column(0).slice(0, count).to_pylist()]
    words = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if len(words) == count:
                break
            words.append(line.rstrip("\n"))
    return words


# Masked-LM candidates ----------------------------------------------------------------------------------------

@dataclass
class Span:
    """Pieces [start, start + length) of a sentence, masked together."""

    start: int
    length: int


class MaskedLMCandidates:
    """The M most likely fillings of masked word spans, for all spans of one sentence at once.

    Each span gets the original's input, `[CLS] pieces-with-span-masked [SEP] pieces [SEP]` (segments 0 up
    to the first [SEP], then 1), no attention mask. When that is longer than `max_seq_length` both copies
    are cut to the same window of pieces around the span (the original crashed or lost the word past 512).
    A span of L pieces gets the M best L-piece fillings by summed log-probability of independent positions
    (exact top M: a beam of M kept after each position); only whole-word tokens (English: no ## pieces, no
    [special] tokens; Chinese: single CJK characters) are candidates.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: FullTokenizer, M: int, chinese: bool,
                 max_seq_length: int = 512, batch_size: int = 32, device: torch.device | str = "cpu"):
        self.model = model
        self.tokenizer = tokenizer
        self.M = M
        self.device = torch.device(device)
        self.batch_size = batch_size
        limit = getattr(model.config, "max_position_embeddings", max_seq_length)
        if getattr(model.config, "use_relative_position", False):
            limit = max_seq_length
        self.max_seq_length = min(max_seq_length, limit)
        if self.max_seq_length < 5:
            raise InputError(f"--max_seq_length must be at least 5 to hold [CLS] word [SEP] word [SEP], "
                             f"got {self.max_seq_length}")
        vocab = tokenizer.inv_vocab
        if len(vocab) > model.config.vocab_size:
            raise InputError(f"the vocabulary has {len(vocab)} tokens but the model only {model.config.vocab_size}: "
                             "vocab.txt does not belong to this model", tokenizer.vocab_file)
        absent = [token for token in ("[CLS]", "[SEP]", "[MASK]") if token not in tokenizer.vocab]
        if absent:
            raise InputError(f"the vocabulary lacks {', '.join(absent)}, which the masked LM needs",
                             tokenizer.vocab_file)
        allowed = torch.zeros(model.config.vocab_size, dtype=torch.bool)
        for index in range(min(len(vocab), model.config.vocab_size)):
            allowed[index] = _is_candidate_token(vocab[index], chinese)
        self._penalty = torch.where(allowed, 0.0, -torch.inf).to(self.device)
        self._cls, self._sep, self._mask = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "[MASK]"])

    def __call__(self, pieces: Sequence[str], spans: Sequence[Span]) -> list[list[str]]:
        if not spans:
            return []
        ids = self.tokenizer.convert_tokens_to_ids(pieces)
        width = min(len(ids), (self.max_seq_length - 3) // 2)
        rows, positions = [], []
        for span in spans:
            if span.length > width:
                rows.append(None)
                continue
            first = min(max(0, span.start - (width - span.length) // 2), len(ids) - width)
            window = ids[first:first + width]
            masked = list(window)
            offset = span.start - first
            masked[offset:offset + span.length] = [self._mask] * span.length
            rows.append([self._cls] + masked + [self._sep] + window + [self._sep])
            positions.append([1 + offset + k for k in range(span.length)])
        kept = [row for row in rows if row is not None]
        scores = self._masked_scores(kept, positions, width)
        results, used = [], 0
        for row, span in zip(rows, spans):
            if row is None:
                results.append([])
                continue
            results.append(self._best_fillings(scores[used]))
            used += 1
        return results

    @torch.no_grad()
    def _masked_scores(self, rows: list[list[int]], positions: list[list[int]], width: int) -> list[torch.Tensor]:
        """Log-probabilities [L, V] at each row's masked positions (non-candidate tokens -inf)."""
        segments = [0] * (width + 2) + [1] * (width + 1)
        out: list[torch.Tensor] = []
        for begin in range(0, len(rows), self.batch_size):
            chunk = rows[begin:begin + self.batch_size]
            input_ids = torch.tensor(chunk, device=self.device)
            token_type_ids = torch.tensor([segments] * len(chunk), device=self.device)
            hidden = self.model.bert(input_ids, token_type_ids, output_all_encoded_layers=False,
                                     output_att=False).hidden_states
            which = positions[begin:begin + self.batch_size]
            row_index = torch.tensor([r for r, pos in enumerate(which) for _ in pos], device=self.device)
            col_index = torch.tensor([p for pos in which for p in pos], device=self.device)
            logits = self.model.cls(hidden[row_index, col_index]).float()  # [sum L, V]
            logprobs = (torch.log_softmax(logits, dim=-1) + self._penalty).cpu()
            out.extend(logprobs.split([len(pos) for pos in which]))
        return out

    def _best_fillings(self, logprobs: torch.Tensor) -> list[str]:
        values, indices = logprobs.topk(min(self.M, logprobs.size(-1)), dim=-1)  # [L, M]
        beam: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
        for value_row, index_row in zip(values.tolist(), indices.tolist()):
            grown = [(score + value, ids + (index,)) for score, ids in beam
                     for value, index in zip(value_row, index_row) if value != -float("inf")]
            grown.sort(key=lambda item: -item[0])
            beam = grown[: self.M]
        tokens = self.tokenizer.inv_vocab
        return ["".join(tokens[i] for i in ids) for _, ids in beam if ids]


def _is_candidate_token(token: str, chinese: bool) -> bool:
    if chinese:
        return len(token) == 1 and is_cjk_char(token)
    special = len(token) > 2 and token.startswith("[") and token.endswith("]")
    return not token.startswith("##") and not special


# Sentences ---------------------------------------------------------------------------------------------------

class DataAugmentor:
    """N variants of a sentence (the original's DataAugmentor.augment).

    Each sentence's variants come from a generator seeded by (seed, key), the key naming the sentence (its
    row and column in the file): they depend neither on the sentences augmented before nor on which process
    augments it.
    """

    def __init__(self, mlm: MaskedLMCandidates, tokenizer: FullTokenizer, vectors: Optional[WordVectors],
                 M: int, N: int, p: float, seed: int, chinese: bool = False):
        self.mlm = mlm
        self.tokenizer = tokenizer
        self.vectors = vectors
        self.M, self.N, self.p = M, N, p
        self.chinese = chinese
        self.seed = seed
        self._neighbour_cache: dict[str, list[str]] = {}
        if chinese:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            self._cut = jieba.lcut
        if vectors is None and not chinese:
            raise InputError("English augmentation needs word vectors for multi-piece words (give --glove_embs)")

    def words(self, sentence: str) -> list[str]:
        """English: the basic tokenizer's words (lower-cased as the model's vocabulary); Chinese: jieba words."""
        if self.chinese:
            return self._cut(sentence)
        return self.tokenizer.basic_tokenizer.tokenize(sentence)

    def _pieces(self, word: str) -> list[str]:
        """WordPiece pieces of a word (a jieba word may still hold punctuation, Latin letters or spaces)."""
        if self.chinese:
            return self.tokenizer.tokenize(word)
        return self.tokenizer.wordpiece_tokenizer.tokenize(word)

    def replaceable(self, word: str) -> bool:
        if self.chinese:
            return all(is_cjk_char(char) for char in word)
        return _ENGLISH_WORD.fullmatch(word.lower()) is not None and word.lower() not in STOP_WORDS

    def candidates(self, words: Sequence[str]) -> dict[int, list[str]]:
        """Candidate replacements of every replaceable word, by word index; a word without any keeps itself."""
        pieces: list[str] = []
        spans: list[tuple[int, Span]] = []
        by_vectors: list[int] = []
        for index, word in enumerate(words):
            word_pieces = self._pieces(word)
            if self.replaceable(word) and word_pieces:
                if len(word_pieces) == 1 or (self.chinese and self.vectors is None):
                    spans.append((index, Span(len(pieces), len(word_pieces))))
                else:
                    by_vectors.append(index)
            pieces.extend(word_pieces)
        found = dict(zip((i for i, _ in spans), self.mlm(pieces, [span for _, span in spans])))
        found.update(zip(by_vectors, self._neighbours([words[i] for i in by_vectors])))
        return {index: found[index] or [words[index]] for index in sorted(found)}

    def _neighbours(self, words: list[str]) -> list[list[str]]:
        missing = sorted({w for w in words if w not in self._neighbour_cache})
        if missing:
            self._neighbour_cache.update(zip(missing, self.vectors.neighbours(missing, self.M)))
        return [self._neighbour_cache[w] for w in words]

    def augment(self, sentence: str, key: str = "") -> list[str]:
        """The sentence itself, then up to N distinct variants in which at least one word changed.

        Each variant draws, for each replaceable word in order, a candidate and then a number in [0, 1), and
        replaces the word when the number is below p (the original's order of random calls).
        """
        rng = random.Random(f"augment:{self.seed}:{key}")
        words = self.words(sentence)
        candidates = self.candidates(words)
        joiner = "" if self.chinese else " "
        unchanged = joiner.join(words)
        results = [sentence]
        seen = {sentence, unchanged}
        for _ in range(self.N):
            variant = list(words)
            for index, choices in candidates.items():
                choice = rng.choice(choices)
                if rng.random() < self.p:
                    variant[index] = choice
            text = joiner.join(variant)
            if text not in seen:
                seen.add(text)
                results.append(text)
        return results


# Files -------------------------------------------------------------------------------------------------------

@dataclass
class AugmentStats:
    examples: int
    sentences: int
    rows_written: int
    seconds: float

    @property
    def sentences_per_s(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else float("inf")


def text_columns(processor: DataProcessor) -> list[int]:
    text_a, text_b, _ = processor.columns
    return [text_a] + ([text_b] if text_b is not None else [])


def read_examples(processor: DataProcessor, input_path: str) -> tuple[Optional[list[str]], list[list[str]]]:
    """(header or None, data rows) of the training file, every row holding the task's columns."""
    rows = list(read_tsv(input_path))
    header = rows[0][1] if processor.has_header and rows else None
    needed = processor.train_layout.min_columns
    examples = []
    for line, row in rows[1:] if header is not None else rows:
        if len(row) >= needed:
            examples.append(row)
        elif not processor.skip_bad_rows:
            raise InputError(f"expected at least {needed} tab-separated columns for task {processor.name} "
                             f"(text in column(s) {', '.join(str(c + 1) for c in text_columns(processor))}), "
                             f"found {len(row)}", input_path, line)
    if not examples:
        raise InputError(f"no examples to augment for task {processor.name} (the file has no data rows)", input_path)
    return header, examples


def augment_row(augmentor: DataAugmentor, row: list[str], index: int, columns: Sequence[int]) -> list[list[str]]:
    """The row, then for each text column one row per variant of that column, the other columns as they are."""
    out = [row]
    for column in columns:
        for variant in augmentor.augment(row[column], key=f"{index}:{column}")[1:]:
            out.append(list(row))
            out[-1][column] = variant
    return out


def augment_file(augmentor: DataAugmentor, processor: DataProcessor, input_path: str | os.PathLike,
                 output_path: str | os.PathLike, progress: bool = True, runtime: Optional[Runtime] = None,
                 block: int = 64) -> AugmentStats:
    """Write train_aug.tsv: the header (when the task has one), then for each example its row, and for each
    text column one row per variant of that column with every other column as in the input.

    Under torchrun each rank augments every world_size-th example of each block and rank 0 writes the
    gathered rows in input order: the file is the one a single process writes.

    The original mutated the row in place, so a pair's second-column rows carried the first column's last
    variant, and it wrote the unchanged row once per column; here each variant row differs from the input in
    exactly one column and the input row is written once.
    """
    runtime = runtime or Runtime(augmentor.mlm.device)
    input_path = os.fspath(input_path)
    header, examples = read_examples(processor, input_path)
    columns = text_columns(processor)
    start = time.perf_counter()
    written = 0
    output = atomic_open(output_path) if runtime.is_main else contextlib.nullcontext()
    with output as handle, tqdm(total=len(examples) * len(columns), unit="sent", desc="augment",
                                disable=not progress or not runtime.is_main) as bar:
        if header is not None and runtime.is_main:
            handle.write("\t".join(header) + "\n")
        step = block * runtime.world_size
        for first in range(0, len(examples), step):
            mine = {index: augment_row(augmentor, examples[index], index, columns)
                    for index in range(first + runtime.rank, min(first + step, len(examples)), runtime.world_size)}
            shares = runtime.gather(mine)
            if not runtime.is_main:
                continue
            rows = {index: out for share in shares for index, out in share.items()}
            for index in sorted(rows):
                handle.writelines("\t".join(out) + "\n" for out in rows[index])
                written += len(rows[index])
            bar.update(len(rows) * len(columns))
    stats = AugmentStats(len(examples), len(examples) * len(columns), written, time.perf_counter() - start)
    if runtime.is_main:
        logger.info("Augmented %d examples (%d sentences, %.2f sentences/s) into %d rows: %s", stats.examples,
                    stats.sentences, stats.sentences_per_s, stats.rows_written, os.fspath(output_path))
    return stats


def run(args: argparse.Namespace) -> AugmentStats:
    """Augment the task's training file as data_augmentation.py's flags say; the counts and the speed."""
    check_flags(args)
    processor = get_processor(args.task_name)
    if not processor.chinese and args.glove_embs is None:
        raise InputError(f"task {args.task_name} is English: --glove_embs (GloVe vectors for multi-piece words) "
                         "is required")
    task_dir = args.task_dir or os.path.join(args.glue_dir, args.task_name)
    input_path = processor.train_path(task_dir)
    output_path = args.output or os.path.join(task_dir, "train_aug.tsv")
    n = default_n(args.task_name) if args.N is None else args.N
    runtime = setup_runtime(args.local_rank, args.no_cuda)
    log_to_console(runtime.is_main)
    seed_everything(args.seed)
    logger.info("task %s (%s), N=%d M=%d p=%s seed=%d, device %s, rank %d of %d", processor.name,
                "Chinese" if processor.chinese else "English", n, args.M, args.p, args.seed, runtime.device,
                runtime.rank, runtime.world_size)

    tokenizer = FullTokenizer.from_pretrained(args.pretrained_bert_model, do_lower_case=args.do_lower_case)
    model, info = BertForMaskedLM.from_pretrained(args.pretrained_bert_model, output_loading_info=True)
    if any(key.startswith("cls.predictions") for key in info["missing_keys"]):
        logger.warning("%s has no masked-LM head: candidates come from a randomly initialised one",
                       args.pretrained_bert_model)
    model.to(runtime.device).eval()
    vectors = None
    if args.glove_embs is not None:
        vectors = WordVectors.load(args.glove_embs, args.glove_vocab_size, args.glove_vocab)
    mlm = MaskedLMCandidates(model, tokenizer, args.M, processor.chinese, args.max_seq_length, args.batch_size,
                             runtime.device)
    augmentor = DataAugmentor(mlm, tokenizer, vectors, args.M, n, args.p, args.seed, processor.chinese)
    return augment_file(augmentor, processor, input_path, output_path, progress=not args.no_progress,
                        runtime=runtime)


def check_flags(args: argparse.Namespace) -> None:
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
