"""Tests of the phantom: MIMIC layout, CSV formats, label semantics, spans, masks, determinism."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.phantom import write_phantom
from cxr_helpers.phantom.anatomy import sample_anatomy
from cxr_helpers.phantom.case import FINDING_LABELS, sample_case
from cxr_helpers.phantom.findings import DRAWERS, STRUCTURAL, FindingSpec
from cxr_helpers.phantom.layout import CHEXPERT_CSV, JPG_DIR, METADATA_CSV, REPORTS_DIR, SPLIT_CSV, TRUTH_DIR
from cxr_helpers.phantom.phrases import LABEL_KEYWORDS
from cxr_helpers.phantom.plan import plan_studies
from cxr_helpers.phantom.render import render
from cxr_helpers.phantom.reports import derive_labels, indication_text, write_report
from cxr_helpers.phantom.spans import Span, wrap_paragraph
from cxr_helpers.phantom.writer import METADATA_COLUMNS

N_STUDIES, SIZE, SEED = 16, 64, 3


def _build(out: Path, seed: int = SEED, workers: int = 1, n_studies: int = N_STUDIES) -> dict:
    return write_phantom(out, n_studies=n_studies, image_size=SIZE, seed=seed, workers=workers, progress=False)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("phantom")
    return out, _build(out)


def _tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    jpg = out / JPG_DIR
    return (pd.read_csv(jpg / CHEXPERT_CSV), pd.read_csv(jpg / METADATA_CSV), pd.read_csv(jpg / SPLIT_CSV))


def _all_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _spans(out: Path) -> dict[int, dict]:
    lines = (out / TRUTH_DIR / "report_spans.jsonl").read_text().splitlines()
    return {record["study_id"]: record for record in map(json.loads, lines)}


def _report_path(out: Path, subject_id: int, study_id: int) -> Path:
    return out / REPORTS_DIR / "files" / f"p{str(subject_id)[:2]}" / f"p{subject_id}" / f"s{study_id}.txt"


def test_csv_columns_are_exactly_mimics(phantom):
    out, _ = phantom
    chexpert, metadata, split = _tables(out)
    assert list(chexpert.columns) == ["subject_id", "study_id", *CHEXPERT_LABELS]
    assert list(metadata.columns) == list(METADATA_COLUMNS)
    assert list(split.columns) == ["dicom_id", "study_id", "subject_id", "split"]
    truth = pd.read_csv(out / TRUTH_DIR / "truth.csv")
    assert list(truth.columns) == ["study_id", *CHEXPERT_LABELS]
    images = pd.read_csv(out / TRUTH_DIR / "images.csv")
    assert list(images.columns) == ["dicom_id", "study_id", "label", "visibility"]


def test_ids_look_like_mimic(phantom):
    out, _ = phantom
    _, metadata, _ = _tables(out)
    assert metadata["subject_id"].astype(str).str.fullmatch(r"1\d{7}").all()
    assert metadata["study_id"].astype(str).str.fullmatch(r"5\d{7}").all()
    assert metadata["dicom_id"].str.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}").all()
    assert metadata["dicom_id"].str.len().eq(44).all() and metadata["dicom_id"].is_unique
    assert metadata["StudyDate"].between(21000101, 22991231).all()
    assert set(metadata["ViewPosition"]) <= {"PA", "AP", "LATERAL", "LL"}


def test_layout_paths_exist_and_match_the_csvs(phantom):
    out, summary = phantom
    chexpert, metadata, split = _tables(out)
    jpgs = sorted((out / JPG_DIR / "files").rglob("*.jpg"))
    assert len(jpgs) == len(metadata) == summary["images"]
    for row in metadata.itertuples():
        path = out / JPG_DIR / "files" / f"p{str(row.subject_id)[:2]}" / f"p{row.subject_id}" / f"s{row.study_id}" / f"{row.dicom_id}.jpg"
        assert path.is_file(), path
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (row.Columns, row.Rows)
    assert len(chexpert) == summary["studies"] == N_STUDIES
    assert set(chexpert["study_id"]) == set(metadata["study_id"])
    for row in chexpert.itertuples():
        assert _report_path(out, row.subject_id, row.study_id).is_file()
    assert len(list((out / REPORTS_DIR / "files").rglob("*.txt"))) == N_STUDIES
    assert set(split["dicom_id"]) == set(metadata["dicom_id"])
    # every study has a frontal view; some images are not square (odd aspect ratios exist)
    assert metadata.groupby("study_id")["ViewPosition"].apply(lambda v: bool(set(v) & {"PA", "AP"})).all()
    assert (metadata["Rows"] != metadata["Columns"]).any()
    assert metadata[["Rows", "Columns"]].max().max() == SIZE


def test_label_values_and_no_finding_semantics(phantom):
    out, _ = phantom
    chexpert, _, _ = _tables(out)
    values = chexpert[list(CHEXPERT_LABELS)]
    assert set(np.unique(values.fillna(-2).to_numpy())) <= {1.0, 0.0, -1.0, -2.0}
    assert not (chexpert["No Finding"] == 0).any() and not (chexpert["No Finding"] == -1).any()
    others = values.drop(columns=["No Finding", "Support Devices"])
    abnormal = others.isin([1.0, -1.0]).any(axis=1)
    assert ((chexpert["No Finding"] == 1) == ~abnormal).all()


def test_split_is_by_subject(phantom):
    out, summary = phantom
    _, _, split = _tables(out)
    assert split.groupby("subject_id")["split"].nunique().eq(1).all()
    assert set(split["split"]) <= {"train", "validate", "test"}
    assert summary["subjects"] == split["subject_id"].nunique()


def test_split_fractions_on_a_larger_plan():
    plans, split = plan_studies(3000, seed=0)
    shares = pd.Series(split).value_counts(normalize=True)
    assert shares["train"] > 0.93 and 0.002 < shares["validate"] < 0.03 and 0.005 < shares["test"] < 0.045
    per_subject = pd.Series([p.subject_id for p in plans]).value_counts()
    assert per_subject.min() >= 1 and per_subject.max() <= 4 and len(plans) == 3000


def test_spans_point_at_the_finding_words(phantom):
    out, _ = phantom
    chexpert, _, _ = _tables(out)
    spans = _spans(out)
    n_checked = 0
    for row in chexpert.itertuples():
        text = _report_path(out, row.subject_id, row.study_id).read_text()
        for span in spans[row.study_id]["spans"]:
            words = " ".join(text[span["start"]:span["end"]].split()).lower()
            assert any(k in words for k in LABEL_KEYWORDS[span["label"]]), (span, words)
            assert span["code"] in (1, 0, -1)
            assert span["section"] in ("findings", "impression", "body", "last_paragraph")
            n_checked += 1
    assert n_checked > N_STUDIES  # most reports mention several findings


def test_labels_agree_with_the_spans_the_labeler_reads(phantom):
    out, _ = phantom
    chexpert, _, _ = _tables(out)
    spans = _spans(out)
    for row in chexpert.to_dict("records"):
        record = spans[row["study_id"]]
        section = record["labeler_section"]
        for label in FINDING_LABELS:
            codes = {s["code"] for s in record["spans"] if s["label"] == label and s["section"] == section}
            expected = 1 if 1 in codes else -1 if -1 in codes else 0 if 0 in codes else None
            value = row[label]
            assert (pd.isna(value) and expected is None) or value == expected, (row["study_id"], label)


def test_the_report_reader_finds_the_sections_the_phantom_wrote(phantom):
    """Integration with reports.extract_sections: spans lie in the section they name, and the
    section the labeler read (impression, else findings, else last paragraph) is the one found."""
    from cxr_helpers.reports import extract_sections

    out, _ = phantom
    chexpert, _, _ = _tables(out)
    spans = _spans(out)
    keywords = [k for words in LABEL_KEYWORDS.values() for k in words]
    for row in chexpert.itertuples():
        text = _report_path(out, row.subject_id, row.study_id).read_text()
        sections = extract_sections(text)
        record = spans[row.study_id]
        read = next(name for name in ("impression", "findings", "last_paragraph") if sections.get(name))
        assert read == record["labeler_section"], (row.study_id, list(sections))
        for span in record["spans"]:
            words = " ".join(text[span["start"]:span["end"]].split())
            assert words in " ".join(sections.get(span["section"], "").split()), (row.study_id, span)
        assert not any(k in sections.get("indication", "").lower() for k in keywords)


def test_positive_labels_are_really_present(phantom):
    out, _ = phantom
    chexpert, _, _ = _tables(out)
    truth = pd.read_csv(out / TRUTH_DIR / "truth.csv").set_index("study_id")
    assert set(np.unique(truth.to_numpy())) <= {0, 1}
    for row in chexpert.to_dict("records"):
        for label in FINDING_LABELS:
            if row[label] == 1:
                assert truth.loc[row["study_id"], label] == 1, (row["study_id"], label)


def test_masks_match_images_and_visibility(phantom):
    out, _ = phantom
    _, metadata, _ = _tables(out)
    images = pd.read_csv(out / TRUTH_DIR / "images.csv")
    assert set(images["visibility"]) <= {"clear", "subtle", "invisible"}
    visible = images[images["visibility"] != "invisible"].groupby("dicom_id")["label"].apply(set)
    for row in metadata.itertuples():
        with np.load(out / TRUTH_DIR / "masks" / f"{row.dicom_id}.npz") as masks:
            assert set(masks.files) == visible.get(row.dicom_id, set())
            for label in masks.files:
                assert masks[label].dtype == bool and masks[label].shape == (row.Rows, row.Columns)


def test_same_seed_same_bytes_other_seed_differs(phantom, tmp_path):
    out, _ = phantom
    again = tmp_path / "again"
    _build(again)
    assert _all_files(again) == _all_files(out)  # CSVs, reports, JPEGs and masks, byte for byte
    other = tmp_path / "other"
    _build(other, seed=SEED + 1)
    assert (other / JPG_DIR / CHEXPERT_CSV).read_bytes() != (out / JPG_DIR / CHEXPERT_CSV).read_bytes()


def test_parallel_build_equals_serial(phantom, tmp_path):
    out, _ = phantom
    parallel = tmp_path / "parallel"
    summary = _build(parallel, workers=2)
    assert _all_files(parallel) == _all_files(out)
    assert summary["studies"] == N_STUDIES


@pytest.mark.parametrize("label", sorted(set(DRAWERS) | set(STRUCTURAL)))
def test_each_finding_changes_the_image_inside_its_mask(label):
    rng = np.random.default_rng(0)
    anatomy = sample_anatomy(rng, "PA", 128, 128)
    spec = FindingSpec(label, strength=1.0, severity=1, side="left", zone="middle",
                       devices=("et_tube", "central_line", "pacemaker"), seed=11)
    plain, none = render(anatomy, [])
    drawn, masks = render(anatomy, [spec])
    assert none == {} and set(masks) == {label}
    mask = masks[label]
    assert mask.any() and not mask.all()
    diff = np.abs(drawn.astype(float) - plain.astype(float))
    assert diff[mask].mean() > 3 * diff[~mask].mean() + 2, (label, diff[mask].mean(), diff[~mask].mean())


def test_effusion_makes_its_region_brighter_and_invisible_draws_nothing():
    anatomy = sample_anatomy(np.random.default_rng(1), "AP", 96, 84)
    plain, _ = render(anatomy, [])
    effusion, masks = render(anatomy, [FindingSpec("Pleural Effusion", 1.0, 2, "right")])
    mask = masks["Pleural Effusion"]
    assert effusion.shape == plain.shape == mask.shape == (96, 84)
    assert effusion[mask].mean() > plain[mask].mean() + 25
    subtle, _ = render(anatomy, [FindingSpec("Pleural Effusion", 0.45, 2, "right")])
    assert plain[mask].mean() < subtle[mask].mean() < effusion[mask].mean()
    hidden, hidden_masks = render(anatomy, [FindingSpec("Pleural Effusion", 0.0, 2, "right")])
    assert np.array_equal(hidden, plain) and hidden_masks == {}


def test_wrap_paragraph_keeps_every_word_and_maps_offsets():
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefgh"), size=rng.integers(1, 12))) for _ in range(80)]
    text = "  ".join(words[:40]) + " " + " ".join(words[40:])
    wrapped, offsets = wrap_paragraph(text, width=40)
    assert wrapped.split() == text.split()
    assert all(len(line) <= 40 for line in wrapped.split("\n"))
    for i, char in enumerate(text):
        if not char.isspace():
            assert wrapped[offsets[i]] == char


def test_indications_never_name_a_finding():
    rng = np.random.default_rng(0)
    keywords = [k for words in LABEL_KEYWORDS.values() for k in words]
    for _ in range(600):
        text = indication_text(rng, sample_case(rng)).lower()
        assert not any(k in text for k in keywords), text


def test_reports_have_mimic_sections_and_labels_look_like_mimic():
    n = 1500
    styles, rows, deidentified = [], [], 0
    for i in range(n):
        rng = np.random.default_rng([7, i])
        report = write_report(rng, sample_case(rng), "PA_LAT")
        assert report.text.startswith(" " * 33 + "FINAL REPORT\n")
        assert re.search(r"^ (INDICATION|HISTORY|REASON FOR EXAM|CLINICAL HISTORY):", report.text, re.M)
        deidentified += "___" in report.text
        styles.append(report.style)
        rows.append(derive_labels(report.spans, report.labeler_section))
    assert deidentified > 0.7 * n  # "___" where MIMIC removed names, ages and dates
    shares = pd.Series(styles).value_counts(normalize=True)
    assert 0.78 < shares["impression"] < 0.88 and 0.08 < shares["findings_only"] < 0.16
    assert 0.02 < shares["neither"] < 0.08
    labels = pd.DataFrame(rows)
    assert 0.25 < (labels["No Finding"] == 1).mean() < 0.42
    for label in FINDING_LABELS:  # every label has positives, and the common ones are common
        assert (labels[label] == 1).mean() > 0.02, label
    for label in ("Atelectasis", "Lung Opacity", "Pleural Effusion", "Support Devices"):
        assert (labels[label] == 1).mean() > 0.12, label
    assert (labels["Pneumothorax"] == 0).mean() > 0.1  # "no pneumothorax" is a common negation


def test_refuses_to_write_over_real_mimic_data(tmp_path):
    jpg = tmp_path / JPG_DIR
    jpg.mkdir()
    (jpg / METADATA_CSV).write_bytes(b"not a phantom")
    with pytest.raises(FileExistsError, match="real data"):
        _build(tmp_path, n_studies=2)
    assert (jpg / METADATA_CSV).read_bytes() == b"not a phantom"


def test_derive_labels_uses_only_the_labelers_section():
    spans = [Span("Pleural Effusion", 0, 5, 1, "findings"), Span("Pneumothorax", 6, 9, 0, "impression"),
             Span("Edema", 10, 12, -1, "impression"), Span("Edema", 13, 15, 0, "impression")]
    labels = derive_labels(spans, "impression")
    assert labels["Pleural Effusion"] is None and labels["Pneumothorax"] == 0.0 and labels["Edema"] == -1.0
    assert labels["No Finding"] is None
    assert derive_labels(spans[:2], "impression")["No Finding"] == 1.0
