"""The BERT tokenizer of both trees: basic (cleaning, CJK splitting, punctuation) + greedy WordPiece.

Behaviour is Google BERT's `tokenization.py` as NEZHA and TinyBERT shipped it; the one change is that an
unknown token maps to [UNK] instead of raising KeyError. `whole_word_continuations` gives the word
boundaries (WordPiece `##` pieces and jieba words for Chinese) that whole word masking needs.
"""
from __future__ import annotations

import collections
import logging
import os
import unicodedata
from typing import Iterable, Mapping, Optional, Sequence

from utils.errors import InputError, first_undecodable_line
from utils.fileio import atomic_open

VOCAB_NAME = "vocab.txt"
# TinyBERT's BasicTokenizer kept these whole (Google's split "[MASK]" into "[", "mask", "]").
NEVER_SPLIT = ("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]")

# Ideograph blocks that BERT splits into single characters (Google's exact ranges).
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def load_vocab(vocab_file: str | os.PathLike) -> "collections.OrderedDict[str, int]":
    """One token per line (stripped); a token's id is its line number."""
    vocab: collections.OrderedDict[str, int] = collections.OrderedDict()
    if os.path.isdir(vocab_file):
        raise InputError("the vocabulary is a directory (expected vocab.txt, one token per line)", vocab_file)
    try:
        with open(vocab_file, encoding="utf-8") as handle:
            for index, line in enumerate(handle):
                vocab[line.strip()] = index
    except FileNotFoundError:
        raise InputError("vocabulary file not found (expected vocab.txt, one token per line)", vocab_file) from None
    except OSError as err:
        raise InputError(f"cannot read the vocabulary ({err.strerror})", vocab_file) from None
    except UnicodeDecodeError as err:
        raise InputError(f"vocabulary is not UTF-8 text ({err.reason})", vocab_file,
                         first_undecodable_line(vocab_file)) from None
    if not vocab:
        raise InputError("vocabulary file is empty", vocab_file)
    return vocab


def require_tokens(vocab: Mapping[str, int], tokens: Iterable[str], vocab_file: str | os.PathLike) -> None:
    """Stop when the vocabulary lacks special tokens that the caller builds inputs from ([CLS], [SEP], ...)."""
    missing = [token for token in tokens if token not in vocab]
    if missing:
        raise InputError(f"the vocabulary lacks {', '.join(missing)} (expected a BERT vocab.txt)", vocab_file)


def whitespace_tokenize(text: str) -> list[str]:
    return text.split()


def is_cjk_char(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


class BasicTokenizer:
    """Cleaning, CJK character splitting, optional lower-casing with accent stripping, punctuation split."""

    def __init__(self, do_lower_case: bool = True, never_split: Iterable[str] = NEVER_SPLIT):
        self.do_lower_case = do_lower_case
        self.never_split = frozenset(never_split)

    def tokenize(self, text: str) -> list[str]:
        text = self._tokenize_chinese_chars(self._clean_text(text))
        tokens: list[str] = []
        for token in whitespace_tokenize(text):
            if token in self.never_split:
                tokens.append(token)
                continue
            if self.do_lower_case:
                token = self._strip_accents(token.lower())
            tokens.extend(self._split_on_punctuation(token))
        return whitespace_tokenize(" ".join(tokens))

    @staticmethod
    def _strip_accents(text: str) -> str:
        return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")

    @staticmethod
    def _split_on_punctuation(text: str) -> list[str]:
        pieces: list[list[str]] = []
        start_new = True
        for char in text:
            if _is_punctuation(char):
                pieces.append([char])
                start_new = True
            else:
                if start_new:
                    pieces.append([])
                    start_new = False
                pieces[-1].append(char)
        return ["".join(piece) for piece in pieces]

    @staticmethod
    def _tokenize_chinese_chars(text: str) -> str:
        return "".join(f" {c} " if is_cjk_char(c) else c for c in text)

    @staticmethod
    def _clean_text(text: str) -> str:
        output = []
        for char in text:
            code = ord(char)
            if code == 0 or code == 0xFFFD or _is_control(char):
                continue
            output.append(" " if _is_whitespace(char) else char)
        return "".join(output)


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece; a word it cannot cover, or longer than the limit, is [UNK]."""

    def __init__(self, vocab: dict[str, int], unk_token: str = "[UNK]", max_input_chars_per_word: int = 200):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text: str) -> list[str]:
        output: list[str] = []
        for word in whitespace_tokenize(text):
            if len(word) > self.max_input_chars_per_word:
                output.append(self.unk_token)
                continue
            pieces: list[str] = []
            start = 0
            while start < len(word):
                end = len(word)
                piece = None
                while start < end:
                    candidate = word[start:end] if start == 0 else "##" + word[start:end]
                    if candidate in self.vocab:
                        piece = candidate
                        break
                    end -= 1
                if piece is None:
                    pieces = [self.unk_token]
                    break
                pieces.append(piece)
                start = end
            output.extend(pieces)
        return output


class FullTokenizer:
    """Basic + WordPiece, with id conversion (Google's FullTokenizer, TinyBERT's BertTokenizer)."""

    def __init__(self, vocab_file: str | os.PathLike, do_lower_case: bool = True,
                 max_input_chars_per_word: int = 200, never_split: Iterable[str] = NEVER_SPLIT,
                 unk_token: str = "[UNK]"):
        self.vocab_file = os.fspath(vocab_file)
        self.vocab = load_vocab(vocab_file)
        self.inv_vocab = {index: token for token, index in self.vocab.items()}
        self.do_lower_case = do_lower_case
        self.unk_token = unk_token
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case, never_split=never_split)
        self.wordpiece_tokenizer = WordpieceTokenizer(self.vocab, unk_token, max_input_chars_per_word)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, do_lower_case: bool = True, **kwargs) -> "FullTokenizer":
        """TinyBERT's loader: `path` is a model directory holding vocab.txt, or the vocabulary file itself.

        `max_len` (TinyBERT's keyword) is accepted and has no effect: truncation is the callers' job.
        """
        kwargs.pop("max_len", None)
        path = os.fspath(path)
        vocab_file = os.path.join(path, VOCAB_NAME) if os.path.isdir(path) else path
        return cls(vocab_file, do_lower_case=do_lower_case, **kwargs)

    def tokenize(self, text: str) -> list[str]:
        return [piece for token in self.basic_tokenizer.tokenize(text)
                for piece in self.wordpiece_tokenizer.tokenize(token)]

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        unk = self.vocab.get(self.unk_token)
        if unk is None:
            missing = [t for t in tokens if t not in self.vocab]
            if missing:
                raise InputError(f"token {missing[0]!r} is not in the vocabulary, which has no "
                                 f"{self.unk_token} entry", self.vocab_file)
        return [self.vocab.get(token, unk) for token in tokens]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.inv_vocab[int(index)] for index in ids]

    def save_vocabulary(self, directory: str | os.PathLike) -> str:
        """Write the vocabulary (to directory/vocab.txt, or to the file named) in id order."""
        directory = os.fspath(directory)
        path = os.path.join(directory, VOCAB_NAME) if os.path.isdir(directory) else directory
        with atomic_open(path) as handle:
            for token, _ in sorted(self.vocab.items(), key=lambda item: item[1]):
                handle.write(token + "\n")
        return path


BertTokenizer = FullTokenizer


def _is_single_cjk_token(token: str) -> bool:
    return len(token) == 1 and is_cjk_char(token)


_jieba = None


def _jieba_cut(text: str) -> list[str]:
    """jieba's default (accurate mode) segmentation; jieba is imported, and its dictionary loaded, once."""
    global _jieba
    if _jieba is None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        _jieba = jieba
    return _jieba.lcut(text)


def whole_word_continuations(tokens: Sequence[str], special_tokens: Optional[Iterable[str]] = None) -> list[bool]:
    """For each token, whether it continues the word of the token before it.

    Continuations are WordPiece `##` pieces and, inside each maximal run of single-CJK-character tokens,
    every character after the first of a jieba word (the paper's whole word masking for Chinese).
    Special tokens never continue a word and end any run.
    """
    specials = frozenset(special_tokens) if special_tokens is not None else frozenset(NEVER_SPLIT)
    flags = [False] * len(tokens)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if _is_single_cjk_token(token):
            end = index
            while end < len(tokens) and _is_single_cjk_token(tokens[end]):
                end += 1
            position = index
            for word in _jieba_cut("".join(tokens[index:end])):
                for offset in range(1, len(word)):
                    flags[position + offset] = True
                position += len(word)
            index = end
            continue
        if token.startswith("##") and index > 0 and tokens[index - 1] not in specials:
            flags[index] = True
        index += 1
    return flags
