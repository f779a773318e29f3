"""The Open-i import end to end: read the reports, convert their images, write the layout and the summary.

``import_openi(ImportOptions(...))`` does what ``python -m cxr_helpers openi`` does:

1. read the reports in either form (``nlm`` or ``kaggle``), drop duplicate uids and image ids;
2. keep reports that list images and have findings or an impression (the text labels come from);
3. walk the images once (folder or archive) and convert the images of those reports to JPEG,
   in parallel; everything else met on the way is counted (image without report, duplicate
   file, unreadable PNG, ...);
4. keep reports with at least one converted image; decide each image's view; write the report
   texts, the MIMIC CSVs, both label files, ``openi-ids.csv``, the skips and the summary.

Nothing is written outside ``out`` (``layout.check_out_folder`` refuses the download's folders).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from cxr_helpers.mimic import image_path
from cxr_helpers.openi.archive import ArchiveDamaged, iter_members
from cxr_helpers.openi.convert import DEFAULT_MAX_SIDE, Converted, ImageJob, convert_all
from cxr_helpers.openi.kaggle import Projections, is_kaggle_reports, load_projections, read_kaggle_reports
from cxr_helpers.openi.labeling import LABEL_SOURCES, label_tables
from cxr_helpers.openi.layout import (
    JPG_DIR,
    REPORTS_DIR,
    check_out_folder,
    round_trips,
    write_report,
    write_summary,
    write_tables,
)
from cxr_helpers.openi.nlm import read_nlm_reports
from cxr_helpers.openi.records import (
    CITATION,
    LICENCE,
    SOURCE,
    OpenIError,
    OpenIReport,
    Skip,
    drop_duplicates,
    image_key,
    study_id,
    subject_id,
)
from cxr_helpers.openi.summary import build_summary
from cxr_helpers.openi.views import decide_view, view_position
from cxr_helpers.reports import extract_sections

PNG_SUFFIXES = (".png",)
MIN_SIDE = 32  # the workbook's smallest image size
SKIPPED_COLUMNS = ("file", "uid", "image_id", "reason", "detail")


@dataclass
class ImportOptions:
    """What to import from where, and how (the CLI's options)."""

    reports: Path
    images: Path
    out: Path
    projections: Path | None = None
    labels: str = "labeler"  # which label file becomes the layout's chexpert CSV: "labeler" or "mesh"
    label_sections: str = "findings_impression"  # what the labeler reads (or "impression"; see labeling.py)
    max_side: int | None = DEFAULT_MAX_SIDE
    workers: int | None = None  # None: all cores
    guess_views: bool = True  # guess frontal/lateral from the image where the projections CSV is silent
    seed: int = 42
    split_fractions: tuple[float, float, float] = (0.7, 0.2, 0.1)
    progress: bool = True


@dataclass
class ImportResult:
    """The summary (also in openi-import-summary.json), the files written, and the warnings to show."""

    summary: dict
    paths: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def licence_notice() -> str:
    """The source, licence and citation, printed whenever the importer runs."""
    return (
        f"Data: {SOURCE}.\nLicence: {LICENCE}: use it, cite it, do not redistribute it or anything "
        f"derived from it (converted images, notebook outputs showing them).\nCite: {CITATION}"
    )


def read_reports(
    options: ImportOptions,
) -> tuple[str, list[OpenIReport], list[Skip], int, Projections | None]:
    """The form ("nlm" or "kaggle"), the reports, their skips, files or rows read, the projections CSV."""
    projections = load_projections(options.projections) if options.projections else None
    if is_kaggle_reports(options.reports):
        reports, skips, read, projections = read_kaggle_reports(options.reports, projections)
        return "kaggle", reports, skips + projections.skips, read, projections
    reports, skips, read = read_nlm_reports(options.reports)
    if read == 0 and not skips:
        raise OpenIError(
            f"{options.reports}: no XML reports (NLM form) and no indiana_reports.csv (Kaggle form)"
        )
    return "nlm", reports, skips + (projections.skips if projections else []), read, projections


def select_reports(reports: list[OpenIReport]) -> tuple[list[OpenIReport], list[Skip]]:
    """Reports worth converting: with images and with findings or an impression; skips for the others."""
    kept, skips = [], []
    for report in reports:
        if not any(report.sections.values()):
            skips.append(Skip(report.source, "empty report (no section text)", report.uid))
        elif not report.has_label_text:
            skips.append(Skip(report.source, "report without findings or impression", report.uid))
        elif not report.image_ids:
            skips.append(Skip(report.source, "report without images", report.uid))
        else:
            kept.append(report)
    return kept, skips


class ImageWalk:
    """One pass over the images: a conversion job per wanted image, a skip for everything else.

    Images are matched to reports by ``records.image_key``, so NLM ids and Kaggle file names meet.
    """

    def __init__(
        self,
        images: Path,
        out: Path,
        usable: list[OpenIReport],
        others: list[OpenIReport],
        max_side: int | None,
    ):
        self.images, self.max_side = Path(images), max_side
        self.wanted = {
            image_key(i): (i, image_path(out / JPG_DIR, subject_id(r.uid), study_id(r.uid), i))
            for r in usable
            for i in r.image_ids
        }  # image key -> (dicom id, JPEG to write)
        self.unwanted = {image_key(i) for r in others for i in r.image_ids}  # images of reports left out
        self.seen: dict[str, str] = {}  # image key -> file it was read from
        self.skips: list[Skip] = []
        self.files = 0

    def jobs(self) -> Iterator[ImageJob]:
        """Conversion jobs in the order the images come (runs in the pool's feeder thread when parallel)."""
        for member in iter_members(self.images, PNG_SUFFIXES):
            if isinstance(member, ArchiveDamaged):
                self.skips.append(
                    Skip(
                        member.archive,
                        "images archive damaged: images after this point not read",
                        detail=f"after {member.after or 'its start'}: {member.error}",
                    )
                )
                return
            self.files += 1
            key = image_key(member.name)
            name = member.path or f"{self.images}:{member.name}"
            if key in self.seen:
                self.skips.append(
                    Skip(
                        name,
                        "duplicate image file (first kept)",
                        image_id=key,
                        detail=f"first: {self.seen[key]}",
                    )
                )
                continue
            self.seen[key] = name
            if key not in self.wanted:
                reason = "image of a skipped report" if key in self.unwanted else "image without report"
                self.skips.append(Skip(name, reason, image_id=key))
                continue
            dicom_id, out_path = self.wanted[key]
            yield ImageJob(dicom_id, name, str(out_path), self.max_side, path=member.path, data=member.data)


def convert_images(walk: ImageWalk, workers: int, progress: bool) -> dict[str, Converted]:
    """Run the walk's jobs through the converter; results by image id."""
    results: dict[str, Converted] = {}
    with tqdm(total=len(walk.wanted), desc="converting images", unit="image", disable=not progress) as bar:
        for converted in convert_all(walk.jobs(), workers):
            results[converted.image_id] = converted
            bar.update(1)
    return results


def image_rows(
    reports: list[OpenIReport],
    results: dict[str, Converted],
    walk: ImageWalk,
    projections: Projections | None,
    guess: bool,
) -> tuple[list[dict], list[Skip]]:
    """One row per converted image (ids, file, view and its source), and skips for images that failed."""
    rows, skips = [], []
    for report in reports:
        for image_id in report.image_ids:
            converted = results.get(image_id)
            if converted is None:
                skips.append(Skip(report.source, "report's image not in the images", report.uid, image_id))
                continue
            if not converted.ok:
                skips.append(Skip(converted.name, "image unreadable", report.uid, image_id, converted.reason))
                continue
            csv_view = projections.view_of(image_id) if projections else None
            view, source = decide_view(csv_view, converted.score, guess)
            rows.append(
                {
                    "uid": report.uid,
                    "subject_id": subject_id(report.uid),
                    "study_id": study_id(report.uid),
                    "dicom_id": image_id,
                    "image_file": walk.seen[image_key(image_id)],
                    "projection": view,
                    "view_source": source,
                    "view_score": converted.score,
                    "csv_view": csv_view,
                    "ViewPosition": view_position(view, report.examination),
                    "png_mode": converted.mode,
                    "Rows": converted.rows,
                    "Columns": converted.columns,
                    "examination": report.examination,
                }
            )
    return rows, skips


def write_reports(out: Path, reports: list[OpenIReport]) -> tuple[dict[int, dict[str, str]], list[str]]:
    """Write each report's text; its sections as the workbook reads them, and files that do not read back."""
    sections, not_round_trip = {}, []
    for report in reports:
        path, text = write_report(out / REPORTS_DIR, report)
        sections[report.uid] = extract_sections(text)
        if not round_trips(report, text):
            not_round_trip.append(str(path))
    return sections, not_round_trip


def check_inputs(options: ImportOptions) -> Path:
    """Valid options and existing inputs; returns the output folder (never inside the download)."""
    if options.labels not in LABEL_SOURCES:
        raise ValueError(f"labels must be one of {LABEL_SOURCES}, got {options.labels!r}")
    if options.max_side is not None and options.max_side < MIN_SIDE:
        raise ValueError(
            f"max side must be at least {MIN_SIDE} px (or 0 / None for full size), got {options.max_side}"
        )
    given = [p for p in (options.reports, options.images, options.projections) if p is not None]
    for path in given:
        if not Path(path).exists():
            raise OpenIError(f"{path} not found")
    return check_out_folder(options.out, given)


def import_openi(options: ImportOptions, log: Callable[[str], None] = print) -> ImportResult:
    """Import the download into the MIMIC layout under ``options.out`` (see the module docstring)."""
    start = time.perf_counter()
    log(licence_notice())
    out = check_inputs(options)
    form, reports, skips, files_read, projections = read_reports(options)
    parsed = len(reports)
    reports, duplicate_skips = drop_duplicates(reports)
    usable, report_skips = select_reports(reports)
    skips += duplicate_skips + report_skips
    log(
        f"{form} form: {files_read} reports read, {len(usable)} with images and text to label; "
        f"converting their {sum(len(r.image_ids) for r in usable)} images ..."
    )
    usable_uids = {r.uid for r in usable}
    others = [r for r in reports if r.uid not in usable_uids]
    walk = ImageWalk(options.images, out, usable, others, options.max_side)
    workers = max(1, options.workers or os.cpu_count() or 1)
    convert_start = time.perf_counter()
    results = convert_images(walk, workers, options.progress)
    convert_seconds = time.perf_counter() - convert_start
    rows, image_skips = image_rows(usable, results, walk, projections, options.guess_views)
    skips += walk.skips + image_skips
    written_uids = {row["uid"] for row in rows}
    kept = [r for r in usable if r.uid in written_uids]
    skips += [
        Skip(r.source, "report without a readable image", r.uid) for r in usable if r.uid not in written_uids
    ]
    if not kept:
        raise OpenIError(
            f"nothing to write: no report of {options.reports} has a readable image in {options.images} "
            f"({len(skips)} things skipped; are the two from the same collection?)"
        )
    sections, not_round_trip = write_reports(out, kept)
    labels = label_tables(kept, sections, options.label_sections)
    images = pd.DataFrame(rows)
    paths = write_tables(out, images, labels, options.labels, options.split_fractions, options.seed)
    skipped = pd.DataFrame([s.as_row() for s in skips], columns=list(SKIPPED_COLUMNS)).astype(
        {"uid": "Int64"}
    )
    summary, warnings = build_summary(
        options=options,
        form=form,
        files_read=files_read,
        parsed=parsed,
        kept=kept,
        images=images,
        images_seen=walk.files,
        skipped=skipped,
        labels=labels,
        not_round_trip=not_round_trip,
        seconds={"total": time.perf_counter() - start, "images": convert_seconds},
        workers=workers,
        out=out,
    )
    paths.update(write_summary(out, summary, skipped))
    return ImportResult(summary, paths, warnings)
