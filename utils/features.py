"""Token sequences -> model inputs, for both trees: pair truncation, `[CLS] a [SEP] b [SEP]` encoding,
masked-LM position selection and the sentence-pair instances of pretraining data (framework-free;
utils/create_pretraining_data.py imports TensorFlow, so these live here).

Each is the original algorithm exactly, random-call order included, so that seeded outputs of
create_pretraining_data.py and TinyBERT's pregeneration stay what they were.
"""
from __future__ import annotations

import random
from typing import Any, Callable, NamedTuple, Optional, Sequence

from utils.tokenization import whole_word_continuations

SPECIAL_TOKENS = ("[CLS]", "[SEP]")  # never masked


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int, rng: Optional[random.Random] = None) -> None:
    """Shorten the longer list (b when both are as long) in place until the pair has max_length tokens at most.

    Without rng, from its end (the classifiers' rule); with rng, from its front or its back at random
    (pretraining data: rng.random() < 0.5 removes the first token).
    """
    while len(tokens_a) + len(tokens_b) > max_length:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng is not None and rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


class EncodedPair(NamedTuple):
    tokens: list[str]        # [CLS] a [SEP] (b [SEP]), unpadded
    input_ids: list[int]     # zero-padded to max_seq_length, as are the next two
    input_mask: list[int]
    segment_ids: list[int]   # 0 up to the first [SEP], 1 for b and its [SEP]


def encode_pair(tokens_a: Sequence[str], tokens_b: Optional[Sequence[str]], max_seq_length: int,
                tokenizer: Any) -> EncodedPair:
    """One text (tokens_b None, cut to max_seq_length - 2) or a pair (truncated to max_seq_length - 3 by
    truncate_seq_pair, an empty b still closed by its [SEP]); `tokenizer` gives convert_tokens_to_ids."""
    tokens_a = list(tokens_a)
    if tokens_b is None:
        tokens_a = tokens_a[:max_seq_length - 2]
    else:
        tokens_b = list(tokens_b)
        truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
    tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
    segment_ids = [0] * len(tokens)
    if tokens_b is not None:
        tokens += tokens_b + ["[SEP]"]
        segment_ids += [1] * (len(tokens_b) + 1)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    padding = [0] * (max_seq_length - len(input_ids))
    return EncodedPair(tokens, input_ids + padding, [1] * len(input_ids) + padding, segment_ids + padding)


class MaskedTokens(NamedTuple):
    tokens: list[str]        # the input with the selected positions replaced
    positions: list[int]     # ascending
    labels: list[str]        # the original token at each position


def candidate_groups(tokens: Sequence[str], whole_word_mask: bool) -> list[list[int]]:
    """Indices that may be masked ([CLS] and [SEP] never), each word's together with whole_word_mask.

    A continuation (utils.tokenization.whole_word_continuations) never follows a special token, so a
    group never spans [SEP].
    """
    continues = whole_word_continuations(tokens) if whole_word_mask else None
    groups: list[list[int]] = []
    for index, token in enumerate(tokens):
        if token in SPECIAL_TOKENS:
            continue
        if continues is not None and groups and continues[index]:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def create_masked_lm_predictions(tokens: Sequence[str], masked_lm_prob: float, max_predictions_per_seq: int,
                                 vocab_words: Sequence[str], rng: random.Random,
                                 whole_word_mask: bool = False) -> MaskedTokens:
    """Google BERT's masking: shuffle the candidate words, take them until num_to_predict =
    min(max_predictions_per_seq, max(1, round(len * masked_lm_prob))) tokens are chosen (a whole word that
    does not fit the budget is skipped), each 80% [MASK], 10% kept, 10% a random vocabulary word."""
    groups = candidate_groups(tokens, whole_word_mask)
    rng.shuffle(groups)
    output = list(tokens)
    num_to_predict = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))
    chosen: list[tuple[int, str]] = []
    covered: set[int] = set()
    for group in groups:
        if len(chosen) >= num_to_predict:
            break
        if len(chosen) + len(group) > num_to_predict or any(index in covered for index in group):
            continue
        for index in group:
            covered.add(index)
            if rng.random() < 0.8:
                replacement = "[MASK]"
            elif rng.random() < 0.5:
                replacement = tokens[index]
            else:
                replacement = vocab_words[rng.randint(0, len(vocab_words) - 1)]
            output[index] = replacement
            chosen.append((index, tokens[index]))
    chosen.sort()
    return MaskedTokens(output, [index for index, _ in chosen], [label for _, label in chosen])


class TrainingInstance(NamedTuple):
    """A sentence pair of pretraining data, masked, before conversion to ids."""

    tokens: list[str]
    segment_ids: list[int]
    masked_lm_positions: list[int]
    masked_lm_labels: list[str]
    is_random_next: bool


def create_instances_from_document(document: Sequence[Sequence[str]],
                                   random_document: Callable[[random.Random], Sequence[Sequence[str]]],
                                   max_seq_length: int, short_seq_prob: float, masked_lm_prob: float,
                                   max_predictions_per_seq: int, vocab_words: Sequence[str], rng: random.Random,
                                   whole_word_mask: bool = False, bi_text: bool = True) -> list[TrainingInstance]:
    """Google BERT's sentence pairs of one document (a list of tokenized sentences): A is the first a_end
    sentences of a chunk of about target_seq_length tokens, B the rest (IsNext) or, half the time and always
    for a one-sentence chunk, text of random_document(rng), another document.

    Without bi_text (TinyBERT's --one_seq) B is never random; an empty A or B becomes ["."], as TinyBERT's.
    """
    max_num_tokens = max_seq_length - 3
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)
    instances = []
    chunk: list[Sequence[str]] = []
    length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target_seq_length:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [token for sentence in chunk[:a_end] for token in sentence]
            tokens_b: list[str] = []
            is_random_next = bi_text and (len(chunk) == 1 or rng.random() < 0.5)
            if is_random_next:
                target_b_length = target_seq_length - len(tokens_a)
                other = random_document(rng)
                for sentence in other[rng.randint(0, len(other) - 1):]:
                    tokens_b.extend(sentence)
                    if len(tokens_b) >= target_b_length:
                        break
                i -= len(chunk) - a_end  # the sentences not used for A are read again
            else:
                tokens_b = [token for sentence in chunk[a_end:] for token in sentence]
            tokens_a = tokens_a or ["."]
            tokens_b = tokens_b or ["."]
            truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            tokens = ["[CLS]"] + tokens_a + ["[SEP]"] + tokens_b + ["[SEP]"]
            segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
            masked = create_masked_lm_predictions(tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng,
                                                  whole_word_mask)
            instances.append(TrainingInstance(masked.tokens, segment_ids, masked.positions, masked.labels,
                                              is_random_next))
            chunk = []
            length = 0
        i += 1
    return instances
