"""Finding studies worth a look: a label positive, the fusion model wrong, two models disagreeing, a map missing.

``StudyFinder.matching(condition, label)`` filters the browser's studies (in their order). The
conditions that need predictions compute them once for every study, in batches
(``StudyExplainer.logits_many``); "the map misses the mask" reads notebook 05's faithfulness
records (``explanations/faithfulness_records.csv``: one row per study, label and model with at
least ``study_id, label, model, detected, hit``), and says what makes them where they are absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.labels import CHEXPERT_LABELS, label_index

ANY_LABEL = "(any label)"
RECORDS_FILE = "faithfulness_records.csv"  # in <artifacts>/explanations/, written by notebook 05 section 7
RECORD_COLUMNS = ("study_id", "label", "model", "detected", "hit")
ENSEMBLE_MODEL = "image ensemble"  # the image ensemble's records (settings.image_ensemble > 1)
# condition -> (what the filter menu says, what it means: shown under the filter)
CONDITIONS: dict[str, tuple[str, str]] = {
    "all": ("all studies", "every study of the split"),
    "positive": ("label positive in the CSV", "the label is coded 1 in the CSV (any label: a finding other than "
                 "No Finding is)"),
    "fusion_wrong": ("fusion wrong", "a label coded 1 with fusion p < 0.5, or coded 0 with p >= 0.5 (uncertain "
                     "and blank labels are not judged)"),
    "disagree": ("fusion and image-only disagree", "one model's p is >= 0.5 and the other's < 0.5"),
    "fusion_cam_misses": ("fusion's Grad-CAM misses the mask", "a finding the fusion model detects (its logit drops "
                          "when the finding is removed from the image), its map's peak outside the finding's mask"),
    "image_cam_misses": ("image-only's Grad-CAM misses the mask", "the same for the image-only model"),
    "ensemble_cam_misses": ("the image ensemble's Grad-CAM misses the mask", "the same for the image ensemble "
                            "(CXR_IMAGE_ENSEMBLE), the mean map of its models"),
}
MISSES_MODEL = {  # condition -> the "model" of its records
    "fusion_cam_misses": "fusion", "image_cam_misses": "image", "ensemble_cam_misses": ENSEMBLE_MODEL}


class FilterUnavailable(RuntimeError):
    """A condition that cannot be used here (a model not loaded, the faithfulness records not written yet)."""


def _label_columns(label: str) -> list[int]:
    """The label's column, or every column for ANY_LABEL."""
    return list(range(len(CHEXPERT_LABELS))) if label == ANY_LABEL else [label_index(label)]


class StudyFinder:
    """Which of ``studies`` match a condition (a ``CONDITIONS`` key) for a label (or ANY_LABEL)."""

    def __init__(self, explainer, studies: Sequence[int], records_path: Path | None = None):
        self.explainer = explainer
        self.studies = [int(s) for s in studies]
        self.records_path = Path(records_path) if records_path is not None else None
        self._codes: np.ndarray | None = None  # (N, 14) coded labels of the studies
        self._records: tuple[tuple[int, int], pd.DataFrame] | None = None  # ((mtime in ns, size), table)

    def codes(self) -> np.ndarray:
        """The studies' coded labels (N, 14): 1/0/-1/-2."""
        if self._codes is None:
            self._codes = np.array([[self.explainer.coded_labels(s)[name] for name in CHEXPERT_LABELS]
                                    for s in self.studies], dtype=np.int64)
        return self._codes

    def probabilities(self, role: str) -> np.ndarray:
        """Every study's probabilities (N, 14) for ``role`` (computed once, in batches)."""
        if not self.explainer.has(role):
            raise FilterUnavailable(f"this filter needs the {role} model, which is not loaded")
        logits = self.explainer.logits_many(self.studies, role).astype(np.float64)
        return 1.0 / (1.0 + np.exp(-logits))

    def records(self) -> pd.DataFrame:
        """Notebook 05's faithfulness records (re-read when the file changes); FilterUnavailable without them."""
        path = self.records_path
        if path is None or not path.is_file():
            where = path if path is not None else f"explanations/{RECORDS_FILE}"
            raise FilterUnavailable(
                f"this filter reads {where}, written by notebook 05's section 7 (the faithfulness checks) on "
                "the phantom: run that section first (real data has no masks to check against)")
        status = path.stat()
        stamp = (status.st_mtime_ns, status.st_size)  # a rewrite within one clock tick changes the size
        if self._records is None or self._records[0] != stamp:
            table = pd.read_csv(path)
            missing = [c for c in RECORD_COLUMNS if c not in table.columns]
            if missing:
                raise FilterUnavailable(f"{path} lacks the columns {missing}")
            self._records = (stamp, table)
        return self._records[1]

    def mask(self, condition: str, label: str = ANY_LABEL) -> np.ndarray:
        """Boolean (N,): which studies match."""
        columns = _label_columns(label)
        if condition == "all":
            return np.ones(len(self.studies), dtype=bool)
        if condition == "positive":
            if label == ANY_LABEL:
                columns = [c for c in columns if CHEXPERT_LABELS[c] != "No Finding"]
            return (self.codes()[:, columns] == 1).any(axis=1)
        if condition == "fusion_wrong":
            codes, predicted = self.codes()[:, columns], self.probabilities("fusion")[:, columns] >= 0.5
            return (((codes == 1) & ~predicted) | ((codes == 0) & predicted)).any(axis=1)
        if condition == "disagree":
            fusion = self.probabilities("fusion")[:, columns] >= 0.5
            image = self.probabilities("image")[:, columns] >= 0.5
            return (fusion != image).any(axis=1)
        if condition in MISSES_MODEL:
            table, model = self.records(), MISSES_MODEL[condition]
            table = table[table["study_id"].notna() & (table["model"] == model)]  # test studies (probes have no study)
            if table.empty:
                hint = " (CXR_IMAGE_ENSEMBLE > 1 with its models trained)" if model == ENSEMBLE_MODEL else ""
                raise FilterUnavailable(f"{self.records_path} has no test-study records of the {model} model: "
                                        f"notebook 05's section 7 scores it when it is loaded{hint}")
            table = table[(table["detected"] == 1) & (table["hit"] == 0)]
            if label != ANY_LABEL:
                table = table[table["label"] == label]
            return np.isin(self.studies, table["study_id"].astype(int).unique())
        raise ValueError(f"unknown condition {condition!r}; choose one of {list(CONDITIONS)}")

    def matching(self, condition: str, label: str = ANY_LABEL) -> list[int]:
        """The studies that match, in their order."""
        chosen = self.mask(condition, label)
        return [s for s, keep in zip(self.studies, chosen, strict=True) if keep]
