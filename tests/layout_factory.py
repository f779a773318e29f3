"""A tiny hand-made MIMIC-CXR-JPG + reports layout for tests (a few JPEGs, three CSVs, reports).

Each image is a flat gray JPEG whose value is known (``expected_value``), so tests can check
that cache row ``cache_index`` holds the right image. Tests edit the tables before ``write()``
to create bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.mimic import image_path, report_path

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old with cough, study {study}.

 COMPARISON:  None.

 FINDINGS:
 The lungs are clear. No pleural effusion or pneumothorax.

 IMPRESSION:
 No acute cardiopulmonary process, study {study}.
"""


def dicom_id_for(index: int) -> str:
    """A 44-character hex-and-dash id like MIMIC's."""
    rng = np.random.default_rng(index)
    return "-".join(f"{int(x):08x}" for x in rng.integers(0, 2**32, size=5))


@dataclass
class FakeLayout:
    """The tables of a small layout; ``write()`` puts them on disk under ``root``."""

    root: Path
    chexpert: pd.DataFrame
    metadata: pd.DataFrame
    split: pd.DataFrame
    reports: dict[int, str]  # study_id -> text
    subjects: dict[int, int]  # study_id -> subject_id (where the report is written)
    image_size: tuple[int, int] = (48, 40)  # (width, height)
    skip_images: set[str] = field(default_factory=set)  # dicom ids written without a JPEG

    @property
    def data_dir(self) -> Path:
        return self.root / "mimic-cxr-jpg"

    @property
    def reports_dir(self) -> Path:
        return self.root / "mimic-cxr-reports"

    def expected_value(self, dicom_id: str) -> int:
        """The gray level of a dicom's JPEG."""
        position = int(np.flatnonzero(self.metadata["dicom_id"].to_numpy() == dicom_id)[0])
        return 20 + (position * 23) % 210

    def image_file(self, dicom_id: str) -> Path:
        row = self.metadata[self.metadata["dicom_id"] == dicom_id].iloc[0]
        return image_path(self.data_dir, int(row.subject_id), int(row.study_id), dicom_id)

    def report_file(self, study_id: int) -> Path:
        return report_path(self.reports_dir, self.subjects[study_id], study_id)

    def write(self, gz: bool = True) -> FakeLayout:
        """Write CSVs (gzipped or not), JPEGs and reports; returns self."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        suffix = ".csv.gz" if gz else ".csv"
        for stem, table in (("chexpert", self.chexpert), ("metadata", self.metadata), ("split", self.split)):
            table.to_csv(self.data_dir / f"mimic-cxr-2.0.0-{stem}{suffix}", index=False)
        for row in self.metadata.itertuples():
            if row.dicom_id in self.skip_images or not str(row.study_id).isdigit():
                continue
            path = image_path(self.data_dir, int(row.subject_id), int(row.study_id), row.dicom_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.full(self.image_size[::-1], self.expected_value(row.dicom_id), dtype=np.uint8)
            Image.fromarray(pixels).save(path, quality=95)
        for study, text in self.reports.items():
            path = report_path(self.reports_dir, self.subjects[study], study)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return self


def make_layout(root: Path, n_subjects: int = 6, studies_per_subject: int = 2, seed: int = 0) -> FakeLayout:
    """A layout where every study has a PA or AP image, and every other study a lateral too."""
    rng = np.random.default_rng(seed)
    chexpert, metadata, split = [], [], []
    reports, subjects = {}, {}
    image = 0
    for s in range(n_subjects):
        subject = 10000032 + 1013 * s
        subject_split = ("train", "train", "train", "validate", "test")[s % 5]
        for k in range(studies_per_subject):
            study = 50000000 + 100 * s + k
            codes = rng.choice(["1.0", "0.0", "-1.0", ""], size=len(CHEXPERT_LABELS), p=[0.3, 0.2, 0.1, 0.4])
            chexpert.append({"subject_id": subject, "study_id": study, **dict(zip(CHEXPERT_LABELS, codes, strict=True))})
            views = ["AP" if (s + k) % 3 == 0 else "PA"] + (["LATERAL"] if (s + k) % 2 == 0 else [])
            for view in views:
                dicom = dicom_id_for(image)
                image += 1
                metadata.append({"dicom_id": dicom, "subject_id": subject, "study_id": study,
                                 "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                                 "Rows": 40, "Columns": 48, "StudyDate": 21800506, "StudyTime": 213014.531})
                split.append({"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": subject_split})
            reports[study], subjects[study] = REPORT.format(study=study), subject
    return FakeLayout(Path(root), pd.DataFrame(chexpert), pd.DataFrame(metadata), pd.DataFrame(split), reports, subjects)
