"""Checks for the notebooks' "Your turn" exercises: compare a student's function with the solution.

A check prints one line (not done yet / correct / not quite, with a hint) and returns True only
when the answer is right, so a notebook with the stub still runs top to bottom.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from cxr_helpers import solutions


def check_count_uncertain(count_uncertain: Callable[..., int | None], cohort: pd.DataFrame) -> bool:
    """Notebook 01: check ``count_uncertain(cohort, label, split)`` on a few labels and splits."""
    cases = [("Pleural Effusion", "train"), ("Edema", "validate"), ("Atelectasis", "test")]
    for label, split in cases:
        answer = count_uncertain(cohort, label, split)
        if answer is None:
            print("Not done yet: count_uncertain returns None. Fill in the function and run the cell again.")
            return False
        expected = solutions.count_uncertain(cohort, label, split)
        if answer != expected:
            print(f"Not quite: for {label!r} in {split!r} you returned {answer}. "
                  "Hint: keep the split's rows, one per study, and count the label's -1 codes.")
            return False
    print(f"Correct! {cases[0][0]} is uncertain (-1) in {solutions.count_uncertain(cohort)} training studies.")
    return True
