"""utils/create_pretraining_data.py on the real Chinese corpus: the written features checked against invariants
computed here from the records alone (mask counts, special tokens, segments, 80/10/10, whole jieba words),
determinism, shards, round-robin output files and clear errors."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from utils import create_pretraining_data as cpd
from utils import tokenization
from utils.errors import InputError

SEQ = 64
MAX_PRED = 10
CORPUS_DOCUMENTS = 300


@pytest.fixture(scope="module")
def corpus(prepared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first CORPUS_DOCUMENTS documents of two sentences or more of the prepared corpus (one sentence per
    line, a blank line between documents)."""
    text = (prepared_data / "corpus" / "zh.txt").read_text(encoding="utf-8")
    documents = [d.strip() for d in text.split("\n\n") if d.strip().count("\n") >= 1][:CORPUS_DOCUMENTS]
    path = tmp_path_factory.mktemp("corpus") / "zh.txt"
    path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer(nezha_vocab: Path) -> tokenization.FullTokenizer:
    return tokenization.FullTokenizer(nezha_vocab)


def build(corpus: Path, out: Path, vocab: Path, **kwargs) -> tuple[int, list[Path]]:
    outputs = [out / "a.tfrecord", out / "b.tfrecord"]
    settings = dict(max_seq_length=SEQ, max_predictions_per_seq=MAX_PRED, dupe_factor=2)
    settings.update(kwargs)
    total = cpd.create_pretraining_data(str(corpus), ",".join(map(str, outputs)), str(vocab), **settings)
    return total, outputs


def read_records(paths: list[Path]) -> list[dict[str, list]]:
    records = []
    for path in paths:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            feature = tf.train.Example.FromString(raw).features.feature
            records.append({name: list(feature[name].float_list.value if name == "masked_lm_weights"
                                       else feature[name].int64_list.value) for name in feature})
    return records


@pytest.fixture(scope="module")
def plain(corpus: Path, nezha_vocab: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("plain")
    total, outputs = build(corpus, out, nezha_vocab)
    return total, outputs, read_records(outputs)


def check_instance(record: dict, tokenizer: tokenization.FullTokenizer, whole_word: bool = False) -> list[str]:
    """Assert the format invariants of one record; return its tokens with the masked labels put back."""
    assert sorted(record) == sorted(["input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                                     "masked_lm_ids", "masked_lm_weights", "next_sentence_labels"])
    assert [len(record[k]) for k in ("input_ids", "input_mask", "segment_ids")] == [SEQ] * 3
    assert [len(record[k]) for k in ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")] == [MAX_PRED] * 3
    n = sum(record["input_mask"])
    assert record["input_mask"] == [1] * n + [0] * (SEQ - n)
    assert record["input_ids"][n:] == [0] * (SEQ - n) and record["segment_ids"][n:] == [0] * (SEQ - n)
    tokens = tokenizer.convert_ids_to_tokens(record["input_ids"][:n])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
    first_sep = tokens.index("[SEP]")
    assert 1 < first_sep < n - 2  # both segments non-empty
    assert record["segment_ids"][:n] == [0] * (first_sep + 1) + [1] * (n - first_sep - 1)
    k = int(sum(record["masked_lm_weights"]))
    assert record["masked_lm_weights"] == [1.0] * k + [0.0] * (MAX_PRED - k)
    expected = min(MAX_PRED, max(1, int(round(n * 0.15))))
    if whole_word:
        assert 1 <= k <= expected
    else:
        assert k == expected
    positions = record["masked_lm_positions"][:k]
    assert positions == sorted(set(positions)) and record["masked_lm_positions"][k:] == [0] * (MAX_PRED - k)
    assert all(0 < p < n and p != first_sep and p != n - 1 for p in positions)  # never [CLS]/[SEP]/padding
    assert record["masked_lm_ids"][k:] == [0] * (MAX_PRED - k)
    assert record["next_sentence_labels"] in ([0], [1])
    original = list(tokens)
    for position, label in zip(positions, tokenizer.convert_ids_to_tokens(record["masked_lm_ids"][:k])):
        original[position] = label
        assert label not in ("[CLS]", "[SEP]", "[MASK]", "[PAD]")
    return original


def test_features_round_trip_and_invariants(plain, tokenizer):
    total, outputs, records = plain
    assert total == len(records) > 500
    per_file = [sum(1 for _ in tf.data.TFRecordDataset(str(p))) for p in outputs]
    assert abs(per_file[0] - per_file[1]) <= 1  # round robin
    for record in records:
        check_instance(record, tokenizer)
    labels = Counter(r["next_sentence_labels"][0] for r in records)
    # Half of the chunks of two sentences or more, and every one-sentence chunk (news sentences are long).
    assert 0.5 < labels[1] / total < 0.8
    lengths = [sum(r["input_mask"]) for r in records]
    assert max(lengths) == SEQ and min(lengths) < SEQ // 2  # full sequences and short_seq_prob's short ones


def test_mask_replacement_is_80_10_10(plain, tokenizer):
    _, _, records = plain
    mask_id = tokenizer.vocab["[MASK]"]
    counts = Counter()
    for record in records:
        k = int(sum(record["masked_lm_weights"]))
        for position, label in zip(record["masked_lm_positions"][:k], record["masked_lm_ids"][:k]):
            shown = record["input_ids"][position]
            counts["mask" if shown == mask_id else "kept" if shown == label else "random"] += 1
    n = sum(counts.values())
    assert n > 5000
    # Binomial standard deviations are below 0.6% at this n: allow about 4 of them.
    assert counts["mask"] / n == pytest.approx(0.8, abs=0.02)
    # A random vocabulary word equals the original one with probability 1/21128: negligible.
    assert counts["kept"] / n == pytest.approx(0.1, abs=0.015)
    assert counts["random"] / n == pytest.approx(0.1, abs=0.015)


def test_whole_word_masking_covers_whole_jieba_words(corpus, nezha_vocab, tokenizer, tmp_path):
    total, outputs = build(corpus, tmp_path, nezha_vocab, do_whole_word_mask=True, dupe_factor=1)
    records = read_records(outputs)
    assert total == len(records)
    multi_char_words = 0
    for record in records:
        tokens = check_instance(record, tokenizer, whole_word=True)
        masked = set(record["masked_lm_positions"][:int(sum(record["masked_lm_weights"]))])
        continuations = tokenization.whole_word_continuations(tokens)
        words, start = [], 0
        for i in range(1, len(tokens) + 1):
            if i == len(tokens) or not continuations[i]:
                words.append(range(start, i))
                start = i
        for word in words:
            covered = [i in masked for i in word]
            assert all(covered) or not any(covered), [tokens[i] for i in word]
            multi_char_words += len(word) > 1 and all(covered)
    assert multi_char_words > 200


def test_same_seed_same_bytes_and_shards(corpus, nezha_vocab, tmp_path, plain):
    _, outputs, records = plain
    again = tmp_path / "again"
    build(corpus, again, nezha_vocab)
    assert [p.read_bytes() for p in outputs] == [(again / p.name).read_bytes() for p in outputs]
    other = tmp_path / "seed"
    build(corpus, other, nezha_vocab, random_seed=7)
    assert (other / "a.tfrecord").read_bytes() != outputs[0].read_bytes()
    # One shard holding every document is the original algorithm: the default shard size covers this corpus.
    whole = tmp_path / "whole"
    build(corpus, whole, nezha_vocab, docs_per_shard=0)
    assert [p.read_bytes() for p in outputs] == [(whole / p.name).read_bytes() for p in outputs]
    # Small shards change which instances are drawn, not their format or number (about the same).
    sharded = tmp_path / "sharded"
    total, sharded_outputs = build(corpus, sharded, nezha_vocab, docs_per_shard=50)
    sharded_records = read_records(sharded_outputs)
    assert sharded_records != records
    assert abs(total - len(records)) < 0.1 * len(records)
    tokenizer = tokenization.FullTokenizer(nezha_vocab)
    for record in sharded_records:
        check_instance(record, tokenizer)


def test_random_next_half_the_time_when_chunks_have_several_sentences(nezha_vocab):
    """Documents of 40 four-token sentences: every chunk has several sentences, so P(random next) = 1/2."""
    rng = random.Random(3)
    vocab_words = list(tokenization.load_vocab(nezha_vocab))
    words = [w for w in vocab_words[2000:3000] if not w.startswith("##")]
    documents = [[[rng.choice(words) for _ in range(4)] for _ in range(40)] for _ in range(30)]
    instances = cpd.create_training_instances(documents, vocab_words, random.Random(12345), 64, 20, 0.0, 0.15, 10)
    assert len(instances) > 1000
    share = sum(i.is_random_next for i in instances) / len(instances)
    assert share == pytest.approx(0.5, abs=0.05)
    # Chunks fill up to the target length (61 tokens + 3 specials), trimmed to fit.
    assert Counter(len(i.tokens) for i in instances).most_common(1)[0][0] == 64


def test_shards_group_documents():
    docs = [[["a"]], [["b"]], [["c"]], [["d"]], [["e"]]]
    assert [len(s) for s in cpd.shards(iter(docs), 2)] == [2, 2, 1]
    assert [len(s) for s in cpd.shards(iter(docs), 0)] == [5]


def test_bad_input_stops_with_a_clear_message(tmp_path, nezha_vocab):
    with pytest.raises(InputError, match="no file matches"):
        cpd.create_pretraining_data(str(tmp_path / "missing*.txt"), str(tmp_path / "o.tfrecord"), str(nezha_vocab))
    bad = tmp_path / "bad.txt"
    bad.write_bytes("第一句。\n\n".encode() + b"\xff\xfe broken\n")
    with pytest.raises(InputError, match=r"bad.txt:3: not valid UTF-8"):
        cpd.create_pretraining_data(str(bad), str(tmp_path / "o.tfrecord"), str(nezha_vocab))
    assert not list(tmp_path.glob("o.tfrecord*"))  # nothing half-written is left
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no document with text"):
        cpd.create_pretraining_data(str(empty), str(tmp_path / "o.tfrecord"), str(nezha_vocab))
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"vocab.txt: the vocabulary lacks \[MASK\]"):
        cpd.create_pretraining_data(str(empty), str(tmp_path / "o.tfrecord"), str(vocab))
    with pytest.raises(InputError, match="max_seq_length must be at least 5"):
        cpd.create_pretraining_data(str(empty), str(tmp_path / "o.tfrecord"), str(nezha_vocab), max_seq_length=4)


def test_command_line(root, corpus, nezha_vocab, tmp_path):
    def run(out: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(root / "utils" / "create_pretraining_data.py"),
                               f"--input_file={corpus}", f"--output_file={out}", f"--vocab_file={nezha_vocab}",
                               "--max_seq_length=32", "--max_predictions_per_seq=5", "--dupe_factor=1",
                               "--docs_per_shard=100", *extra], capture_output=True, text=True, timeout=120)

    out = tmp_path / "cli.tfrecord"
    proc = run(out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Wrote" in proc.stderr and out.exists()
    records = read_records([out])
    assert len(records[0]["input_ids"]) == 32 and len(records[0]["masked_lm_ids"]) == 5
    # --seed, and the original's --random_seed for it: the same records, other than the default seed's
    seeded = [tmp_path / "seed.tfrecord", tmp_path / "random_seed.tfrecord"]
    for path, flag in zip(seeded, ("--seed=7", "--random_seed=7")):
        assert run(path, flag).returncode == 0
    assert read_records(seeded[:1]) == read_records(seeded[1:]) != records


def test_an_output_path_that_is_a_directory_stops_before_any_work(root, corpus, nezha_vocab, tmp_path):
    taken = tmp_path / "shards"
    taken.mkdir()
    good = tmp_path / "good.tfrecord"
    proc = subprocess.run([sys.executable, str(root / "utils" / "create_pretraining_data.py"),
                           f"--input_file={corpus}", f"--output_file={good},{taken}", f"--vocab_file={nezha_vocab}",
                           "--max_seq_length=32", "--dupe_factor=1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {taken}: --output_file is a directory (expected the name of a file to write)"]
    assert sorted(os.listdir(tmp_path)) == ["shards"] and os.listdir(taken) == []     # no .tmp-PID file


def test_a_failed_rename_removes_every_temporary_file(tmp_path):
    writer = cpd.RoundRobinWriter([str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")])
    (tmp_path / "b.tfrecord").mkdir()                       # appears while the corpus is being processed
    with pytest.raises(InputError) as err:
        writer.close(keep=True)
    assert err.value.path == str(tmp_path / "b.tfrecord") and "cannot write the output file" in err.value.message
    assert sorted(os.listdir(tmp_path)) == ["a.tfrecord", "b.tfrecord"]
