"""Notebook 01's exercise check: a 70/20/10 split by patient, written with scikit-learn's group splitter."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from cxr_helpers.exercises.feedback import NO_ANSWER, correct, not_quite, student_answer

SPLIT_NAMES = ("train", "validate", "test")
SHARE_TOLERANCE = 0.05  # on 2,000 patients a patient-level draw lands within about 0.02 of each fraction


def hand_made_studies(patients: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per study (subject_id, study_id): patients with 1-4 studies, rows in a shuffled order."""
    rng = np.random.default_rng(seed)
    counts = rng.choice([1, 2, 3, 4], size=patients, p=[0.45, 0.25, 0.18, 0.12])
    subjects = np.repeat(10_000_000 + np.arange(patients), counts)
    studies = pd.DataFrame({"subject_id": subjects, "study_id": 50_000_000 + np.arange(len(subjects))})
    return studies.iloc[rng.permutation(len(studies))].reset_index(drop=True)


def _split_names(answer, studies: pd.DataFrame) -> np.ndarray | None:
    """The answer as an array of split names, one per row of ``studies`` (None if it is not that)."""
    names = np.asarray(answer, dtype=object).ravel()
    return names if len(names) == len(studies) else None


def _problem(names: np.ndarray | None, studies: pd.DataFrame, fractions: tuple[float, float, float],
             check_shares: bool = True) -> str | None:
    """What is wrong with one split of ``studies`` (None if nothing is); shares only with ``check_shares``."""
    if names is None:
        return f"return one split name per row of `studies` ({len(studies)} rows), in the same order."
    unknown = sorted(set(names) - set(SPLIT_NAMES), key=str)
    if unknown:
        return f"the split names must be {SPLIT_NAMES}; your answer also has {unknown[:3]}."
    per_patient = pd.Series(names).groupby(studies["subject_id"].to_numpy()).nunique()
    if (per_patient > 1).any():
        return (f"{int((per_patient > 1).sum())} patients have studies in two splits: "
                "the model would meet their other studies' anatomy in training.")
    if not check_shares:
        return None
    shares = pd.Series(names).value_counts(normalize=True).reindex(SPLIT_NAMES, fill_value=0.0)
    off = [f"{name} {share:.2f}" for name, share, target in zip(SPLIT_NAMES, shares, fractions, strict=True)
           if abs(share - target) > SHARE_TOLERANCE]
    if off:
        return f"with fractions {fractions} your shares of studies are off: {', '.join(off)}."
    return None


def check_split_by_patient(function: Callable[..., object], studies: pd.DataFrame | None = None) -> bool:
    """Check ``function(studies, fractions, seed)`` on 2,000 hand-made patients (and on ``studies`` if given).

    Right means: one split name per row, no patient in two splits, shares of studies near the
    fractions (two sets of fractions), the same split for the same seed and another for another seed.
    """
    made = hand_made_studies()
    answers = {}
    for key in [((0.7, 0.2, 0.1), 0), ((0.7, 0.2, 0.1), 0), ((0.5, 0.25, 0.25), 0), ((0.7, 0.2, 0.1), 1)]:
        answer = student_answer("split_by_patient", lambda key=key: function(made.copy(), key[0], key[1]))
        if answer is NO_ANSWER:
            return False
        names = _split_names(answer, made)
        problem = _problem(names, made, key[0])
        if problem:
            return not_quite(f"on 2,000 hand-made patients, {problem}",
                             "GroupShuffleSplit(n_splits=1, train_size=..., random_state=seed).split(rows, groups=subject_ids) "
                             "keeps each group (patient) on one side; cut train from the rest, then the rest in two.")
        answers.setdefault(key, []).append(names)
    first, again = answers[((0.7, 0.2, 0.1), 0)]
    if not np.array_equal(first, again):
        return not_quite("two calls with the same seed gave different splits.", "pass the seed as random_state.")
    if np.array_equal(first, answers[((0.7, 0.2, 0.1), 1)][0]):
        return not_quite("seeds 0 and 1 gave the same split: the patients are not shuffled by the seed.",
                         "pass the seed as random_state to both GroupShuffleSplit calls.")
    if studies is not None:
        answer = student_answer("split_by_patient", lambda: function(studies.copy(), (0.7, 0.2, 0.1), 0))
        if answer is NO_ANSWER:
            return False
        problem = _problem(_split_names(answer, studies), studies, (0.7, 0.2, 0.1), check_shares=False)
        if problem:  # a small cohort's shares may stray from the fractions: only the rules count here
            return not_quite(f"on the notebook's cohort, {problem}")
    shares = pd.Series(first).value_counts(normalize=True).reindex(SPLIT_NAMES)
    return correct("No patient is in two splits; shares of the hand-made studies: "
                   + ", ".join(f"{name} {share:.3f}" for name, share in shares.items()) + ".")
