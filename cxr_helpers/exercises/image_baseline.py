"""Notebook 02's exercise checks: the paper's masked accuracy of a model that always answers "absent"."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cxr_helpers.exercises.feedback import NO_ANSWER, correct, not_quite, student_answer
from cxr_helpers.metrics import masked_accuracy

# A small case to reason about by hand: 4 studies x 3 labels.
# label 0: valid 1, 0, -1 -> negatives 0, -1 -> 2/3; label 1: 0, 0, 0, 1 -> 3/4; label 2: one valid -> skipped.
HAND_CASE = np.array([[1, 0, -2], [0, 0, -2], [-2, 0, 1], [-1, 1, -2]])
HAND_ANSWER = (2 / 3 + 3 / 4) / 2


def _cases(seed: int = 0) -> list[np.ndarray]:
    """The hand case, then random coded targets of 5 and 40 studies."""
    rng = np.random.default_rng(seed)
    cases = [HAND_CASE]
    for n in (5, 40):
        cases.append(rng.choice([1, 0, -1, -2], size=(n, 14), p=[0.25, 0.2, 0.1, 0.45]))
    return cases


def check_all_negative_accuracy(function: Callable[[np.ndarray], float]) -> bool:
    """Compare the student's all-negative accuracy with ``metrics.masked_accuracy`` on all-zero predictions."""
    for number, targets in enumerate(_cases()):
        reference = masked_accuracy(np.zeros(targets.shape), targets)
        got = student_answer("all_negative_accuracy", lambda targets=targets: function(targets))
        if got is NO_ANSWER:
            return False
        if not np.isclose(float(got), reference, atol=1e-9):
            hint = ("per label, drop the -2 entries, count -1 as 0, skip labels with fewer than 2 left, "
                    "then average over the labels that remain." if number == 0 else
                    "the hand case passed: look at what differs in a 14-label case (labels with < 2 valid entries).")
            return not_quite(f"case {number} ({targets.shape[0]} studies x {targets.shape[1]} labels): "
                             f"you returned {float(got):.4f}.", hint)
    return correct(f"On the hand case the all-negative model scores {HAND_ANSWER:.4f} without seeing an image.")
