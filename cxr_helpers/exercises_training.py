"""Checks for notebook 02's "Your turn" exercises: they print feedback and never stop a run-all."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cxr_helpers.metrics import masked_accuracy

# A small case to reason about by hand: 4 studies x 3 labels.
# label 0: valid 1, 0, -1 -> negatives 0, -1 -> 2/3; label 1: 0, 0, 0, 1 -> 3/4; label 2: one valid -> skipped.
HAND_CASE = np.array([[1, 0, -2], [0, 0, -2], [-2, 0, 1], [-1, 1, -2]])
HAND_ANSWER = (2 / 3 + 3 / 4) / 2


def _cases(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    cases = [HAND_CASE]
    for n in (5, 40):
        cases.append(rng.choice([1, 0, -1, -2], size=(n, 14), p=[0.25, 0.2, 0.1, 0.45]))
    return cases


def check_all_negative_accuracy(function: Callable[[np.ndarray], float]) -> bool:
    """Compare the student's all-negative accuracy with masked_accuracy on all-zero predictions."""
    for number, targets in enumerate(_cases()):
        expected = masked_accuracy(np.zeros(targets.shape), targets)
        got = function(targets)
        if got is None:
            print("Not done yet: all_negative_accuracy returns None. Fill in the TODO and run the cell again.")
            return False
        if not np.isclose(float(got), expected, atol=1e-9):
            print(f"Not quite: case {number} ({targets.shape[0]} studies) expected {expected:.4f}, got {float(got):.4f}.")
            if number == 0:
                print("Hint: per label, drop the -2 entries, count -1 as 0, skip labels with fewer than 2 left.")
            return False
    print(f"Correct! On the hand case the all-negative model scores {HAND_ANSWER:.4f} without seeing an image.")
    return True
