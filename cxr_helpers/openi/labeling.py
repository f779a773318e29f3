"""Labels for the imported reports from two sources, and how far the two agree.

- **labeler** (default): the workbook's CheXpert-style report labeler reads the report text as
  the layout holds it, by default findings + impression (``read="findings_impression"``), which
  is what Open-i's coders read. ``read="impression"`` is CheXpert's rule (the impression; the
  findings only where there is none), the rule MIMIC-CXR-JPG's labels and the phantom's follow;
  but Open-i's impressions are terse ("No acute cardiopulmonary disease") where the findings
  name the heart size or an atelectasis, so on the 622 reports of the development set the
  impression alone calls 391 reports No Finding against 225 coded "normal" (macro F1 against
  the MeSH coding 0.72, against 0.84 reading both; docs/openi.md). 14 labels, 1 / 0 / -1 / blank.
- **mesh**: Open-i's manual MeSH coding mapped to 8 CheXpert labels (1 / 0); the other 6 have
  no MeSH counterpart and stay blank, which the training code reads as "not mentioned" and
  masks out of the loss and the metrics.

The agreement table compares the two on the 8 labels both give: how many reports each calls
positive, how many both do, Cohen's kappa on positive-or-not and the labeler's F1 with MeSH
as the reference (uncertain counts as not positive, as in the labeler's Open-i evaluation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_helpers.labeler import label_sections
from cxr_helpers.labeler.mesh import mesh_labels
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.openi.records import OpenIReport, study_id, subject_id

LABEL_SOURCES = ("labeler", "mesh")
READ_SECTIONS = ("impression", "findings_impression")
ID_COLUMNS = ("uid", "subject_id", "study_id")


def _row(report: OpenIReport, labels: dict[str, float | None]) -> dict:
    """One label-table row: the report's ids and the 14 labels (NaN for blank)."""
    values = {name: (np.nan if labels.get(name) is None else float(labels[name])) for name in CHEXPERT_LABELS}
    return {
        "uid": report.uid,
        "subject_id": subject_id(report.uid),
        "study_id": study_id(report.uid),
        **values,
    }


def label_tables(
    reports: list[OpenIReport], sections: dict[int, dict[str, str]], read: str
) -> dict[str, pd.DataFrame]:
    """Per source ("labeler", "mesh"): one row per report (uid, subject_id, study_id, 14 labels)."""
    if read not in READ_SECTIONS:
        raise ValueError(f"label sections must be one of {READ_SECTIONS}, got {read!r}")
    columns = [*ID_COLUMNS, *CHEXPERT_LABELS]
    labeler = [_row(r, label_sections(sections[r.uid], read=read).labels) for r in reports]
    mesh = [_row(r, mesh_labels(r.mesh)) for r in reports]
    return {"labeler": pd.DataFrame(labeler, columns=columns), "mesh": pd.DataFrame(mesh, columns=columns)}


def label_counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per label: reports coded positive, negative, uncertain and blank."""
    return {
        name: {
            "positive": int((table[name] == 1).sum()),
            "negative": int((table[name] == 0).sum()),
            "uncertain": int((table[name] == -1).sum()),
            "blank": int(table[name].isna().sum()),
        }
        for name in CHEXPERT_LABELS
    }


def _kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two boolean arrays; None when chance agreement is total."""
    observed = float(np.mean(a == b))
    expected = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return None if expected >= 1.0 else round((observed - expected) / (1 - expected), 3)


def agreement(labeler: pd.DataFrame, mesh: pd.DataFrame) -> pd.DataFrame:
    """Per label MeSH codes: positives by each source and both, agreement, kappa, the labeler's F1 vs MeSH."""
    joined = labeler.merge(mesh, on="uid", suffixes=("_labeler", "_mesh"))
    rows = []
    for name in CHEXPERT_LABELS:
        reference = joined[f"{name}_mesh"]
        if reference.isna().all():
            continue  # no MeSH counterpart
        lab, ref = (joined[f"{name}_labeler"] == 1).to_numpy(), (reference == 1).to_numpy()
        both = int((lab & ref).sum())
        f1 = 2 * both / (lab.sum() + ref.sum()) if lab.sum() + ref.sum() else None
        rows.append(
            {
                "label": name,
                "mesh positive": int(ref.sum()),
                "labeler positive": int(lab.sum()),
                "both": both,
                "agree": round(float(np.mean(lab == ref)), 3),
                "kappa": _kappa(lab, ref),
                "labeler F1 vs MeSH": None if f1 is None else round(float(f1), 3),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "label",
            "mesh positive",
            "labeler positive",
            "both",
            "agree",
            "kappa",
            "labeler F1 vs MeSH",
        ],
    )
