"""Planning the phantom: subjects with 1-4 studies each, MIMIC-style ids and dates, a split per subject.

The plan is made serially from the seed, before any study is generated, so that each study can
then be generated on its own (in any process) from its ``StudyPlan``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

SPLIT_FRACTIONS = (0.97, 0.01, 0.02)  # train / validate / test by subject, like MIMIC's official split
STUDIES_PER_SUBJECT = ((1, 2, 3, 4), (0.45, 0.25, 0.18, 0.12))


@dataclass(frozen=True)
class StudyPlan:
    """What the serial planner fixes for one study before it is generated (possibly in a worker)."""

    index: int
    subject_id: int
    study_id: int
    study_date: int
    study_time: float
    sex: str
    traits_seed: int
    split: str = "train"  # train / validate / test, the subject's


def _unique_ids(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    """n distinct random integers in [low, high), in draw order."""
    ids: list[int] = []
    seen: set[int] = set()
    while len(ids) < n:
        for value in rng.integers(low, high, size=n - len(ids) + 8).tolist():
            if value not in seen and len(ids) < n:
                seen.add(value)
                ids.append(value)
    return ids


def plan_studies(n_studies: int, seed: int,
                 split_fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> tuple[list[StudyPlan], dict[int, str]]:
    """Subjects with 1-4 studies each, MIMIC-style ids and dates, and a split per subject."""
    if n_studies < 1:
        raise ValueError(f"n_studies must be at least 1, got {n_studies}")
    rng = np.random.default_rng([seed, 1])
    counts: list[int] = []
    while sum(counts) < n_studies:
        counts.append(min(int(rng.choice(STUDIES_PER_SUBJECT[0], p=STUDIES_PER_SUBJECT[1])), n_studies - sum(counts)))
    subject_ids = sorted(_unique_ids(rng, len(counts), 10_000_000, 20_000_000))
    study_ids = _unique_ids(rng, n_studies, 50_000_000, 60_000_000)
    plans, index = [], 0
    for subject_id, count in zip(subject_ids, counts, strict=True):
        sex = "M" if rng.random() < 0.5 else "F"
        traits_seed = int(rng.integers(2**31))
        day = np.datetime64("2110-01-01") + int(rng.integers(0, 365 * 80))
        for _ in range(count):
            date = int(str(day).replace("-", ""))
            time_of_day = float(rng.integers(0, 24)) * 10_000 + float(rng.integers(0, 60)) * 100 + round(float(rng.uniform(0, 60)), 3)
            plans.append(StudyPlan(index, subject_id, study_ids[index], date, round(time_of_day, 3), sex, traits_seed))
            index += 1
            day = day + int(rng.integers(1, 400))
    split = _split_subjects(rng, subject_ids, split_fractions)
    return [replace(plan, split=split[plan.subject_id]) for plan in plans], split


def _split_subjects(rng: np.random.Generator, subject_ids: list[int],
                    fractions: tuple[float, float, float]) -> dict[int, str]:
    """train / validate / test per subject (by default ~97/1/2%), at least one validate and test subject when possible."""
    names = ("train", "validate", "test")
    split = {s: names[int(rng.choice(3, p=fractions))] for s in subject_ids}
    if len(subject_ids) >= 3:
        order = rng.permutation(len(subject_ids)).tolist()
        for name in ("validate", "test"):
            if name not in split.values():
                pick = next(subject_ids[i] for i in order if split[subject_ids[i]] == "train")
                split[pick] = name
    return split

