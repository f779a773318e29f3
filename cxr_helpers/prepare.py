"""Notebook 01's work: the cohort table, the image cache and the summary, in the artifacts folder.

``prepare_cohort(settings)`` reads the MIMIC layout (``mimic``), extracts and cleans report
sections (``reports``), decodes the images once into the uint8 cache (``images``) and writes
``cohort.csv``, ``images_<S>.npy/.json``, ``cohort_summary.json`` and ``skipped.csv``
(formats in docs/design.md). Labels stay coded 1/0/-1/-2; the uncertainty policy is applied
only when training. ``python -m cxr_helpers prepare`` runs the same function.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.artifacts import MADE_BY, require, write_csv, write_json
from cxr_helpers.cohort import select_cohort
from cxr_helpers.config import PROFILES, Settings, load_settings
from cxr_helpers.images import build_image_cache, open_image_cache
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.mimic import CHEXPERT_CSV, SPLITS, find_csv, read_layout, skipped_table
from cxr_helpers.phantom import write_phantom
from cxr_helpers.reports import extract_sections, find_headers, text_for_setting

__all__ = [
    "COHORT_COLUMNS",
    "PHANTOM_STUDIES",
    "PrepareResult",
    "add_prepare_arguments",
    "ensure_phantom",
    "label_table",
    "load_cohort",
    "load_summary",
    "open_image_cache",
    "prepare_cohort",
    "run_prepare",
]

# Studies in the phantom that notebook 01 builds when it is missing, keyed by settings.fast.
PHANTOM_STUDIES = {True: 40, False: 1000}
# Side of the phantom's JPEGs (the cache then resizes them to settings.image_size).
PHANTOM_JPEG_SIZE = {True: 96, False: 256}
SECTION_COLUMNS = ("indication", "findings", "impression")
TEXT_COLUMNS = ("text_findings_impression", "text_indication")
COHORT_COLUMNS = (
    ("subject_id", "study_id", "dicom_id", "view_position", "split", "image_path", "report_path", "cache_index")
    + SECTION_COLUMNS
    + TEXT_COLUMNS
    + CHEXPERT_LABELS
)


@dataclass
class PrepareResult:
    """What prepare_cohort made: the cohort table, the summary, the skips, and the file paths."""

    cohort: pd.DataFrame
    summary: dict
    skipped: pd.DataFrame
    paths: dict[str, Path] = field(default_factory=dict)


def ensure_phantom(settings: Settings, progress: bool = True) -> bool:
    """Build the phantom where the phantom profile expects it, if missing; True if built now."""
    if find_csv(settings.data_dir, CHEXPERT_CSV, required=False) is not None:
        return False
    root = settings.data_dir.parent
    expected = (root / "mimic-cxr-jpg", root / "mimic-cxr-reports")
    if (settings.data_dir, settings.reports_dir) != expected:
        raise FileNotFoundError(
            f"No dataset in {settings.data_dir}. To build the phantom elsewhere run "
            "`python -m cxr_helpers phantom --out DIR` and point CXR_DATA_DIR / CXR_REPORTS_DIR at "
            "DIR/mimic-cxr-jpg and DIR/mimic-cxr-reports."
        )
    n_studies = PHANTOM_STUDIES[settings.fast]
    print(f"Building the phantom dataset ({n_studies} studies) in {root} ...")
    write_phantom(root, n_studies=n_studies, image_size=PHANTOM_JPEG_SIZE[settings.fast], seed=settings.seed,
                  workers=settings.prepare_workers, progress=progress)
    return True


def add_text_columns(cohort: pd.DataFrame, reports: dict[int, str]) -> tuple[pd.DataFrame, dict[int, dict]]:
    """Raw sections and the two cleaned text settings per row; returns also the sections per study."""
    sections = {study: extract_sections(text) for study, text in reports.items()}
    per_row = [sections[int(study)] for study in cohort["study_id"]]
    cohort = cohort.copy()
    for name in SECTION_COLUMNS:
        cohort[name] = [s.get(name, "") for s in per_row]
    cohort["text_findings_impression"] = [text_for_setting(s, "findings_impression") for s in per_row]
    cohort["text_indication"] = [text_for_setting(s, "indication") for s in per_row]
    return cohort, sections


def section_summary(sections: dict[int, dict], reports: dict[int, str]) -> dict:
    """How many reports have (or lack) each section, the fallback and header-less counts."""
    n = len(sections)
    present: dict[str, int] = {}
    for found in sections.values():
        for name in found:
            present[name] = present.get(name, 0) + 1
    neither = sum(1 for s in sections.values() if not s.get("findings") and not s.get("impression"))
    return {
        "reports": n,
        "present": dict(sorted(present.items(), key=lambda item: -item[1])),
        "missing": {name: n - present.get(name, 0) for name in ("indication", "findings", "impression")},
        "impression": present.get("impression", 0),
        "findings_only": sum(1 for s in sections.values() if s.get("findings") and not s.get("impression")),
        "neither_findings_nor_impression": neither,
        "last_paragraph_fallback": present.get("last_paragraph", 0),
        "no_headers": sum(1 for text in reports.values() if not find_headers(text)),
        "empty_text": {
            "findings_impression": sum(1 for s in sections.values() if not text_for_setting(s, "findings_impression")),
            "indication": sum(1 for s in sections.values() if not text_for_setting(s, "indication")),
        },
    }


def label_counts(cohort: pd.DataFrame) -> dict:
    """Per split (and all): per label, how many studies are coded 1, 0, -1 and -2."""
    studies = cohort.drop_duplicates("study_id")
    out = {}
    for split in (*SPLITS, "all"):
        part = studies if split == "all" else studies[studies["split"] == split]
        out[split] = {
            label: {str(code): int((part[label] == code).sum()) for code in (1, 0, -1, -2)} for label in CHEXPERT_LABELS
        }
    return out


def label_table(cohort: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """Per label: studies coded 1 / 0 / -1 / -2 and the positive share (one split, or all)."""
    studies = cohort.drop_duplicates("study_id")
    if split is not None:
        studies = studies[studies["split"] == split]
    names = {1: "positive (1)", 0: "negative (0)", -1: "uncertain (-1)", -2: "not mentioned (-2)"}
    table = pd.DataFrame({name: [int((studies[label] == code).sum()) for label in CHEXPERT_LABELS]
                          for code, name in names.items()}, index=list(CHEXPERT_LABELS))
    table["positive share"] = (table["positive (1)"] / max(len(studies), 1)).round(3)
    return table


def _length_stats(texts: pd.Series) -> dict:
    """Word-count statistics of a text column."""
    words = texts.fillna("").str.split().str.len().to_numpy()
    if len(words) == 0:
        return {}
    return {"mean": round(float(words.mean()), 1), "median": float(np.median(words)),
            "p95": float(np.percentile(words, 95)), "min": int(words.min()), "max": int(words.max())}


def split_counts(cohort: pd.DataFrame) -> dict:
    """Images, studies and patients per split."""
    return {
        split: {"images": int((part := cohort[cohort["split"] == split]).shape[0]),
                "studies": int(part["study_id"].nunique()), "subjects": int(part["subject_id"].nunique())}
        for split in SPLITS
    }


def patients_in_several_splits(cohort: pd.DataFrame) -> int:
    """How many patients appear in more than one split (0 for a split by patient)."""
    return int((cohort.groupby("subject_id")["split"].nunique() > 1).sum())


def summarise(cohort, sections, reports, layout, selection, skipped, settings, cache) -> dict:
    """The cohort_summary.json content (see docs/design.md)."""
    kept = set(cohort["study_id"].astype(int))
    sections = {s: v for s, v in sections.items() if s in kept}
    reports = {s: v for s, v in reports.items() if s in kept}
    full_report_words = pd.Series([" ".join(t.split()) for t in reports.values()], dtype=str)
    return {
        "profile": settings.profile,
        "data_dir": str(settings.data_dir),
        "reports_dir": str(settings.reports_dir),
        "settings": {"views": settings.views, "one_image_per_study": settings.one_image_per_study,
                     "split": settings.split, "split_fractions": list(settings.split_fractions),
                     "n_studies": settings.n_studies, "image_size": settings.image_size, "seed": settings.seed},
        "counts": {"images": len(cohort), "studies": int(cohort["study_id"].nunique()),
                   "subjects": int(cohort["subject_id"].nunique())},
        "splits": split_counts(cohort),
        "patients_in_several_splits": patients_in_several_splits(cohort),
        "labels": label_counts(cohort),
        "sections": section_summary(sections, reports),
        "report_length_words": {"findings_impression": _length_stats(cohort.drop_duplicates("study_id")["text_findings_impression"]),
                                "indication": _length_stats(cohort.drop_duplicates("study_id")["text_indication"]),
                                "full_report": _length_stats(full_report_words)},
        "views": {"cohort": {str(k): int(v) for k, v in cohort["view_position"].value_counts().items()},
                  "metadata": layout.view_counts},
        "filtered": {k: int(v) for k, v in selection.filtered.items()},
        "skipped": {"total": len(skipped),
                    "by_reason": {str(k): int(v) for k, v in skipped["reason"].value_counts().items()}},
        "image_cache": {"file": str(cache.path), "size": cache.size, "rows": cache.count,
                        "unreadable": len(cache.failed), "decoded_this_run": cache.decoded},
        "input_files": {k: str(v) for k, v in layout.files.items()},
    }


def prepare_cohort(settings: Settings, progress: bool = True) -> PrepareResult:
    """Read the layout, select the cohort, cache the images, write the artifacts (see module doc)."""
    if settings.profile == "phantom":
        ensure_phantom(settings, progress)
    elif settings.profile == "openi" and find_csv(settings.data_dir, CHEXPERT_CSV, required=False) is None:
        raise FileNotFoundError(f"No Open-i import in {settings.data_dir}. Convert the download first: `python -m "
                                "cxr_helpers openi --reports ... --images ... --out DIR` (docs/openi.md), then point "
                                "CXR_DATA_DIR / CXR_REPORTS_DIR at DIR/mimic-cxr-jpg and DIR/mimic-cxr-reports.")
    artifacts = Path(settings.artifacts_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    layout = read_layout(settings.data_dir, settings.reports_dir, need_split=settings.split == "official")
    selection = select_cohort(layout, settings.views, settings.one_image_per_study, settings.split,
                              settings.split_fractions, settings.n_studies, settings.seed, progress)
    if selection.cohort.empty:
        skipped = pd.concat([layout.skipped, selection.skipped], ignore_index=True)
        write_csv(artifacts / "skipped.csv", skipped)
        raise RuntimeError(f"No usable study in {settings.data_dir} (views={settings.views!r}): "
                           f"{len(skipped)} input rows skipped, see {artifacts / 'skipped.csv'} for why.")
    cohort, sections = add_text_columns(selection.cohort, selection.reports)
    cohort["cache_index"] = np.arange(len(cohort), dtype=np.int64)
    cache = build_image_cache(cohort["image_path"].tolist(), artifacts, settings.image_size,
                              settings.prepare_workers, progress)
    cohort, image_skips = drop_unreadable(cohort, cache.failed)
    parts = [t for t in (layout.skipped, selection.skipped, image_skips) if len(t)]
    skipped = pd.concat(parts, ignore_index=True) if parts else skipped_table()
    summary = summarise(cohort, sections, selection.reports, layout, selection, skipped, settings, cache)
    paths = write_artifacts(artifacts, cohort, skipped, summary)
    paths.update({"images": cache.path, "images_marker": cache.marker})
    if cohort.empty:
        raise RuntimeError(f"No readable image in {settings.data_dir}: see {paths['skipped']} for why.")
    return PrepareResult(load_cohort(artifacts), summary, skipped, paths)  # exactly what later notebooks read


def drop_unreadable(cohort: pd.DataFrame, failed: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cohort rows whose image decoded, and skip rows for the others (cache_index is kept as is)."""
    bad = cohort.set_index("cache_index").loc[[f["index"] for f in failed]].reset_index()
    skips = skipped_table([
        {"file": f["path"], "row": None, "subject_id": int(r.subject_id), "study_id": int(r.study_id),
         "dicom_id": r.dicom_id, "reason": f"image unreadable: {f['reason'].split(' (')[0]}"}
        for f, r in zip(failed, bad.itertuples(), strict=True)
    ])
    return cohort[~cohort["cache_index"].isin(bad["cache_index"])].reset_index(drop=True), skips


def write_artifacts(artifacts: Path, cohort: pd.DataFrame, skipped: pd.DataFrame, summary: dict | None) -> dict:
    """cohort.csv, skipped.csv and (if given) cohort_summary.json; returns their paths."""
    paths = {"cohort": artifacts / "cohort.csv", "skipped": artifacts / "skipped.csv",
             "summary": artifacts / "cohort_summary.json"}
    write_csv(paths["cohort"], cohort[list(COHORT_COLUMNS)])
    write_csv(paths["skipped"], skipped)
    if summary is not None:
        write_json(paths["summary"], summary)
    return paths


def load_cohort(artifacts_dir: Path) -> pd.DataFrame:
    """cohort.csv with its dtypes (ids int, texts str with "" for none, labels int); clear error if missing."""
    path = Path(artifacts_dir) / "cohort.csv"
    require(path, "cohort")
    text_columns = ("dicom_id", "view_position", "split", "image_path", "report_path") + SECTION_COLUMNS + TEXT_COLUMNS
    cohort = pd.read_csv(path, dtype={name: str for name in text_columns}, keep_default_na=False)
    missing = [column for column in COHORT_COLUMNS if column not in cohort.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; rebuild it with {MADE_BY['cohort']}.")
    integer_columns = ("subject_id", "study_id", "cache_index") + CHEXPERT_LABELS
    return cohort.astype({name: np.int64 for name in integer_columns})


def load_summary(artifacts_dir: Path) -> dict:
    """cohort_summary.json as a dict; clear error if missing."""
    return json.loads(require(Path(artifacts_dir) / "cohort_summary.json", "cohort").read_text())


def load_skipped(artifacts_dir: Path) -> pd.DataFrame:
    """skipped.csv (file, row, subject_id, study_id, dicom_id, reason)."""
    path = require(Path(artifacts_dir) / "skipped.csv", "cohort")
    return pd.read_csv(path, dtype={"file": str, "dicom_id": str, "reason": str})


# ------------------------------------------------------------------------------------------ CLI


def add_prepare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `prepare` command's options (defaults: the settings of CXR_PROFILE and env vars)."""
    parser.add_argument("--data", help="MIMIC-CXR-JPG root (files/ + mimic-cxr-2.0.0-*.csv.gz); default CXR_DATA_DIR")
    parser.add_argument("--reports", help="MIMIC-CXR reports root (files/pXX/...); default CXR_REPORTS_DIR")
    parser.add_argument("--out", help="artifacts folder to write; default CXR_ARTIFACTS_DIR")
    parser.add_argument("--profile", choices=PROFILES, help="settings profile (default CXR_PROFILE)")
    parser.add_argument("--views", choices=("frontal", "all"), help="frontal = PA/AP only (default)")
    parser.add_argument("--all-images", action="store_true", help="keep every image of a study, not one")
    parser.add_argument("--split", choices=("random", "official"), help="random 70/20/10 by patient, or MIMIC's")
    parser.add_argument("--studies", help="number of studies to sample ('all' keeps every study)")
    parser.add_argument("--image-size", type=int, help="cache side in pixels")
    parser.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with the command line's options on top (paths resolved from the current folder)."""
    overrides: dict = {}
    for option, name in (("data", "data_dir"), ("reports", "reports_dir"), ("out", "artifacts_dir")):
        if getattr(args, option, None):
            overrides[name] = Path(getattr(args, option)).resolve()
    for option, name in (("views", "views"), ("split", "split"), ("image_size", "image_size"),
                         ("workers", "prepare_workers"), ("seed", "seed"), ("profile", "profile")):
        if getattr(args, option, None) is not None:
            overrides[name] = getattr(args, option)
    if getattr(args, "all_images", False):
        overrides["one_image_per_study"] = False
    if getattr(args, "studies", None):
        overrides["n_studies"] = None if str(args.studies).lower() == "all" else int(args.studies)
    return load_settings(**overrides)


def format_summary(summary: dict) -> str:
    """A few readable lines: counts per split, skips by reason, filters."""
    lines = [f"{summary['counts']['studies']} studies, {summary['counts']['images']} images, "
             f"{summary['counts']['subjects']} patients"]
    lines += [f"  {split:<9} {c['studies']:>7} studies {c['images']:>7} images {c['subjects']:>6} patients"
              for split, c in summary["splits"].items()]
    lines.append(f"skipped: {summary['skipped']['total']} input rows")
    lines += [f"  {count:>7}  {reason}" for reason, count in summary["skipped"]["by_reason"].items()]
    lines.append("left out by design:")
    lines += [f"  {count:>7}  {reason}" for reason, count in summary["filtered"].items()]
    return "\n".join(lines)


def run_prepare(args: argparse.Namespace) -> int:
    """`python -m cxr_helpers prepare ...`: prepare_cohort with the options; prints the summary."""
    settings = settings_from_args(args)
    result = prepare_cohort(settings, progress=not args.no_progress)
    print(format_summary(result.summary))
    for name, path in result.paths.items():
        print(f"wrote {name:<14} {path}")
    return 0
