"""The paper's masked loss and accuracy, AUROC and F1 beside them, trivial baselines, metrics JSON.

Targets are coded 1 (positive), 0 (negative), -1 (uncertain), -2 (not mentioned), shape (N, 14).
-2 never counts. -1 follows an ``uncertainty_policy``: "zeros" (U-Zeros, the paper: -1 becomes 0,
what the paper's ``torch.clamp(targets, 0, 1)`` does), "ones" (U-Ones) or "ignore" (U-Ignore).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, roc_auc_score

from cxr_helpers.artifacts import json_ready, write_json
from cxr_helpers.labels import (
    CHEXPERT_LABELS,
    binary_targets,
)

# Names under which trivial baselines are stored beside the real models in metrics/<stage>.json.
BASELINE_NAMES = {
    "all_negative": "baseline: all negative",
    "all_positive": "baseline: all positive",
    "train_prevalence": "baseline: train prevalence",
}


def _to_numpy(values) -> np.ndarray:
    """A NumPy array from a tensor (any device, detached) or an array-like."""
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values)


def _check_shapes(predictions, targets) -> None:
    if tuple(predictions.shape) != tuple(targets.shape) or len(targets.shape) != 2:
        raise ValueError(
            f"predictions and targets must both be (N, labels); got {tuple(predictions.shape)} "
            f"and {tuple(targets.shape)}"
        )


def masked_bce(logits, targets, uncertainty_policy: str = "zeros", blank_policy: str = "ignore"):
    """Binary cross-entropy over the valid entries only: sum(loss * mask) / sum(mask).

    The paper applies a sigmoid in the model and ``F.binary_cross_entropy`` on probabilities;
    here the model returns logits and ``binary_cross_entropy_with_logits`` fuses the two, which
    gives the same value but stays finite for very confident predictions. Torch tensors in give
    a differentiable scalar tensor; arrays in give a float. With no valid entry at all the loss
    is 0 (the paper's formula would divide by zero and give NaN). ``blank_policy`` decides whether
    blank labels (-2) are left out (the paper) or count as negatives (``labels.binary_targets``).
    """
    as_float = not isinstance(logits, torch.Tensor)
    logits_t = torch.as_tensor(_to_numpy(logits), dtype=torch.float64) if as_float else logits
    if isinstance(targets, torch.Tensor):
        targets_t = targets.to(device=logits_t.device, dtype=logits_t.dtype)
    else:
        targets_t = torch.as_tensor(np.asarray(targets), dtype=logits_t.dtype, device=logits_t.device)
    _check_shapes(logits_t, targets_t)
    binary, valid = binary_targets(targets_t, uncertainty_policy, blank_policy)  # (N, 14) each
    mask = valid.to(logits_t.dtype)
    loss = F.binary_cross_entropy_with_logits(logits_t, binary, reduction="none")  # (N, 14)
    total = (loss * mask).sum() / mask.sum().clamp_min(1.0)
    return float(total) if as_float else total


def masked_accuracy(probabilities, targets, threshold: float = 0.5, uncertainty_policy: str = "zeros") -> float:
    """The paper's masked accuracy: mean over labels of the per-label accuracy on valid entries.

    A prediction is positive when its probability exceeds ``threshold``. Labels with fewer than
    2 valid targets are skipped; 0.0 when no label qualifies. Under U-Zeros -1 counts as 0, as
    ``torch.clamp(targets, 0, 1)`` in the paper's loss (the paper's accuracy snippet compares
    unclamped targets, where a -1 could never match; we read that as a slip, not a choice).
    """
    probabilities, targets = _to_numpy(probabilities), _to_numpy(targets)
    _check_shapes(probabilities, targets)
    binary, mask = binary_targets(targets, uncertainty_policy)
    predicted = probabilities > threshold  # (N, 14) bool
    accuracies = []
    for label in range(targets.shape[1]):
        valid = mask[:, label]
        if valid.sum() < 2:
            continue
        accuracies.append(float(np.mean(predicted[valid, label] == binary[valid, label].astype(bool))))
    return float(np.mean(accuracies)) if accuracies else 0.0


def per_label_auroc(scores, targets, uncertainty_policy: str = "zeros") -> dict[str, float | None]:
    """AUROC per label over valid entries; None where the valid targets hold only one class.

    ``scores`` may be logits or probabilities: AUROC depends only on their order.
    """
    scores, targets = _to_numpy(scores), _to_numpy(targets)
    _check_shapes(scores, targets)
    binary, mask = binary_targets(targets, uncertainty_policy)
    result: dict[str, float | None] = {}
    for label, name in enumerate(_label_names(targets.shape[1])):
        y, s = binary[mask[:, label], label], scores[mask[:, label], label]
        result[name] = float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else None
    return result


def macro_auroc(scores, targets, uncertainty_policy: str = "zeros") -> float | None:
    """Mean AUROC over the labels where it is defined; None if it is defined for none."""
    defined = [v for v in per_label_auroc(scores, targets, uncertainty_policy).values() if v is not None]
    return float(np.mean(defined)) if defined else None


def macro_f1(probabilities, targets, threshold: float = 0.5, uncertainty_policy: str = "zeros") -> float | None:
    """Mean F1 of the positive class over labels with at least one valid positive target.

    Labels without a positive target are left out (their F1 is 0 or undefined whatever the model
    does); None if no label has one.
    """
    probabilities, targets = _to_numpy(probabilities), _to_numpy(targets)
    _check_shapes(probabilities, targets)
    binary, mask = binary_targets(targets, uncertainty_policy)
    scores = []
    for label in range(targets.shape[1]):
        y = binary[mask[:, label], label]
        if y.sum() == 0:
            continue
        predicted = probabilities[mask[:, label], label] > threshold
        scores.append(float(f1_score(y.astype(bool), predicted, zero_division=0)))
    return float(np.mean(scores)) if scores else None


def _label_names(count: int) -> tuple[str, ...]:
    return CHEXPERT_LABELS if count == len(CHEXPERT_LABELS) else tuple(f"label_{i}" for i in range(count))


def sigmoid(logits) -> np.ndarray:
    """Probabilities from logits, as a NumPy array (numerically stable)."""
    return torch.sigmoid(torch.as_tensor(_to_numpy(logits), dtype=torch.float64)).numpy()


def evaluate(logits, targets, uncertainty_policy: str = "zeros", threshold: float = 0.5) -> dict:
    """All figures of one split: loss, accuracy, macro_auroc, auroc per label, macro_f1, n."""
    logits, targets = _to_numpy(logits).astype(np.float64), _to_numpy(targets)
    probabilities = sigmoid(logits)
    return {
        "loss": masked_bce(logits, targets, uncertainty_policy),
        "accuracy": masked_accuracy(probabilities, targets, threshold, uncertainty_policy),
        "macro_auroc": macro_auroc(logits, targets, uncertainty_policy),
        "auroc": per_label_auroc(logits, targets, uncertainty_policy),
        "macro_f1": macro_f1(probabilities, targets, threshold, uncertainty_policy),
        "n": int(targets.shape[0]),
    }


def train_prevalence(train_targets, uncertainty_policy: str = "zeros") -> np.ndarray:
    """Share of positives among the valid training targets, per label (0.5 where none is valid)."""
    binary, mask = binary_targets(_to_numpy(train_targets), uncertainty_policy)
    counts = mask.sum(axis=0)
    return np.where(counts > 0, (binary * mask).sum(axis=0) / np.maximum(counts, 1), 0.5)


def trivial_baselines(train_targets, eval_targets, uncertainty_policy: str = "zeros") -> dict[str, dict]:
    """Figures of models that never look at an image, scored with the same functions.

    - all_negative: probability 0 for every label (says "absent" everywhere);
    - all_positive: probability 1 for every label;
    - train_prevalence: each label's positive share among valid training targets, for everyone.
    The two hard 0/1 predictors have no finite BCE (a sure wrong answer costs infinity), so their
    ``loss`` is None; constant scores give AUROC 0.5 wherever it is defined.
    """
    eval_targets = _to_numpy(eval_targets)
    n, labels = eval_targets.shape
    prevalence = np.clip(train_prevalence(train_targets, uncertainty_policy), 1e-4, 1 - 1e-4)
    prevalence_logits = np.broadcast_to(np.log(prevalence / (1 - prevalence)), (n, labels))
    results = {"train_prevalence": evaluate(prevalence_logits, eval_targets, uncertainty_policy)}
    for name, probability in (("all_negative", 0.0), ("all_positive", 1.0)):
        constant = np.full((n, labels), probability)
        figures = evaluate(np.zeros((n, labels)), eval_targets, uncertainty_policy)  # AUROC: constant scores
        figures["loss"] = None
        figures["accuracy"] = masked_accuracy(constant, eval_targets, 0.5, uncertainty_policy)
        figures["macro_f1"] = macro_f1(constant, eval_targets, 0.5, uncertainty_policy)
        results[name] = figures
    return {name: results[name] for name in BASELINE_NAMES}


def read_metrics(path: Path) -> dict:
    """The metrics JSON at ``path`` ({"models": {}} if the file does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return {"models": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and rerun the stage") from None
    if not isinstance(data.get("models"), dict):
        raise ValueError(f"{path} has no 'models' object; delete it and rerun the stage")
    return data


def write_metrics(path: Path, model_name: str, split_results: Mapping[str, Mapping]) -> Path:
    """Merge one model's per-split figures into ``path`` (metrics/<stage>.json), keeping other models."""
    path = Path(path)
    data = read_metrics(path)
    data["models"].setdefault(model_name, {}).update(json_ready(split_results))
    return write_json(path, data)  # atomic: a reader never sees half a file


def forget_metrics(path: Path, model_name: str) -> bool:
    """Remove one model's figures from ``path`` (metrics/<stage>.json); whether there were any."""
    data = read_metrics(path)
    if data["models"].pop(model_name, None) is None:
        return False
    write_json(Path(path), data)
    return True


def write_baselines(path: Path, train_targets, split_targets: Mapping[str, np.ndarray], policy: str = "zeros") -> Path:
    """Score the trivial baselines on each split and store them as models in ``path``."""
    per_split = {split: trivial_baselines(train_targets, targets, policy) for split, targets in split_targets.items()}
    for key, model_name in BASELINE_NAMES.items():
        write_metrics(path, model_name, {split: results[key] for split, results in per_split.items()})
    return Path(path)
