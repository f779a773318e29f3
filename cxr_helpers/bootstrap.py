"""Paired bootstrap confidence intervals over test studies: macro AUROC, masked accuracy, and differences.

The resampling unit is the study (labels belong to the study): a resample draws the test studies
with replacement and takes every row (image) of a drawn study as often as it was drawn, so a
resample is a weight vector over the prediction rows. The draws depend only on the seed and the
sorted study ids, so every model scored on the same test studies gets the same resamples, and a
difference between two models is taken resample by resample (paired). Intervals are 95%
percentile intervals. A label with one class in a resample has no AUROC there and is left out of
that resample's macro mean (as ``metrics.macro_auroc`` does); a resample where no label is
defined is dropped. AUROC is vectorised over resamples: each label's scores are sorted once and
the resamples only change the weights, so 2,000 resamples cost about as much as a few sorts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.artifacts import write_json
from cxr_helpers.labels import CHEXPERT_LABELS, binary_targets
from cxr_helpers.metrics import read_metrics

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


def study_weights(study_ids, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, rows): how often each prediction row is drawn in each resample of the studies."""
    studies, row_study = np.unique(np.asarray(study_ids), return_inverse=True)
    drawn = np.random.default_rng(seed).integers(0, len(studies), size=(resamples, len(studies)))
    flat = (drawn + np.arange(resamples)[:, None] * len(studies)).ravel()
    counts = np.bincount(flat, minlength=resamples * len(studies)).reshape(resamples, len(studies))
    return counts[:, row_study].astype(np.float64)


def weighted_auroc(scores, positive, weights) -> np.ndarray:
    """AUROC (B,) of one label under each row of ``weights`` (B, n); NaN where a resample lacks a class.

    Ties count one half, as in ``sklearn.metrics.roc_auc_score``; with unit weights the two agree.
    """
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if scores.size == 0:
        return np.full(weights.shape[0], np.nan)
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # first row of each group of tied scores
    w = weights[:, order]  # (B, n) in score order
    pos = np.add.reduceat(w * positive[order], starts, axis=1)  # (B, groups) positive weight per score
    neg = np.add.reduceat(w * ~positive[order], starts, axis=1)  # (B, groups) negative weight per score
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each score
    numerator = (pos * (below + 0.5 * neg)).sum(axis=1)
    denominator = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def _row_means(values: np.ndarray) -> np.ndarray:
    """Mean over the finite entries of each row (B,); NaN for a row with none."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    totals = np.where(finite, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan)


def macro_auroc_resamples(scores, targets, weights, uncertainty_policy: str = "zeros") -> np.ndarray:
    """Macro AUROC (B,) in each resample: the mean over labels where it is defined there."""
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    binary, valid = binary_targets(targets, uncertainty_policy)  # (n, L) each
    weights = np.atleast_2d(weights)
    per_label = np.column_stack([
        weighted_auroc(scores[valid[:, label], label], binary[valid[:, label], label] > 0.5, weights[:, valid[:, label]])
        for label in range(targets.shape[1])
    ])  # (B, L)
    return _row_means(per_label)


def accuracy_resamples(probabilities, targets, weights, uncertainty_policy: str = "zeros",
                       threshold: float = 0.5) -> np.ndarray:
    """The paper's masked accuracy (B,) in each resample (labels with fewer than 2 valid rows skipped)."""
    binary, valid = binary_targets(np.asarray(targets), uncertainty_policy)
    correct = ((np.asarray(probabilities) > threshold) == (binary > 0.5)) & valid  # (n, L)
    weights = np.atleast_2d(weights)
    valid_count, correct_count = weights @ valid.astype(np.float64), weights @ correct.astype(np.float64)  # (B, L)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_label = np.where(valid_count >= 2, correct_count / valid_count, np.nan)
    return _row_means(per_label)


def percentile_interval(values, level: float = DEFAULT_LEVEL) -> list[float | None]:
    """[low, high] percentile interval of the finite ``values``; [None, None] if there are none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [None, None]
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def model_interval(probabilities, targets, study_ids, uncertainty_policy: str = "zeros",
                   resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = DEFAULT_LEVEL) -> dict:
    """One model's bootstrap intervals on a split: macro AUROC and masked accuracy (for metrics JSON)."""
    weights = study_weights(study_ids, resamples, seed)
    return {
        "macro_auroc_ci": percentile_interval(macro_auroc_resamples(probabilities, targets, weights, uncertainty_policy), level),
        "accuracy_ci": percentile_interval(accuracy_resamples(probabilities, targets, weights, uncertainty_policy), level),
        "ci_resamples": int(resamples), "ci_level": float(level), "ci_unit": "study",
    }


def paired_difference(scores_a, scores_b, targets, study_ids, uncertainty_policy: str = "zeros",
                      resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = DEFAULT_LEVEL) -> dict:
    """Macro AUROC of model a minus model b on the same rows: the estimate and its paired bootstrap interval."""
    ones = np.ones((1, len(targets)))
    estimate = macro_auroc_resamples(scores_a, targets, ones, uncertainty_policy)[0] - \
        macro_auroc_resamples(scores_b, targets, ones, uncertainty_policy)[0]
    weights = study_weights(study_ids, resamples, seed)
    differences = macro_auroc_resamples(scores_a, targets, weights, uncertainty_policy) - \
        macro_auroc_resamples(scores_b, targets, weights, uncertainty_policy)
    low, high = percentile_interval(differences, level)
    return {"estimate": None if not np.isfinite(estimate) else float(estimate), "ci": [low, high],
            "resamples": int(np.isfinite(differences).sum()), "level": float(level),
            "excludes_zero": low is not None and (low > 0 or high < 0),
            "n_studies": int(len(np.unique(np.asarray(study_ids)))), "metric": "macro_auroc", "unit": "study"}


@dataclass
class TestPredictions:
    """One model's rows of predictions/<model>_test.csv."""

    study_ids: np.ndarray  # (n,)
    keys: pd.Index  # (n,) "study_id/dicom_id", unique per row
    probabilities: np.ndarray  # (n, 14)
    targets: np.ndarray  # (n, 14) coded 1/0/-1/-2


def read_predictions(path: str | Path) -> TestPredictions:
    """The saved test predictions of one model (``evaluation.save_predictions``'s format)."""
    table = pd.read_csv(path)
    missing = [c for c in ["study_id", "dicom_id", *(f"prob_{label}" for label in CHEXPERT_LABELS)] if c not in table]
    if missing:
        raise ValueError(f"{path} lacks columns {missing[:3]}...; rerun the stage that wrote it")
    keys = pd.Index(table["study_id"].astype(str) + "/" + table["dicom_id"].astype(str))
    return TestPredictions(table["study_id"].to_numpy(), keys,
                           table[[f"prob_{label}" for label in CHEXPERT_LABELS]].to_numpy(np.float64),
                           table[list(CHEXPERT_LABELS)].to_numpy(np.int64))


def compare_saved(predictions_dir: str | Path, model: str, baseline: str, uncertainty_policy: str = "zeros",
                  resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = DEFAULT_LEVEL) -> dict:
    """``paired_difference`` of two models from their saved test predictions, rows matched by study and image."""
    a = read_predictions(Path(predictions_dir) / f"{model}_test.csv")
    b = read_predictions(Path(predictions_dir) / f"{baseline}_test.csv")
    if not a.keys.sort_values().equals(b.keys.sort_values()):
        raise ValueError(f"{model} and {baseline} were tested on different images; rerun both stages on one cohort")
    rows = b.keys.get_indexer(a.keys)  # row of b for each row of a
    if not np.array_equal(a.targets, b.targets[rows]):
        raise ValueError(f"{model} and {baseline} have different targets for the same images (another cohort?)")
    return {"model": model, "baseline": baseline,
            **paired_difference(a.probabilities, b.probabilities[rows], a.targets, a.study_ids, uncertainty_policy,
                                resamples, seed, level)}


def record_comparisons(metrics_path: str | Path, pairs: Sequence[tuple[str, str, str]], predictions_dir: str | Path,
                       uncertainty_policy: str = "zeros", resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Store each (model, baseline, question) difference under "comparisons" in ``metrics_path``; returns them.

    The section is replaced as a whole, so a difference whose models are gone does not linger.
    Pairs whose predictions file is missing are left out.
    """
    predictions_dir = Path(predictions_dir)
    comparisons = {}
    for model, baseline, question in pairs:
        if all((predictions_dir / f"{name}_test.csv").exists() for name in (model, baseline)):
            comparisons[f"{model} - {baseline}"] = {
                "question": question, **compare_saved(predictions_dir, model, baseline, uncertainty_policy, resamples, seed)}
    data = read_metrics(Path(metrics_path))
    data["comparisons"] = comparisons
    write_json(metrics_path, data)
    return comparisons
