"""Reading the MIMIC-CXR-JPG + MIMIC-CXR reports layout into one table of images with their labels.

The layout (see docs/design.md) is three CSVs (``.csv.gz`` or ``.csv``) beside ``files/``:
chexpert labels per study, metadata per image (view position), and the official split per
image; reports live in a second tree. ``read_layout`` joins them into one row per image and
lists every input row it had to leave out in a ``skipped`` table (file, row, ids, reason);
``cohort.select_cohort`` then chooses the cohort from it. Problems that make the input unusable (a missing CSV or column, a label
value outside 1/0/-1/blank, a CSV that does not parse) raise ``MimicLayoutError`` naming the
file (and row); problems with single rows are counted skips.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.labels import CHEXPERT_LABELS, NOT_MENTIONED

CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert"
METADATA_CSV = "mimic-cxr-2.0.0-metadata"
SPLIT_CSV = "mimic-cxr-2.0.0-split"
ID_COLUMNS = ("subject_id", "study_id")
METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition")
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
SPLITS = ("train", "validate", "test")
FRONTAL_VIEWS = ("PA", "AP")
# Lower rank = preferred image of a study (PA over AP over the rest), ties broken by dicom_id.
VIEW_PREFERENCE = {"PA": 0, "AP": 1, "LATERAL": 2, "LL": 3}
SKIPPED_COLUMNS = ("file", "row", "subject_id", "study_id", "dicom_id", "reason")
LABEL_VALUES = {1.0: 1, 0.0: 0, -1.0: -1}


class MimicLayoutError(ValueError):
    """The layout cannot be read: the message names the file (and the row) to fix."""


@dataclass
class Layout:
    """The joined layout: one row per image with its study's labels, plus what was left out."""

    images: pd.DataFrame  # subject_id, study_id, dicom_id, view_position, official_split, paths, 14 labels
    skipped: pd.DataFrame  # SKIPPED_COLUMNS
    files: dict[str, Path] = field(default_factory=dict)
    view_counts: dict[str, int] = field(default_factory=dict)  # all images in the metadata, by view


def skipped_table(rows: list[dict] | None = None) -> pd.DataFrame:
    """A skipped table with the standard columns (file, row, subject_id, study_id, dicom_id, reason)."""
    table = pd.DataFrame(rows or [], columns=list(SKIPPED_COLUMNS))
    return table.astype({"file": str, "reason": str})


def find_csv(data_dir: Path, stem: str, required: bool = True) -> Path | None:
    """``DATA_DIR/stem.csv.gz`` or ``stem.csv``; a clear error (or None) when neither exists."""
    for suffix in (".csv.gz", ".csv"):
        path = Path(data_dir) / f"{stem}{suffix}"
        if path.exists():
            return path
    if not required:
        return None
    raise MimicLayoutError(
        f"{Path(data_dir) / (stem + '.csv.gz')} (or .csv) not found. Is {data_dir} the MIMIC-CXR-JPG root "
        "(the folder holding files/ and the mimic-cxr-2.0.0-*.csv.gz tables)?"
    )


def read_csv_checked(path: Path | io.BytesIO, required: tuple[str, ...], name: str | None = None,
                     error: type[ValueError] = MimicLayoutError) -> pd.DataFrame:
    """A CSV (a path, gzipped or not, or bytes in memory) as strings, with an ``error`` naming the
    file (``name``, default the path) if it does not parse or lacks a required column."""
    name = name or str(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError, zlib.error,
            gzip.BadGzipFile) as failure:
        raise error(f"{name}: malformed CSV, cannot be parsed ({type(failure).__name__}: {failure})") from failure
    table.columns = [str(c).strip() for c in table.columns]
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise error(f"{name}: missing column(s) {missing}; found {list(table.columns)}")
    return table


def _to_ids(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """Integer ids, with an error naming file, row and value for anything not an integer."""
    values = pd.to_numeric(table[column].str.strip(), errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MimicLayoutError(
            f"{path}: row {row + 2}: {column} {table[column].iloc[row]!r} is not an integer id "
            f"({int(bad.sum())} such rows)"
        )
    return values.astype(np.int64)


def parse_label_column(values: pd.Series, column: str, path: Path) -> np.ndarray:
    """Label strings '1.0'/'0.0'/'-1.0'/'' as int8 codes 1/0/-1/-2; anything else is an error."""
    text = values.str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    blank = text == ""
    bad = ~blank & ~numbers.isin(list(LABEL_VALUES))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MimicLayoutError(
            f"{path}: row {row + 2}, column {column!r}: label value {values.iloc[row]!r} is not 1, 0, -1 or blank "
            f"({int(bad.sum())} such rows in this column)"
        )
    codes = np.full(len(values), NOT_MENTIONED, dtype=np.int8)
    codes[~blank.to_numpy()] = numbers[~blank].to_numpy().astype(np.int8)
    return codes


def read_chexpert(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labels table (subject_id, study_id, 14 int8 codes) and its duplicate-study skips."""
    raw = read_csv_checked(path, ID_COLUMNS + CHEXPERT_LABELS)
    table = pd.DataFrame({column: _to_ids(raw, column, path) for column in ID_COLUMNS})
    for label in CHEXPERT_LABELS:
        table[label] = parse_label_column(raw[label], label, path)
    table["chexpert_row"] = np.arange(len(table)) + 2
    duplicated = table.duplicated("study_id", keep="first")
    skipped = _skips(table[duplicated].rename(columns={"chexpert_row": "row"}), path,
                     "duplicate study_id in chexpert csv (first row kept)")
    return table[~duplicated], skipped


def read_metadata(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per image (dicom_id, subject_id, study_id, view_position) and duplicate skips."""
    raw = read_csv_checked(path, METADATA_COLUMNS)
    table = pd.DataFrame(
        {
            "dicom_id": raw["dicom_id"].str.strip(),
            "subject_id": _to_ids(raw, "subject_id", path),
            "study_id": _to_ids(raw, "study_id", path),
            "view_position": raw["ViewPosition"].str.strip().str.upper(),
            "row": np.arange(len(raw)) + 2,
        }
    )
    empty = table["dicom_id"] == ""
    duplicated = table.duplicated("dicom_id", keep="first") & ~empty
    skipped = pd.concat(
        [_skips(table[empty], path, "empty dicom_id in metadata csv"),
         _skips(table[duplicated], path, "duplicate dicom_id in metadata csv (first row kept)")]
    )
    return table[~empty & ~duplicated], skipped


def read_split(path: Path) -> pd.DataFrame:
    """The official split per image (dicom_id, study_id, subject_id, split) with checked values."""
    raw = read_csv_checked(path, SPLIT_COLUMNS)
    split = raw["split"].str.strip().str.lower()
    bad = ~split.isin(SPLITS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MimicLayoutError(f"{path}: row {row + 2}: split {raw['split'].iloc[row]!r} is not one of {SPLITS}")
    return pd.DataFrame(
        {
            "dicom_id": raw["dicom_id"].str.strip(),
            "study_id": _to_ids(raw, "study_id", path),
            "subject_id": _to_ids(raw, "subject_id", path),
            "official_split": split,
            "row": np.arange(len(raw)) + 2,
        }
    )


def _skips(rows: pd.DataFrame, path: Path | str, reason: str) -> pd.DataFrame:
    """Skipped-table rows for the given input rows, all with one file and reason."""
    out = pd.DataFrame(index=range(len(rows)))
    out["file"] = str(path)
    for column in ("row", "subject_id", "study_id", "dicom_id"):
        out[column] = rows[column].to_numpy() if column in rows.columns else None
    out["reason"] = reason
    return out[list(SKIPPED_COLUMNS)]


def image_path(data_dir: Path, subject_id: int, study_id: int, dicom_id: str) -> Path:
    """``DATA_DIR/files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg`` (XX = first two digits of subject_id)."""
    subject = str(subject_id)
    return Path(data_dir) / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study_id}" / f"{dicom_id}.jpg"


def report_path(reports_dir: Path, subject_id: int, study_id: int) -> Path:
    """``REPORTS_DIR/files/pXX/pSUBJECT/sSTUDY.txt``."""
    subject = str(subject_id)
    return Path(reports_dir) / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study_id}.txt"


def read_layout(data_dir: Path, reports_dir: Path, need_split: bool = False) -> Layout:
    """Join metadata (one row per image), chexpert labels and the official split into one table.

    Rows that cannot be joined are skipped with a reason: a study in the metadata but not in
    the chexpert csv (or the reverse), a subject_id that differs between them, a dicom_id in
    the split csv but not in the metadata, and, when ``need_split``, an image missing from the
    split csv. The split csv is optional unless ``need_split``.
    """
    data_dir, reports_dir = Path(data_dir).resolve(), Path(reports_dir).resolve()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"MIMIC-CXR-JPG folder {data_dir} not found (set CXR_DATA_DIR or --data)")
    if not reports_dir.is_dir():
        raise FileNotFoundError(f"MIMIC-CXR reports folder {reports_dir} not found (set CXR_REPORTS_DIR or --reports)")
    files = {"chexpert": find_csv(data_dir, CHEXPERT_CSV), "metadata": find_csv(data_dir, METADATA_CSV)}
    split_file = find_csv(data_dir, SPLIT_CSV, required=need_split)
    labels, skipped_labels = read_chexpert(files["chexpert"])
    metadata, skipped_meta = read_metadata(files["metadata"])
    skips = [skipped_labels, skipped_meta]

    joined = metadata.merge(labels, on="study_id", how="left", suffixes=("", "_chexpert"), indicator=True)
    no_labels = joined["_merge"] == "left_only"
    skips.append(_skips(joined[no_labels], files["metadata"], "study in metadata but not in chexpert csv"))
    joined = joined[~no_labels]
    other_subject = joined["subject_id"] != joined["subject_id_chexpert"]
    skips.append(_skips(joined[other_subject], files["metadata"], "subject_id differs between metadata and chexpert csv"))
    joined = joined[~other_subject].drop(columns=["subject_id_chexpert", "_merge", "chexpert_row"])
    imageless = labels[~labels["study_id"].isin(metadata["study_id"])].rename(columns={"chexpert_row": "row"})
    skips.append(_skips(imageless, files["chexpert"], "study in chexpert csv but not in metadata"))

    joined["official_split"] = ""
    if split_file is not None:
        files["split"] = split_file
        joined, split_skips = _join_split(joined, read_split(split_file), metadata["dicom_id"], files, need_split)
        skips.extend(split_skips)
    subject = joined["subject_id"].astype(str)
    study_folder = "/files/p" + subject.str[:2] + "/p" + subject + "/s" + joined["study_id"].astype(str)
    joined["image_path"] = str(data_dir) + study_folder + "/" + joined["dicom_id"] + ".jpg"  # as image_path()
    joined["report_path"] = str(reports_dir) + study_folder + ".txt"  # as report_path()
    columns = ["subject_id", "study_id", "dicom_id", "view_position", "official_split", "image_path", "report_path"]
    images = joined[columns + list(CHEXPERT_LABELS)].reset_index(drop=True)
    view_counts = metadata["view_position"].replace("", "(blank)").value_counts().to_dict()
    skipped = pd.concat([s for s in skips if len(s)] or [skipped_table()], ignore_index=True)
    return Layout(images, skipped, files, {str(k): int(v) for k, v in view_counts.items()})


def _join_split(
    joined: pd.DataFrame, split: pd.DataFrame, known_dicoms: pd.Series, files: dict[str, Path], need_split: bool
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Add ``official_split`` per image; skips for unknown dicom ids (and unsplit images if needed)."""
    skips = [_skips(split[~split["dicom_id"].isin(known_dicoms)], files["split"],
                    "unknown dicom_id: in split csv but not in metadata")]
    lookup = split.drop_duplicates("dicom_id").set_index("dicom_id")["official_split"]
    joined["official_split"] = joined["dicom_id"].map(lookup).fillna("")
    if need_split:
        unsplit = joined["official_split"] == ""
        skips.append(_skips(joined[unsplit], files["metadata"], "dicom_id in metadata but not in split csv"))
        joined = joined[~unsplit]
    return joined, skips


def read_report(path: Path) -> str:
    """A report's text; FileNotFoundError or ValueError (naming the file) if missing or empty."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: report file missing")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise ValueError(f"{path}: report file empty")
    return text


def _first_entries(folder: Path, n: int) -> list[Path]:
    """The first ``n`` entries of a folder in name order, without listing huge folders twice."""
    with os.scandir(folder) as entries:
        names = sorted(entry.name for entry in entries)
    return [Path(folder) / name for name in names[:n]]


def layout_tree(data_dir: Path, reports_dir: Path, n: int = 2) -> str:
    """A short text tree of the layout: the CSVs and the first few subjects, studies and files."""
    lines = []
    for root, kind in ((Path(data_dir), "MIMIC-CXR-JPG"), (Path(reports_dir), "reports")):
        lines.append(f"{root}/   ({kind})")
        lines += [f"  {p.name}" for p in _first_entries(root, 10) if p.is_file()]
        files = root / "files"
        if not files.is_dir():
            lines.append("  files/   (missing!)")
            continue
        for group in _first_entries(files, 1):
            for subject in _first_entries(group, n):
                lines.append(f"  files/{group.name}/{subject.name}/")
                for study in _first_entries(subject, n):
                    lines.append(f"    {study.name}{'/' if study.is_dir() else ''}")
                    if study.is_dir():
                        lines += [f"      {image.name}" for image in _first_entries(study, n)]
    return "\n".join(lines)
