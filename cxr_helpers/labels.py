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
# How a blank (not mentioned) label enters training: "ignore" (the paper: masked out), "negative"
# (0: a finding the report does not mention is taken as absent), "no_finding_negative" (masked out,
# except No Finding, where blank means 0: No Finding is never coded 0, so without this it has no negative).
BLANK_POLICIES = ("ignore", "negative", "no_finding_negative")


def label_index(name: str) -> int:
    """Column index of a CheXpert label name (exact spelling)."""
    try:
        return CHEXPERT_LABELS.index(name)
    except ValueError:
        raise KeyError(f"unknown CheXpert label {name!r}; expected one of {CHEXPERT_LABELS}") from None


def binary_targets(targets, uncertainty_policy: str = "zeros", blank_policy: str = "ignore"):
    """Binary targets and a validity mask from coded labels (N, 14): NumPy arrays or torch tensors alike.

    -1 (uncertain) becomes 0 under U-Zeros (the paper), 1 under U-Ones, and is masked out under
    U-Ignore. -2 (not mentioned) is masked out (``blank_policy="ignore"``, the paper), or counts as
    0 (``"negative"``; ``"no_finding_negative"``: for No Finding only). Returns (binary float32 (or
    the targets' float dtype), mask bool), of the same kind as ``targets``.
    """
    if uncertainty_policy not in UNCERTAINTY_POLICIES:
        raise ValueError(f"uncertainty_policy must be one of {UNCERTAINTY_POLICIES}, got {uncertainty_policy!r}")
    if blank_policy not in BLANK_POLICIES:
        raise ValueError(f"blank_policy must be one of {BLANK_POLICIES}, got {blank_policy!r}")
    codes = targets if isinstance(targets, torch.Tensor) else np.asarray(targets)
    mask = codes != NOT_MENTIONED
    if blank_policy == "negative":
        mask = mask | (codes == NOT_MENTIONED)
    elif blank_policy == "no_finding_negative":
        mask[..., CHEXPERT_LABELS.index("No Finding")] = True
    positive = codes == POSITIVE
    if uncertainty_policy == "ones":
        positive = positive | (codes == UNCERTAIN)
    elif uncertainty_policy == "ignore":
        mask = mask & (codes != UNCERTAIN)
    return _as_float(positive, codes), mask


def _as_float(flags, like):
    """Boolean flags as floats: the dtype of a float tensor ``like``, else float32."""
    if isinstance(flags, torch.Tensor):
        return flags.to(like.dtype if like.is_floating_point() else torch.float32)
    return flags.astype(np.float32)
