"""Solutions to notebook 02's exercises (kept apart so the notebook's stubs stay stubs)."""

from __future__ import annotations

import numpy as np


def all_negative_accuracy(targets: np.ndarray) -> float:
    """Masked accuracy of a model that answers "absent" for every label, computed by hand."""
    targets = np.asarray(targets)
    accuracies = []
    for label in range(targets.shape[1]):
        column = targets[:, label]
        valid = column[column != -2]  # not mentioned: never scored
        if len(valid) < 2:  # the paper skips labels with fewer than 2 valid targets
            continue
        truth = np.clip(valid, 0, 1)  # U-Zeros: uncertain (-1) counts as negative
        accuracies.append(np.mean(truth == 0))  # predicting 0 is right exactly on the negatives
    return float(np.mean(accuracies)) if accuracies else 0.0
