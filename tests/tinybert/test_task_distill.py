"""task_distill.py end to end on the real ChnSenti set: a small teacher fine-tuned here, a smaller student
distilled through both stages and evaluated; label-order mapping; bad inputs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

import task_distill
from distillation import task
from distillation.task_data import config_label_names, convert_examples_to_features, label_permutation
from task_distill import main as task_distill_main
from transformer.modeling import BertConfig, TinyBertForSequenceClassification
from utils.errors import InputError
from utils.fileio import read_key_values
from utils.tasks import InputExample, get_processor
from utils.tokenization import FullTokenizer

ROOT = Path(__file__).resolve().parents[2]
TRAIN_EXAMPLES, DEV_EXAMPLES, SEQ, BATCH = 4000, 300, 32, 32
TEACHER = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
STUDENT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)


def iterate_eval_results(path: Path) -> Iterator[dict[str, str]]:
    """Each `key = value` block of an eval_results.txt (a block ends with its global_step line)."""
    block: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(" = ")
        if key in block:
            yield block
            block = {}
        block[key] = value
    if block:
        yield block


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two OpenMP threads on a busy 2-core machine spin for seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _subset(source: Path, target: Path, lines: int) -> list[str]:
    with open(source, encoding="utf-8") as reader:
        kept = [next(reader) for _ in range(lines)]
    target.write_text("".join(kept), encoding="utf-8")
    return kept


@pytest.fixture(scope="module")
def task_dir(prepared_data: Path, tmp_path_factory) -> Path:
    """A ChnSenti subset and a character vocabulary of it (a small embedding table keeps the test fast)."""
    directory = tmp_path_factory.mktemp("chnsenti_subset")
    lines = _subset(prepared_data / "chnsenti" / "train.tsv", directory / "train.tsv", TRAIN_EXAMPLES)
    lines += _subset(prepared_data / "chnsenti" / "dev.tsv", directory / "dev.tsv", DEV_EXAMPLES)
    chars = sorted({c for line in lines for c in line.split("\t", 1)[1].lower() if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return directory


def _batches(task_dir: Path, batch_size: int):
    processor = get_processor("text_clf")
    tokenizer = FullTokenizer(task_dir / "vocab.txt", do_lower_case=True)
    features = convert_examples_to_features(processor.get_train_examples(task_dir), ["0", "1"], SEQ, tokenizer,
                                            "classification")
    tensors = [torch.tensor([getattr(f, name) for f in features])
               for name in ("input_ids", "input_mask", "segment_ids", "label_id")]
    return [tuple(t[i:i + batch_size] for t in tensors) for i in range(0, len(features), batch_size)]


def _vocab_size(task_dir: Path) -> int:
    return len((task_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())


@pytest.fixture(scope="module")
def teacher_dir(task_dir: Path, tmp_path_factory) -> Path:
    """A 2-layer 64-wide classifier trained with plain cross-entropy (375 Adam steps) on the ChnSenti subset."""
    torch.manual_seed(0)
    model = TinyBertForSequenceClassification(BertConfig(_vocab_size(task_dir), **TEACHER), num_labels=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = _batches(task_dir, BATCH)
    model.train()
    for _ in range(3):
        for input_ids, input_mask, segment_ids, labels in batches:
            logits, _, _ = model(input_ids, segment_ids, input_mask)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    directory = tmp_path_factory.mktemp("teacher")
    model.save_pretrained(directory, task_dir / "vocab.txt")
    return directory


@pytest.fixture(scope="module")
def general_student_dir(task_dir: Path, tmp_path_factory) -> Path:
    """A randomly initialised 1-layer 32-wide student standing in for a general TinyBERT."""
    torch.manual_seed(1)
    config = BertConfig(_vocab_size(task_dir), **STUDENT)
    config.fit_size = TEACHER["hidden_size"]
    directory = tmp_path_factory.mktemp("general_student")
    TinyBertForSequenceClassification(config, num_labels=2).save_pretrained(directory, task_dir / "vocab.txt")
    return directory


def _common(task_dir: Path, output_dir: Path) -> list[str]:
    return ["--data_dir", str(task_dir), "--task_name", "text_clf", "--output_dir", str(output_dir),
            "--do_lower_case", "--max_seq_length", str(SEQ)]


def _evaluate(model_dir: Path, task_dir: Path, output_dir: Path) -> dict:
    return task_distill_main(["--do_eval", "--student_model", str(model_dir), "--eval_batch_size", "64",
                              *_common(task_dir, output_dir)])


def test_student_keeps_90_percent_of_the_teacher_accuracy(task_dir, teacher_dir, general_student_dir, tmp_path):
    teacher_acc = _evaluate(teacher_dir, task_dir, tmp_path / "teacher_eval")["acc"]
    assert teacher_acc > 0.7, "the teacher did not learn ChnSenti"

    stage1 = tmp_path / "tmp_tinybert"
    summary = task_distill_main([
        "--teacher_model", str(teacher_dir), "--student_model", str(general_student_dir),
        "--train_batch_size", str(BATCH), "--num_train_epochs", "2", "--learning_rate", "1e-3", "--eval_step", "100",
        *_common(task_dir, stage1)])
    steps = 2 * (TRAIN_EXAMPLES // BATCH)
    assert summary["global_step"] == steps
    blocks = list(iterate_eval_results(stage1 / "eval_results.txt"))
    # every 100 optimizer steps, then once more at the end (the original lost the last steps)
    assert [int(b["global_step"]) for b in blocks] == [100, 200, steps]
    assert float(blocks[-1]["att_loss"]) < float(blocks[0]["att_loss"])
    assert float(blocks[-1]["rep_loss"]) < float(blocks[0]["rep_loss"])
    assert {"pytorch_model.bin", "config.json", "vocab.txt"} <= set(os.listdir(stage1))
    saved = json.loads((stage1 / "config.json").read_text())
    assert saved["id2label"] == {"0": "0", "1": "1"} and saved["model_type"] == "bert"

    stage2 = tmp_path / "tinybert"
    task_distill_main([
        "--pred_distill", "--teacher_model", str(teacher_dir), "--student_model", str(stage1),
        "--train_batch_size", str(BATCH), "--num_train_epochs", "2", "--learning_rate", "1e-3", "--eval_step", "50",
        *_common(task_dir, stage2)])
    blocks = list(iterate_eval_results(stage2 / "eval_results.txt"))
    assert all("acc" in b and "eval_loss" in b for b in blocks)
    best = max(float(b["acc"]) for b in blocks)

    result = _evaluate(stage2, task_dir, tmp_path / "eval")
    assert result["acc"] == pytest.approx(best)  # the kept model is the best one evaluated
    assert result["acc"] >= 0.9 * teacher_acc, (result["acc"], teacher_acc)
    assert read_key_values(tmp_path / "eval" / "eval_results.txt")["acc"] == str(result["acc"])
    rows = (tmp_path / "eval" / "eval_predictions.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "guid\tgold\tpred\tprobs" and len(rows) == DEV_EXAMPLES + 1
    correct = sum(row.split("\t")[1] == row.split("\t")[2] for row in rows[1:])
    assert correct / DEV_EXAMPLES == pytest.approx(result["acc"])


def test_permuted_id2label_gives_the_same_accuracy(task_dir, teacher_dir, tmp_path):
    permuted = tmp_path / "permuted_teacher"
    shutil.copytree(teacher_dir, permuted)
    weights = torch.load(permuted / "pytorch_model.bin")
    weights["classifier.weight"] = weights["classifier.weight"].flip(0)
    weights["classifier.bias"] = weights["classifier.bias"].flip(0)
    torch.save(weights, permuted / "pytorch_model.bin")
    config = json.loads((permuted / "config.json").read_text())
    config["id2label"] = {"0": "1", "1": "0"}
    config["label2id"] = {"1": 0, "0": 1}
    (permuted / "config.json").write_text(json.dumps(config))

    original = _evaluate(teacher_dir, task_dir, tmp_path / "a")
    mapped = _evaluate(permuted, task_dir, tmp_path / "b")
    assert mapped["acc"] == pytest.approx(original["acc"])
    assert mapped["eval_loss"] == pytest.approx(original["eval_loss"], rel=1e-5)


def test_label_permutation_rules():
    assert label_permutation(["CONTRADICTION", "NEUTRAL", "ENTAILMENT"],
                             ["contradiction", "entailment", "neutral"], "m") == [0, 2, 1]
    assert label_permutation(["0", "1"], ["0", "1"], "m") is None
    assert config_label_names({"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}) is None
    with pytest.raises(InputError, match="not the task's labels"):
        label_permutation(["yes", "no"], ["0", "1"], "m")


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "TinyBERT" / "task_distill.py"), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_wrong_column_count_stops_with_the_file_and_line(task_dir, teacher_dir, general_student_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    lines = (task_dir / "train.tsv").read_text(encoding="utf-8").splitlines()[:5]
    lines[3] = lines[3].replace("\t", " ")
    (bad / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(task_dir / "dev.tsv", bad / "dev.tsv")
    result = _run_cli(["--teacher_model", str(teacher_dir), "--student_model", str(general_student_dir),
                       *_common(bad, tmp_path / "out")])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{bad / 'train.tsv'}:4:" in result.stderr and "columns" in result.stderr


def _expect_input_error(capsys, args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        task_distill_main(args)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_teacher_with_another_label_count_is_refused(task_dir, teacher_dir, general_student_dir, tmp_path, capsys):
    three = tmp_path / "three_label_teacher"
    torch.manual_seed(0)
    config = BertConfig.from_json_file(teacher_dir / "config.json")
    config.id2label = {"0": "a", "1": "b", "2": "c"}
    TinyBertForSequenceClassification(config, num_labels=3).save_pretrained(three, teacher_dir)
    err = _expect_input_error(capsys, ["--teacher_model", str(three), "--student_model", str(general_student_dir),
                                       *_common(task_dir, tmp_path / "out")])
    assert "the teacher has 3 labels but task text_clf has 2" in err

    # The same without id2label in the config: the classifier's shape gives it away.
    config = json.loads((three / "config.json").read_text())
    del config["id2label"]
    (three / "config.json").write_text(json.dumps(config))
    err = _expect_input_error(capsys, ["--teacher_model", str(three), "--student_model", str(general_student_dir),
                                       *_common(task_dir, tmp_path / "out2")])
    assert "teacher's classifier does not have task text_clf's 2 labels" in err


def test_empty_train_file_and_busy_output_dir(task_dir, teacher_dir, general_student_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.tsv").write_text("", encoding="utf-8")
    shutil.copy(task_dir / "dev.tsv", empty / "dev.tsv")
    common = ["--teacher_model", str(teacher_dir), "--student_model", str(general_student_dir)]
    err = _expect_input_error(capsys, [*common, *_common(empty, tmp_path / "out")])
    assert "train.tsv: no examples found" in err

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    err = _expect_input_error(capsys, [*common, *_common(task_dir, busy)])
    assert "already exists and is not empty" in err


def test_features_follow_the_original_layout(nezha_vocab):
    tokenizer = FullTokenizer(nezha_vocab, do_lower_case=True)
    examples = [InputExample("a", "我很好", "你好吗", "1"), InputExample("b", "一二三四五六七八九十", None, "0")]
    pair, single = convert_examples_to_features(examples, ["0", "1"], 8, tokenizer, "classification")
    tokens = tokenizer.convert_ids_to_tokens(pair.input_ids)
    # 3 + 3 tokens truncated to 5 from the longer (ties shorten b): a keeps 3, b keeps 2
    assert tokens == ["[CLS]", "我", "很", "好", "[SEP]", "你", "好", "[SEP]"]
    assert pair.segment_ids == [0, 0, 0, 0, 0, 1, 1, 1] and pair.label_id == 1 and pair.seq_length == 8
    assert tokenizer.convert_ids_to_tokens(single.input_ids[:8]) == ["[CLS]", *"一二三四五六", "[SEP]"]
    assert single.segment_ids == [0] * 8


MNLI_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
               "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")
NLI = ("contradiction", "entailment", "neutral")


@pytest.fixture(scope="module")
def mnli_setup(tmp_path_factory):
    """GLUE-layout MNLI files (matched and mismatched dev sets of different sizes), a random 3-label teacher
    and student; what is checked is where each evaluation reads from and writes to, not learning."""
    import random

    rng = random.Random(0)
    words = ["cat", "dog", "sat", "ran", "on", "the", "mat", "hill", "red", "blue", "not", "a"]
    directory = tmp_path_factory.mktemp("mnli")

    def write(name: str, rows: int) -> None:
        lines = [MNLI_HEADER]
        for i in range(rows):
            a, b = (" ".join(rng.choices(words, k=rng.randint(3, 8))) for _ in range(2))
            lines.append("\t".join([str(i), "0", "0", "fiction", "", "", "", "", a, b, "x", rng.choice(NLI)]))
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    write("train.tsv", 64)
    write("dev_matched.tsv", 12)
    write("dev_mismatched.tsv", 20)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n", encoding="utf-8")
    torch.manual_seed(2)
    shape = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    config = BertConfig(len(words) + 5, **shape)
    teacher = directory / "teacher"
    TinyBertForSequenceClassification(config, num_labels=3).save_pretrained(teacher, vocab)
    student = directory / "student"
    small = BertConfig(len(words) + 5, **{**shape, "num_hidden_layers": 1})
    TinyBertForSequenceClassification(small, num_labels=3, fit_size=16).save_pretrained(student, vocab)
    return directory, teacher, student


def _mnli_common(directory: Path, output_dir: Path) -> list[str]:
    return ["--data_dir", str(directory), "--task_name", "MNLI", "--output_dir", str(output_dir),
            "--max_seq_length", "20", "--eval_batch_size", "8"]


def test_mnli_matched_and_mismatched_are_evaluated_separately(mnli_setup, tmp_path):
    directory, teacher, student = mnli_setup
    out = tmp_path / "tinybert"
    task_distill_main(["--pred_distill", "--teacher_model", str(teacher), "--student_model", str(student),
                       "--train_batch_size", "8", "--num_train_epochs", "2", "--learning_rate", "1e-2",
                       "--eval_step", "3", *_mnli_common(directory, out)])
    matched = list(iterate_eval_results(out / "eval_results.txt"))
    mismatched = list(iterate_eval_results(Path(str(out) + "-MM") / "eval_results.txt"))
    assert [int(b["global_step"]) for b in matched] == [3, 6, 9, 12, 15, 16]
    saved, best = None, -1.0
    for block in matched:
        if float(block["acc"]) > best:
            best, saved = float(block["acc"]), block
    # -MM gets one block per save, the last one from the model that was kept
    assert mismatched[-1]["global_step"] == saved["global_step"]

    evaluation = tmp_path / "eval"
    result = task_distill_main(["--do_eval", "--student_model", str(out), *_mnli_common(directory, evaluation)])
    # The kept model re-evaluated gives the numbers logged when it was saved, on each set: the matched
    # evaluations kept reading dev_matched.tsv after the first mismatched one (the original's issue #115).
    assert result["eval_loss"] == pytest.approx(float(saved["eval_loss"]), rel=1e-5)
    assert result["mnli-mm_eval_loss"] == pytest.approx(float(mismatched[-1]["eval_loss"]), rel=1e-5)
    assert len((evaluation / "eval_predictions.tsv").read_text().splitlines()) == 12 + 1
    assert len(Path(str(evaluation) + "-MM", "eval_predictions.tsv").read_text().splitlines()) == 20 + 1


def test_mixed_precision_and_gradient_accumulation(mnli_setup, tmp_path):
    directory, teacher, student = mnli_setup
    out = tmp_path / "stage1"
    summary = task_distill_main(["--fp16", "--teacher_model", str(teacher), "--student_model", str(student),
                                 "--train_batch_size", "16", "--gradient_accumulation_steps", "2",
                                 "--num_train_epochs", "1", "--eval_step", "100", *_mnli_common(directory, out)])
    assert summary["global_step"] == 64 // 16  # optimizer steps, 8 micro-batches of 8
    (block,) = iterate_eval_results(out / "eval_results.txt")
    assert 0 < float(block["att_loss"]) < float("inf") and 0 < float(block["rep_loss"]) < float("inf")
    assert (out / "pytorch_model.bin").exists()


def test_task_distill_sh_runs_both_stages_and_the_evaluation(task_dir, teacher_dir, general_student_dir, tmp_path):
    small = tmp_path / "data"
    small.mkdir()
    _subset(task_dir / "train.tsv", small / "train.tsv", 128)
    _subset(task_dir / "dev.tsv", small / "dev.tsv", 64)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable, TEACHER=str(teacher_dir),
               GENERAL_STUDENT=str(general_student_dir), TASK_DIR=str(small), OUTPUT_DIR=str(tmp_path / "out"),
               STAGE1_EPOCHS="1", STAGE2_EPOCHS="1", SEQ="32", BATCH="32", EVAL_STEP="2")
    run = subprocess.run(["bash", str(ROOT / "scripts" / "task_distill.sh")], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    stage1 = tmp_path / "out" / "intermediate"
    assert [int(b["global_step"]) for b in iterate_eval_results(stage1 / "eval_results.txt")] == [2, 4]
    assert (tmp_path / "out" / "pred" / "pytorch_model.bin").exists()
    results = read_key_values(tmp_path / "out" / "eval" / "eval_results.txt")
    assert 0.0 <= float(results["acc"]) <= 1.0
    assert not (tmp_path / "debug_layer_loss.log").exists()  # the original wrote it into the working directory


def test_task_distill_sh_runs_the_stages_under_torchrun_with_nproc_and_stops_on_missing_inputs(
        tmp_path, run_script_recorded):
    """The script's command lines, as a stand-in PYTHON records them: NPROC > 1 starts both distillation
    stages with torchrun (the evaluation stays one process); without it every call is one plain process."""
    for name in ("data", "teacher", "student", "eval"):
        (tmp_path / name).mkdir()
    (tmp_path / "eval" / "eval_results.txt").write_text("acc = 0.5\n")
    settings = dict(TASK_DIR=str(tmp_path / "data"), TEACHER=str(tmp_path / "teacher"), EVAL_DIR=str(tmp_path / "eval"),
                    GENERAL_STUDENT=str(tmp_path / "student"), OUTPUT_DIR=str(tmp_path / "out"), AUG="True",
                    FP16="no", SEQ="32")
    entry = str(ROOT / "TinyBERT" / "task_distill.py")
    done, (stage1, stage2, evaluation) = run_script_recorded("task_distill.sh", NPROC="2", **settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("acc = 0.5\n")
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", entry]
    assert stage1[:6] == torchrun and stage2[:6] == torchrun and "--pred_distill" in stage2
    assert evaluation[0] == entry and "--do_eval" in evaluation
    assert "--aug_train" in stage1 and "--fp16" not in stage1 and stage1[stage1.index("--max_seq_length") + 1] == "32"
    done, plain = run_script_recorded("task_distill.sh", **settings)
    assert done.returncode == 0 and plain == [stage1[5:], stage2[5:], evaluation]
    missing, calls = run_script_recorded("task_distill.sh", **{**settings, "TEACHER": str(tmp_path / "absent")})
    assert missing.returncode == 2 and calls == [] and missing.stderr.count("\n") == 1
    assert missing.stderr.startswith(f"error: {tmp_path / 'absent'}: no teacher here")


def test_sts_b_regression_distills_to_the_gold_scores_and_writes_float_predictions(mnli_setup, tmp_path):
    directory, _, _ = mnli_setup
    import random

    rng = random.Random(1)
    words = ["cat", "dog", "sat", "ran", "on", "the", "mat", "hill"]
    data = tmp_path / "sts-b"
    data.mkdir()
    for name, rows in (("train.tsv", 32), ("dev.tsv", 10)):
        lines = ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"]
        for i in range(rows):
            a, b = (" ".join(rng.choices(words, k=4)) for _ in range(2))
            lines.append("\t".join([str(i), "g", "f", "2012", "0", "s", "s", a, b, f"{rng.uniform(0, 5):.3f}"]))
        (data / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    torch.manual_seed(3)
    shape = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    vocab_size = len((directory / "vocab.txt").read_text().splitlines())
    for name in ("teacher", "student"):
        TinyBertForSequenceClassification(BertConfig(vocab_size, **shape), num_labels=1, fit_size=16).save_pretrained(
            tmp_path / name, directory / "vocab.txt")
    common = ["--data_dir", str(data), "--task_name", "STS-B", "--max_seq_length", "16"]
    task_distill_main(["--pred_distill", "--teacher_model", str(tmp_path / "teacher"), "--student_model",
                       str(tmp_path / "student"), "--output_dir", str(tmp_path / "out"), "--train_batch_size", "8",
                       "--num_train_epochs", "1", "--eval_step", "2", *common])
    blocks = list(iterate_eval_results(tmp_path / "out" / "eval_results.txt"))
    assert [int(b["global_step"]) for b in blocks] == [2, 4]
    assert {"pearson", "spearmanr", "corr", "eval_loss", "cls_loss"} <= set(blocks[0])
    # MSE to the gold scores (0 to 5) is large for a fresh student; to the random teacher's outputs (near 0)
    # it would be well under 1.
    assert float(blocks[0]["cls_loss"]) > 1.0

    result = task_distill_main(["--do_eval", "--student_model", str(tmp_path / "out"),
                                "--output_dir", str(tmp_path / "eval"), *common])
    assert set(result) == {"pearson", "spearmanr", "corr", "eval_loss"}
    rows = (tmp_path / "eval" / "eval_predictions.tsv").read_text().splitlines()[1:]
    assert len(rows) == 10
    guid, gold, pred, probs = rows[0].split("\t")
    assert guid == "dev-0" and 0 <= float(gold) <= 5 and isinstance(float(pred), float) and probs == ""


def test_aug_train_reads_train_aug_tsv(mnli_setup, tmp_path, capsys):
    directory, teacher, student = mnli_setup
    data = tmp_path / "mnli"
    shutil.copytree(directory, data, ignore=shutil.ignore_patterns("teacher", "student"))
    common = ["--aug_train", "--teacher_model", str(teacher), "--student_model", str(student),
              "--train_batch_size", "8", "--num_train_epochs", "1", "--eval_step", "100"]
    err = _expect_input_error(capsys, [*common, *_mnli_common(data, tmp_path / "out")])
    assert f"{data / 'train_aug.tsv'}" in err
    lines = (data / "train.tsv").read_text(encoding="utf-8").splitlines()
    (data / "train_aug.tsv").write_text("\n".join(lines[:1] + lines[1:25] * 2) + "\n", encoding="utf-8")
    summary = task_distill_main([*common, *_mnli_common(data, tmp_path / "out2")])
    assert summary["global_step"] == 48 // 8 and summary["examples"] == 48


TASK_WRAPPER = """
import os, sys, torch
sys.path[:0] = [{root!r}, {tinybert!r}]
import task_distill
from distillation import task
for stage, argv in enumerate({stages!r}):
    outcome = task.run(task_distill.parse_args(argv))
    torch.save(outcome.student.state_dict(), os.path.join({out!r}, "stage%d_rank%s.pt" % (stage, os.environ["RANK"])))
"""


def test_torchrun_two_processes_match_one_process_with_the_doubled_batch(mnli_setup, tmp_path):
    """Both stages under torchrun (gloo, 2 ranks of 2 examples a micro-batch) against one process training on
    the same total batch (4 a micro-batch, 8 a step): identical replicas, equal to the single process's student
    within float tolerance; rank 0 alone evaluates (MNLI matched and -MM) and saves."""
    directory, _, _ = mnli_setup
    torch.manual_seed(4)
    shape = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    vocab_size = len((directory / "vocab.txt").read_text().splitlines())
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    TinyBertForSequenceClassification(BertConfig(vocab_size, **shape), num_labels=3).save_pretrained(
        teacher, directory / "vocab.txt")
    TinyBertForSequenceClassification(BertConfig(vocab_size, **{**shape, "num_hidden_layers": 1}), num_labels=3,
                                      fit_size=16).save_pretrained(student, directory / "vocab.txt")

    def stages(out: Path) -> list[list[str]]:
        common = ["--train_batch_size", "8", "--gradient_accumulation_steps", "2", "--num_train_epochs", "2",
                  "--learning_rate", "2e-3", "--eval_step", "3", "--teacher_model", str(teacher)]
        return [[*common, "--student_model", str(student), *_mnli_common(directory, out / "stage1")],
                [*common, "--pred_distill", "--student_model", str(out / "stage1"),
                 *_mnli_common(directory, out / "stage2")]]

    wrapper = tmp_path / "task_wrapper.py"
    wrapper.write_text(TASK_WRAPPER.format(root=str(ROOT), tinybert=str(ROOT / "TinyBERT"), out=str(tmp_path),
                                           stages=stages(tmp_path / "ddp")), encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("LOCAL_RANK", None)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(wrapper)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    single = [task.run(task_distill.parse_args(argv)).student.state_dict() for argv in stages(tmp_path / "single")]
    for stage, out in enumerate(("stage1", "stage2")):
        rank0 = torch.load(tmp_path / f"stage{stage}_rank0.pt", weights_only=True)
        rank1 = torch.load(tmp_path / f"stage{stage}_rank1.pt", weights_only=True)
        initial = torch.load((student if stage == 0 else tmp_path / "ddp" / "stage1") / "pytorch_model.bin",
                             weights_only=True)
        for key in single[stage]:
            assert torch.equal(rank0[key], rank1[key]), key  # the replicas never drift apart
            torch.testing.assert_close(rank0[key], single[stage][key], rtol=1e-4, atol=1e-5, msg=key)
        trained = "bert.encoder.layer.0.attention.self.query.weight"
        assert not torch.allclose(rank0[trained], initial[trained])
        ddp_blocks = list(iterate_eval_results(tmp_path / "ddp" / out / "eval_results.txt"))
        single_blocks = list(iterate_eval_results(tmp_path / "single" / out / "eval_results.txt"))
        assert [b["global_step"] for b in ddp_blocks] == [b["global_step"] for b in single_blocks] == \
            ["3", "6", "9", "12", "15", "16"]
        for ddp_block, single_block in zip(ddp_blocks, single_blocks):
            for key in ("loss", "att_loss", "rep_loss", "cls_loss", "eval_loss"):
                if key in single_block:
                    assert float(ddp_block[key]) == pytest.approx(float(single_block[key]), rel=1e-4, abs=1e-6)
    stage1 = torch.load(tmp_path / "ddp" / "stage1" / "pytorch_model.bin", weights_only=True)
    assert all(torch.equal(stage1[key], value) for key, value in
               torch.load(tmp_path / "stage0_rank0.pt", weights_only=True).items())  # saved at the end
    assert len(list(iterate_eval_results(Path(str(tmp_path / "ddp" / "stage2") + "-MM") / "eval_results.txt"))) >= 1
