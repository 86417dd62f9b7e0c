"""Task readers: original column layouts, fixed label orders, clear errors on malformed files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from utils.errors import InputError
from utils.metrics import compute_metrics, primary_metric
from utils.tasks import (NER_LABELS, TASK_NAMES, TASKS, DataProcessor, Layout, get_processor, get_task, read_ner_file,
                         read_squad_file)


def write(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


GLUE_ROWS = {
    # task: (header or None, one train row, expected (text_a, text_b, label))
    "cola": (None, ["gj04", "1", "", "The sailors rode the breeze ."], ("The sailors rode the breeze .", None, "1")),
    "sst-2": (["sentence", "label"], ["a gorgeous film", "1"], ("a gorgeous film", None, "1")),
    "mrpc": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], ["0", "1", "2", "A .", "B ."],
             ("A .", "B .", "0")),
    "sts-b": (["index"] + ["x"] * 9, ["0", "g", "f", "2015", "1", "m", "s", "A man .", "A guy .", "4.2"],
              ("A man .", "A guy .", "4.2")),
    "qqp": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], ["1", "2", "3", "Q1?", "Q2?", "1"],
            ("Q1?", "Q2?", "1")),
    "mnli": (["index"] + ["x"] * 10, ["0"] * 8 + ["P .", "H .", "neutral"], ("P .", "H .", "neutral")),
    "qnli": (["index", "question", "sentence", "label"], ["0", "Q?", "S .", "not_entailment"],
             ("Q?", "S .", "not_entailment")),
    "rte": (["index", "sentence1", "sentence2", "label"], ["0", "A .", "B .", "entailment"],
            ("A .", "B .", "entailment")),
    "wnli": (["index", "sentence1", "sentence2", "label"], ["0", "A .", "B .", "1"], ("A .", "B .", "1")),
    "lcqmc": (["text_a", "text_b", "label"], ["喜欢打篮球的男生喜欢什么样的女生", "爱打篮球的男生喜欢什么样的女生", "1"],
              ("喜欢打篮球的男生喜欢什么样的女生", "爱打篮球的男生喜欢什么样的女生", "1")),
    "xnli": (["premise", "hypo", "label"], ["他说。", "他没说。", "contradictory"], ("他说。", "他没说。", "contradiction")),
    "text_clf": (None, ["1", "很好的酒店"], ("很好的酒店", None, "1")),
}


@pytest.mark.parametrize("task", sorted(GLUE_ROWS))
def test_every_task_reads_its_original_columns(tmp_path: Path, task: str) -> None:
    header, row, expected = GLUE_ROWS[task]
    rows = ([header] if header else []) + [row]
    processor = get_processor(task.upper())
    train = "multinli/multinli.train.zh.tsv" if task == "xnli" else "train.tsv"
    write(tmp_path / train, rows)
    write(tmp_path / ("dev_matched.tsv" if task == "mnli" else "dev.tsv"), rows)
    write(tmp_path / "train_aug.tsv", rows + [row])
    for examples in (processor.get_train_examples(tmp_path), processor.get_dev_examples(tmp_path)):
        assert len(examples) == 1
        assert (examples[0].text_a, examples[0].text_b, examples[0].label) == expected
    assert len(processor.get_aug_examples(tmp_path)) == 2
    assert processor.has_header == (header is not None)
    labels = processor.get_labels(tmp_path)
    assert expected[2] in labels or labels == [None]


def test_label_lists_are_fixed_and_in_the_original_order() -> None:
    assert get_processor("mnli").get_labels() == ["contradiction", "entailment", "neutral"]
    assert get_processor("xnli").get_labels() == ["contradiction", "entailment", "neutral"]
    assert get_processor("qnli").get_labels() == ["entailment", "not_entailment"]
    assert get_processor("sts-b").get_labels() == [None]
    assert get_processor("sts-b").output_mode == "regression"
    assert get_processor("text_clf").get_labels() == ["0", "1"]
    assert set(TASK_NAMES) >= {"cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli",
                               "lcqmc", "text_clf", "xnli"}


def test_text_clf_labels_come_from_train_in_numeric_order(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", [["10", "a"], ["2", "b"], ["0", "c"], ["2", "d"]])
    assert get_processor("text_clf").get_labels(tmp_path) == ["0", "2", "10"]


def test_mnli_mismatched_reads_its_own_dev_file(tmp_path: Path) -> None:
    header = ["index"] + ["x"] * 10
    write(tmp_path / "dev_matched.tsv", [header, ["0"] * 8 + ["m", "m", "neutral"]])
    write(tmp_path / "dev_mismatched.tsv", [header, ["0"] * 8 + ["mm", "mm", "entailment"]])
    assert get_processor("mnli").get_dev_examples(tmp_path)[0].text_a == "m"
    assert get_processor("mnli-mm").get_dev_examples(tmp_path)[0].text_a == "mm"


def test_real_mrpc_sample(shared_data: Path) -> None:
    processor = get_processor("mrpc")
    examples = processor.get_train_examples(shared_data / "mrpc")
    assert examples[0].text_a.startswith("Amrozi accused his brother")
    assert examples[0].label == "1"
    assert {e.label for e in examples} == {"0", "1"}


def test_real_chnsenti_from_prepare_data(prepared_data: Path) -> None:
    processor = get_processor("text_clf")
    train = processor.get_train_examples(prepared_data / "chnsenti")
    dev = processor.get_dev_examples(prepared_data / "chnsenti")
    stats = json.loads((prepared_data / "stats.json").read_text())
    assert len(train) + len(dev) == sum(stats["chnsenti"][k] for k in ("train", "dev"))
    assert processor.get_labels(prepared_data / "chnsenti") == ["0", "1"]
    assert train != sorted(train, key=lambda e: e.guid)  # shuffled with seed 0 as the original
    assert processor.get_train_examples(prepared_data / "chnsenti") == train


def test_too_few_columns_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", [["#"] * 5, ["1", "2", "3", "A", "B"], ["1", "2", "only a"]])
    with pytest.raises(InputError) as err:
        get_processor("mrpc").get_train_examples(tmp_path)
    assert (err.value.path, err.value.line) == (str(path), 3)
    assert "at least 5" in str(err.value)


def test_unknown_label_and_bad_float_are_errors(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", [["index", "q", "s", "label"], ["0", "Q", "S", "maybe"]])
    with pytest.raises(InputError, match="unknown label 'maybe'"):
        get_processor("qnli").get_train_examples(tmp_path)
    write(tmp_path / "dev.tsv", [["h"] * 10, ["0", "g", "f", "2015", "1", "m", "s", "A", "B", "high"]])
    with pytest.raises(InputError, match="expected a number"):
        get_processor("sts-b").get_dev_examples(tmp_path)


def test_empty_file_and_unknown_task(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="no examples"):
        get_processor("text_clf").get_train_examples(tmp_path)
    with pytest.raises(InputError, match="unknown task 'chnsenti'"):
        get_processor("chnsenti")
    with pytest.raises(InputError, match="not found"):
        get_processor("rte").get_dev_examples(tmp_path)


def test_qqp_skips_short_rows_as_the_original(tmp_path: Path) -> None:
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    write(tmp_path / "train.tsv", [header, ["1", "2", "3", "Q1?", "Q2?", "0"], ["1", "2", "3", "broken"]])
    assert len(get_processor("qqp").get_train_examples(tmp_path)) == 1


def test_ner_reader_keeps_every_sentence(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("中 B-ORG\n共 I-ORG\n说 O\n\n\n李 B-PER\n鹏 I-PER\n", encoding="utf-8")
    sentences = read_ner_file(path)
    assert [s.chars for s in sentences] == [["中", "共", "说"], ["李", "鹏"]]
    assert [s.tags for s in sentences] == [["B-ORG", "I-ORG", "O"], ["B-PER", "I-PER"]]
    assert [s.line for s in sentences] == [1, 6]
    assert NER_LABELS[:3] == ["O", "B-PER", "I-PER"] and len(NER_LABELS) == 10


def test_ner_reader_on_real_peoples_daily(prepared_data: Path) -> None:
    sentences = read_ner_file(prepared_data / "peoples_daily_ner" / "dev.txt")
    stats = json.loads((prepared_data / "stats.json").read_text())
    assert len(sentences) == stats["peoples_daily_ner"]["dev"]["sentences"]
    assert sum(len(s.chars) for s in sentences) == stats["peoples_daily_ner"]["dev"]["chars"]
    assert all(len(s.chars) == len(s.tags) for s in sentences)


def test_ner_reader_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("中 B-ORG\n共 B-MISC\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown tag 'B-MISC'") as err:
        read_ner_file(path)
    assert err.value.line == 2
    path.write_text("中\n", encoding="utf-8")
    with pytest.raises(InputError, match="character tag"):
        read_ner_file(path)


def test_squad_reader(tmp_path: Path, prepared_data: Path) -> None:
    data = {"data": [{"title": "t", "paragraphs": [{"context": "北京是中国的首都。", "qas": [
        {"id": 7, "question": "中国的首都是哪里？", "answers": [{"text": "北京", "answer_start": 0}, {"text": "北京"}]}]}]}]}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (example,) = read_squad_file(path)
    assert (example.qas_id, example.title, example.context[:2]) == ("7", "t", "北京")
    assert [(a.text, a.answer_start) for a in example.answers] == [("北京", 0), ("北京", None)]
    real = read_squad_file(prepared_data / "cmrc" / "dev.json")
    assert all(e.context[a.answer_start:a.answer_start + len(a.text)] == a.text for e in real for a in e.answers)


def test_squad_reader_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"data": [\n{"paragraphs": [}\n', encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON") as err:
        read_squad_file(path)
    assert err.value.line == 2
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "1"}]}]}]}))
    with pytest.raises(InputError, match=r"data\[0\].paragraphs\[0\].qas\[0\]: expected a str field 'question'"):
        read_squad_file(path)


def test_a_new_task_is_one_class_that_every_table_reads(tmp_path: Path) -> None:
    from distillation.augmentation import default_n
    from eval_history import metric_for_task

    class ReviewsProcessor(DataProcessor):
        name, language = "reviews_zh", "zh"
        train_layout = Layout(1, None, 0, False)
        metric = primary_metric = "mcc"
        augment_n = 7

    try:
        assert "reviews_zh" in TASKS and get_processor("Reviews_ZH").chinese
        preds, labels = np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])
        assert compute_metrics("reviews_zh", preds, labels) == {"mcc": pytest.approx(2 / np.sqrt(12))}
        assert primary_metric("reviews_zh") == "mcc" and metric_for_task("reviews_zh") == "eval_mcc"
        assert default_n("reviews_zh") == 7
        write(tmp_path / "train.tsv", [["1", "很好"], ["0", "不好"]])
        assert [e.text_a for e in get_processor("reviews_zh").get_train_examples(tmp_path)] == ["很好", "不好"]
    finally:
        del TASKS["reviews_zh"]


def test_the_originals_facts_per_task() -> None:
    from eval_history import metric_for_task

    chinese = [name for name in TASK_NAMES if get_task(name).chinese]
    assert chinese == ["lcqmc", "xnli", "text_clf", "ner", "cmrc2018"]
    assert {name: get_task(name).augment_n for name in TASK_NAMES if get_task(name).augment_n != 30} == \
        {"sst-2": 20, "qqp": 10, "mnli": 10, "mnli-mm": 10, "qnli": 20}
    assert [metric_for_task(t) for t in ("cola", "sts-b", "mrpc", "text_clf", "ner", "cmrc2018")] == \
        ["eval_mcc", "eval_corr", "eval_accuracy", "eval_accuracy", "eval_entity_f1", "eval_f1"]


def test_ner_and_reading_tasks_are_declared_with_their_files(prepared_data: Path) -> None:
    ner = get_task("ner")
    assert (ner.output_mode, ner.metric, ner.primary_metric) == ("token_classification", "entity", "entity_f1")
    sentences = ner.get_dev_examples(prepared_data / "peoples_daily_ner")
    assert sentences == read_ner_file(prepared_data / "peoples_daily_ner" / "dev.txt")
    tags = [s.tags for s in sentences[:50]]
    assert compute_metrics("ner", tags, tags) == {"entity_precision": 1.0, "entity_recall": 1.0, "entity_f1": 1.0}
    reading = get_task("cmrc2018")
    assert (reading.output_mode, reading.primary_metric) == ("span", "F1")
    questions = reading.get_dev_examples(prepared_data / "cmrc")
    assert len(questions) == len(read_squad_file(prepared_data / "cmrc" / "dev.json"))
    gold = [[a.text for a in q.answers] for q in questions[:20]]
    half = [answers[0] if i % 2 else "" for i, answers in enumerate(gold)]
    result = compute_metrics("cmrc2018", half, gold)
    assert result["EM"] == pytest.approx(50.0) and result["F1"] == pytest.approx(50.0)
    with pytest.raises(InputError, match="not sentence classification"):
        get_processor("ner")
