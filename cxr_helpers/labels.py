"""The 14 CheXpert labels and their coding (1 positive, 0 negative, -1 uncertain, -2 not mentioned)."""

from __future__ import annotations

import numpy as np
import torch

# The 14 names in MIMIC-CXR-JPG chexpert CSV column order.
CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
NUM_LABELS = len(CHEXPERT_LABELS)

POSITIVE, NEGATIVE, UNCERTAIN, NOT_MENTIONED = 1, 0, -1, -2
VALID_CODES = frozenset({POSITIVE, NEGATIVE, UNCERTAIN, NOT_MENTIONED})
UNCERTAINTY_POLICIES = ("zeros", "ones", "ignore")


def label_index(name: str) -> int:
    """Column index of a CheXpert label name (exact spelling)."""
    try:
        return CHEXPERT_LABELS.index(name)
    except ValueError:
        raise KeyError(f"unknown CheXpert label {name!r}; expected one of {CHEXPERT_LABELS}") from None


def apply_uncertainty_policy(targets, policy: str = "zeros"):
    """Binary targets and a validity mask from coded labels (N, 14): NumPy arrays or torch tensors alike.

    -2 (not mentioned) is always masked out. -1 (uncertain) becomes 0 under U-Zeros (the paper),
    1 under U-Ones, and is masked out under U-Ignore. Returns (binary float32 (or the targets'
    float dtype), mask bool), of the same kind as ``targets``.
    """
    if policy not in UNCERTAINTY_POLICIES:
        raise ValueError(f"uncertainty_policy must be one of {UNCERTAINTY_POLICIES}, got {policy!r}")
    codes = targets if isinstance(targets, torch.Tensor) else np.asarray(targets)
    mask = codes != NOT_MENTIONED
    positive = codes == POSITIVE
    if policy == "ones":
        positive = positive | (codes == UNCERTAIN)
    elif policy == "ignore":
        mask = mask & (codes != UNCERTAIN)
    return _as_float(positive, codes), mask


def _as_float(flags, like):
    """Boolean flags as floats: the dtype of a float tensor ``like``, else float32."""
    if isinstance(flags, torch.Tensor):
        return flags.to(like.dtype if like.is_floating_point() else torch.float32)
    return flags.astype(np.float32)
