"""Kaggle's form of the collection: ``indiana_reports.csv`` + ``indiana_projections.csv``.

``indiana_reports.csv`` has one row per report (uid, MeSH, Problems, image, indication,
comparison, findings, impression; empty fields blank, ``XXXX`` where words were removed) and
``indiana_projections.csv`` one row per image (uid, filename, projection = Frontal or Lateral),
the images being ``images_normalized/<filename>``. ``--reports`` may be the folder holding the
two CSVs, the reports CSV itself, or the Kaggle zip. The projections CSV also gives the views
of NLM's form (``--projections``): its file ``1000_IM-0003-1001.dcm.png`` is NLM's image
``CXR1000_IM-0003-1001`` (matched by ``records.image_key``).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cxr_helpers.mimic import read_csv_checked
from cxr_helpers.openi.archive import base_name
from cxr_helpers.openi.records import (
    OpenIError,
    OpenIReport,
    Skip,
    dicom_id_from_filename,
    image_key,
    parse_uid,
    squash,
)

REPORTS_CSV = "indiana_reports.csv"
PROJECTIONS_CSV = "indiana_projections.csv"
REQUIRED_REPORT_COLUMNS = ("uid", "findings", "impression")
PROJECTION_COLUMNS = ("uid", "filename", "projection")
VIEWS = {"frontal": "frontal", "lateral": "lateral"}


@dataclass
class Projections:
    """The projections CSV: per image key (``records.image_key``) its view, uid and file; its bad rows."""

    path: str
    views: dict[str, str] = field(default_factory=dict)  # image key -> "frontal" / "lateral" / "unknown"
    uids: dict[str, int] = field(default_factory=dict)  # image key -> report uid
    files: dict[str, str] = field(default_factory=dict)  # image key -> file name as listed
    skips: list[Skip] = field(default_factory=list)

    def view_of(self, image_id: str) -> str | None:
        """The view the CSV gives an image (NLM id or file name), None if it is not listed."""
        return self.views.get(image_key(image_id))

    def images_of(self) -> dict[int, list[str]]:
        """Report uid -> its images' dicom ids (``CXR`` + file name), in CSV order."""
        out: dict[int, list[str]] = {}
        for key, uid in self.uids.items():
            out.setdefault(uid, []).append(dicom_id_from_filename(self.files[key]))
        return out


def _zip_member(archive: Path, name: str) -> tuple[str, bytes] | None:
    """(member name, bytes) of the member whose base name is ``name`` in a zip, or None."""
    with zipfile.ZipFile(archive) as handle:
        for info in sorted(handle.infolist(), key=lambda i: i.filename):
            if base_name(info.filename).lower() == name:
                return f"{archive}:{info.filename}", handle.read(info)
    return None


def locate_csv(reports: Path, name: str) -> tuple[str, bytes] | None:
    """(label, bytes) of ``name`` in the reports folder, beside the reports CSV, or in the Kaggle zip."""
    reports = Path(reports)
    if reports.is_file() and reports.name.lower().endswith(".zip"):
        return _zip_member(reports, name)
    folder = reports.parent if reports.is_file() else reports
    path = folder / name
    return (str(path), path.read_bytes()) if path.is_file() else None


def is_kaggle_reports(reports: Path) -> bool:
    """True when ``--reports`` is Kaggle's form (a folder or zip with indiana_reports.csv, or that CSV)."""
    reports = Path(reports)
    if reports.is_file() and reports.name.lower().endswith(".csv"):
        return True
    if reports.is_dir():
        return (reports / REPORTS_CSV).is_file()
    if reports.is_file() and reports.name.lower().endswith(".zip"):
        return locate_csv(reports, REPORTS_CSV) is not None
    return False


def read_projections(label: str, data: bytes) -> Projections:
    """The projections table keyed by NLM image id; bad and duplicate rows as skips."""
    table = read_csv_checked(io.BytesIO(data), PROJECTION_COLUMNS, label, OpenIError)
    out = Projections(label)
    for row, (uid_text, filename, projection) in enumerate(
        zip(table["uid"], table["filename"], table["projection"], strict=True), start=2
    ):
        uid, name = parse_uid(uid_text), filename.strip()
        if uid is None or not name:
            out.skips.append(Skip(f"{label} row {row}", "projections row without a valid uid or filename"))
            continue
        key = image_key(name)
        if key in out.views:
            out.skips.append(
                Skip(
                    f"{label} row {row}",
                    "duplicate image in projections csv (first kept)",
                    uid,
                    dicom_id_from_filename(name),
                )
            )
            continue
        out.views[key] = VIEWS.get(projection.strip().lower(), "unknown")
        out.uids[key] = uid
        out.files[key] = name
    return out


def load_projections(path: Path) -> Projections:
    """A projections CSV given by path (``--projections``), for either form."""
    path = Path(path)
    if not path.is_file():
        raise OpenIError(f"{path}: projections CSV not found")
    return read_projections(str(path), path.read_bytes())


def read_kaggle_reports(
    reports: Path, projections: Projections | None = None
) -> tuple[list[OpenIReport], list[Skip], int, Projections]:
    """Reports (sorted by uid) with their image ids from the projections CSV, skips, rows read, projections.

    ``projections`` replaces the projections CSV found beside the reports CSV (``--projections``).
    """
    found = (
        (str(reports), Path(reports).read_bytes())
        if str(reports).lower().endswith(".csv")
        else locate_csv(reports, REPORTS_CSV)
    )
    if found is None:
        raise OpenIError(f"{reports}: no {REPORTS_CSV} there (Kaggle form) and no XML reports (NLM form)")
    label, data = found
    if projections is None:
        located = locate_csv(reports, PROJECTIONS_CSV)
        if located is None:
            raise OpenIError(
                f"{PROJECTIONS_CSV} not found beside {label}: it lists each report's images "
                "(pass it with --projections)"
            )
        projections = read_projections(*located)
    table = read_csv_checked(io.BytesIO(data), REQUIRED_REPORT_COLUMNS, label, OpenIError)
    images = projections.images_of()
    reports_out: list[OpenIReport] = []
    skips: list[Skip] = []
    for row, record in enumerate(table.to_dict("records"), start=2):
        uid = parse_uid(record["uid"])
        if uid is None:
            skips.append(Skip(f"{label} row {row}", "report uid not a number", detail=repr(record["uid"])))
            continue
        sections = {
            name: squash(record.get(name, ""))
            for name in ("indication", "comparison", "findings", "impression")
        }
        reports_out.append(
            OpenIReport(
                uid,
                f"{label} row {row}",
                squash(record.get("image", "")),
                sections,
                squash(record.get("MeSH", "")),
                list(images.get(uid, [])),
            )
        )
    reports_out.sort(key=lambda r: r.uid)  # stable: duplicates keep their CSV order
    return reports_out, skips, len(table), projections
