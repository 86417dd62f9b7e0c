"""utils/cmrc2018_evaluate.py against scores computed by hand from the official rules."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from utils import cmrc2018_evaluate as ev
from utils.errors import InputError


def test_punctuation_and_case_are_ignored_by_em():
    assert ev.em_score(["北京大学"], "北京大学。") == 1.0
    assert ev.em_score(["《人民日报》"], " 人民日报 ") == 1.0
    assert ev.em_score(["New-York"], "newyork") == 1.0
    assert ev.em_score(["北京大学"], "北京") == 0.0
    # '……' is one two-character entry of the official list: a lone '…' is not punctuation.
    assert ev.em_score(["好"], "好…") == 0.0


def test_mixed_segmentation_splits_chinese_chars_and_word_tokenizes_the_rest():
    assert ev.mixed_segmentation("1998年，New York") == ["1998", "年", "new", "york"]
    assert ev.mixed_segmentation("“江泽民”") == ["江", "泽", "民"]


@pytest.mark.parametrize("answers, prediction, expected", [
    (["北京大学"], "北京大学", 1.0),
    (["北京大学"], "北京", 2 / 3),                  # lcs 2, P 2/2, R 2/4
    (["联合国"], "国际联合", 4 / 7),                # lcs 联合 = 2, P 2/4, R 2/3 -> 2PR/(P+R) = 4/7
    (["甲乙丙丁"], "甲丙乙丁", 0.25),               # contiguous lcs 1 (not 2 as a subsequence LCS)
    (["New York City"], "new york", 0.8),          # [new york city] vs [new york]: P 1, R 2/3
    (["上海", "北京市"], "北京", 0.8),              # best answer: lcs 2, P 1, R 2/3
    (["上海"], "", 0.0),
    (["上海"], "广州", 0.0),
])
def test_f1_by_hand(answers, prediction, expected):
    assert ev.f1_score(answers, prediction) == pytest.approx(expected)


def test_longest_common_run():
    assert ev.longest_common_run(list("abcde"), list("xbcdy")) == 3
    assert ev.longest_common_run(list("ab"), []) == 0


DATASET = {"data": [{"paragraphs": [{"context": "...", "qas": [
    {"id": "q1 ", "question": "?", "answers": [{"text": "北京大学"}]},
    {"id": "q2", "question": "?", "answers": [{"text": "联合国"}, {"text": "联合国组织"}]},
    {"id": "q3", "question": "?", "answers": [{"text": "上海"}]},
]}]}]}


def test_evaluate_averages_over_every_question_and_counts_skips():
    result = ev.evaluate(DATASET, {"q1": "北京大学", "q2": "国际联合"})
    # q1: EM 1, F1 1; q2: EM 0, F1 max(4/7, lcs 2 of 5 & 4: P 1/2 R 2/5 -> 4/9) = 4/7; q3 skipped: 0.
    assert result["TOTAL"] == 3 and result["SKIP"] == 1
    assert result["EM"] == pytest.approx(100 / 3)
    assert result["F1"] == pytest.approx(100 * (1 + 4 / 7) / 3)
    assert result["AVERAGE"] == pytest.approx((result["EM"] + result["F1"]) / 2)


def test_cli_prints_and_writes_the_official_json(tmp_path):
    dataset, predictions, output = tmp_path / "dev.json", tmp_path / "pred.json", tmp_path / "metric.txt"
    dataset.write_text(json.dumps(DATASET, ensure_ascii=False), encoding="utf-8")
    predictions.write_text(json.dumps({"q1": "北京大学", "q2": "国际联合", "q3": "上海"}, ensure_ascii=False),
                           encoding="utf-8")
    run = subprocess.run([sys.executable, ev.__file__, str(dataset), str(predictions), str(output)],
                         capture_output=True, text=True, check=True)
    printed = json.loads(run.stdout)
    assert list(printed) == ["AVERAGE", "F1", "EM", "TOTAL", "SKIP", "FILE"]
    assert printed["EM"] == "66.667" and printed["F1"] == "85.714" and printed["AVERAGE"] == "76.190"
    assert printed["TOTAL"] == 3 and printed["SKIP"] == 0 and printed["FILE"] == str(predictions)
    assert json.loads(output.read_text(encoding="utf-8")) == printed


def test_bad_inputs_stop_with_a_clear_message(tmp_path):
    bad = tmp_path / "pred.json"
    bad.write_text('{"q1": "x",\n', encoding="utf-8")
    dataset = tmp_path / "dev.json"
    dataset.write_text(json.dumps(DATASET), encoding="utf-8")
    run = subprocess.run([sys.executable, ev.__file__, str(dataset), str(bad)], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{bad}:2: not valid JSON" in run.stderr
    broken = {"data": [{"paragraphs": [{"qas": [{"id": "q1", "answers": [{"txt": "x"}]}]}]}]}
    with pytest.raises(InputError, match=r"qas\[0\]\.answers\[0\]\.text"):
        ev.evaluate(broken, {})
    listed = tmp_path / "list.json"
    listed.write_text('["x"]', encoding="utf-8")
    with pytest.raises(InputError, match="expected a JSON object"):
        ev.evaluate(DATASET, listed)


# The CMRC2018 release's own format (data/cmrc2018_dev.json): a list of contexts, answers as plain strings.
NATIVE = [{"context_id": "DEV_0", "context_text": "...", "title": "t", "qas": [
    {"query_id": "q1 ", "query_text": "?", "answers": ["北京大学"]},
    {"query_id": "q2", "query_text": "?", "answers": ["联合国", "联合国组织"]}]},
    {"context_id": "DEV_1", "context_text": "...", "qas": [
        {"query_id": "q3", "query_text": "?", "answers": ["上海"]}]}]


def test_the_release_format_scores_as_its_squad_style_twin(tmp_path):
    predictions = {"q1": "北京大学", "q2": "国际联合"}
    assert ev.evaluate(NATIVE, predictions) == ev.evaluate(DATASET, predictions)
    dataset, prediction_file = tmp_path / "cmrc2018_dev.json", tmp_path / "pred.json"
    dataset.write_text(json.dumps(NATIVE, ensure_ascii=False), encoding="utf-8")
    prediction_file.write_text(json.dumps({**predictions, "q3": "上海"}, ensure_ascii=False), encoding="utf-8")
    run = subprocess.run([sys.executable, ev.__file__, str(dataset), str(prediction_file)], capture_output=True,
                         text=True, check=True)
    printed = json.loads(run.stdout)
    assert printed["EM"] == "66.667" and printed["F1"] == "85.714" and printed["TOTAL"] == 3


def test_bad_records_of_the_release_format_are_named(tmp_path):
    with pytest.raises(InputError, match=r"\[1\]\.qas\[0\]\.query_id: expected a str or int"):
        ev.evaluate([NATIVE[0], {"qas": [{"answers": ["x"]}]}], {})
    with pytest.raises(InputError, match=r"\[0\]\.qas\[0\]\.answers\[0\]: expected a str"):
        ev.evaluate([{"qas": [{"query_id": "a", "answers": [{"text": "x"}]}]}], {})
    with pytest.raises(InputError, match=r"\[0\]\.qas\[0\]: question 'a' has no gold answer"):
        ev.evaluate([{"qas": [{"query_id": "a", "answers": []}]}], {})
    with pytest.raises(InputError, match="is a SQuAD v2 unanswerable question"):
        ev.evaluate({"data": [{"paragraphs": [{"qas": [{"id": "a", "is_impossible": True, "answers": []}]}]}]}, {})


def test_dashes_are_split_off_by_the_pinned_nltk():
    # nltk/nltk#3459 (late 2025) splits U+2012..U+2015 into tokens of their own; the 2018 NLTK of the
    # official script kept `2008–09` as one token and `——` inside its run.
    assert ev.mixed_segmentation("2008–09赛季") == ["2008", "–", "09", "赛", "季"]
    assert ev.mixed_segmentation("a——b") == ["a", "—", "—", "b"]
    assert ev.mixed_segmentation("2008-09") == ["200809"]          # '-' is on the official punctuation list
    # Gold [2008, –, 09, 赛, 季] against [2008, 赛, 季]: lcs 2, P 2/3, R 2/5, F1 0.5 (the 2018 NLTK: 2/3).
    assert ev.f1_score(["2008–09赛季"], "2008赛季") == pytest.approx(0.5)
