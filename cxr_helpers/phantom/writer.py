"""Writing the phantom: every study's files, the MIMIC-CXR tables and the ground truth.

``write_phantom`` plans the studies (``plan``), generates them (``study``: serially, or in worker
processes, each study from its own random stream, so both write the same bytes) and writes the
MIMIC-CXR-JPG and MIMIC-CXR-reports layout plus ``ground_truth/``. CSV files are written with
fixed gzip timestamps, so the same settings always give the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.phantom.case import FINDING_LABELS
from cxr_helpers.phantom.plan import StudyPlan, plan_studies
from cxr_helpers.phantom.reports import derive_labels
from cxr_helpers.phantom.study import Study, render_image, sample_study

JPG_DIR, REPORTS_DIR, TRUTH_DIR = "mimic-cxr-jpg", "mimic-cxr-reports", "ground_truth"
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv.gz"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
METADATA_COLUMNS = (
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
    "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
VIEW_MEANINGS = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral", "LL": "left lateral"}
JPEG_QUALITY = 90


def _save_jpeg(image: np.ndarray, path: Path) -> None:
    """Write a greyscale uint8 array as a baseline JPEG (its folder must exist)."""
    Image.fromarray(image, mode="L").save(path, format="JPEG", quality=JPEG_QUALITY)


def _save_masks(masks: dict[str, np.ndarray], path: Path) -> None:
    """One boolean array per drawn finding, keyed by CheXpert label, in a compressed .npz (folder must exist)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{label: mask.astype(bool) for label, mask in sorted(masks.items())})
    path.write_bytes(buffer.getvalue())


def _subject_dir(plan: StudyPlan) -> str:
    """MIMIC's subject folder: pXX/pSUBJECT (XX = the first two digits of the subject id)."""
    return f"p{str(plan.subject_id)[:2]}/p{plan.subject_id}"


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


def generate_study(plan: StudyPlan, out: Path, image_size: int, seed: int) -> dict:
    """Generate and write one study (images, masks, report); return its rows for the CSV files."""
    study = sample_study(plan, image_size, seed)
    study_dir = out / JPG_DIR / "files" / _subject_dir(plan) / f"s{plan.study_id}"
    study_dir.mkdir(parents=True, exist_ok=True)
    for image in study.images:
        pixels, masks = render_image(image)
        _save_jpeg(pixels, study_dir / f"{image.dicom_id}.jpg")
        _save_masks(masks, out / TRUTH_DIR / "masks" / f"{image.dicom_id}.npz")
    case, report = study.case, study.report
    report_path = out / REPORTS_DIR / "files" / _subject_dir(plan) / f"s{plan.study_id}.txt"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(report.text, encoding="utf-8", newline="\n")
    labels = derive_labels(report.spans, report.labeler_section)
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
    }


def _generate_chunk(args: tuple[list[StudyPlan], str, int, int]) -> list[dict]:
    """Worker entry point: generate a chunk of studies in order."""
    plans, out, image_size, seed = args
    return [generate_study(plan, Path(out), image_size, seed) for plan in plans]


def _write_csv_gz(frame: pd.DataFrame, path: Path) -> None:
    """Gzipped CSV with a fixed header timestamp, so identical content gives identical bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, lineterminator="\n")
    path.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0))


def _write_tables(out: Path, results: list[dict], split: dict[int, str]) -> pd.DataFrame:
    """The three MIMIC CSV files and the ground-truth files; returns the chexpert table."""
    jpg = out / JPG_DIR
    chexpert = pd.DataFrame([r["chexpert"] for r in results], columns=["subject_id", "study_id", *CHEXPERT_LABELS])
    chexpert = chexpert.sort_values(["subject_id", "study_id"], kind="stable")
    _write_csv_gz(chexpert, jpg / CHEXPERT_CSV)
    metadata = pd.DataFrame([m for r in results for m in r["metadata"]], columns=list(METADATA_COLUMNS))
    metadata = metadata.sort_values(["subject_id", "study_id"], kind="stable")
    _write_csv_gz(metadata, jpg / METADATA_CSV)
    split_frame = metadata[["dicom_id", "study_id", "subject_id"]].copy()
    split_frame["split"] = split_frame["subject_id"].map(split)
    _write_csv_gz(split_frame, jpg / SPLIT_CSV)
    truth_dir = out / TRUTH_DIR
    truth_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([r["truth"] for r in results]).to_csv(truth_dir / "truth.csv", index=False, lineterminator="\n")
    images = pd.DataFrame([i for r in results for i in r["images"]], columns=["dicom_id", "study_id", "label", "visibility"])
    images.to_csv(truth_dir / "images.csv", index=False, lineterminator="\n")
    with open(truth_dir / "report_spans.jsonl", "w", encoding="utf-8", newline="\n") as handle:
        for r in results:
            handle.write(json.dumps(r["spans"]) + "\n")
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
                  workers: int | None = None, progress: bool = True) -> dict:
    """Write a phantom MIMIC-CXR (images, reports, CSVs) and its ground truth under ``out``.

    Creates ``out/mimic-cxr-jpg/``, ``out/mimic-cxr-reports/`` and ``out/ground_truth/``; returns
    a summary: counts of subjects, studies and images, label counts and the seconds it took.
    Files of an earlier phantom in ``out`` are overwritten, not deleted: use an empty folder (or
    the same settings) to avoid leftovers. ``workers`` processes (default: all CPUs) generate
    studies in parallel; the output is byte-identical to a serial build.
    """
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 px, got {image_size}")
    start = time.perf_counter()
    out = Path(out)
    _refuse_real_data(out)
    plans, split = plan_studies(n_studies, seed)
    (out / TRUTH_DIR / "masks").mkdir(parents=True, exist_ok=True)
    workers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
    chunk = max(1, min(64, math.ceil(len(plans) / (workers * 8))))
    chunks = [(plans[i:i + chunk], str(out), image_size, seed) for i in range(0, len(plans), chunk)]
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
        "seconds": round(time.perf_counter() - start, 2),
    }
