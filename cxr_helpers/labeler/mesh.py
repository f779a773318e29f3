"""Open-i's expert MeSH coding as CheXpert labels: the reference the labeler is measured against.

Open-i's coders read each report's findings and impression and wrote MeSH terms separated by
``;``, each optionally followed by ``/qualifier`` (``Cardiomegaly/borderline``). A term's name is
the part before the first ``/``. The mapping (exact names, as in the NegBio Open-i evaluation):

- No Finding = 1 when the whole field is exactly ``normal``, else 0;
- Atelectasis = ``Pulmonary Atelectasis``; Edema = ``Pulmonary Edema``; Pleural Effusion =
  ``Pleural Effusion`` (so not ``Pericardial Effusion``); Cardiomegaly, Consolidation, Pneumonia,
  Pneumothorax = a term of exactly that name (so not ``Hydropneumothorax``): 1 when present, else 0;
- the other six CheXpert labels have no reliable MeSH counterpart and stay None (not scored).

The coders recorded hedged findings too (``Cardiomegaly/borderline``), so the reference differs
from CheXpert's rules in places; that difference is part of what the comparison shows.
``mesh_convention`` names the coding conventions that make MeSH "normal" stricter than CheXpert's
No Finding (devices, degenerative change, technical quality, no indexing), so a benchmark can
count the errors they explain apart from the labeler's own.
"""

from __future__ import annotations

import pandas as pd

from cxr_helpers.labels import CHEXPERT_LABELS

# CheXpert label -> the MeSH term name that codes it ("normal" is the whole field, not a term).
MESH_LABELS: dict[str, str] = {
    "Atelectasis": "Pulmonary Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Pulmonary Edema",
    "No Finding": "normal",
    "Pleural Effusion": "Pleural Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}
SCORED_LABELS: tuple[str, ...] = tuple(label for label in CHEXPERT_LABELS if label in MESH_LABELS)


def mesh_terms(mesh_field: str) -> set[str]:
    """The term names of a MeSH field (the part of each ``;``-separated term before any ``/``)."""
    if not isinstance(mesh_field, str):
        return set()
    return {term.split("/")[0].strip() for term in mesh_field.split(";") if term.strip()}


def mesh_labels(mesh_field: str) -> dict[str, float | None]:
    """The 14 CheXpert labels of one MeSH field: the 8 scored ones 1.0 / 0.0, the other 6 None."""
    terms = mesh_terms(mesh_field)
    labels: dict[str, float | None] = dict.fromkeys(CHEXPERT_LABELS)
    for label, term in MESH_LABELS.items():
        labels[label] = float(term in terms)
    normal = isinstance(mesh_field, str) and mesh_field.strip() == "normal"
    labels["No Finding"] = float(normal)
    return labels


def mesh_frame(reports: pd.DataFrame, id_column: str = "uid", mesh_column: str = "MeSH") -> pd.DataFrame:
    """The reference label table of a Kaggle-form Open-i table: id column + the 14 labels (6 all blank)."""
    missing = [column for column in (id_column, mesh_column) if column not in reports.columns]
    if missing:
        raise ValueError(f"the reports table has no column(s) {missing}; columns are {list(reports.columns)}")
    rows = [
        {id_column: uid, **mesh_labels(field)}
        for uid, field in zip(reports[id_column], reports[mesh_column], strict=True)
    ]
    frame = pd.DataFrame(rows, columns=[id_column, *CHEXPERT_LABELS])
    return frame.astype(dict.fromkeys(CHEXPERT_LABELS, float))


# MeSH terms that keep a report from "normal" but not from CheXpert's No Finding (see docs/labeler.md):
# devices in place (CheXpert's rule ignores Support Devices), degenerative change (the phantom's
# normal reports mention it, so the labeler ignores it too) and the image's technical quality.
# "No Indexing" is no coding at all: the report has no reference.
DEVICE_TERMS = frozenset(
    {
        "Catheters, Indwelling",
        "Implanted Medical Device",
        "Medical Device",
        "Tube, Inserted",
        "Stents",
        "Pacemaker, Artificial",
        "Defibrillators, Implantable",
        "Prostheses and Implants",
        "Heart Valve Prosthesis",
    }
)
TECHNICAL_TERMS = frozenset({"Technical Quality of Image Unsatisfactory"})
NO_INDEXING = "No Indexing"
DEGENERATIVE, DEVICES, TECHNICAL = "degenerative change", "support devices", "technical quality"


def mesh_convention(mesh_field: str) -> str | None:
    """Why a report coded other than "normal" would still be CheXpert's No Finding, or None.

    ``"no indexing"`` for a report without terms; else, when every term is a device, a degenerative
    change (a term qualified ``degenerative``) or technical quality, the kinds found joined by
    " + " in a fixed order ("degenerative change + support devices"); None for "normal" or for a
    field with any other term.
    """
    if not isinstance(mesh_field, str) or mesh_field.strip() == "normal":
        return None
    terms = [term.strip() for term in mesh_field.split(";") if term.strip()]
    if [term.split("/")[0].strip() for term in terms] == [NO_INDEXING]:
        return "no indexing"
    kinds = set()
    for term in terms:
        name, *qualifiers = (part.strip() for part in term.split("/"))
        if name in DEVICE_TERMS:
            kinds.add(DEVICES)
        elif name in TECHNICAL_TERMS:
            kinds.add(TECHNICAL)
        elif "degenerative" in qualifiers and name not in MESH_LABELS.values():
            kinds.add(DEGENERATIVE)
        else:
            return None
    return " + ".join(kind for kind in (DEGENERATIVE, DEVICES, TECHNICAL) if kind in kinds) or None
