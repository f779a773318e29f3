"""Solutions to the notebooks' "Your turn" exercises (checked by cxr_helpers.exercises)."""

from __future__ import annotations

import pandas as pd

from cxr_helpers.labels import UNCERTAIN


def count_uncertain(cohort: pd.DataFrame, label: str = "Pleural Effusion", split: str = "train") -> int:
    """Notebook 01: how many studies of ``split`` have ``label`` coded -1 (uncertain)."""
    studies = cohort[cohort["split"] == split].drop_duplicates("study_id")
    return int((studies[label] == UNCERTAIN).sum())
