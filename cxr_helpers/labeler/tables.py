"""Label tables: many reports labelled into MIMIC's chexpert CSV form, and two tables compared.

The table form is that of MIMIC-CXR-JPG's ``mimic-cxr-2.0.0-chexpert.csv``: an id column, then the
14 CheXpert labels in CheXpert order, coded 1.0 / 0.0 / -1.0 and NaN (blank) for not mentioned.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.labeler.labeler import ReportLabels, label_report, label_sections
from cxr_helpers.labeler.sources import ReportRecord, ReportSource
from cxr_helpers.labels import CHEXPERT_LABELS


def label_record(record: ReportRecord, sections: str = "impression") -> ReportLabels:
    """Labels of one record: raw text through ``label_report``, sections through ``label_sections``."""
    if record.sections is not None:
        return label_sections(record.sections, read=sections)
    return label_report(record.text or "", sections=sections)


def label_records(
    records: Iterable[ReportRecord], sections: str = "impression"
) -> Iterator[tuple[ReportRecord, ReportLabels]]:
    """(record, labels) for each record, lazily."""
    for record in records:
        yield record, label_record(record, sections)


def labels_table(rows: Iterable[tuple[int | str, dict[str, float | None]]], id_column: str) -> pd.DataFrame:
    """A chexpert-form table from (id, labels) pairs: id column + the 14 labels as floats (NaN = blank)."""
    ids, values = [], []
    for report_id, labels in rows:
        ids.append(report_id)
        values.append([np.nan if labels[name] is None else labels[name] for name in CHEXPERT_LABELS])
    table = pd.DataFrame(
        np.array(values, dtype=float).reshape(len(ids), len(CHEXPERT_LABELS)), columns=list(CHEXPERT_LABELS)
    )
    table.insert(0, id_column, ids)
    return table


def label_folder(path: str | Path, sections: str = "impression") -> pd.DataFrame:
    """Label every report under ``path`` (MIMIC root, .txt folder or Kaggle CSV); skipped files are left out.

    Use ``ReportSource`` directly (as the CLI does) to see what was skipped and why.
    """
    source = ReportSource(Path(path))
    rows = ((record.report_id, result.labels) for record, result in label_records(source, sections))
    return labels_table(rows, source.id_column)


def label_frame(
    reports: pd.DataFrame, sections: str = "impression", id_column: str | None = None
) -> pd.DataFrame:
    """Label a table of reports: a ``text`` column (raw reports) or ``findings`` / ``impression`` columns.

    The id column is ``id_column``, else ``uid`` or ``study_id`` (whichever the table has).
    """
    id_column = id_column or next((c for c in ("uid", "study_id") if c in reports.columns), None)
    if id_column is None or id_column not in reports.columns:
        raise ValueError(
            f"no id column (uid or study_id) in the reports table; columns are {list(reports.columns)}"
        )
    if "text" in reports.columns:
        records = (
            ReportRecord(i, "", text=t if isinstance(t, str) else "")
            for i, t in zip(reports[id_column], reports["text"], strict=True)
        )
    elif {"findings", "impression"} & set(reports.columns):
        parts = [c for c in ("findings", "impression") if c in reports.columns]
        records = (
            ReportRecord(i, "", sections=dict(zip(parts, values, strict=True)))
            for i, *values in zip(reports[id_column], *(reports[c] for c in parts), strict=True)
        )
    else:
        raise ValueError(
            f"the reports table needs a text column or findings / impression columns: {list(reports.columns)}"
        )
    rows = ((record.report_id, result.labels) for record, result in label_records(records, sections))
    return labels_table(rows, id_column)


def agreement_table(
    a: pd.DataFrame, b: pd.DataFrame, labels: Iterable[str] = CHEXPERT_LABELS, on: str | None = None
) -> pd.DataFrame:
    """Per-label agreement of table ``a`` (e.g. the labeler) with reference ``b``, joined on the id column.

    Columns: ``n`` (reports in both tables), ``agreement`` (share with the same code, blank = blank),
    ``precision`` / ``recall`` / ``f1`` of the positive code 1.0 (uncertain counts as not positive),
    ``tp``, ``predicted`` and ``reference`` (how many 1.0 in each). Precision, recall or F1 is NaN
    where it is undefined (no positives on the side it divides by).
    """
    on = on or next(c for c in a.columns if c in b.columns and c not in CHEXPERT_LABELS)
    joined = a.merge(b, on=on, suffixes=("_a", "_b"), validate="one_to_one")
    rows = []
    for label in labels:
        ours, reference = joined[f"{label}_a"].to_numpy(float), joined[f"{label}_b"].to_numpy(float)
        same = (ours == reference) | (np.isnan(ours) & np.isnan(reference))
        predicted, actual = ours == 1.0, reference == 1.0
        tp, fp, fn = (
            int((predicted & actual).sum()),
            int((predicted & ~actual).sum()),
            int((~predicted & actual).sum()),
        )
        rows.append(
            {
                "label": label,
                "n": len(joined),
                "agreement": float(same.mean()) if len(joined) else np.nan,
                "precision": tp / (tp + fp) if tp + fp else np.nan,
                "recall": tp / (tp + fn) if tp + fn else np.nan,
                "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan,
                "tp": tp,
                "predicted": tp + fp,
                "reference": tp + fn,
            }
        )
    return pd.DataFrame(rows).set_index("label")
