"""Metrics against hand-computed values and scikit-learn/SciPy computed independently."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from utils.metrics import (compute_metrics, entity_spans, ner_entity_scores, ner_token_scores, primary_metric)


def test_classification_metrics_by_hand() -> None:
    preds, labels = np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])
    assert compute_metrics("sst-2", preds, labels) == {"acc": 0.75}
    # tp 2, fp 1, fn 0 -> P 2/3, R 1, F1 0.8
    result = compute_metrics("MRPC", preds, labels)
    assert result["f1"] == pytest.approx(0.8) and result["acc_and_f1"] == pytest.approx(0.775)
    # MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2*1 - 1*0) / sqrt(3*2*2*1)
    assert compute_metrics("cola", preds, labels)["mcc"] == pytest.approx(2 / np.sqrt(12))
    assert compute_metrics("text_clf", preds, labels) == {"acc": 0.75}


def test_regression_metrics() -> None:
    preds, labels = np.array([1.0, 2.0, 3.0, 4.5]), np.array([1.0, 2.5, 2.9, 5.0])
    result = compute_metrics("sts-b", preds, labels)
    assert result["pearson"] == pytest.approx(np.corrcoef(preds, labels)[0, 1])
    assert result["spearmanr"] == pytest.approx(1.0)
    assert result["corr"] == pytest.approx((result["pearson"] + 1.0) / 2)


def test_primary_metric_is_the_originals_selection_key() -> None:
    assert [primary_metric(t) for t in ("cola", "sts-b", "mrpc", "qqp", "mnli", "lcqmc")] == \
        ["mcc", "corr", "acc", "acc", "acc", "acc"]


def test_entity_spans_follow_conlleval() -> None:
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-ORG", "B-ORG", "I-PER", "X"]
    assert entity_spans(tags) == {("PER", 0, 2), ("LOC", 3, 5), ("ORG", 5, 6), ("ORG", 6, 7), ("PER", 7, 8)}


def test_entity_scores_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "I-ORG", "O"]]
    # gold entities 3, predicted 2, correct 1 (the ORG span is cut short)
    result = ner_entity_scores(gold, pred)
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(1 / 3)
    assert result["f1"] == pytest.approx(0.4)
    assert result["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert result["per_type"]["LOC"]["recall"] == 0.0
    assert ner_entity_scores([["O", "O"]], [["O", "O"]])["f1"] == 0.0
    with pytest.raises(ValueError):
        ner_entity_scores(gold, pred[:1])


def test_token_scores_equal_sklearn_micro_over_the_entity_tags() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 11, size=(8, 16))
    pred = np.where(rng.random((8, 16)) < 0.6, gold, rng.integers(0, 11, size=(8, 16)))
    ours = ner_token_scores(gold, pred)
    p, r, f, _ = precision_recall_fscore_support(gold.ravel(), pred.ravel(), labels=[2, 3, 4, 5, 6, 7],
                                                 average="micro")
    assert (ours["precision"], ours["recall"], ours["f"]) == pytest.approx((p, r, f))
