"""Writing the phantom: every study's files, the MIMIC-CXR tables and the ground truth.

``write_phantom`` plans the studies (``plan``), generates them (``study``: serially, or in worker
processes, each study from its own random stream, so both write the same bytes) and writes the
MIMIC-CXR-JPG and MIMIC-CXR-reports layout plus ``ground_truth/`` (``layout``).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.phantom.case import FINDING_LABELS
from cxr_helpers.phantom.layout import (
    CHEXPERT_CSV,
    JPG_DIR,
    METADATA_CSV,
    SPLIT_CSV,
    TRUTH_DIR,
    encode_jpeg,
    image_path,
    report_path,
    save_masks,
    write_csv_gz,
)
from cxr_helpers.phantom.plan import SPLIT_FRACTIONS, StudyPlan, plan_studies
from cxr_helpers.phantom.settings import PhantomSettings, write_settings
from cxr_helpers.phantom.shortcut import MARKER_COLUMNS, MARKERS_CSV, Shortcut
from cxr_helpers.phantom.study import Study, render_image, sample_study

METADATA_COLUMNS = (
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
    "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
VIEW_MEANINGS = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral", "LL": "left lateral"}
SHORTCUT_SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # with a planted shortcut: a test split large enough to show it


def _metadata_row(study: Study, index: int) -> dict:
    """The metadata CSV row of one image of a study."""
    plan, image = study.plan, study.images[index]
    exam = study.exam
    description = "CHEST (PORTABLE AP)" if exam == "AP" else "CHEST (PA AND LAT)" if exam != "PA" else "CHEST (PA)"
    return {
        "dicom_id": image.dicom_id, "subject_id": plan.subject_id, "study_id": plan.study_id,
        "PerformedProcedureStepDescription": description, "ViewPosition": image.view, "Rows": image.rows,
        "Columns": image.cols, "StudyDate": plan.study_date, "StudyTime": plan.study_time,
        "ProcedureCodeSequence_CodeMeaning": description, "ViewCodeSequence_CodeMeaning": VIEW_MEANINGS[image.view],
        "PatientOrientationCodeSequence_CodeMeaning": image.orientation,
    }


def generate_study(plan: StudyPlan, out: Path, settings: PhantomSettings) -> dict:
    """Generate and write one study (images, masks, report); return its rows for the CSV files."""
    study = sample_study(plan, settings.image_size, settings.seed, settings.shortcut)
    for image in study.images:
        pixels, masks = render_image(image)
        path = image_path(out, plan.subject_id, plan.study_id, image.dicom_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_jpeg(pixels))
        save_masks(masks, out / TRUTH_DIR / "masks" / f"{image.dicom_id}.npz")
    case, report = study.case, study.report
    text_path = report_path(out, plan.subject_id, plan.study_id)
    text_path.parent.mkdir(parents=True, exist_ok=True)
    text_path.write_text(report.text, encoding="utf-8", newline="\n")
    labels = study.labels
    truth = {label: int(case.present.get(label, False)) for label in FINDING_LABELS}
    truth["No Finding"] = int(not any(truth[lab] for lab in FINDING_LABELS if lab != "Support Devices"))
    return {
        "metadata": [_metadata_row(study, i) for i in range(len(study.images))],
        "images": [{"dicom_id": image.dicom_id, "study_id": plan.study_id, "label": label,
                    "visibility": image.visibility[label]} for image in study.images for label in case.findings],
        "chexpert": {"subject_id": plan.subject_id, "study_id": plan.study_id, **labels},
        "truth": {"study_id": plan.study_id, **{label: truth[label] for label in CHEXPERT_LABELS}},
        "spans": {"study_id": plan.study_id, "spans": [span.as_dict() for span in report.spans],
                  "labeler_section": report.labeler_section},
        "markers": _marker_rows(study, settings.shortcut),
    }


def _marker_rows(study: Study, shortcut: Shortcut | None) -> list[dict]:
    """The rows of markers.csv for one study's images (none without a shortcut)."""
    if shortcut is None:
        return []
    positive = int(study.labels[shortcut.label] == 1.0)
    rows = []
    for image in study.images:
        where = (image.marker.top, image.marker.left, image.marker.size) if image.marker else (None, None, None)
        rows.append({"dicom_id": image.dicom_id, "study_id": study.plan.study_id, "split": study.plan.split,
                     "positive": positive, "marker": int(image.marker is not None),
                     **dict(zip(("top", "left", "size"), where, strict=True))})
    return rows


def _resolve_test_rate(shortcut: Shortcut, plans: list[StudyPlan], image_size: int, seed: int) -> Shortcut:
    """The shortcut with its test rate set, if unset, to the marker's expected rate over train and validate."""
    if shortcut.test_rate is not None:
        return shortcut
    studies = [sample_study(plan, image_size, seed) for plan in plans if plan.split != "test"]  # no pixels: fast
    prevalence = sum(study.labels[shortcut.label] == 1.0 for study in studies) / max(1, len(studies))
    return replace(shortcut, test_rate=shortcut.rate_over(prevalence))


def _shortcut_summary(results: list[dict], shortcut: Shortcut) -> dict:
    """The share of studies with the marker per split, among studies with and without the finding."""
    studies = pd.DataFrame([r["markers"][0] for r in results])
    share = studies.groupby(["split", "positive"])["marker"].mean().round(3)
    return {"label": shortcut.label, "test_rate": shortcut.test_rate,
            "marker_share": {f"{split} {'with' if positive else 'without'} finding": float(value)
                             for (split, positive), value in share.items()}}


def _generate_chunk(args: tuple[list[StudyPlan], str, PhantomSettings]) -> list[dict]:
    """Worker entry point: generate a chunk of studies in order."""
    plans, out, settings = args
    return [generate_study(plan, Path(out), settings) for plan in plans]


def _write_tables(out: Path, results: list[dict], split: dict[int, str]) -> pd.DataFrame:
    """The three MIMIC CSV files and the ground-truth files; returns the chexpert table."""
    jpg = out / JPG_DIR
    chexpert = pd.DataFrame([r["chexpert"] for r in results], columns=["subject_id", "study_id", *CHEXPERT_LABELS])
    chexpert = chexpert.sort_values(["subject_id", "study_id"], kind="stable")
    write_csv_gz(chexpert, jpg / CHEXPERT_CSV)
    metadata = pd.DataFrame([m for r in results for m in r["metadata"]], columns=list(METADATA_COLUMNS))
    metadata = metadata.sort_values(["subject_id", "study_id"], kind="stable")
    write_csv_gz(metadata, jpg / METADATA_CSV)
    split_frame = metadata[["dicom_id", "study_id", "subject_id"]].copy()
    split_frame["split"] = split_frame["subject_id"].map(split)
    write_csv_gz(split_frame, jpg / SPLIT_CSV)
    truth_dir = out / TRUTH_DIR
    truth_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([r["truth"] for r in results]).to_csv(truth_dir / "truth.csv", index=False, lineterminator="\n")
    images = pd.DataFrame([i for r in results for i in r["images"]], columns=["dicom_id", "study_id", "label", "visibility"])
    images.to_csv(truth_dir / "images.csv", index=False, lineterminator="\n")
    with open(truth_dir / "report_spans.jsonl", "w", encoding="utf-8", newline="\n") as handle:
        for r in results:
            handle.write(json.dumps(r["spans"]) + "\n")
    markers = [row for r in results for row in r["markers"]]
    if markers:
        frame = pd.DataFrame(markers, columns=list(MARKER_COLUMNS)).astype({"top": "Int64", "left": "Int64", "size": "Int64"})
        frame.to_csv(truth_dir / MARKERS_CSV, index=False, lineterminator="\n")
    return chexpert


def _refuse_real_data(out: Path) -> None:
    """Never write over what looks like a real MIMIC-CXR copy (a layout without phantom ground truth)."""
    if (out / JPG_DIR / METADATA_CSV).exists() and not (out / TRUTH_DIR).is_dir():
        raise FileExistsError(f"{out / JPG_DIR} holds MIMIC-CXR-JPG files but no {TRUTH_DIR}/ folder: it looks "
                              "like real data, so the phantom will not write there; choose another --out folder")


def label_counts(chexpert: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per label, how many studies are positive, negative, uncertain and blank."""
    counts = {}
    for label in CHEXPERT_LABELS:
        column = chexpert[label]
        counts[label] = {"positive": int((column == 1).sum()), "negative": int((column == 0).sum()),
                         "uncertain": int((column == -1).sum()), "blank": int(column.isna().sum())}
    return counts


def write_phantom(out: Path, n_studies: int = 2000, image_size: int = 256, seed: int = 0,
                  workers: int | None = None, progress: bool = True, shortcut: Shortcut | str | None = None,
                  split_fractions: tuple[float, float, float] | None = None) -> dict:
    """Write a phantom MIMIC-CXR (images, reports, CSVs) and its ground truth under ``out``.

    Creates ``out/mimic-cxr-jpg/``, ``out/mimic-cxr-reports/`` and ``out/ground_truth/``; returns
    a summary: counts of subjects, studies and images, label counts and the seconds it took.
    Files of an earlier phantom in ``out`` are overwritten, not deleted: use an empty folder (or
    the same settings) to avoid leftovers. ``workers`` processes (default: all CPUs) generate
    studies in parallel; the output is byte-identical to a serial build.

    ``shortcut`` (a finding label, or a ``Shortcut`` with its rates) plants a marker that goes
    with that finding in train and validate and not in test (``phantom.shortcut``). The official
    split (``split_fractions``, train / validate / test by subject) is MIMIC's 97/1/2% by default,
    70/10/20% with a shortcut so that its test split can show it; train with
    ``load_settings(split="official")`` to use it (the workbook's default split is redrawn).
    """
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 px, got {image_size}")
    start = time.perf_counter()
    out = Path(out)
    _refuse_real_data(out)
    shortcut = Shortcut(shortcut) if isinstance(shortcut, str) else shortcut
    if split_fractions is None:
        split_fractions = SPLIT_FRACTIONS if shortcut is None else SHORTCUT_SPLIT_FRACTIONS
    plans, split = plan_studies(n_studies, seed, split_fractions)
    if shortcut is not None:
        shortcut = _resolve_test_rate(shortcut, plans, image_size, seed)
    settings = PhantomSettings(seed=seed, n_studies=n_studies, image_size=image_size,
                               split_fractions=tuple(split_fractions), shortcut=shortcut)
    (out / TRUTH_DIR / "masks").mkdir(parents=True, exist_ok=True)
    workers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
    chunk = max(1, min(64, math.ceil(len(plans) / (workers * 8))))
    chunks = [(plans[i:i + chunk], str(out), settings) for i in range(0, len(plans), chunk)]
    results: list[dict] = []
    with tqdm(total=len(plans), desc="phantom studies", unit="study", disable=not progress) as bar:
        if workers == 1 or len(chunks) == 1:
            for args in chunks:
                results += _generate_chunk(args)
                bar.update(len(args[0]))
        else:
            with get_context().Pool(min(workers, len(chunks))) as pool:
                for part in pool.imap(_generate_chunk, chunks):
                    results += part
                    bar.update(len(part))
    chexpert = _write_tables(out, results, split)
    write_settings(out, settings)
    n_images = sum(len(r["metadata"]) for r in results)
    n_frontal = sum(m["ViewPosition"] in ("PA", "AP") for r in results for m in r["metadata"])
    return {
        "out": str(out),
        "seed": seed,
        "image_size": image_size,
        "subjects": len(split),
        "studies": len(results),
        "images": n_images,
        "frontal_images": n_frontal,
        "splits": {name: sum(1 for s in split.values() if s == name) for name in ("train", "validate", "test")},
        "labels": label_counts(chexpert),
        **({"shortcut": _shortcut_summary(results, shortcut)} if shortcut is not None else {}),
        "seconds": round(time.perf_counter() - start, 2),
    }
