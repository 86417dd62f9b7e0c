"""People's Daily NER features: characters -> WordPiece windows -> label ids, and back to one tag per character.

Conversion follows the original run_classifier_ner.py: every character is tokenized on its own, its first
sub-token carries the character's tag and further sub-tokens the tag `X`; a window is `[CLS] ... [SEP]` with
labels `[CLS]`/`[SEP]`, padded with id 0 and label 0; label ids are 1-based in NER_LABELS order (0 = padding).

Where the original cut a sentence longer than max_seq_length - 2 tokens (losing the tail silently), the
sentence is split into overlapping windows, as run_squad's doc_stride does for long documents. Each character
is predicted from the window in which its first sub-token has the most context on both sides, so every
character gets exactly one prediction. A character the tokenizer drops entirely (a control character) is
given one [UNK] token so that it too keeps its tag and its prediction.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from utils.fileio import atomic_open
from utils.progress import progress_bar
from utils.tasks import NER_LABELS, NerSentence
from utils.tokenization import FullTokenizer

NUM_LABELS = len(NER_LABELS) + 1          # 11: the ten labels plus padding id 0
LABEL_MAP = {label: index for index, label in enumerate(NER_LABELS, start=1)}
ID_TO_LABEL = {index: label for label, index in LABEL_MAP.items()}
CHAR_TAGS = frozenset(NER_LABELS[:7])


class SentenceTokens(NamedTuple):
    tokens: list[str]        # WordPiece tokens of the whole sentence
    labels: list[str]        # per token: the character's tag on its first sub-token, `X` on the others
    first_token: list[int]   # per character: the index of its first sub-token


@dataclass
class NerFeature:
    """One window of one sentence, padded to max_seq_length."""

    sentence_index: int
    tokens: list[str]                 # [CLS] window tokens [SEP], no padding (what token_test.txt lists)
    input_ids: list[int]
    input_mask: list[int]
    segment_ids: list[int]
    label_ids: list[int]
    predicted_chars: dict[int, int]   # position in the window -> character predicted from this window


class Span(NamedTuple):
    start: int
    length: int


def tokenize_sentence(sentence: NerSentence, tokenizer: FullTokenizer) -> SentenceTokens:
    tokens: list[str] = []
    labels: list[str] = []
    first_token: list[int] = []
    for char, tag in zip(sentence.chars, sentence.tags):
        pieces = tokenizer.tokenize(char) or [tokenizer.unk_token]
        first_token.append(len(tokens))
        tokens.extend(pieces)
        labels.extend([tag] + ["X"] * (len(pieces) - 1))
    return SentenceTokens(tokens, labels, first_token)


def window_spans(num_tokens: int, max_tokens: int, stride: int) -> list[Span]:
    """Windows of at most max_tokens covering [0, num_tokens); each starts `stride` after the previous
    (never more than a window's length, so nothing is skipped), the last one ends at num_tokens."""
    if max_tokens < 1 or stride < 1:
        raise ValueError(f"window size {max_tokens} and stride {stride} must be positive")
    spans = []
    start = 0
    while True:
        length = min(num_tokens - start, max_tokens)
        spans.append(Span(start, length))
        if start + length >= num_tokens:
            return spans
        start += min(length, stride)


def best_window(spans: Sequence[Span], position: int) -> int:
    """The window where `position` has the most context: max of min(left, right) + 0.01 * length (SQuAD's
    rule); the first such window on ties."""
    best, best_score = -1, None
    for index, span in enumerate(spans):
        if not span.start <= position < span.start + span.length:
            continue
        left, right = position - span.start, span.start + span.length - 1 - position
        score = min(left, right) + 0.01 * span.length
        if best_score is None or score > best_score:
            best, best_score = index, score
    return best


def convert_sentence(sentence_index: int, sentence: NerSentence, tokenizer: FullTokenizer,
                     max_seq_length: int, window_stride: int) -> list[NerFeature]:
    """The windows of one sentence as padded features (one window when the sentence fits)."""
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room between [CLS] and [SEP]")
    pieces = tokenize_sentence(sentence, tokenizer)
    spans = window_spans(len(pieces.tokens), max_seq_length - 2, window_stride)
    owner = {pieces.first_token[c]: c for c in range(len(sentence.chars))}
    predicted: list[dict[int, int]] = [{} for _ in spans]
    for token, char in owner.items():
        window = best_window(spans, token)
        predicted[window][token - spans[window].start + 1] = char
    features = []
    for span, chars in zip(spans, predicted):
        body = slice(span.start, span.start + span.length)
        tokens = ["[CLS]"] + pieces.tokens[body] + ["[SEP]"]
        labels = ["[CLS]"] + pieces.labels[body] + ["[SEP]"]
        padding = [0] * (max_seq_length - len(tokens))
        features.append(NerFeature(
            sentence_index=sentence_index,
            tokens=tokens,
            input_ids=tokenizer.convert_tokens_to_ids(tokens) + padding,
            input_mask=[1] * len(tokens) + padding,
            segment_ids=[0] * max_seq_length,
            label_ids=[LABEL_MAP[label] for label in labels] + padding,
            predicted_chars=chars))
    return features


def convert_sentences(sentences: Sequence[NerSentence], tokenizer: FullTokenizer, max_seq_length: int,
                      window_stride: int) -> list[NerFeature]:
    return [feature for index, sentence in enumerate(progress_bar(sentences, desc="NER windows", unit="sentences"))
            for feature in convert_sentence(index, sentence, tokenizer, max_seq_length, window_stride)]


def feature_arrays(features: Sequence[NerFeature]) -> dict[str, np.ndarray]:
    """The original's tfrecord features as int32 arrays [num_features, max_seq_length]."""
    return {name: np.asarray([getattr(f, name) for f in features], dtype=np.int32).reshape(len(features), -1)
            for name in ("input_ids", "input_mask", "segment_ids", "label_ids")}


def id_to_tag(label_id: int) -> str:
    """A predicted id as a character tag; padding, X, [CLS] and [SEP] predicted for a character read as O."""
    label = ID_TO_LABEL.get(int(label_id), "O")
    return label if label in CHAR_TAGS else "O"


def assemble_predictions(features: Sequence[NerFeature], predicted_ids: np.ndarray,
                         sentences: Sequence[NerSentence]) -> list[list[str]]:
    """One predicted tag per character of every sentence, from the window chosen for it."""
    tags: list[list[str | None]] = [[None] * len(s.chars) for s in sentences]
    for feature, row in zip(features, predicted_ids):
        for position, char in feature.predicted_chars.items():
            tags[feature.sentence_index][char] = id_to_tag(row[position])
    for index, sentence_tags in enumerate(tags):
        if None in sentence_tags:
            raise ValueError(f"sentence {index} has characters without a prediction")
    return tags  # type: ignore[return-value]


def write_label_map(output_dir: str | os.PathLike) -> str:
    """label2id.pkl as the original: the pickled dict {label: 1-based id}."""
    path = os.path.join(output_dir, "label2id.pkl")
    with atomic_open(path, "wb") as handle:
        pickle.dump(LABEL_MAP, handle)
    return path


def write_tokens(path: str | os.PathLike, features: Iterable[NerFeature]) -> None:
    """token_test.txt as the original: every window's tokens, [CLS] and [SEP] included, one per line."""
    with atomic_open(path) as handle:
        for feature in features:
            for token in feature.tokens:
                handle.write(token + "\n")


def write_predictions(path: str | os.PathLike, sentences: Sequence[NerSentence],
                      predicted_tags: Sequence[Sequence[str]]) -> None:
    """The input format with the predicted tag added: `char gold pred` lines, a blank line after each sentence."""
    with atomic_open(path) as handle:
        for sentence, tags in zip(sentences, predicted_tags):
            for char, gold, pred in zip(sentence.chars, sentence.tags, tags):
                handle.write(f"{char} {gold} {pred}\n")
            handle.write("\n")
