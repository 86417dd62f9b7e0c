"""pregenerate_training_data.py on the real Chinese corpus: the original's instance format, determinism across
workers and document stores, whole word masking, and clear errors."""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

import pregenerate_training_data
from distillation.pregenerated import DocumentDatabase, load_corpus
from utils.features import create_masked_lm_predictions
from utils.tokenization import BertTokenizer, whole_word_continuations

KEYS = ["tokens", "segment_ids", "is_random_next", "masked_lm_positions", "masked_lm_labels"]


@pytest.fixture(scope="module")
def corpus(prepared_data: Path, tmp_path_factory) -> Path:
    """The first ~600 lines of the prepared corpus/zh.txt, cut at a document break (a few hundred instances)."""
    lines = (prepared_data / "corpus" / "zh.txt").read_text(encoding="utf-8").splitlines()[:600]
    while lines[-1].strip():
        lines.pop()
    path = tmp_path_factory.mktemp("corpus") / "zh.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def vocab_dir(nezha_vocab: Path) -> Path:
    return nezha_vocab.parent


def pregenerate(corpus: Path, vocab_dir: Path, out: Path, *extra: str) -> Path:
    pregenerate_training_data.main([
        "--train_corpus", str(corpus), "--bert_model", str(vocab_dir), "--output_dir", str(out),
        "--do_lower_case", "--max_seq_len", "64", *extra,
    ])
    return out


def read_epoch(out: Path, epoch: int) -> list[dict]:
    with open(out / f"epoch_{epoch}.json", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def originals(instance: dict) -> list[str]:
    """The tokens before masking: the labels put back at their positions."""
    tokens = list(instance["tokens"])
    for position, label in zip(instance["masked_lm_positions"], instance["masked_lm_labels"]):
        tokens[position] = label
    return tokens


def test_instance_format_as_the_original(corpus, vocab_dir, tmp_path):
    out = pregenerate(corpus, vocab_dir, tmp_path / "out", "--epochs_to_generate", "2", "--seed", "7")
    assert sorted(p.name for p in out.iterdir()) == [
        "epoch_0.json", "epoch_0_metrics.json", "epoch_1.json", "epoch_1_metrics.json"]
    vocab = BertTokenizer.from_pretrained(vocab_dir).vocab
    for epoch in range(2):
        instances = read_epoch(out, epoch)
        assert 150 < len(instances) < 1000
        raw_metrics = (out / f"epoch_{epoch}_metrics.json").read_text(encoding="utf-8")
        assert raw_metrics == json.dumps({"num_training_examples": len(instances), "max_seq_len": 64})
        first_line = (out / f"epoch_{epoch}.json").read_text(encoding="utf-8").splitlines()[0]
        assert first_line == json.dumps(read_epoch(out, epoch)[0])  # json.dumps defaults (ASCII escapes)
        random_next = Counter()
        for instance in instances:
            assert list(instance) == KEYS
            tokens, segments = instance["tokens"], instance["segment_ids"]
            assert len(tokens) == len(segments) <= 64
            assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
            sep = [i for i, t in enumerate(originals(instance)) if t == "[SEP]"]
            assert len(sep) == 2 and sep[1] == len(tokens) - 1 and sep[0] < sep[1] - 1
            assert segments == [0] * (sep[0] + 1) + [1] * (len(tokens) - sep[0] - 1)
            assert isinstance(instance["is_random_next"], bool)
            random_next[instance["is_random_next"]] += 1
            # masked_lm_prob defaults to 0.0, and the original still masks exactly one token
            positions, labels = instance["masked_lm_positions"], instance["masked_lm_labels"]
            assert len(positions) == len(labels) == 1
            assert 0 < positions[0] < len(tokens) - 1 and positions[0] != sep[0]
            assert labels[0] in vocab or labels[0] == "[UNK]"
            assert tokens[positions[0]] in vocab
        assert random_next[True] > 0.1 * len(instances) and random_next[False] > 0.1 * len(instances)
    assert read_epoch(out, 0) != read_epoch(out, 1)  # every epoch has its own randomness


def test_mask_count_and_80_10_10(corpus, vocab_dir, tmp_path):
    out = pregenerate(corpus, vocab_dir, tmp_path / "out", "--epochs_to_generate", "1", "--seed", "3",
                      "--masked_lm_prob", "0.15", "--max_predictions_per_seq", "8")
    kinds = Counter()
    for instance in read_epoch(out, 0):
        n = len(instance["tokens"])
        assert len(instance["masked_lm_positions"]) == min(8, max(1, int(round(n * 0.15))))
        assert instance["masked_lm_positions"] == sorted(set(instance["masked_lm_positions"]))
        for position, label in zip(instance["masked_lm_positions"], instance["masked_lm_labels"]):
            token = instance["tokens"][position]
            kinds["mask" if token == "[MASK]" else "kept" if token == label else "random"] += 1
    total = sum(kinds.values())
    assert total > 1000
    assert abs(kinds["mask"] / total - 0.8) < 0.04
    assert abs(kinds["kept"] / total - 0.1) < 0.03
    assert abs(kinds["random"] / total - 0.1) < 0.03


def test_same_seed_same_bytes_whatever_workers_and_store(corpus, vocab_dir, tmp_path):
    runs = {
        "plain": (),
        "workers": ("--num_workers", "2"),
        "reduce_memory_workers": ("--reduce_memory", "--num_workers", "2"),
    }
    outputs = {name: pregenerate(corpus, vocab_dir, tmp_path / name, "--epochs_to_generate", "2", "--seed", "11", *extra)
               for name, extra in runs.items()}
    for epoch in range(2):
        for name in ("epoch_{}.json", "epoch_{}_metrics.json"):
            contents = {run: (out / name.format(epoch)).read_bytes() for run, out in outputs.items()}
            assert len(set(contents.values())) == 1, (name.format(epoch), list(contents))
    for out in outputs.values():  # the document store's temporary directory is gone
        assert sorted(p.name for p in out.iterdir()) == sorted(
            ["epoch_0.json", "epoch_0_metrics.json", "epoch_1.json", "epoch_1_metrics.json"])
    other = pregenerate(corpus, vocab_dir, tmp_path / "other", "--epochs_to_generate", "1", "--seed", "12")
    assert (other / "epoch_0.json").read_bytes() != (outputs["plain"] / "epoch_0.json").read_bytes()


def test_reduce_memory_keeps_documents_on_disk(corpus, vocab_dir, tmp_path):
    tokenizer = BertTokenizer.from_pretrained(vocab_dir)
    with DocumentDatabase(reduce_memory=False) as in_memory:
        load_corpus(corpus, tokenizer, in_memory)
        with DocumentDatabase(reduce_memory=True, working_dir=tmp_path) as on_disk:
            load_corpus(corpus, tokenizer, on_disk)
            assert on_disk.documents is None and Path(on_disk.path).parent.parent == tmp_path
            assert Path(on_disk.path).stat().st_size > 10_000
            assert len(on_disk) == len(in_memory) > 10
            assert on_disk.doc_lengths == in_memory.doc_lengths
            for index in (0, len(in_memory) // 2, len(in_memory) - 1):
                assert on_disk[index] == in_memory[index]
            rng_a, rng_b = random.Random(5), random.Random(5)
            for current in range(len(in_memory)):
                sampled = on_disk.sample_doc(current, rng_a)
                assert sampled == in_memory.sample_doc(current, rng_b)
                assert sampled != in_memory[current]
    assert list(tmp_path.iterdir()) == []


def test_whole_word_masking_masks_every_piece_of_a_word(corpus, vocab_dir, tmp_path):
    out = pregenerate(corpus, vocab_dir, tmp_path / "out", "--epochs_to_generate", "1", "--seed", "5",
                      "--do_whole_word_mask", "--masked_lm_prob", "0.2")
    multi_piece_words = 0
    for instance in read_epoch(out, 0):
        tokens = originals(instance)
        masked = set(instance["masked_lm_positions"])
        continues = whole_word_continuations(tokens)
        words, current = [], []
        for index, token in enumerate(tokens):
            if token in ("[CLS]", "[SEP]"):
                continue
            if continues[index] and current and current[-1] == index - 1:
                current.append(index)
            else:
                current = [index]
                words.append(current)
        for word in words:
            hit = masked.intersection(word)
            assert not hit or hit == set(word), (tokens, word, sorted(masked))
            multi_piece_words += bool(hit) and len(word) > 1
    assert multi_piece_words > 100  # jieba words of several characters were masked as one


def test_wordpiece_groups_are_masked_together():
    tokens = ["[CLS]", "un", "##afford", "##able", "price", "[SEP]", "play", "##ing", "[SEP]"]
    rng = random.Random(0)
    seen_pieces = 0
    for _ in range(200):
        masked, positions, labels = create_masked_lm_predictions(
            list(tokens), 0.5, 3, ["[MASK]", "x"], rng, whole_word_mask=True)
        chosen = set(positions)
        for word in ({1, 2, 3}, {4}, {6, 7}):
            assert not chosen & word or word <= chosen
        assert len(positions) <= 3 and 0 not in chosen and 5 not in chosen and 8 not in chosen
        assert labels == [tokens[p] for p in positions]
        seen_pieces += 2 in chosen
    assert seen_pieces > 20


def test_bad_corpus_stops_with_one_message(vocab_dir, tmp_path, capsys):
    corpus = tmp_path / "one_doc.txt"
    corpus.write_text("第一句。\n第二句。\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stop:
        pregenerate(corpus, vocab_dir, tmp_path / "out")
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert str(corpus) in error and "no document breaks" in error and "Traceback" not in error
    with pytest.raises(SystemExit):
        pregenerate(tmp_path / "missing.txt", vocab_dir, tmp_path / "out")
    assert "training corpus not found" in capsys.readouterr().err


def test_pregenerate_script_runs_from_anywhere_with_env_overrides(corpus, vocab_dir, tmp_path, root):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "CORPUS": str(corpus), "BERT_MODEL": str(vocab_dir),
           "OUTPUT_DIR": str(tmp_path / "out"), "EPOCHS": "2", "SEQ": "48", "NUM_WORKERS": "2", "SEED": "9",
           "WHOLE_WORD_MASK": "1"}
    run = subprocess.run(["bash", str(root / "scripts" / "pregenerate.sh")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    for epoch in range(2):
        metrics = json.loads((tmp_path / "out" / f"epoch_{epoch}_metrics.json").read_text())
        assert metrics["max_seq_len"] == 48 and metrics["num_training_examples"] == len(read_epoch(tmp_path / "out", epoch))
    env["CORPUS"] = str(tmp_path / "missing.txt")
    run = subprocess.run(["bash", str(root / "scripts" / "pregenerate.sh")], env=env, capture_output=True, text=True)
    assert run.returncode == 2 and "prepare_data.py" in run.stderr
    assert run.stderr.startswith(f"error: {tmp_path / 'missing.txt'}: no corpus here")


@pytest.mark.parametrize("value, masks_words", [("True", True), ("1", True), ("yes", True), ("False", False),
                                                ("0", False), ("", False)])
def test_pregenerate_script_reads_every_spelling_of_whole_word_mask(corpus, vocab_dir, run_script_recorded, value,
                                                                     masks_words):
    """WHOLE_WORD_MASK=True was silently ignored (only 1 was read); any boolean spelling works now."""
    done, (call,) = run_script_recorded("pregenerate.sh", CORPUS=str(corpus), BERT_MODEL=str(vocab_dir),
                                        WHOLE_WORD_MASK=value, REDUCE_MEMORY="False", LOWER_CASE="yes")
    assert done.returncode == 0, done.stderr
    assert ("--do_whole_word_mask" in call) is masks_words
    assert "--reduce_memory" not in call and "--do_lower_case" in call
    bad, calls = run_script_recorded("pregenerate.sh", CORPUS=str(corpus), BERT_MODEL=str(vocab_dir),
                                     WHOLE_WORD_MASK="ja")
    assert bad.returncode == 2 and calls == []
    assert bad.stderr == "error: WHOLE_WORD_MASK=ja: expected a boolean (1/0, true/false or yes/no)\n"
