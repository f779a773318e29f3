"""Masked loss and accuracy (the paper's semantics), AUROC, F1, trivial baselines, metrics JSON."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxr_helpers import metrics
from cxr_helpers.labels import CHEXPERT_LABELS

LOG2 = math.log(2.0)


def bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


LOGITS = np.array([[0.0, 2.0], [-1.0, 5.0]])
TARGETS = np.array([[1, -2], [0, -1]])


def test_masked_bce_by_hand_for_each_uncertainty_policy():
    zeros = (bce(0, 1) + bce(-1, 0) + bce(5, 0)) / 3  # -2 ignored, -1 counted as 0
    ones = (bce(0, 1) + bce(-1, 0) + bce(5, 1)) / 3  # -1 counted as 1
    ignore = (bce(0, 1) + bce(-1, 0)) / 2  # -1 left out
    assert metrics.masked_bce(LOGITS, TARGETS) == pytest.approx(zeros)
    assert metrics.masked_bce(LOGITS, TARGETS, "ones") == pytest.approx(ones)
    assert metrics.masked_bce(LOGITS, TARGETS, "ignore") == pytest.approx(ignore)


def test_masked_bce_blank_policy_adds_blanks_as_negatives():
    logits = np.array([[2.0, -1.0], [0.5, 3.0]])
    targets = np.array([[1, -2], [-2, 0]])
    paper = metrics.masked_bce(logits, targets)  # blanks left out: entries (0, 0) and (1, 1)
    expected_paper = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(3.0))) / 2
    assert paper == pytest.approx(expected_paper)
    negative = metrics.masked_bce(logits, targets, blank_policy="negative")  # blanks count as 0
    expected_negative = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0)) + np.log1p(np.exp(0.5))
                         + np.log1p(np.exp(3.0))) / 4
    assert negative == pytest.approx(expected_negative)


def test_masked_bce_matches_the_paper_formula_on_probabilities():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(20, 14)), dtype=torch.float64)
    targets = torch.tensor(rng.choice([1, 0, -1, -2], size=(20, 14)), dtype=torch.float64)
    mask = (targets != -2).double()
    paper = F.binary_cross_entropy(torch.sigmoid(logits), torch.clamp(targets, 0, 1), reduction="none")
    expected = float((paper * mask).sum() / mask.sum())
    assert float(metrics.masked_bce(logits, targets)) == pytest.approx(expected, rel=1e-9)


def test_masked_bce_on_tensors_is_differentiable_and_ignores_masked_entries():
    logits = torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True)
    loss = metrics.masked_bce(logits, torch.tensor(TARGETS, dtype=torch.float32), "ignore")
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 1] == 0  # -2 and (under ignore) -1
    assert logits.grad[0, 0] != 0 and logits.grad[1, 0] != 0


def test_masked_bce_is_finite_for_extreme_logits_and_zero_when_nothing_is_valid():
    assert metrics.masked_bce(np.array([[1000.0]]), np.array([[0]])) == pytest.approx(1000.0)
    assert metrics.masked_bce(np.array([[-1000.0]]), np.array([[0]])) == pytest.approx(0.0)
    assert metrics.masked_bce(np.zeros((3, 2)), np.full((3, 2), -2)) == 0.0
    assert metrics.masked_bce(np.zeros((3, 2)), np.array([[1, -2]] * 3)) == pytest.approx(LOG2)


def test_masked_bce_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape|must both"):
        metrics.masked_bce(np.zeros((2, 14)), np.zeros((3, 14)))


# label 0: valid rows 0, 1, 3 (-1 -> 0); label 1: all missing; label 2: one valid target only.
ACC_TARGETS = np.array([[1, -2, -2], [0, -2, -2], [-2, -2, 1], [-1, -2, -2]])
ACC_PROBS = np.array([[0.9, 0.9, 0.9], [0.6, 0.1, 0.1], [0.1, 0.5, 0.9], [0.4, 0.5, 0.5]])


def test_masked_accuracy_by_hand():
    # label 0 predictions 1, 1, 0 vs targets 1, 0, 0 -> 2/3; labels 1 and 2 are skipped.
    assert metrics.masked_accuracy(ACC_PROBS, ACC_TARGETS) == pytest.approx(2 / 3)
    assert metrics.masked_accuracy(ACC_PROBS, ACC_TARGETS, uncertainty_policy="ignore") == pytest.approx(1 / 2)
    assert metrics.masked_accuracy(ACC_PROBS, ACC_TARGETS, uncertainty_policy="ones") == pytest.approx(1 / 3)


def test_masked_accuracy_threshold_is_strict_and_empty_gives_zero():
    targets = np.array([[0], [0]])
    assert metrics.masked_accuracy(np.array([[0.5], [0.5]]), targets) == 1.0  # 0.5 is not > 0.5
    assert metrics.masked_accuracy(np.array([[0.5], [0.5]]), targets, threshold=0.4) == 0.0
    assert metrics.masked_accuracy(np.ones((3, 2)), np.full((3, 2), -2)) == 0.0


def test_masked_accuracy_equals_the_paper_code_with_clamped_targets():
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(1)
    probs = rng.uniform(size=(30, 14))
    targets = rng.choice([1, 0, -1, -2], size=(30, 14), p=[0.2, 0.2, 0.1, 0.5])
    targets[:, 3] = -2  # an all-missing label
    targets[1:, 4] = -2  # a label with a single valid target
    mask, preds_bin, clamped, accs = targets != -2, probs > 0.5, np.clip(targets, 0, 1), []
    for i in range(14):
        if mask[:, i].sum() < 2:
            continue
        accs.append(accuracy_score(clamped[mask[:, i], i], preds_bin[mask[:, i], i]))
    assert metrics.masked_accuracy(torch.tensor(probs), torch.tensor(targets)) == pytest.approx(float(np.mean(accs)))


def test_per_label_auroc_by_hand_with_single_class_and_missing_labels():
    scores = np.array([[0.1, 0.3, 0.0], [0.4, 0.2, 0.0], [0.35, 0.9, 0.0], [0.8, 0.1, 0.0], [5.0, 0.5, 0.0]])
    targets = np.array([[0, 1, -2], [0, 1, -2], [1, 1, -2], [1, 1, -2], [-2, 0, -2]])
    auroc = metrics.per_label_auroc(scores, targets)
    assert list(auroc) == ["label_0", "label_1", "label_2"]
    assert auroc["label_0"] == pytest.approx(0.75)  # pairs: (0.35>0.1), (0.35<0.4), (0.8>both) -> 3/4
    assert auroc["label_1"] == pytest.approx(0.25)  # only positive 0.9 outranks the negative 0.5
    assert auroc["label_2"] is None  # all missing
    assert metrics.per_label_auroc(scores[:4, :1], targets[:4, 1:2])["label_0"] is None  # one class only
    assert metrics.macro_auroc(scores, targets) == pytest.approx(0.5)  # mean of 0.75 and 0.25
    assert metrics.macro_auroc(scores[:, 2:], targets[:, 2:]) is None


def test_macro_f1_by_hand_skips_labels_without_positives():
    probs = np.array([[0.9, 0.9], [0.9, 0.9], [0.1, 0.1], [0.9, 0.1]])
    targets = np.array([[1, 0], [0, 0], [1, 0], [1, -1]])
    # label 0: TP 2, FP 1, FN 1 -> F1 = 2*2/(2*2+1+1) = 2/3; label 1 has no positive target -> skipped.
    assert metrics.macro_f1(probs, targets) == pytest.approx(2 / 3)
    assert metrics.macro_f1(probs[:, 1:], targets[:, 1:]) is None


def test_evaluate_returns_every_figure_with_label_names():
    rng = np.random.default_rng(2)
    targets = rng.choice([1, 0, -1, -2], size=(40, 14))
    logits = rng.normal(size=(40, 14))
    figures = metrics.evaluate(logits, targets)
    assert set(figures) == {"loss", "accuracy", "macro_auroc", "auroc", "macro_f1", "n"}
    assert list(figures["auroc"]) == list(CHEXPERT_LABELS) and figures["n"] == 40
    assert figures["loss"] == pytest.approx(metrics.masked_bce(logits, targets))
    assert figures["accuracy"] == pytest.approx(metrics.masked_accuracy(1 / (1 + np.exp(-logits)), targets))


def test_trivial_baselines_by_hand():
    train = np.array([[1, 0], [1, 1], [0, -2], [-1, -2]])  # label 0 prevalence 2/4, label 1 1/2
    evaluation = np.array([[1, 0], [0, 0], [0, -2], [-2, 1]])
    result = metrics.trivial_baselines(train, evaluation)
    assert set(result) == {"all_negative", "all_positive", "train_prevalence"}
    # all negative: label 0 right on 2 of 3, label 1 on 2 of 3.
    assert result["all_negative"]["accuracy"] == pytest.approx(2 / 3)
    assert result["all_positive"]["accuracy"] == pytest.approx(1 / 3)
    assert result["all_negative"]["loss"] is None and result["all_negative"]["macro_f1"] == 0.0
    assert result["all_negative"]["macro_auroc"] == pytest.approx(0.5)
    # prevalence 0.5 for both labels: loss log 2, predicted negative (0.5 is not > 0.5).
    assert result["train_prevalence"]["loss"] == pytest.approx(LOG2, rel=1e-3)
    assert result["train_prevalence"]["accuracy"] == pytest.approx(2 / 3)
    np.testing.assert_allclose(metrics.train_prevalence(train), [0.5, 0.5])
    np.testing.assert_allclose(metrics.train_prevalence(train, "ignore"), [2 / 3, 0.5])


def test_write_metrics_merges_models_and_splits_and_writes_null_for_nan(tmp_path):
    path = tmp_path / "metrics" / "fusion.json"
    metrics.write_metrics(path, "concat", {"train": {"loss": 0.5, "macro_auroc": float("nan")}})
    metrics.write_metrics(path, "gated", {"test": {"loss": 0.4, "auroc": {"Edema": None}}})
    metrics.write_metrics(path, "concat", {"test": {"loss": np.float32(0.25)}})
    data = json.loads(path.read_text())
    assert set(data["models"]) == {"concat", "gated"}
    assert data["models"]["concat"]["train"] == {"loss": 0.5, "macro_auroc": None}
    assert data["models"]["concat"]["test"]["loss"] == pytest.approx(0.25)
    assert data["models"]["gated"]["test"]["auroc"] == {"Edema": None}


def test_write_baselines_stores_each_baseline_as_a_model(tmp_path):
    path = tmp_path / "image.json"
    train = np.array([[1, 0], [0, 1], [0, 0]])
    metrics.write_baselines(path, train, {"train": train, "test": np.array([[0, 0], [1, 1]])})
    models = json.loads(path.read_text())["models"]
    assert set(models) == set(metrics.BASELINE_NAMES.values())
    assert set(models["baseline: all negative"]) == {"train", "test"}
    assert models["baseline: all negative"]["test"]["loss"] is None


def test_read_metrics_names_a_broken_file(tmp_path):
    path = tmp_path / "image.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="image.json"):
        metrics.read_metrics(path)
