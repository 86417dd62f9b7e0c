"""The tasks of both trees, as data: Chinese and GLUE classification, People's Daily NER, SQuAD/CMRC2018 JSON.

Each task is one class declaring its files, labels, language, output mode, metric, primary metric and
augmentation N; utils.metrics, NEZHA's eval_history and TinyBERT's augmentation read them from here.

Column layouts follow the original processors (TinyBERT's task_distill.py for GLUE, NEZHA's run_classifier.py
for lcqmc/text_clf/xnli). Files are read as the originals did (tab-separated, no quote processing, UTF-8), but a
row without the expected columns stops the run with the file, the line and what was expected, instead of an
IndexError deep inside a training script. Label lists have a fixed order: the original text_clf took its
labels from a Python set, whose order changed from run to run.
"""
from __future__ import annotations

import csv
import json
import os
import random
import sys
from dataclasses import dataclass, field
from typing import Iterator, Optional

from utils.errors import InputError, first_undecodable_line, line_of, require_file

PathLike = os.PathLike | str

csv.field_size_limit(sys.maxsize)


@dataclass
class InputExample:
    guid: str
    text_a: str
    text_b: Optional[str] = None
    label: Optional[str] = None


@dataclass(frozen=True)
class Layout:
    """Where the text and label columns of one file are, and whether its first row is a header."""

    text_a: int
    text_b: Optional[int]
    label: Optional[int]
    has_header: bool

    @property
    def min_columns(self) -> int:
        used = [c for c in (self.text_a, self.text_b, self.label) if c is not None]
        return max(c + 1 if c >= 0 else -c for c in used)


def read_tsv(path: PathLike) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for every row of a tab-separated file, as csv.reader(quotechar=None) splits it."""
    require_file(path, "task data file")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quotechar=None)
        for row in reader:
            yield reader.line_num, row


DEFAULT_AUGMENT_N = 30  # the original data_augmentation.py's N for tasks outside its table
TASKS: dict[str, type["Task"]] = {}


class Task:
    """One task's facts, which every table of both trees reads (metrics, best-checkpoint keys, augmentation).

    A subclass that sets `name` is registered: adding a task is one class. `metric` names a function of
    utils.metrics.METRICS and `primary_metric` the key of its result that picks the best checkpoint.
    """

    name: str = ""
    language = "en"                  # "en" or "zh"
    output_mode = "classification"   # "classification", "regression", "token_classification" or "span"
    labels: tuple[Optional[str], ...] = ("0", "1")
    metric = "accuracy"
    primary_metric = "acc"
    augment_n = DEFAULT_AUGMENT_N    # data augmentation's N when --N is not given
    train_file = "train.tsv"
    dev_file = "dev.tsv"
    test_file = "test.tsv"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            TASKS[cls.name] = cls

    @property
    def chinese(self) -> bool:
        return self.language == "zh"

    def get_labels(self, data_dir: Optional[PathLike] = None) -> list[Optional[str]]:
        return list(self.labels)

    def train_path(self, data_dir: PathLike) -> str:
        return os.path.join(data_dir, self.train_file)

    def get_train_examples(self, data_dir: PathLike) -> list:
        return self.read(self.train_path(data_dir), "train")

    def get_dev_examples(self, data_dir: PathLike) -> list:
        return self.read(os.path.join(data_dir, self.dev_file), "dev")

    def get_test_examples(self, data_dir: PathLike) -> list:
        return self.read(os.path.join(data_dir, self.test_file), "test")

    def read(self, path: PathLike, split: str) -> list:
        """The examples of one file (split: train, dev, test or aug)."""
        raise NotImplementedError


class DataProcessor(Task):
    """A sentence or sentence-pair classification (or regression) task read from tab-separated files."""

    train_layout: Layout
    test_layout: Optional[Layout] = None
    skip_bad_rows = False
    closed_labels = True
    label_aliases: dict[str, str] = {}

    @property
    def columns(self) -> tuple[int, Optional[int], Optional[int]]:
        """(text_a, text_b, label) columns of train.tsv and train_aug.tsv: what data augmentation rewrites."""
        layout = self.train_layout
        return layout.text_a, layout.text_b, layout.label

    @property
    def has_header(self) -> bool:
        return self.train_layout.has_header

    def get_aug_examples(self, data_dir: PathLike) -> list[InputExample]:
        return self.read(os.path.join(data_dir, "train_aug.tsv"), "aug")

    def read(self, path: PathLike, split: str) -> list[InputExample]:
        layout = self.test_layout if split == "test" and self.test_layout is not None else self.train_layout
        return self.read_examples(path, split, layout)

    def read_examples(self, path: PathLike, set_type: str, layout: Layout) -> list[InputExample]:
        examples = []
        known = set(self.labels)
        for line, row in read_tsv(path):
            if layout.has_header and line == 1:
                continue
            if len(row) < layout.min_columns:
                if self.skip_bad_rows:
                    continue
                raise InputError(f"expected at least {layout.min_columns} tab-separated columns for task "
                                 f"{self.name}, found {len(row)}", path, line)
            label = None
            if layout.label is not None:
                label = self.label_aliases.get(row[layout.label], row[layout.label])
                if self.output_mode == "regression":
                    try:
                        float(label)
                    except ValueError:
                        raise InputError(f"expected a number as the label in column {layout.label + 1}, "
                                         f"found {label!r}", path, line) from None
                elif self.closed_labels and label not in known:
                    raise InputError(f"unknown label {label!r} for task {self.name} (expected one of "
                                     f"{', '.join(map(str, self.labels))})", path, line)
            examples.append(InputExample(
                guid=f"{set_type}-{len(examples)}",
                text_a=row[layout.text_a],
                text_b=None if layout.text_b is None else row[layout.text_b],
                label=label))
        if not examples:
            raise InputError(f"no examples found for task {self.name}", path)
        return examples


NLI_LABELS = ("contradiction", "entailment", "neutral")
ENTAILMENT_LABELS = ("entailment", "not_entailment")


# GLUE, as TinyBERT's task_distill.py reads it; augment_n is the original's per-task N (its STS-B entry was
# misspelled "STS-b" there and never applied).

class ColaProcessor(DataProcessor):
    name = "cola"
    train_layout, test_layout = Layout(3, None, 1, False), Layout(1, None, None, True)
    metric = primary_metric = "mcc"


class Sst2Processor(DataProcessor):
    name = "sst-2"
    train_layout, test_layout = Layout(0, None, 1, True), Layout(1, None, None, True)
    augment_n = 20


class MrpcProcessor(DataProcessor):
    name = "mrpc"
    train_layout, test_layout = Layout(3, 4, 0, True), Layout(3, 4, None, True)
    metric = "accuracy_and_f1"  # the original picks the best checkpoint by accuracy all the same


class StsbProcessor(DataProcessor):
    name = "sts-b"
    train_layout, test_layout = Layout(7, 8, -1, True), Layout(7, 8, None, True)
    output_mode, labels = "regression", (None,)
    metric, primary_metric = "correlation", "corr"


class QqpProcessor(DataProcessor):
    name = "qqp"
    train_layout, test_layout = Layout(3, 4, 5, True), Layout(1, 2, None, True)
    skip_bad_rows = True
    metric, augment_n = "accuracy_and_f1", 10


class MnliProcessor(DataProcessor):
    name = "mnli"
    train_layout, test_layout = Layout(8, 9, -1, True), Layout(8, 9, None, True)
    labels, dev_file, test_file = NLI_LABELS, "dev_matched.tsv", "test_matched.tsv"
    augment_n = 10


class MnliMismatchedProcessor(MnliProcessor):
    name = "mnli-mm"
    dev_file, test_file = "dev_mismatched.tsv", "test_mismatched.tsv"


class QnliProcessor(DataProcessor):
    name = "qnli"
    train_layout, test_layout = Layout(1, 2, -1, True), Layout(1, 2, None, True)
    labels, augment_n = ENTAILMENT_LABELS, 20


class RteProcessor(DataProcessor):
    name = "rte"
    train_layout, test_layout = Layout(1, 2, -1, True), Layout(1, 2, None, True)
    labels = ENTAILMENT_LABELS


class WnliProcessor(DataProcessor):
    name = "wnli"
    train_layout, test_layout = Layout(1, 2, -1, True), Layout(1, 2, None, True)


# Chinese, as NEZHA's run_classifier.py reads them.

class LcqmcProcessor(DataProcessor):
    name, language = "lcqmc", "zh"
    train_layout = Layout(0, 1, 2, True)


class XnliProcessor(DataProcessor):
    """Chinese XNLI as NEZHA read it: MultiNLI's Chinese translation for training, 3-column dev/test files."""

    name, language = "xnli", "zh"
    train_layout, labels = Layout(0, 1, 2, True), NLI_LABELS
    label_aliases = {"contradictory": "contradiction"}

    def train_path(self, data_dir: PathLike) -> str:
        original = os.path.join(data_dir, "multinli", "multinli.train.zh.tsv")
        plain = os.path.join(data_dir, "train.tsv")
        return plain if not os.path.exists(original) and os.path.exists(plain) else original


class TextClfProcessor(DataProcessor):
    """`label<TAB>text` lines (ChnSenti and other single-sentence Chinese sets).

    Training examples are shuffled with seed 0 as the original did. Labels are those of train.tsv when the
    data directory holds one, in a fixed (numeric, else lexical) order; ["0", "1"] otherwise.
    """

    name, language = "text_clf", "zh"
    train_layout, closed_labels = Layout(1, None, 0, False), False

    def get_labels(self, data_dir: Optional[PathLike] = None) -> list[Optional[str]]:
        if data_dir is None or not os.path.isfile(self.train_path(data_dir)):
            return list(self.labels)
        seen = {row[0] for _, row in read_tsv(self.train_path(data_dir)) if row}
        return sorted(seen, key=lambda s: (0, int(s), s) if s.lstrip("-").isdigit() else (1, 0, s))

    def read_examples(self, path: PathLike, set_type: str, layout: Layout) -> list[InputExample]:
        examples = super().read_examples(path, set_type, layout)
        if set_type in ("train", "aug"):
            random.Random(0).shuffle(examples)
        return examples


def get_task(task_name: str) -> Task:
    """Any registered task (classification, ner, cmrc2018), by its case-insensitive name."""
    key = task_name.lower()
    if key not in TASKS:
        raise InputError(f"unknown task {task_name!r}; expected one of {', '.join(TASKS)}")
    return TASKS[key]()


def get_processor(task_name: str) -> DataProcessor:
    """The processor of a sentence(-pair) classification or regression task, by its case-insensitive name."""
    task = get_task(task_name)
    if not isinstance(task, DataProcessor):
        names = ", ".join(name for name, cls in TASKS.items() if issubclass(cls, DataProcessor))
        raise InputError(f"task {task_name!r} is not sentence classification ({task.output_mode}); expected one "
                         f"of {names}")
    return task


# People's Daily NER ------------------------------------------------------------------------------------------

NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "X", "[CLS]", "[SEP]"]
NER_TAGS = frozenset(NER_LABELS[:7])


@dataclass
class NerSentence:
    chars: list[str]
    tags: list[str]
    line: int


def read_ner_file(path: PathLike) -> list[NerSentence]:
    """Sentences of a `char tag` file; a blank line ends a sentence.

    The original merged sentences unless the previous character was 。 and dropped a last sentence without a
    trailing blank line; here every blank line is a boundary and nothing is dropped.
    """
    require_file(path, "NER data file")
    sentences: list[NerSentence] = []
    chars: list[str] = []
    tags: list[str] = []
    first = 0
    with open(path, encoding="utf-8-sig") as handle:
        for number, raw in enumerate(handle, start=1):
            fields = raw.split()
            if not fields or fields[0] == "-DOCSTART-":
                if chars:
                    sentences.append(NerSentence(chars, tags, first))
                    chars, tags = [], []
                continue
            if len(fields) < 2:
                raise InputError("expected `character tag` on this line", path, number)
            if fields[-1] not in NER_TAGS:
                raise InputError(f"unknown tag {fields[-1]!r} (expected one of {', '.join(NER_LABELS[:7])})",
                                 path, number)
            if not chars:
                first = number
            chars.append(fields[0])
            tags.append(fields[-1])
    if chars:
        sentences.append(NerSentence(chars, tags, first))
    if not sentences:
        raise InputError("no sentences found", path)
    return sentences


# SQuAD / CMRC2018 --------------------------------------------------------------------------------------------

@dataclass
class Answer:
    text: str
    answer_start: Optional[int]


@dataclass
class SquadExample:
    qas_id: str
    question: str
    context: str
    answers: list[Answer] = field(default_factory=list)
    title: str = ""


def _field(record: dict, key: str, kind: type, path: PathLike, where: str):
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, kind):
        raise InputError(f"{where}: expected a {kind.__name__} field {key!r}", path)
    return value


def read_squad_file(path: PathLike) -> list[SquadExample]:
    """Questions of a SQuAD v1 / CMRC2018 JSON file, with every gold answer.

    SQuAD v2's unanswerable questions (`is_impossible: true`) are rejected, counted, with the first one's id
    and line: the NEZHA reader, as the original, has no no-answer score, so it could neither learn them nor
    be scored on them; remove them, or keep only SQuAD v1's answerable questions.
    """
    require_file(path, "reading-comprehension JSON file")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            raw = handle.read()
        dataset = json.loads(raw)
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err.msg})", path, err.lineno) from None
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text ({err.reason})", path, first_undecodable_line(path)) from None
    examples = []
    impossible = []
    for a, article in enumerate(_field(dataset, "data", list, path, "top level")):
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, paragraph in enumerate(_field(article, "paragraphs", list, path, f"data[{a}]")):
            where = f"data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", str, path, where)
            for q, qa in enumerate(_field(paragraph, "qas", list, path, where)):
                qwhere = f"{where}.qas[{q}]"
                answers = []
                for n, answer in enumerate(qa.get("answers", []) if isinstance(qa, dict) else []):
                    text = _field(answer, "text", str, path, f"{qwhere}.answers[{n}]")
                    start = answer.get("answer_start")
                    answers.append(Answer(text, start if isinstance(start, int) else None))
                qas_id = qa.get("id") if isinstance(qa, dict) else None
                if not isinstance(qas_id, (str, int)):
                    raise InputError(f"{qwhere}: expected a string field 'id'", path)
                if qa.get("is_impossible") is True:
                    impossible.append(str(qas_id))
                    continue
                examples.append(SquadExample(
                    qas_id=str(qas_id),
                    question=_field(qa, "question", str, path, qwhere),
                    context=context, answers=answers, title=title))
    if impossible:
        raise InputError(f"question {impossible[0]!r} is a SQuAD v2 unanswerable question (is_impossible: true; "
                         f"{len(impossible)} of {len(impossible) + len(examples)} questions in this file); only "
                         "answerable questions (SQuAD v1, CMRC2018) are supported: remove them", path,
                         line_of(raw, json.dumps(impossible[0], ensure_ascii=False))
                         or line_of(raw, json.dumps(impossible[0])))
    if not examples:
        raise InputError("no questions found", path)
    return examples



# Tasks whose examples are not rows of a .tsv: NEZHA's run_classifier_ner.py and run_squad.py train them.

class NerTask(Task):
    """People's Daily NER: `char tag` lines, a blank line between sentences; labels are NEZHA's tag ids."""

    name, language, output_mode = "ner", "zh", "token_classification"
    labels = tuple(NER_LABELS)
    metric, primary_metric = "entity", "entity_f1"
    train_file, dev_file, test_file = "train.txt", "dev.txt", "test.txt"

    def read(self, path: PathLike, split: str) -> list[NerSentence]:
        return read_ner_file(path)


class Cmrc2018Task(Task):
    """CMRC2018 (SQuAD v1 JSON): extractive reading comprehension, scored as the official evaluator does."""

    name, language, output_mode = "cmrc2018", "zh", "span"
    labels = ()
    metric, primary_metric = "cmrc2018", "F1"
    train_file, dev_file, test_file = "train.json", "dev.json", "test.json"

    def read(self, path: PathLike, split: str) -> list[SquadExample]:
        return read_squad_file(path)


TASK_NAMES = tuple(TASKS)
