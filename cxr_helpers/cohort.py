"""The cohort from the layout: the view filter, a seeded sample of usable studies, one image each, the split.

``select_cohort`` visits studies in a seeded random order and keeps usable ones (report present
and not empty, an image on disk) until it has ``n_studies``; every problem met on the way is a
counted skip with its reason, and what is left out by design (other views, extra images of a
study, studies beyond the sample) is counted in ``filtered``. The split is the paper's seeded
70/20/10 drawn by patient (``random_split_by_patient``), or MIMIC's official one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxr_helpers.mimic import (
    FRONTAL_VIEWS,
    SPLITS,
    VIEW_PREFERENCE,
    Layout,
    MimicLayoutError,
    read_report,
    skipped_table,
)


@dataclass
class Selection:
    """The chosen cohort rows, the report text of each chosen study, and what was dropped."""

    cohort: pd.DataFrame
    reports: dict[int, str]  # study_id -> raw report text
    skipped: pd.DataFrame
    filtered: dict[str, int]  # left out by design (not problems): reason -> count


def filter_views(images: pd.DataFrame, views: str) -> pd.DataFrame:
    """Images to keep: ``frontal`` = PA or AP only; ``all`` = every view."""
    if views == "all":
        return images
    if views != "frontal":
        raise ValueError(f"views must be 'frontal' or 'all', got {views!r}")
    return images[images["view_position"].isin(FRONTAL_VIEWS)]


def order_by_preference(images: pd.DataFrame) -> pd.DataFrame:
    """Images sorted study by study, preferred first: PA, AP, lateral, others; then dicom_id."""
    rank = images["view_position"].map(VIEW_PREFERENCE).fillna(len(VIEW_PREFERENCE)).astype(int)
    return images.assign(_rank=rank).sort_values(["study_id", "_rank", "dicom_id"]).drop(columns="_rank")


def random_split_by_patient(
    studies: pd.DataFrame, fractions: tuple[float, float, float], seed: int
) -> pd.Series:
    """The paper's seeded 70/20/10 split, drawn by patient so no patient is in two splits.

    ``studies`` has one row per study (subject_id, study_id). Patients are shuffled and cut
    where the running count of studies crosses the fractions, so the split sizes follow the
    fractions in studies. Returns the split name per row of ``studies``.
    """
    counts = studies.groupby("subject_id").size()
    subjects = counts.index.to_numpy()[np.random.default_rng(seed).permutation(len(counts))]
    sizes = counts.loc[subjects].to_numpy()
    midpoints = (np.cumsum(sizes) - sizes / 2) / max(sizes.sum(), 1)  # each patient's position in [0, 1]
    cuts = np.cumsum(fractions)[:-1]
    names = np.asarray(SPLITS)[np.searchsorted(cuts, midpoints, side="right")]
    return studies["subject_id"].map(dict(zip(subjects, names, strict=True))).rename("split")


def select_cohort(
    layout: Layout,
    views: str = "frontal",
    one_image_per_study: bool = True,
    split: str = "random",
    split_fractions: tuple[float, float, float] = (0.7, 0.2, 0.1),
    n_studies: int | None = None,
    seed: int = 42,
    progress: bool = False,
) -> Selection:
    """Views, a seeded sample of ``n_studies`` usable studies, their images, and the split.

    Studies are visited in a seeded random order and kept until ``n_studies`` usable ones
    are found (all of them when None): a study is usable when its report exists and is not
    empty and at least one of its kept images exists on disk. Each problem met on the way is
    a skip with its reason; what is left out by design (other views, extra images of a
    study, studies beyond the sample) is counted in ``filtered``.
    """
    images = order_by_preference(filter_views(layout.images, views))
    filtered = {f"image not a frontal view (views={views!r})": len(layout.images) - len(images)}
    if split == "official":
        unsplit = images["official_split"] == ""
        if unsplit.any():
            raise MimicLayoutError("split='official' needs the split csv: read_layout(..., need_split=True)")
    elif split != "random":
        raise ValueError(f"split must be 'random' or 'official', got {split!r}")
    images = images.reset_index(drop=True)  # sorted by study, preferred image first
    studies, starts = np.unique(images["study_id"].to_numpy(), return_index=True)
    ends = [*starts[1:].tolist(), len(images)] if len(starts) else []  # no image left: no study
    bounds = dict(zip(studies.tolist(), zip(starts.tolist(), ends, strict=True), strict=True))  # id -> (first, end row)
    order = studies[np.random.default_rng(seed).permutation(len(studies))]
    wanted = len(order) if n_studies is None else min(n_studies, len(order))
    walk = _StudyWalk(images, bounds, one_image_per_study)
    visited = walk.run(order, wanted, progress)
    filtered["study not sampled (beyond n_studies)"] = len(order) - visited
    if one_image_per_study:
        filtered["other image of a chosen study (one_image_per_study)"] = walk.unexamined
    cohort = images.iloc[walk.kept].copy()
    cohort = _assign_split(cohort, split, split_fractions, seed)
    cohort = cohort.sort_values(["subject_id", "study_id", "dicom_id"]).reset_index(drop=True)
    return Selection(cohort, walk.reports, skipped_table(walk.skips), filtered)


class _StudyWalk:
    """Visits studies in a given order, keeping those with a report and an existing image."""

    def __init__(self, images: pd.DataFrame, bounds: dict[int, tuple[int, int]], one_image_per_study: bool):
        self.bounds, self.one = bounds, one_image_per_study
        self.subject = images["subject_id"].to_numpy()
        self.dicom = images["dicom_id"].to_numpy()
        self.image_path = images["image_path"].to_numpy()
        self.report_path = images["report_path"].to_numpy()
        self.kept: list[int] = []  # row positions in ``images``
        self.reports: dict[int, str] = {}
        self.skips: list[dict] = []
        self.unexamined = 0  # other images of chosen studies, never looked at (one image per study)

    def run(self, order: np.ndarray, wanted: int, progress: bool) -> int:
        """Visit studies until ``wanted`` are kept; returns how many were visited."""
        visited = 0
        with tqdm(total=wanted, desc="checking studies", unit="study", disable=not progress) as bar:
            for study_id in order.tolist():
                if len(self.reports) >= wanted:
                    break
                visited += 1
                if self.visit(study_id):
                    bar.update(1)
        return visited

    def visit(self, study_id: int) -> bool:
        """Check one study's report and images; True if it was kept."""
        first, end = self.bounds[study_id]
        ids = {"row": None, "subject_id": int(self.subject[first]), "study_id": study_id}
        try:
            text = read_report(self.report_path[first])
        except (OSError, ValueError) as error:
            reason = "report file missing" if isinstance(error, FileNotFoundError) else "report file empty"
            self.skips.append({"file": self.report_path[first], **ids, "dicom_id": None, "reason": reason})
            return False
        kept = []
        for position in range(first, end):
            if Path(self.image_path[position]).is_file():
                kept.append(position)
                if self.one:
                    break
            else:
                self.skips.append({"file": self.image_path[position], **ids, "dicom_id": self.dicom[position],
                                   "reason": "image file missing"})
        if not kept:
            return False
        self.kept.extend(kept)
        self.reports[study_id] = text
        self.unexamined += end - 1 - kept[-1] if self.one else 0
        return True


def _assign_split(cohort: pd.DataFrame, split: str, fractions: tuple[float, float, float], seed: int) -> pd.DataFrame:
    """A ``split`` column: the official split, or the seeded random split by patient."""
    if split == "official":
        # A study's split is its (preferred) image's; MIMIC's split is by patient, so they agree.
        study_split = cohort.drop_duplicates("study_id").set_index("study_id")["official_split"]
        return cohort.assign(split=cohort["study_id"].map(study_split))
    studies = cohort.drop_duplicates("study_id")[["subject_id", "study_id"]].reset_index(drop=True)
    study_split = pd.Series(random_split_by_patient(studies, fractions, seed).to_numpy(), index=studies["study_id"])
    return cohort.assign(split=cohort["study_id"].map(study_split))
