"""The local `evaluate` metric modules and `compute_metrics` against hand-computed values."""

import math

import numpy as np
import pytest
from transformers import EvalPrediction

from fer_hf.metrics import (
    build_compute_metrics,
    expression_report,
    load_metric,
    valence_arousal_report,
)


@pytest.fixture(scope="module")
def classification():
    return load_metric("expression_classification")


@pytest.fixture(scope="module")
def regression():
    return load_metric("valence_arousal")


def test_classification_by_hand(classification):
    # true:      0 0 1 1 2 2        confusion (rows true): [[1, 1, 0, 0],
    # predicted: 0 1 1 2 2 2                               [0, 1, 1, 0],
    #                                                      [0, 0, 2, 0],
    #                                                      [0, 0, 0, 0]]
    result = classification.compute(
        predictions=[0, 1, 1, 2, 2, 2], references=[0, 0, 1, 1, 2, 2], num_labels=4
    )
    assert result["confusion_matrix"] == [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    assert result["accuracy"] == pytest.approx(4 / 6)
    # Recalls 1/2, 1/2, 1; class 3 has no reference: NaN and left out of the mean.
    assert result["per_class_recall"][:3] == pytest.approx([0.5, 0.5, 1.0])
    assert math.isnan(result["per_class_recall"][3])
    assert result["balanced_accuracy"] == pytest.approx(2 / 3)
    # Precisions 1, 1/2, 2/3 -> F1 2/3, 1/2, 4/5; class 3 is in neither side: not averaged.
    assert result["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 4 / 5) / 3)


def test_balanced_accuracy_differs_from_accuracy_on_imbalance(classification):
    # 9 of class 0 all right, 1 of class 1 wrong: accuracy 0.9 but balanced accuracy 0.5.
    result = classification.compute(predictions=[0] * 10, references=[0] * 9 + [1], num_labels=2)
    assert result["accuracy"] == pytest.approx(0.9)
    assert result["balanced_accuracy"] == pytest.approx(0.5)
    # F1: class 0 = 2 * 0.9 * 1 / 1.9, class 1 (never predicted) = 0.
    assert result["macro_f1"] == pytest.approx((2 * 0.9 / 1.9 + 0) / 2)


def test_classification_rejects_out_of_range(classification):
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\] for num_labels=2"):
        classification.compute(predictions=[0, 2], references=[0, 1], num_labels=2)


def test_valence_arousal_by_hand(regression):
    x = np.array([0.5, -0.5, 0.25, 0.0])  # predictions
    y = np.array([0.4, -0.2, -0.1, 0.3])  # references
    result = regression.compute(predictions=x, references=y)
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    assert result["rmse"] == pytest.approx(np.sqrt(((x - y) ** 2).mean()))
    assert result["ccc"] == pytest.approx(2 * cov / (x.var() + y.var() + (mx - my) ** 2))
    assert result["pcc"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    # Signs: (+,+) (-,-) (+,-) (0,+): 2 of 4 agree.
    assert result["sagr"] == pytest.approx(0.5)
    assert result["n"] == 4


def test_valence_arousal_edge_cases(regression):
    same = regression.compute(predictions=[0.3, 0.3], references=[0.3, 0.3])
    assert same["ccc"] == 1.0 and same["rmse"] == 0.0 and math.isnan(same["pcc"])
    shifted = regression.compute(predictions=[0.1, 0.2, 0.3], references=[0.6, 0.7, 0.8])
    assert shifted["pcc"] == pytest.approx(1.0) and shifted["ccc"] < 0.5  # CCC punishes the bias
    skipped = regression.compute(predictions=[0.1, 0.9, -0.2], references=[0.1, np.nan, -0.2])
    assert skipped["n"] == 2 and skipped["rmse"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="All 2 references are NaN"):
        regression.compute(predictions=[0.1, 0.2], references=[np.nan, np.nan])


def test_expression_report_shape():
    report = expression_report([0, 1, 1], [0, 1, 0], ["neutral", "happy", "sad"])
    assert report["n"] == 3
    assert report["per_class_recall"] == {"neutral": 0.5, "happy": 1.0, "sad": None}
    assert report["confusion_matrix"] == {
        "labels": ["neutral", "happy", "sad"],
        "matrix": [[1, 1, 0], [0, 1, 0], [0, 0, 0]],
    }
    assert report["balanced_accuracy"] == pytest.approx(0.75)


def test_valence_arousal_report_skips_unknown_dimensions():
    predictions = np.array([[0.1, 0.2], [0.5, -0.1], [0.3, 0.3]])
    report = valence_arousal_report(predictions, [0.1, 0.5, np.nan], [np.nan] * 3)
    assert report["valence_n"] == 2 and report["valence_rmse"] == pytest.approx(0.0)
    assert not any(key.startswith("arousal") for key in report)
    assert valence_arousal_report(predictions, [np.nan] * 3, [np.nan] * 3) == {}


def test_compute_metrics_for_trainer():
    names = ["neutral", "happy", "sad"]
    compute = build_compute_metrics(names)
    logits = np.array([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 1.0], [0, 2.0, 0]])
    labels = np.array([0, 1, 2, 2])
    valence = np.array([0.1, np.nan, 0.4, -0.2], dtype=np.float32)
    arousal = np.array([0.0, np.nan, 0.2, 0.1], dtype=np.float32)
    affect = np.array([[0.1, 0.0], [0.9, 0.9], [0.4, 0.2], [-0.2, 0.1]], dtype=np.float32)

    plain = compute(EvalPrediction(predictions=logits, label_ids=(labels, valence, arousal)))
    assert plain["accuracy"] == pytest.approx(0.75)
    assert plain["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert plain["recall_sad"] == pytest.approx(0.5)
    assert all(isinstance(v, float) for v in plain.values())
    assert not any(key.startswith("valence") for key in plain)

    with_va = compute(
        EvalPrediction(predictions=(logits, affect), label_ids=(labels, valence, arousal))
    )
    assert with_va["valence_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert with_va["arousal_ccc"] == pytest.approx(1.0, abs=1e-6)
    assert with_va["valence_n"] == 3
