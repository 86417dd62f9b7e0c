"""utils/features.py: pair truncation (both variants), pair encoding and masked-LM selection against
hand-traced results, with a scripted random generator that records the order of its calls."""
from __future__ import annotations

import random

import pytest

from utils.features import candidate_groups, create_masked_lm_predictions, encode_pair, truncate_seq_pair


class ScriptedRng:
    """random() returns the scripted values in turn; shuffle reverses; randint(a, b) returns b. Every call is logged."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = []

    def random(self):
        self.calls.append("random")
        return self.values.pop(0)

    def shuffle(self, items):
        self.calls.append("shuffle")
        items.reverse()

    def randint(self, a, b):
        self.calls.append("randint")
        return b


class Vocab:
    def __init__(self, tokens):
        self.ids = {token: i for i, token in enumerate(tokens)}

    def convert_tokens_to_ids(self, tokens):
        return [self.ids[t] for t in tokens]


def test_deterministic_truncation_pops_the_longer_and_ties_shorten_b():
    a, b = list("abcdef"), list("xyz")
    truncate_seq_pair(a, b, 6)
    # 6+3 -> a loses f, e, d (6 > 3, 5 > 3, 4 > 3), then 3 + 3 = 6 fits
    assert a == list("abc") and b == list("xyz")
    a, b = list("abc"), list("xyz")
    truncate_seq_pair(a, b, 4)
    assert a == list("ab") and b == list("xy")  # the tie costs b its z, then the longer a loses c


def test_random_truncation_removes_front_or_back_one_draw_per_token():
    a, b = list("abcdef"), list("xy")
    rng = ScriptedRng([0.1, 0.9, 0.2])
    truncate_seq_pair(a, b, 5, rng)
    # < 0.5 deletes the front, otherwise the back: a loses a, then f, then b
    assert a == list("cde") and b == list("xy") and rng.calls == ["random"] * 3


def test_encode_pair_layout_padding_and_an_empty_second_text():
    vocab = Vocab(["[PAD]", "[CLS]", "[SEP]", "a", "b", "c", "x", "y"])
    pair = encode_pair(list("abc"), list("xy"), 8, vocab)
    assert pair.tokens == ["[CLS]", "a", "b", "c", "[SEP]", "x", "y", "[SEP]"]
    assert pair.segment_ids == [0, 0, 0, 0, 0, 1, 1, 1] and pair.input_mask == [1] * 8
    tie = encode_pair(list("abc"), list("xyz"), 8, vocab)  # 5 tokens left: the tie shortens b
    assert tie.tokens == ["[CLS]", "a", "b", "c", "[SEP]", "x", "y", "[SEP]"]
    single = encode_pair(list("abcabc"), None, 5, vocab)
    assert single.tokens == ["[CLS]", "a", "b", "c", "[SEP]"] and single.segment_ids == [0] * 5
    empty_b = encode_pair(list("ab"), [], 6, vocab)
    assert empty_b.tokens == ["[CLS]", "a", "b", "[SEP]", "[SEP]"]
    assert empty_b.segment_ids == [0, 0, 0, 0, 1, 0] and empty_b.input_mask == [1, 1, 1, 1, 1, 0]
    source = list("abc")
    encode_pair(source, list("xyz"), 5, vocab)
    assert source == list("abc")  # the caller's lists are left alone


def test_masking_follows_the_originals_random_call_order():
    tokens = ["[CLS]", "a", "b", "[SEP]", "c", "d", "[SEP]"]
    # candidates [1] [2] [4] [5], reversed by shuffle: 5, 4, 2, 1; budget round(7 * 0.5) = 4 (all of them)
    # 5: 0.7 -> [MASK]; 4: 0.85 then 0.3 -> kept; 2: 0.9 then 0.6 -> random word (randint: the last); 1: 0.1 -> [MASK]
    rng = ScriptedRng([0.7, 0.85, 0.3, 0.9, 0.6, 0.1])
    masked = create_masked_lm_predictions(tokens, 0.5, 10, ["[MASK]", "v", "w"], rng)
    assert masked.tokens == ["[CLS]", "[MASK]", "w", "[SEP]", "c", "[MASK]", "[SEP]"]
    assert masked.positions == [1, 2, 4, 5] and masked.labels == ["a", "b", "c", "d"]
    assert rng.calls == ["shuffle", "random", "random", "random", "random", "random", "randint", "random"]
    assert tokens[1] == "a"  # the input is not changed


def test_at_least_one_token_and_the_prediction_cap():
    tokens = ["[CLS]"] + list("abcdefgh") + ["[SEP]"]
    assert len(create_masked_lm_predictions(tokens, 0.0, 20, ["x"], random.Random(0)).positions) == 1
    assert len(create_masked_lm_predictions(tokens, 1.0, 3, ["x"], random.Random(0)).positions) == 3


def test_whole_word_groups_never_cross_special_tokens_and_skip_what_does_not_fit():
    tokens = ["[CLS]", "un", "##afford", "##able", "[SEP]", "##ing", "play", "##s", "[SEP]"]
    assert candidate_groups(tokens, whole_word_mask=True) == [[1, 2, 3], [5], [6, 7]]
    assert candidate_groups(tokens, whole_word_mask=False) == [[1], [2], [3], [5], [6], [7]]
    # budget round(9 * 0.25) = 2; reversed groups: [6, 7] fits, then the budget is full
    rng = ScriptedRng([0.1, 0.1])
    masked = create_masked_lm_predictions(tokens, 0.25, 20, ["x"], rng, whole_word_mask=True)
    assert masked.positions == [6, 7] and masked.labels == ["play", "##s"]
    # budget 2, reversed groups [5, 6, 7] (too long: skipped), [4] (taken), [1, 2] (would overflow)
    tokens = ["[CLS]", "play", "##s", "[SEP]", "##ing", "un", "##afford", "##able", "[SEP]"]
    rng = ScriptedRng([0.1])
    masked = create_masked_lm_predictions(tokens, 0.25, 20, ["x"], rng, whole_word_mask=True)
    assert masked.positions == [4] and rng.calls == ["shuffle", "random"]


def test_chinese_words_are_grouped_by_jieba():
    tokens = ["[CLS]", *"我们喜欢北京", "[SEP]"]
    groups = candidate_groups(tokens, whole_word_mask=True)
    assert [[tokens[i] for i in g] for g in groups] == [["我", "们"], ["喜", "欢"], ["北", "京"]]


@pytest.mark.parametrize("seed", range(5))
def test_seeded_masks_are_reproducible_and_consistent(seed):
    tokens = ["[CLS]"] + [f"w{i}" for i in range(30)] + ["[SEP]"] + [f"v{i}" for i in range(20)] + ["[SEP]"]
    vocab = [f"r{i}" for i in range(100)]
    first = create_masked_lm_predictions(tokens, 0.15, 20, vocab, random.Random(seed))
    assert first == create_masked_lm_predictions(tokens, 0.15, 20, vocab, random.Random(seed))
    assert len(first.positions) == round(len(tokens) * 0.15)
    assert all(tokens[p] == label for p, label in zip(first.positions, first.labels))
    assert [i for i, (a, b) in enumerate(zip(tokens, first.tokens)) if a != b] == \
        [p for p in first.positions if first.tokens[p] != tokens[p]]
