"""Where reports come from: a MIMIC-CXR reports root, a folder of .txt reports, or Open-i's Kaggle CSV.

``ReportSource(path)`` finds out which of the three ``path`` is and yields one ``ReportRecord``
per report, read lazily (all of MIMIC's 227,835 files never sit in memory together):

- a MIMIC reports root (``files/pXX/pSUBJECT/sSTUDY.txt``, or a folder holding ``pXX`` folders):
  id column ``study_id`` (the number in ``sSTUDY``);
- a folder of ``.txt`` reports (searched recursively): id column ``study_id``, the file name
  without ``.txt`` (the number when it is ``s<digits>``);
- a Kaggle-form Open-i CSV (columns ``uid``, ``findings``, ``impression``), or a folder holding
  one: id column ``uid``; the report is its findings and impression fields (already split).

Bad input is named: a CSV without the needed columns, an empty or repeated uid raise ``ValueError``
with the file and row; an empty or unreadable text file is skipped and recorded in ``skipped``
(with its path and the reason), never lost silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxr_helpers.mimic import read_csv_checked

KAGGLE_COLUMNS = ("uid", "findings", "impression")
_STUDY_FILE = re.compile(r"s(\d+)")
_SUBJECT_FOLDER = re.compile(r"p\d+")
MIMIC, TEXT_FOLDER, KAGGLE = "MIMIC reports root", "folder of .txt reports", "Kaggle Open-i CSV"


@dataclass(frozen=True)
class ReportRecord:
    """One report: its id, where it came from, and its raw ``text`` or its ``sections`` (already split)."""

    report_id: int | str
    origin: str
    text: str | None = None
    sections: dict[str, str] | None = None


@dataclass(frozen=True)
class Skipped:
    """A report that could not be read: where, and why."""

    origin: str
    reason: str


@dataclass
class ReportSource:
    """The reports under ``path`` (see the module docstring); iterate to read them."""

    path: Path
    kind: str = field(init=False)
    id_column: str = field(init=False)
    skipped: list[Skipped] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such file or folder: {self.path}")
        self.kind = detect_kind(self.path)
        self.id_column = "uid" if self.kind == KAGGLE else "study_id"

    def __iter__(self) -> Iterator[ReportRecord]:
        self.skipped = []
        if self.kind == KAGGLE:
            for csv_path in kaggle_csvs(self.path):
                yield from read_kaggle_csv(csv_path)
        else:
            yield from self._text_files()

    def _text_files(self) -> Iterator[ReportRecord]:
        """Records of the .txt files, skipping (and recording) empty, unreadable and repeated ones."""
        pattern = "s*.txt" if self.kind == MIMIC else "*.txt"
        seen: dict[int | str, Path] = {}
        for path in sorted(self.path.rglob(pattern)):
            report_id = study_id(path)
            if report_id in seen:
                self.skipped.append(
                    Skipped(str(path), f"repeated id {report_id} (first in {seen[report_id]})")
                )
                continue
            seen[report_id] = path
            text, reason = read_text_file(path)
            if text is None:
                self.skipped.append(Skipped(str(path), reason))
                continue
            yield ReportRecord(report_id, str(path), text=text)


def detect_kind(path: Path) -> str:
    """Which kind of report source ``path`` is; ValueError naming the path when none fits."""
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return KAGGLE
        raise ValueError(f"{path}: expected a folder of reports or a Kaggle Open-i .csv file")
    root = path / "files" if (path / "files").is_dir() else path
    if any(child.is_dir() and _SUBJECT_FOLDER.fullmatch(child.name) for child in root.iterdir()):
        return MIMIC
    if any(path.glob("*.csv")):
        return KAGGLE
    if next(path.rglob("*.txt"), None) is not None:
        return TEXT_FOLDER
    raise ValueError(
        f"{path}: no reports found (expected MIMIC's files/pXX/..., .txt files or a Kaggle .csv)"
    )


def study_id(path: Path) -> int | str:
    """A report file's id: the number of ``s<digits>.txt``, else the file name without ``.txt``."""
    match = _STUDY_FILE.fullmatch(path.stem)
    return int(match.group(1)) if match else path.stem


def read_text_file(path: Path) -> tuple[str | None, str]:
    """(text, "") for a readable non-empty UTF-8 file, else (None, the reason)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        return None, f"unreadable ({error.strerror or error})"
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    if not text.strip():
        return None, "empty file"
    return text, ""


def kaggle_csvs(path: Path) -> list[Path]:
    """The Kaggle-form report CSVs at ``path`` (a CSV or a folder of them); ValueError if none fits."""
    if path.is_file():
        return [path]
    candidates = sorted(path.glob("*.csv"))
    fitting = [csv_path for csv_path in candidates if not _missing_columns(csv_path)]
    if not fitting:
        details = "; ".join(f"{p.name} lacks {', '.join(_missing_columns(p))}" for p in candidates)
        raise ValueError(
            f"{path}: no Kaggle Open-i reports CSV with columns {', '.join(KAGGLE_COLUMNS)} ({details})"
        )
    return fitting


def _missing_columns(csv_path: Path) -> list[str]:
    """The Kaggle columns a CSV's header lacks."""
    try:
        header = pd.read_csv(csv_path, nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{csv_path}: not a readable CSV file ({error})") from None
    return [column for column in KAGGLE_COLUMNS if column not in header.columns]


def read_kaggle_csv(csv_path: Path) -> Iterator[ReportRecord]:
    """Records of one Kaggle-form CSV (findings and impression as sections); ValueError naming bad rows."""
    table = read_csv_checked(csv_path, KAGGLE_COLUMNS, error=ValueError)
    first_row: dict[str, int] = {}
    for index, (uid, findings, impression) in enumerate(
        zip(*(table[c] for c in KAGGLE_COLUMNS), strict=True)
    ):
        row = index + 2  # the line number in the file: 1 is the header
        uid = uid.strip()
        if not uid:
            raise ValueError(f"{csv_path}, line {row}: empty uid")
        if uid in first_row:
            raise ValueError(f"{csv_path}, line {row}: uid {uid} repeats line {first_row[uid]}")
        first_row[uid] = row
        report_id: int | str = int(uid) if uid.isdigit() else uid
        yield ReportRecord(
            report_id, f"{csv_path}:{row}", sections={"findings": findings, "impression": impression}
        )
