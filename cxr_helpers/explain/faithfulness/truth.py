"""The phantom's ground truth, as the faithfulness checks read it: masks, visibility, report spans, true findings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.images import resize_mask

TRUTH_DIR = "ground_truth"
NO_GROUND_TRUTH = (
    "The faithfulness checks need the phantom's ground truth ({path}: masks/, images.csv, report_spans.jsonl). "
    "Only the phantom has it (MIMIC-CXR has no finding masks or word spans); build it with notebook 01 "
    "or `python -m cxr_helpers phantom --out DIR`."
)


@dataclass
class GroundTruth:
    """The phantom's ground truth: finding masks per image, visibility, report spans, true findings."""

    root: Path
    truth: pd.DataFrame  # index study_id, 14 columns 1/0: the finding really present
    visibility: pd.DataFrame  # dicom_id, study_id, label, visibility (clear / subtle / invisible)
    spans: dict[int, list[dict]]  # study_id -> [{"label", "start", "end", "code", "section"}]
    _masks: dict[str, dict] = field(default_factory=dict, repr=False)

    def present(self, study_id: int, label: str) -> bool:
        """Whether the finding is really in the study (truth.csv)."""
        return int(study_id) in self.truth.index and bool(self.truth.loc[int(study_id), label] == 1)

    def image_visibility(self, dicom_id: str, label: str) -> str | None:
        """clear / subtle / invisible for a drawn finding, None if it was not drawn on this image."""
        rows = self.visibility[(self.visibility["dicom_id"] == dicom_id) & (self.visibility["label"] == label)]
        return None if rows.empty else str(rows["visibility"].iloc[0])

    def raw_mask(self, dicom_id: str, label: str) -> np.ndarray | None:
        """The finding's mask at JPEG resolution (bool), None if the image has no mask for it."""
        if dicom_id not in self._masks:
            path = self.root / "masks" / f"{dicom_id}.npz"
            if not path.exists():
                self._masks[dicom_id] = {}
            else:
                with np.load(path) as stored:
                    self._masks[dicom_id] = {key: stored[key] for key in stored.files}
        return self._masks[dicom_id].get(label)

    def mask(self, dicom_id: str, label: str, size: int) -> np.ndarray | None:
        """The finding's mask in the image cache's geometry (bool (size, size)); None if absent or empty."""
        raw = self.raw_mask(dicom_id, label)
        if raw is None or not raw.any():
            return None
        mask = resize_mask(raw, size)
        if not mask.any():  # a thin finding can cover < 50% of every pixel: keep its best-covered pixels
            coverage = resize_mask(raw, size, threshold=None)
            mask = coverage >= 0.5 * coverage.max()
        return mask

    def study_spans(self, study_id: int) -> list[dict]:
        """The spans of one study's report."""
        return self.spans.get(int(study_id), [])


def phantom_root(settings) -> Path:
    """The phantom's folder (the parent of its mimic-cxr-jpg/)."""
    return Path(settings.data_dir).parent


def load_ground_truth(root: Path) -> GroundTruth:
    """Read ``<root>/ground_truth``; a clear error where there is none (MIMIC)."""
    folder = Path(root) / TRUTH_DIR
    needed = [folder / "truth.csv", folder / "images.csv", folder / "report_spans.jsonl", folder / "masks"]
    if not all(path.exists() for path in needed):
        raise FileNotFoundError(NO_GROUND_TRUTH.format(path=folder))
    truth = pd.read_csv(folder / "truth.csv").set_index("study_id")
    visibility = pd.read_csv(folder / "images.csv", dtype={"dicom_id": str})
    spans = {}
    with open(folder / "report_spans.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                spans[int(record["study_id"])] = list(record["spans"])
    return GroundTruth(folder, truth, visibility, spans)
