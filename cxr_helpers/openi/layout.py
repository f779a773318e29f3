"""Writing the import: the MIMIC-CXR-JPG + reports layout the workbook reads, and the Open-i extras.

Under ``OUT``::

    mimic-cxr-jpg/files/p10/p10000001/s50000001/CXR1_1_IM-0001-4001.jpg
    mimic-cxr-jpg/mimic-cxr-2.0.0-{chexpert,metadata,split}.csv.gz
    mimic-cxr-reports/files/p10/p10000001/s50000001.txt      (MIMIC-style text, see report_text)
    openi-ids.csv                  uid -> subject_id, study_id, dicom_id, image file, view and its source
    openi-labels-labeler.csv.gz    the report labeler's labels (uid, subject_id, study_id, 14 labels)
    openi-labels-mesh.csv.gz       the labels mapped from the MeSH coding (8 labels, 6 blank)
    openi-skipped.csv              everything of the download left out, file by file, with the reason
    openi-import-summary.json      counts, views, labels, agreement, skips by reason

The chexpert CSV is a copy of one of the two label files (``--labels``). Gzipped files are
written with a zero timestamp, so the same input gives the same bytes.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pandas as pd

from cxr_helpers.cohort import random_split_by_patient
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.mimic import CHEXPERT_CSV, METADATA_CSV, SPLIT_CSV, report_path
from cxr_helpers.openi.records import OpenIError, OpenIReport, squash, study_id, subject_id
from cxr_helpers.reports import extract_sections

JPG_DIR, REPORTS_DIR = "mimic-cxr-jpg", "mimic-cxr-reports"
IDS_CSV, SKIPPED_CSV, SUMMARY_JSON = "openi-ids.csv", "openi-skipped.csv", "openi-import-summary.json"
LABEL_FILES = {"labeler": "openi-labels-labeler.csv.gz", "mesh": "openi-labels-mesh.csv.gz"}
# Report sections in the order written, with their MIMIC-style headers.
HEADERS = (
    ("examination", "EXAMINATION"),
    ("indication", "INDICATION"),
    ("comparison", "COMPARISON"),
    ("findings", "FINDINGS"),
    ("impression", "IMPRESSION"),
)
METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
)
IDS_COLUMNS = (
    "uid",
    "subject_id",
    "study_id",
    "dicom_id",
    "image_file",
    "projection",
    "view_source",
    "view_score",
    "ViewPosition",
    "png_mode",
    "Rows",
    "Columns",
)


def written_sections(report: OpenIReport) -> dict[str, str]:
    """The non-empty sections a report's text holds, by the names ``reports.extract_sections`` gives them."""
    values = {"examination": report.examination, **report.sections}
    return {name: squash(values.get(name)) for name, _ in HEADERS if squash(values.get(name))}


def report_text(report: OpenIReport) -> str:
    """The report as MIMIC-style text: FINAL REPORT, then one ``HEADER:  text`` line per non-empty section.

    Each section stays on its header's line, so no sentence of the report can start a line and
    be mistaken for a header; ``XXXX`` tokens are kept as they are in the download.
    """
    lines = [" " * 33 + "FINAL REPORT"]
    lines += [
        f" {header}:  {text}" for name, header in HEADERS if (text := written_sections(report).get(name))
    ]
    return "\n\n".join(lines) + "\n"


def round_trips(report: OpenIReport, text: str) -> bool:
    """True when ``extract_sections`` reads exactly the report's sections back from its text."""
    return extract_sections(text) == written_sections(report)


def write_report(reports_dir: Path, report: OpenIReport) -> tuple[Path, str]:
    """Write ``REPORTS_DIR/files/pXX/pSUBJECT/sSTUDY.txt``; returns its path and text."""
    path = report_path(reports_dir, subject_id(report.uid), study_id(report.uid))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = report_text(report)
    path.write_text(text, encoding="utf-8", newline="\n")
    return path, text


def check_out_folder(out: Path, inputs: list[Path]) -> Path:
    """``out`` resolved, refusing a folder inside the download or a layout the importer did not write."""
    out = Path(out).expanduser().resolve()
    for given in inputs:
        source = Path(given).expanduser().resolve()
        if out == source or (source.is_dir() and source in out.parents):
            raise OpenIError(
                f"--out {out} is inside the download {source}: the importer never writes into the "
                "download; choose a folder outside it (e.g. data/openi)"
            )
    if out.exists() and not out.is_dir():
        raise OpenIError(f"--out {out} is a file, not a folder")
    if (
        (out / JPG_DIR).is_dir()
        and any((out / JPG_DIR).glob(METADATA_CSV + "*"))
        and not (out / IDS_CSV).exists()
    ):
        raise OpenIError(
            f"{out / JPG_DIR} holds a MIMIC-CXR-JPG layout that this importer did not write (no "
            f"{IDS_CSV}): it may be real MIMIC or the phantom, so nothing is written there"
        )
    return out


def write_csv_gz(table: pd.DataFrame, path: Path) -> None:
    """A gzipped CSV with a zero timestamp (same content, same bytes), written via a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = gzip.compress(
        table.to_csv(index=False, lineterminator="\n").encode("utf-8"), compresslevel=6, mtime=0
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """A plain CSV written via a temporary file."""
    tmp = path.with_name(path.name + ".tmp")
    table.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, path)


def split_table(images: pd.DataFrame, fractions: tuple[float, float, float], seed: int) -> pd.DataFrame:
    """The split CSV: the workbook's seeded split by patient (here: by report) over all written studies."""
    studies = images.drop_duplicates("study_id")[["subject_id", "study_id"]].reset_index(drop=True)
    names = pd.Series(random_split_by_patient(studies, fractions, seed).to_numpy(), index=studies["study_id"])
    return images[["dicom_id", "study_id", "subject_id"]].assign(
        split=images["study_id"].map(names).to_numpy()
    )


def write_tables(
    out: Path,
    images: pd.DataFrame,
    labels: dict[str, pd.DataFrame],
    chosen: str,
    fractions: tuple[float, float, float],
    seed: int,
) -> dict[str, Path]:
    """The three MIMIC CSVs, openi-ids.csv and both label files; returns their paths.

    ``images`` has one row per written image with the IDS_COLUMNS and the examination text;
    ``labels`` maps "labeler" and "mesh" to tables (uid, subject_id, study_id, 14 labels).
    """
    images = images.sort_values(["subject_id", "study_id", "dicom_id"]).reset_index(drop=True)
    jpg = out / JPG_DIR
    paths = {
        "chexpert": jpg / f"{CHEXPERT_CSV}.csv.gz",
        "metadata": jpg / f"{METADATA_CSV}.csv.gz",
        "split": jpg / f"{SPLIT_CSV}.csv.gz",
        "ids": out / IDS_CSV,
    }
    metadata = images.rename(columns={"examination": "PerformedProcedureStepDescription"})
    write_csv_gz(metadata[list(METADATA_COLUMNS)], paths["metadata"])
    write_csv_gz(split_table(images, fractions, seed), paths["split"])
    for source, table in labels.items():
        paths[f"labels_{source}"] = out / LABEL_FILES[source]
        write_csv_gz(table.sort_values("uid").reset_index(drop=True), paths[f"labels_{source}"])
    chexpert = labels[chosen].sort_values(["subject_id", "study_id"])[
        ["subject_id", "study_id", *CHEXPERT_LABELS]
    ]
    write_csv_gz(chexpert, paths["chexpert"])
    write_csv(images[list(IDS_COLUMNS)], paths["ids"])
    return paths


def write_summary(out: Path, summary: dict, skipped: pd.DataFrame) -> dict[str, Path]:
    """openi-import-summary.json and openi-skipped.csv; returns their paths."""
    paths = {"summary": out / SUMMARY_JSON, "skipped": out / SKIPPED_CSV}
    write_csv(skipped, paths["skipped"])
    tmp = paths["summary"].with_name(SUMMARY_JSON + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    os.replace(tmp, paths["summary"])
    return paths
