"""Evaluation metrics of both trees, with the original result keys.

Classification and regression scores are TinyBERT's compute_metrics (scikit-learn and SciPy underneath); which
metrics a task gets, and which key picks its best checkpoint, is declared in utils/tasks.py.
NER has two views: the original run_classifier_ner token-level micro scores over B/I tag ids (what NEZHA
printed), and entity-level scores over BIO spans (what papers compare).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from utils import cmrc2018_evaluate
from utils.tasks import get_task


def simple_accuracy(preds: Sequence, labels: Sequence) -> float:
    return float((np.asarray(preds) == np.asarray(labels)).mean())


def acc_and_f1(preds: Sequence, labels: Sequence) -> dict[str, float]:
    acc = simple_accuracy(preds, labels)
    f1 = float(f1_score(y_true=labels, y_pred=preds))
    return {"acc": acc, "f1": f1, "acc_and_f1": (acc + f1) / 2}


def pearson_and_spearman(preds: Sequence, labels: Sequence) -> dict[str, float]:
    pearson = float(pearsonr(preds, labels)[0])
    spearman = float(spearmanr(preds, labels)[0])
    return {"pearson": pearson, "spearmanr": spearman, "corr": (pearson + spearman) / 2}


def matthews(preds: Sequence, labels: Sequence) -> float:
    return float(matthews_corrcoef(labels, preds))


def compute_metrics(task_name: str, preds: Sequence, labels: Sequence) -> dict[str, float]:
    """The metrics of a task (its `metric` in utils/tasks.py): cola mcc, sts-b correlations, mrpc/qqp
    accuracy and F1, ner entity scores, cmrc2018 EM/F1, else accuracy."""
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    return METRICS[get_task(task_name).metric](preds, labels)


def primary_metric(task_name: str) -> str:
    """The key that picks the best checkpoint, as the original: mcc for CoLA, corr for STS-B, else accuracy."""
    return get_task(task_name).primary_metric


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """(type, start, end) of every BIO entity; an I- that does not continue its type starts one (conlleval)."""
    spans = set()
    kind, start = None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind
        if kind is not None and not continues:
            spans.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = label, i
    return spans


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def ner_entity_scores(gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict:
    """Micro precision/recall/F1 over exact entity spans, overall and per entity type."""
    if len(gold_tags) != len(pred_tags):
        raise ValueError(f"{len(pred_tags)} predicted sentences for {len(gold_tags)} gold sentences")
    counts: dict[str, list[int]] = {}
    for gold, pred in zip(gold_tags, pred_tags):
        if len(gold) != len(pred):
            raise ValueError(f"a sentence of {len(gold)} tags has {len(pred)} predictions")
        gold_spans, pred_spans = entity_spans(gold), entity_spans(pred)
        for kind in {s[0] for s in gold_spans | pred_spans}:
            c = counts.setdefault(kind, [0, 0, 0])
            g = {s for s in gold_spans if s[0] == kind}
            p = {s for s in pred_spans if s[0] == kind}
            c[0] += len(g & p)
            c[1] += len(p)
            c[2] += len(g)
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    result = _prf(*total)
    result["per_type"] = {kind: _prf(*c) for kind, c in sorted(counts.items())}
    return result


def ner_token_scores(gold_ids: Sequence, pred_ids: Sequence, num_labels: int = 11,
                     pos_indices: Sequence[int] = (2, 3, 4, 5, 6, 7)) -> dict[str, float]:
    """The original's token-level micro P/R/F over the B/I tag ids, from the confusion matrix of every position.

    Padding (id 0) is counted like any other class, as the original's unweighted streaming metric did.
    """
    gold = np.asarray(gold_ids).reshape(-1)
    pred = np.asarray(pred_ids).reshape(-1)
    cm = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(cm, (gold, pred), 1)
    pos = list(pos_indices)
    correct = cm[pos, pos].sum()
    predicted = cm[:, pos].sum()
    actual = cm[pos, :].sum()
    precision = correct / predicted if predicted else 0.0
    recall = correct / actual if actual else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f": float(f)}


def entity_metrics(pred_tags: Sequence[Sequence[str]], gold_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Overall entity-level precision, recall and F1 of predicted BIO tag sequences."""
    scores = ner_entity_scores(gold_tags, pred_tags)
    return {f"entity_{key}": scores[key] for key in ("precision", "recall", "f1")}


def reading_metrics(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """CMRC2018 EM, F1 and their average (0..100, the official script's) of one predicted text per question
    against that question's gold answers."""
    em = 100.0 * float(np.mean([cmrc2018_evaluate.em_score(gold, pred) for pred, gold in zip(predictions, answers)]))
    f1 = 100.0 * float(np.mean([cmrc2018_evaluate.f1_score(gold, pred) for pred, gold in zip(predictions, answers)]))
    return {"EM": em, "F1": f1, "AVERAGE": (em + f1) / 2}


METRICS: dict[str, Callable[[Sequence, Sequence], dict[str, float]]] = {
    "accuracy": lambda preds, labels: {"acc": simple_accuracy(preds, labels)},
    "accuracy_and_f1": acc_and_f1,
    "mcc": lambda preds, labels: {"mcc": matthews(preds, labels)},
    "correlation": pearson_and_spearman,
    "entity": entity_metrics,
    "cmrc2018": reading_metrics,
}
