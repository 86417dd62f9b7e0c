"""Reading comprehension (CMRC2018 / SQuAD JSON) for run_squad.py: character-level Chinese tokenization,
answer location, doc_stride windows with max-context, model features and n-best post-processing.

Framework-free (NumPy). Behaviour follows the original run_squad.py (from CMRC2018-DRCD-BERT):
* `customize_tokenizer` splits around every CJK character, punctuation, whitespace and control character,
  then WordPiece (no accent stripping; lower-casing only with do_lower_case);
* windows of `max_seq_length - len(query) - 3` doc tokens advancing by min(length, doc_stride), each token
  scored in a window by min(left, right context) + 0.01 * window length;
* features `[CLS] query [SEP] doc [SEP]`, segment 0/1, input_span_mask 1 on [CLS] and the doc tokens;
  a training window that does not hold the answer points at [CLS] (0, 0);
* post-processing: top n_best starts x ends inside the doc, start in its max-context window, end >= start,
  length <= max_answer_length, ranked by start + end logit, deduplicated, probabilities by softmax.

Fixed plumbing of the original: the training answer is located by its answer_start (falling back to the first
occurrence only when answer_start is missing or wrong; both counted); a question whose answer is not in its
context is skipped and counted instead of stopping in pdb or crashing later; every sub-token keeps its
character span in the context, so the predicted answer is the exact context substring (the original rebuilt it
with Google's get_final_text heuristic and then removed every space); the empty n-best entry has every field.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from utils.progress import progress_bar
from utils.tasks import SquadExample
from utils.tokenization import (WordpieceTokenizer, _is_control, _is_punctuation, _is_whitespace, is_cjk_char,
                                load_vocab, require_tokens)

UNIQUE_ID_START = 1000000000          # the original's first unique_id
EMPTY_ANSWER = "empty"                # the original's text when no span is valid
SPECIAL_TOKENS = ("[UNK]", "[CLS]", "[SEP]")  # every window is [CLS] query [SEP] doc [SEP]; unknown words [UNK]


def _splits_alone(char: str) -> bool:
    return is_cjk_char(char) or _is_punctuation(char) or _is_whitespace(char) or _is_control(char)


def customize_tokenizer(text: str, do_lower_case: bool = False) -> list[str]:
    """The original's word split: every CJK character, punctuation and control character is its own word."""
    spaced = "".join(f" {c} " if _splits_alone(c) else c for c in text)
    if do_lower_case:
        spaced = spaced.lower()
    return spaced.split()


class ChineseFullTokenizer:
    """customize_tokenizer + WordPiece over the vocabulary (the original's ChineseFullTokenizer)."""

    def __init__(self, vocab_file: str, do_lower_case: bool = False):
        self.vocab = load_vocab(vocab_file)
        require_tokens(self.vocab, SPECIAL_TOKENS, vocab_file)
        self.wordpiece = WordpieceTokenizer(self.vocab)
        self.do_lower_case = do_lower_case

    def tokenize(self, text: str) -> list[str]:
        return [piece for word in customize_tokenizer(text, self.do_lower_case)
                for piece in self.wordpiece.tokenize(word)]

    def tokenize_word(self, word: str) -> list[str]:
        return self.wordpiece.tokenize(word.lower() if self.do_lower_case else word)

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        unk = self.vocab["[UNK]"]
        return [self.vocab.get(token, unk) for token in tokens]


@dataclass
class DocTokens:
    """A context's WordPiece tokens, each with the [start, end) characters of the context it came from."""

    tokens: list[str]
    token_spans: list[tuple[int, int]]


def split_words(context: str) -> tuple[list[str], list[tuple[int, int]]]:
    """customize_tokenizer's words of `context` (original case) with their character spans."""
    words: list[str] = []
    spans: list[tuple[int, int]] = []
    in_word = False
    for index, char in enumerate(context):
        if _is_whitespace(char):
            in_word = False
        elif _splits_alone(char):
            words.append(char)
            spans.append((index, index + 1))
            in_word = False
        elif in_word:
            words[-1] += char
            spans[-1] = (spans[-1][0], index + 1)
        else:
            words.append(char)
            spans.append((index, index + 1))
            in_word = True
    return words, spans


def _piece_spans(word: str, span: tuple[int, int], pieces: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of a word's WordPiece pieces; the whole word's span for each piece when they do not
    spell the word one character per character ([UNK], or lower-casing that changed a length)."""
    lengths = [len(p[2:]) if i > 0 and p.startswith("##") else len(p) for i, p in enumerate(pieces)]
    if "[UNK]" in pieces or sum(lengths) != len(word):
        return [span] * len(pieces)
    spans, start = [], span[0]
    for length in lengths:
        spans.append((start, start + length))
        start += length
    return spans


def tokenize_context(context: str, tokenizer: ChineseFullTokenizer) -> DocTokens:
    tokens: list[str] = []
    token_spans: list[tuple[int, int]] = []
    for word, span in zip(*split_words(context)):
        pieces = tokenizer.tokenize_word(word)
        tokens.extend(pieces)
        token_spans.extend(_piece_spans(word, span, pieces))
    return DocTokens(tokens, token_spans)


# ------------------------------------------------------------------------------------------------ answers

@dataclass
class LocationStats:
    """How the training answers were found in their contexts (reported after conversion)."""

    by_answer_start: int = 0
    by_search: int = 0                # answer_start missing or not pointing at the text: first occurrence used
    not_found: int = 0                # skipped: the text is not in the context (or has no token)
    skipped_ids: list = field(default_factory=list)

    def summary(self) -> str:
        return (f"training answers: {self.by_answer_start} located by answer_start, {self.by_search} by text search "
                f"(answer_start missing or wrong), {self.not_found} not found in their context and skipped")


def locate_answer(example: SquadExample) -> Optional[tuple[int, int, bool]]:
    """[start, end) characters of the first answer in the context, and whether answer_start gave it."""
    if not example.answers:
        return None
    answer = example.answers[0]
    text = answer.text.strip()
    if not text:
        return None
    start = answer.answer_start
    if start is not None:
        # answer_start points at the raw text, which may begin with spaces that strip() removed.
        lead = len(answer.text) - len(answer.text.lstrip())
        if example.context[start + lead:start + lead + len(text)] == text:
            return start + lead, start + lead + len(text), True
    found = example.context.find(text)
    if found < 0:
        return None
    return found, found + len(text), False


def char_span_to_tokens(doc: DocTokens, start: int, end: int) -> Optional[tuple[int, int]]:
    """Inclusive [first, last] doc token indices covering characters [start, end); None when no token does."""
    covering = [i for i, (s, e) in enumerate(doc.token_spans) if s < end and e > start]
    if not covering:
        return None
    return covering[0], covering[-1]


# ------------------------------------------------------------------------------------------------ windows

@dataclass(frozen=True)
class DocSpan:
    start: int
    length: int


def doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[DocSpan]:
    """The original's sliding windows: max_tokens_for_doc tokens, advancing by min(length, doc_stride)."""
    spans: list[DocSpan] = []
    start = 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        spans.append(DocSpan(start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans


def is_max_context(spans: Sequence[DocSpan], span_index: int, position: int) -> bool:
    """Whether window `span_index` gives doc token `position` its best context (ties: the first window)."""
    best_score, best_index = None, None
    for index, span in enumerate(spans):
        end = span.start + span.length - 1
        if position < span.start or position > end:
            continue
        score = min(position - span.start, end - position) + 0.01 * span.length
        if best_score is None or score > best_score:
            best_score, best_index = score, index
    return span_index == best_index


# ------------------------------------------------------------------------------------------------ features

@dataclass
class SquadFeature:
    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list[str]
    token_to_doc: dict[int, int]              # feature position -> doc token index (doc tokens only)
    token_is_max_context: dict[int, bool]
    input_ids: list[int]
    input_mask: list[int]
    segment_ids: list[int]
    input_span_mask: list[int]
    start_position: int = 0
    end_position: int = 0


@dataclass
class ConvertedExamples:
    features: list[SquadFeature]
    docs: list[DocTokens]                     # per example (shared objects for questions of one context)
    examples: list[SquadExample]              # the examples kept (training: those whose answer was found)
    stats: LocationStats


def convert_examples_to_features(examples: Sequence[SquadExample], tokenizer: ChineseFullTokenizer,
                                 max_seq_length: int, doc_stride: int, max_query_length: int,
                                 is_training: bool) -> ConvertedExamples:
    """Windows and model inputs of every example; for training, answer positions (unfound answers skipped)."""
    stats = LocationStats()
    docs_by_context: dict[str, DocTokens] = {}
    features: list[SquadFeature] = []
    kept: list[SquadExample] = []
    docs: list[DocTokens] = []
    unique_id = UNIQUE_ID_START
    for example in progress_bar(examples, desc="reading windows", unit="questions"):
        doc = docs_by_context.get(example.context)
        if doc is None:
            doc = docs_by_context[example.context] = tokenize_context(example.context, tokenizer)
        answer_tokens = None
        if is_training:
            located = locate_answer(example)
            if located is not None:
                answer_tokens = char_span_to_tokens(doc, located[0], located[1])
            if answer_tokens is None:
                stats.not_found += 1
                stats.skipped_ids.append(example.qas_id)
                continue
            if located[2]:
                stats.by_answer_start += 1
            else:
                stats.by_search += 1
        example_index = len(kept)
        kept.append(example)
        docs.append(doc)
        query_tokens = tokenizer.tokenize(example.question)[:max_query_length]
        max_tokens_for_doc = max_seq_length - len(query_tokens) - 3
        spans = doc_spans(len(doc.tokens), max_tokens_for_doc, doc_stride)
        for span_index, span in enumerate(spans):
            tokens = ["[CLS]", *query_tokens, "[SEP]"]
            segment_ids = [0] * len(tokens)
            span_mask = [1] + [0] * (len(tokens) - 1)
            token_to_doc: dict[int, int] = {}
            max_context: dict[int, bool] = {}
            for i in range(span.length):
                doc_index = span.start + i
                token_to_doc[len(tokens)] = doc_index
                max_context[len(tokens)] = is_max_context(spans, span_index, doc_index)
                tokens.append(doc.tokens[doc_index])
                segment_ids.append(1)
                span_mask.append(1)
            tokens.append("[SEP]")
            segment_ids.append(1)
            span_mask.append(0)
            input_ids = tokenizer.convert_tokens_to_ids(tokens)
            input_mask = [1] * len(input_ids)
            padding = max_seq_length - len(input_ids)
            feature = SquadFeature(unique_id, example_index, span_index, tokens, token_to_doc, max_context,
                                   input_ids + [0] * padding, input_mask + [0] * padding,
                                   segment_ids + [0] * padding, span_mask + [0] * padding)
            if answer_tokens is not None:
                first, last = answer_tokens
                if span.start <= first and last <= span.start + span.length - 1:
                    offset = len(query_tokens) + 2 - span.start
                    feature.start_position, feature.end_position = first + offset, last + offset
            features.append(feature)
            unique_id += 1
    return ConvertedExamples(features, docs, kept, stats)


def feature_arrays(features: Sequence[SquadFeature], is_training: bool) -> dict[str, np.ndarray]:
    """The model inputs as equal-length arrays (the original's TFRecord features)."""
    arrays = {
        "unique_ids": np.array([f.unique_id for f in features], np.int64),
        "input_ids": np.array([f.input_ids for f in features], np.int32),
        "input_mask": np.array([f.input_mask for f in features], np.int32),
        "segment_ids": np.array([f.segment_ids for f in features], np.int32),
        "input_span_mask": np.array([f.input_span_mask for f in features], np.int32),
    }
    if is_training:
        arrays["start_positions"] = np.array([f.start_position for f in features], np.int32)
        arrays["end_positions"] = np.array([f.end_position for f in features], np.int32)
    return arrays


# ------------------------------------------------------------------------------------------------ predictions

def _best_indexes(logits: np.ndarray, n_best_size: int) -> list[int]:
    return [int(i) for i in np.argsort(-np.asarray(logits), kind="stable")[:n_best_size]]


def _softmax(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def write_predictions_data(converted: ConvertedExamples, start_logits: np.ndarray, end_logits: np.ndarray,
                           n_best_size: int, max_answer_length: int
                           ) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """({qas_id: best answer}, {qas_id: n-best list}) from per-feature start/end logits [num_features, S]
    (in the order of converted.features)."""
    by_example: dict[int, list[int]] = collections.defaultdict(list)
    for index, feature in enumerate(converted.features):
        by_example[feature.example_index].append(index)
    predictions: dict[str, str] = {}
    nbest_all: dict[str, list[dict]] = {}
    for example_index, example in enumerate(converted.examples):
        doc = converted.docs[example_index]
        prelim = []
        for index in by_example[example_index]:
            feature = converted.features[index]
            starts, ends = start_logits[index], end_logits[index]
            for s in _best_indexes(starts, n_best_size):
                if s not in feature.token_to_doc or not feature.token_is_max_context.get(s, False):
                    continue
                for e in _best_indexes(ends, n_best_size):
                    if e not in feature.token_to_doc or e < s or e - s + 1 > max_answer_length:
                        continue
                    prelim.append((float(starts[s]) + float(ends[e]), index, s, e))
        prelim.sort(key=lambda p: p[0], reverse=True)
        nbest: list[dict] = []
        seen: set[str] = set()
        for _, index, s, e in prelim:
            if len(nbest) >= n_best_size:
                break
            feature = converted.features[index]
            char_start = doc.token_spans[feature.token_to_doc[s]][0]
            char_end = doc.token_spans[feature.token_to_doc[e]][1]
            text = example.context[char_start:char_end]
            if text in seen:
                continue
            seen.add(text)
            nbest.append({"text": text, "start_logit": float(start_logits[index][s]),
                          "end_logit": float(end_logits[index][e]), "start_index": s, "end_index": e})
        if not nbest:
            nbest.append({"text": EMPTY_ANSWER, "start_logit": 0.0, "end_logit": 0.0, "start_index": 0,
                          "end_index": 0})
        probabilities = _softmax([n["start_logit"] + n["end_logit"] for n in nbest])
        nbest_all[example.qas_id] = [
            {"text": n["text"], "probability": p, "start_logit": n["start_logit"], "end_logit": n["end_logit"],
             "start_index": n["start_index"], "end_index": n["end_index"]} for n, p in zip(nbest, probabilities)]
        predictions[example.qas_id] = nbest[0]["text"]
    return predictions, nbest_all


def has_answers(examples: Sequence[SquadExample]) -> bool:
    """Whether every question has a gold answer (so predictions can be scored)."""
    return bool(examples) and all(example.answers for example in examples)


def examples_dataset(examples: Sequence[SquadExample]) -> Mapping[str, list]:
    """The examples as CMRC2018 JSON (id and answers), for utils.cmrc2018_evaluate.evaluate."""
    return {"data": [{"paragraphs": [{"context": e.context, "qas": [
        {"id": e.qas_id, "question": e.question, "answers": [{"text": a.text} for a in e.answers]}]}]}
        for e in examples]}
