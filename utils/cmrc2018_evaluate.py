"""The official CMRC2018 scoring (ymcui/cmrc2018 `cmrc2018_evaluate.py`), as a library and a CLI.

Per question, against every gold answer (the best one counts):
* EM: 1 when the prediction equals a gold answer after lower-casing, stripping and dropping the official
  punctuation list;
* F1: over mixed segmentation (each Chinese character one token, other runs by NLTK's word tokenizer,
  punctuation dropped), with the longest common *contiguous* token run as the overlap.
Both are averaged x100 over every question of the dataset; a question without a prediction scores 0 and is
counted in SKIP. The dataset may be in SQuAD style (`{"data": [{"paragraphs": [{"qas": [{"id", "answers":
[{"text"}]}]}]}]}`, CMRC2018's squad-style-data and what run_squad.py reads) or in the CMRC2018 release's own
format (`[{"context_id", "context_text", "qas": [{"query_id", "query_text", "answers": [text, ...]}]}]`, which
the release's data/cmrc2018_evaluate.py read).

Scores can differ from the official script's in two places, both inside NLTK: sentence splitting (see
`_word_tokenizer`), and dashes. NLTK releases since nltk/nltk#3459 (late 2025; 3.10.4 is pinned here) split
figure, en and em dashes and horizontal bars (U+2012 to U+2015) off as tokens of their own, where the 2018
NLTK of the official script kept them inside their run: `2008–09` is now `2008 – 09` (three tokens, one
before), `——` two tokens. Answers holding such dashes score differently; on real CMRC2018 dev predictions F1
moves in the third decimal.

    python utils/cmrc2018_evaluate.py DATASET PREDICTIONS [OUTPUT]

prints (and writes to OUTPUT) {"AVERAGE", "F1", "EM", "TOTAL", "SKIP", "FILE"} as the official script
printed it. The optional OUTPUT is new: the original README passed it, but the official script rejected it.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import sys
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.errors import InputError, exit_on_input_error, require_file
from utils.fileio import atomic_open

logger = logging.getLogger(__name__)

# The official list. '……' is one two-character entry, so a single '…' is never removed (as the original).
PUNCTUATION = ['-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=', '，', '。', '：', '？', '！', '“', '”',
               '；', '’', '《', '》', '……', '·', '、', '「', '」', '（', '）', '－', '～', '『', '』']
_CHINESE_CHAR = re.compile(r"[\u4e00-\u9fa5]")

PathOrData = Union[str, os.PathLike, Mapping[str, Any]]


@functools.lru_cache(maxsize=1)
def _word_tokenizer() -> Callable[[str], list[str]]:
    """nltk.word_tokenize as the official script used it when NLTK's punkt data is installed.

    Without it (NLTK downloads punkt separately, and runs here are offline) the same Treebank-based word
    tokenizer runs on the whole run as one line (`preserve_line=True`): what changes is that a period ending
    an inner sentence stays attached to its word.
    """
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return nltk.word_tokenize
    except LookupError:
        logger.info("NLTK punkt data not installed: tokenizing non-Chinese runs without sentence splitting")
        return functools.partial(nltk.word_tokenize, preserve_line=True)


def normalize(text: Any) -> str:
    return str(text).lower().strip()


def remove_punctuation(text: Any) -> str:
    """Lower-cased, stripped text without the official punctuation characters (the EM comparison form)."""
    return "".join(char for char in normalize(text) if char not in PUNCTUATION)


def mixed_segmentation(text: Any) -> list[str]:
    """Tokens for F1: each Chinese character alone, other runs through NLTK, punctuation dropped."""
    tokens: list[str] = []
    run = ""
    for char in normalize(text):
        if char in PUNCTUATION:
            continue
        if _CHINESE_CHAR.match(char):
            if run:
                tokens.extend(_word_tokenizer()(run))
                run = ""
            tokens.append(char)
        else:
            run += char
    if run:
        tokens.extend(_word_tokenizer()(run))
    return tokens


def longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common contiguous token sequence of a and b (dynamic programming)."""
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def f1_score(answers: Sequence[str], prediction: str) -> float:
    """Best F1 (0..1) of `prediction` over the gold `answers`."""
    prediction_tokens = mixed_segmentation(prediction)
    scores = [0.0]
    for answer in answers:
        answer_tokens = mixed_segmentation(answer)
        overlap = longest_common_run(answer_tokens, prediction_tokens)
        if overlap == 0:
            continue
        precision = overlap / len(prediction_tokens)
        recall = overlap / len(answer_tokens)
        scores.append(2 * precision * recall / (precision + recall))
    return max(scores)


def em_score(answers: Sequence[str], prediction: str) -> float:
    """1.0 when `prediction` equals one of the gold `answers` up to case, outer spaces and punctuation."""
    predicted = remove_punctuation(prediction)
    return float(any(remove_punctuation(answer) == predicted for answer in answers))


def _load_json(path: str, what: str) -> Any:
    require_file(path, what)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err.msg})", path, err.lineno) from None
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text ({err.reason})", path) from None


def _expect(value: Any, kind: Union[type, tuple], where: str, path: str) -> Any:
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise InputError(f"{where}: expected a {names}", path)
    return value


def _get(record: Any, key: str) -> Any:
    return record.get(key) if isinstance(record, Mapping) else None


def _question_records(dataset: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(where, record) of every question, in SQuAD style ({"data": [{"paragraphs": [{"qas": [...]}]}]}) or in
    the CMRC2018 release's own format, a list of contexts, which its data/cmrc2018_evaluate.py read."""
    if isinstance(dataset, list):
        for c, context in enumerate(dataset):
            for q, qa in enumerate(_expect(_get(context, "qas"), list, f"[{c}].qas", path)):
                yield f"[{c}].qas[{q}]", qa
        return
    for a, article in enumerate(_expect(_get(dataset, "data"), list, "top level 'data'", path)):
        for p, paragraph in enumerate(_expect(_get(article, "paragraphs"), list, f"data[{a}].paragraphs", path)):
            for q, qa in enumerate(_expect(_get(paragraph, "qas"), list, f"data[{a}].paragraphs[{p}].qas", path)):
                yield f"data[{a}].paragraphs[{p}].qas[{q}]", qa


def gold_answers(dataset: Union[Mapping[str, Any], list], path: str = "<dataset>") -> dict[str, list[str]]:
    """{question id (stripped, as the official script): [gold answer texts]} of a dataset in SQuAD style
    (CMRC2018's squad-style-data, SQuAD v1: `{"id", "answers": [{"text"}]}`) or in the release's own format
    (`[{"context_id", "context_text", "qas": [{"query_id", "query_text", "answers": [text, ...]}]}]`)."""
    native = isinstance(dataset, list)
    id_key = "query_id" if native else "id"
    gold: dict[str, list[str]] = {}
    for where, qa in _question_records(dataset, path):
        qas_id = _expect(_get(qa, id_key), (str, int), f"{where}.{id_key}", path)
        answers = _expect(_get(qa, "answers"), list, f"{where}.answers", path)
        texts = [_expect(answer, str, f"{where}.answers[{n}]", path) if native
                 else _expect(_get(answer, "text"), str, f"{where}.answers[{n}].text", path)
                 for n, answer in enumerate(answers)]
        if not texts:
            kind = " is a SQuAD v2 unanswerable question (is_impossible: true):" if _get(qa, "is_impossible") else ""
            raise InputError(f"{where}: question {qas_id!r}{kind} has no gold answer to score against", path)
        gold[str(qas_id).strip()] = texts
    if not gold:
        raise InputError("no questions found", path)
    return gold


def evaluate(ground_truth: Union[PathOrData, list], predictions: PathOrData) -> dict[str, float]:
    """EM/F1 of `predictions` ({id: answer} or its JSON file) against a CMRC2018 dataset (its JSON file, or
    the loaded JSON: a dict in SQuAD style, a list in the release's own format).

    Returns {"AVERAGE", "F1", "EM" (0..100), "TOTAL", "SKIP"} with unrounded floats.
    """
    gt_path = "<dataset>"
    if not isinstance(ground_truth, (Mapping, list)):
        gt_path = os.fspath(ground_truth)
        ground_truth = _load_json(gt_path, "CMRC2018 dataset file")
    pred_path = "<predictions>"
    if not isinstance(predictions, Mapping):
        pred_path = os.fspath(predictions)
        predictions = _load_json(pred_path, "predictions file")
    if not isinstance(predictions, Mapping):
        raise InputError("expected a JSON object {question id: predicted answer}", pred_path)
    gold = gold_answers(ground_truth, gt_path)
    f1 = em = 0.0
    skipped = []
    for qas_id, answers in gold.items():
        if qas_id not in predictions:
            skipped.append(qas_id)
            continue
        prediction = str(predictions[qas_id])
        f1 += f1_score(answers, prediction)
        em += em_score(answers, prediction)
    if skipped:
        logger.warning("%d unanswered questions (scored 0), e.g. %s", len(skipped), ", ".join(skipped[:5]))
    total = len(gold)
    f1, em = 100.0 * f1 / total, 100.0 * em / total
    return {"AVERAGE": (em + f1) / 2, "F1": f1, "EM": em, "TOTAL": total, "SKIP": len(skipped)}


def official_result(result: Mapping[str, float], prediction_file: str) -> dict[str, Any]:
    """The JSON the official script printed: scores as '%.3f' strings, counts, and the predictions file."""
    return {"AVERAGE": "%.3f" % result["AVERAGE"], "F1": "%.3f" % result["F1"], "EM": "%.3f" % result["EM"],
            "TOTAL": result["TOTAL"], "SKIP": result["SKIP"], "FILE": prediction_file}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluation Script for CMRC 2018")
    parser.add_argument("dataset_file", help="Official dataset file")
    parser.add_argument("prediction_file", help="Your prediction File")
    parser.add_argument("output_file", nargs="?", help="Also write the JSON result here (new)")
    return parser.parse_args(argv)


@exit_on_input_error
def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parse_args(argv)
    output = official_result(evaluate(args.dataset_file, args.prediction_file), args.prediction_file)
    text = json.dumps(output)
    print(text)
    if args.output_file:
        with atomic_open(args.output_file) as handle:
            handle.write(text + "\n")
    return output


if __name__ == "__main__":
    main()
