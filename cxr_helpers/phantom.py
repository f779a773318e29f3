"""The phantom: a synthetic MIMIC-CXR with known ground truth, so the workbook runs anywhere.

Real MIMIC-CXR needs credentialed access and hundreds of gigabytes, so the workbook ships with
a *phantom*: a generated dataset written in exactly the same layout (MIMIC-CXR-JPG's image tree
and CSV files, MIMIC-CXR's report text files), which the same code reads as if it were real.

How a study is made:
1. A clinical case is drawn: a care setting (outpatient, inpatient, ICU) and an underlying
   problem (heart failure, infection, after surgery, trauma, cancer, or nothing at all) that
   makes findings co-occur as in life: edema with an enlarged heart and effusions, pneumonia
   with opacities, lines and tubes in the ICU. Prevalences follow MIMIC-CXR's, with the rarest
   labels bumped up so that small phantoms still have positives.
2. Each image (one or two frontal views, PA or AP, often a lateral) is drawn procedurally:
   body, lungs with vessel markings, heart, mediastinum, diaphragm, ribs, then every finding
   where it belongs (a blunted costophrenic angle for an effusion, an apical pleural line for a
   pneumothorax, tubes and a pacemaker for support devices, ...). As in life some findings are
   subtle and some are invisible on the image.
3. A radiologist-style report is written from varied phrasings, with negations ("no
   pneumothorax") and hedges ("cannot exclude pneumonia"); sections vary as in MIMIC (most
   reports have an IMPRESSION, some only FINDINGS, a few neither). The INDICATION never names
   a finding, so it is a fair, leak-free text input.
4. The labels in ``mimic-cxr-2.0.0-chexpert.csv.gz`` are derived from the report text the way
   the CheXpert labeler does it (impression, else findings, else last paragraph), so they are
   noisy in the same ways as MIMIC's: a finding only described in FINDINGS is blank, a hedge is
   -1, and a finding the radiologist missed is not labelled at all.

Because it is generated, the phantom also knows the truth, written to ``ground_truth/`` (never
read by the pipeline): a mask per finding per image, whether each finding is clear, subtle or
invisible, which words of the report state each finding, and which findings are really present.
Notebook 05 uses these to check whether Grad-CAM and SHAP point at the right pixels and words.

Everything is deterministic for a seed; each study has its own random stream, so a parallel
build (``workers`` processes) writes exactly the same files as a serial one.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.phantom_anatomy import STRENGTH, FindingSpec, render, sample_anatomy, sample_traits
from cxr_helpers.phantom_reports import (
    FINDING_LABELS,
    SEVERITIES,
    ClinicalCase,
    derive_labels,
    sample_case,
    write_report,
)

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
SPLIT_FRACTIONS = (0.97, 0.01, 0.02)  # train / validate / test by subject, like MIMIC's official split
STUDIES_PER_SUBJECT = ((1, 2, 3, 4), (0.45, 0.25, 0.18, 0.12))
JPEG_QUALITY = 90


@dataclass(frozen=True)
class StudyPlan:
    """What the serial planner fixes for one study before it is generated (possibly in a worker)."""

    index: int
    subject_id: int
    study_id: int
    study_date: int
    study_time: float
    sex: str
    traits_seed: int


def _unique_ids(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    """n distinct random integers in [low, high), in draw order."""
    ids: list[int] = []
    seen: set[int] = set()
    while len(ids) < n:
        for value in rng.integers(low, high, size=n - len(ids) + 8).tolist():
            if value not in seen and len(ids) < n:
                seen.add(value)
                ids.append(value)
    return ids


def plan_studies(n_studies: int, seed: int) -> tuple[list[StudyPlan], dict[int, str]]:
    """Subjects with 1-4 studies each, MIMIC-style ids and dates, and a split per subject."""
    if n_studies < 1:
        raise ValueError(f"n_studies must be at least 1, got {n_studies}")
    rng = np.random.default_rng([seed, 1])
    counts: list[int] = []
    while sum(counts) < n_studies:
        counts.append(min(int(rng.choice(STUDIES_PER_SUBJECT[0], p=STUDIES_PER_SUBJECT[1])), n_studies - sum(counts)))
    subject_ids = sorted(_unique_ids(rng, len(counts), 10_000_000, 20_000_000))
    study_ids = _unique_ids(rng, n_studies, 50_000_000, 60_000_000)
    plans, index = [], 0
    for subject_id, count in zip(subject_ids, counts, strict=True):
        sex = "M" if rng.random() < 0.5 else "F"
        traits_seed = int(rng.integers(2**31))
        day = np.datetime64("2110-01-01") + int(rng.integers(0, 365 * 80))
        for _ in range(count):
            date = int(str(day).replace("-", ""))
            time_of_day = float(rng.integers(0, 24)) * 10_000 + float(rng.integers(0, 60)) * 100 + round(float(rng.uniform(0, 60)), 3)
            plans.append(StudyPlan(index, subject_id, study_ids[index], date, round(time_of_day, 3), sex, traits_seed))
            index += 1
            day = day + int(rng.integers(1, 400))
    return plans, _split_subjects(rng, subject_ids)


def _split_subjects(rng: np.random.Generator, subject_ids: list[int]) -> dict[int, str]:
    """train / validate / test per subject (~97/1/2%), at least one validate and test subject when possible."""
    names = ("train", "validate", "test")
    split = {s: names[int(rng.choice(3, p=SPLIT_FRACTIONS))] for s in subject_ids}
    if len(subject_ids) >= 3:
        order = rng.permutation(len(subject_ids)).tolist()
        for name in ("validate", "test"):
            if name not in split.values():
                pick = next(subject_ids[i] for i in order if split[subject_ids[i]] == "train")
                split[pick] = name
    return split


def _dicom_id(rng: np.random.Generator) -> str:
    """A 44-character MIMIC-style dicom id: five dash-separated groups of 8 hex digits."""
    return "-".join(f"{int(v):08x}" for v in rng.integers(0, 2**32, size=5, dtype=np.uint64))


def _exam_and_views(rng: np.random.Generator, case: ClinicalCase) -> tuple[str, list[str]]:
    """Examination type and the view of each image: portable AP in the ICU, PA + lateral for outpatients."""
    if case.setting == "icu" or (case.setting == "inpatient" and rng.random() < 0.45):
        views = ["AP"] * (2 if rng.random() < 0.1 else 1)
        if rng.random() < (0.08 if case.setting == "icu" else 0.3):
            views.append("LATERAL")
        return ("AP_LAT" if len(views) > 1 and "LATERAL" in views else "AP"), views
    if rng.random() < 0.13:
        return "PA", ["PA"]
    views = ["PA", "LATERAL" if rng.random() < 0.85 else "LL"]
    if rng.random() < 0.05:
        views.insert(1, "PA")
    return "PA_LAT", views


def _image_shape(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(Rows, Columns): mostly square, some portrait or landscape, to exercise odd-aspect handling."""
    r = rng.random()
    short = max(16, int(round(size * 0.86)))
    if r < 0.15:
        return size, short
    if r < 0.2:
        return short, size
    return size, size


def _image_visibility(rng: np.random.Generator, visibility: str, view: str) -> str:
    """A lateral view shows a finding one step less clearly, half of the time."""
    if view in ("LATERAL", "LL") and visibility != "invisible" and rng.random() < 0.5:
        return "subtle" if visibility == "clear" else "invisible"
    return visibility


def _finding_specs(case: ClinicalCase, visibility: dict[str, str], base_seed: int) -> list[FindingSpec]:
    """How each present finding is drawn on one image (seeded per study, so all views agree)."""
    specs = []
    for i, label in enumerate(case.findings):
        specs.append(FindingSpec(
            label=label, strength=STRENGTH[visibility[label]], severity=SEVERITIES.index(case.severity[label]),
            side=case.side[label], zone=case.zone[label], devices=case.devices, seed=base_seed + 7919 * (i + 1),
        ))
    return specs


def _save_jpeg(image: np.ndarray, path: Path) -> None:
    """Write a grayscale uint8 array as a baseline JPEG (its folder must exist)."""
    Image.fromarray(image, mode="L").save(path, format="JPEG", quality=JPEG_QUALITY)


def _save_masks(masks: dict[str, np.ndarray], path: Path) -> None:
    """One boolean array per drawn finding, keyed by CheXpert label, in a compressed .npz (folder must exist)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{label: mask.astype(bool) for label, mask in sorted(masks.items())})
    path.write_bytes(buffer.getvalue())


def generate_study(plan: StudyPlan, out: Path, image_size: int, seed: int) -> dict:
    """Generate and write one study (images, masks, report); return its rows for the CSV files."""
    rng = np.random.default_rng([seed, 2, plan.index])
    case = sample_case(rng, sex=plan.sex)
    exam, views = _exam_and_views(rng, case)
    traits = sample_traits(np.random.default_rng([seed, 3, plan.traits_seed]))
    subject_dir = f"p{str(plan.subject_id)[:2]}/p{plan.subject_id}"
    study_dir = out / JPG_DIR / "files" / subject_dir / f"s{plan.study_id}"
    finding_seed = int(rng.integers(2**31))
    study_dir.mkdir(parents=True, exist_ok=True)
    metadata, image_rows = [], []
    for view in views:
        dicom_id = _dicom_id(rng)
        rows, cols = _image_shape(rng, image_size)
        anatomy = sample_anatomy(rng, view, rows, cols, traits)
        visibility = {label: _image_visibility(rng, case.visibility[label], view) for label in case.findings}
        image, masks = render(anatomy, _finding_specs(case, visibility, finding_seed))
        _save_jpeg(image, study_dir / f"{dicom_id}.jpg")
        _save_masks(masks, out / TRUTH_DIR / "masks" / f"{dicom_id}.npz")
        description = "CHEST (PORTABLE AP)" if exam == "AP" else "CHEST (PA AND LAT)" if exam != "PA" else "CHEST (PA)"
        orientation = "Recumbent" if view == "AP" and case.setting == "icu" and rng.random() < 0.5 else "Erect"
        metadata.append({
            "dicom_id": dicom_id, "subject_id": plan.subject_id, "study_id": plan.study_id,
            "PerformedProcedureStepDescription": description, "ViewPosition": view, "Rows": rows, "Columns": cols,
            "StudyDate": plan.study_date, "StudyTime": plan.study_time,
            "ProcedureCodeSequence_CodeMeaning": description, "ViewCodeSequence_CodeMeaning": VIEW_MEANINGS[view],
            "PatientOrientationCodeSequence_CodeMeaning": orientation,
        })
        image_rows += [{"dicom_id": dicom_id, "study_id": plan.study_id, "label": label,
                        "visibility": visibility[label]} for label in case.findings]
    report = write_report(rng, case, exam)
    report_path = out / REPORTS_DIR / "files" / subject_dir / f"s{plan.study_id}.txt"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(report.text, encoding="utf-8", newline="\n")
    labels = derive_labels(report.spans, report.labeler_section)
    truth = {label: int(case.present.get(label, False)) for label in FINDING_LABELS}
    truth["No Finding"] = int(not any(truth[lab] for lab in FINDING_LABELS if lab != "Support Devices"))
    return {
        "metadata": metadata,
        "images": image_rows,
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
    from tqdm.auto import tqdm

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
