"""prepare_cohort end to end: artifacts and their formats, honest skips, resumable cache, CLI, phantom."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from layout_factory import make_layout
from PIL import Image

from cxr_helpers import config
from cxr_helpers.images import load_image, open_image_cache
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.prepare import (
    COHORT_COLUMNS,
    add_prepare_arguments,
    label_table,
    load_cohort,
    load_skipped,
    load_summary,
    prepare_cohort,
    run_prepare,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for var in (*config.ENV_VARS, "CXR_PROFILE", "CXR_FAST"):
        monkeypatch.delenv(var, raising=False)


def settings_for(fake, tmp_path, **overrides):
    values = dict(profile="mimic", data_dir=fake.data_dir, reports_dir=fake.reports_dir,
                  artifacts_dir=tmp_path / "artifacts", image_size=32, n_studies=None, prepare_workers=1)
    values.update(overrides)
    return config.load_settings(**values)


def test_artifacts_follow_the_design_formats(tmp_path):
    fake = make_layout(tmp_path).write()
    settings = settings_for(fake, tmp_path)
    result = prepare_cohort(settings, progress=False)
    artifacts = settings.artifacts_dir
    for name in ("cohort.csv", "images_32.npy", "images_32.json", "cohort_summary.json", "skipped.csv"):
        assert (artifacts / name).exists(), name
    header = (artifacts / "cohort.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == COHORT_COLUMNS
    cohort = load_cohort(artifacts)
    pd.testing.assert_frame_equal(cohort, result.cohort)
    assert cohort["study_id"].is_unique and len(cohort) == len(fake.chexpert)
    assert set(np.unique(cohort[list(CHEXPERT_LABELS)])) <= {1, 0, -1, -2}
    source = fake.chexpert.set_index("study_id")
    blank = source.loc[cohort["study_id"], "Edema"].to_numpy() == ""
    assert (cohort["Edema"].to_numpy()[blank] == -2).all() and blank.any()
    cache = open_image_cache(artifacts, 32)
    for row in cohort.itertuples():
        assert abs(float(cache[row.cache_index].mean()) - fake.expected_value(row.dicom_id)) < 2
    marker = json.loads((artifacts / "images_32.json").read_text())
    assert marker["complete"] is True and marker["count"] == len(cohort) and marker["size"] == 32
    row = cohort.iloc[0]
    assert row.findings == "The lungs are clear. No pleural effusion or pneumothorax."
    assert row.text_findings_impression.startswith("the lungs are clear no pleural effusion")
    assert row.text_indication == f"year old with cough study {row.study_id}"


def test_summary_counts(tmp_path):
    fake = make_layout(tmp_path, n_subjects=10).write()
    result = prepare_cohort(settings_for(fake, tmp_path), progress=False)
    summary = load_summary(tmp_path / "artifacts")
    assert summary == json.loads(json.dumps(result.summary))
    assert sum(s["studies"] for s in summary["splits"].values()) == summary["counts"]["studies"] == 20
    assert summary["patients_in_several_splits"] == 0
    train = result.cohort[result.cohort["split"] == "train"]
    assert summary["labels"]["train"]["Pleural Effusion"]["-1"] == int((train["Pleural Effusion"] == -1).sum())
    assert sum(summary["labels"]["all"]["Edema"].values()) == 20
    assert summary["sections"]["missing"] == {"indication": 0, "findings": 0, "impression": 0}
    assert summary["views"]["cohort"] == result.cohort["view_position"].value_counts().to_dict()
    assert summary["views"]["metadata"]["LATERAL"] == 10
    assert summary["filtered"]["image not a frontal view (views='frontal')"] == 10
    assert summary["skipped"] == {"total": 0, "by_reason": {}}
    table = label_table(result.cohort, "train")
    assert table.loc["Pleural Effusion", "uncertain (-1)"] == summary["labels"]["train"]["Pleural Effusion"]["-1"]


def test_bad_inputs_are_skipped_counted_and_reported(tmp_path):
    fake = make_layout(tmp_path)
    studies = fake.chexpert["study_id"].astype(int).tolist()
    del fake.reports[studies[0]]  # report file missing
    fake.reports[studies[1]] = ""  # report file empty
    fake.reports[studies[2]] = "FINAL REPORT\nPortable chest.\n\nMild cardiomegaly. No effusion.\n"  # no sections
    frontal = fake.metadata[fake.metadata["ViewPosition"] != "LATERAL"].set_index("study_id")["dicom_id"]
    fake.write()
    corrupt = fake.image_file(frontal[studies[3]])
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # truncated JPEG
    fake.image_file(frontal[studies[4]]).unlink()  # missing image
    settings = settings_for(fake, tmp_path)
    result = prepare_cohort(settings, progress=False)

    reasons = result.skipped.set_index("study_id")["reason"]
    assert reasons[studies[0]] == "report file missing" and reasons[studies[1]] == "report file empty"
    assert reasons[studies[3]].startswith("image unreadable") and reasons[studies[4]] == "image file missing"
    assert result.skipped.set_index("study_id").loc[studies[3], "file"] == str(corrupt.resolve())
    assert set(result.cohort["study_id"]) == set(studies) - {studies[i] for i in (0, 1, 3, 4)}
    assert result.summary["skipped"]["total"] == 4
    assert result.summary["skipped"]["by_reason"]["report file missing"] == 1
    on_disk = load_skipped(settings.artifacts_dir)
    assert len(on_disk) == 4 and set(on_disk["reason"]) == set(result.skipped["reason"])

    # the corrupt image's cache row stays empty and its index is not reused: cache_index still aligns
    cache = open_image_cache(settings.artifacts_dir, 32)
    assert cache.shape[0] == len(result.cohort) + 1
    for row in result.cohort.itertuples():
        assert abs(float(cache[row.cache_index].mean()) - fake.expected_value(row.dicom_id)) < 2
    assert result.summary["image_cache"]["unreadable"] == 1

    no_sections = result.cohort.set_index("study_id").loc[studies[2]]
    assert no_sections.findings == "" and no_sections.impression == ""
    assert no_sections.text_findings_impression == "mild cardiomegaly no effusion"
    assert result.summary["sections"]["no_headers"] == 1
    assert result.summary["sections"]["last_paragraph_fallback"] == 1
    assert result.summary["sections"]["missing"]["indication"] == 1


def test_second_run_reuses_the_cache(tmp_path):
    fake = make_layout(tmp_path).write()
    settings = settings_for(fake, tmp_path)
    first = prepare_cohort(settings, progress=False)
    second = prepare_cohort(settings, progress=False)
    assert first.summary["image_cache"]["decoded_this_run"] == len(first.cohort)
    assert second.summary["image_cache"]["decoded_this_run"] == 0
    pd.testing.assert_frame_equal(first.cohort, second.cohort)


def test_options_all_images_official_split_and_subsample(tmp_path):
    fake = make_layout(tmp_path, n_subjects=10).write()
    everything = prepare_cohort(settings_for(fake, tmp_path, views="all", one_image_per_study=False,
                                             split="official"), progress=False)
    assert len(everything.cohort) == len(fake.metadata)
    truth = fake.split.set_index("dicom_id")["split"]
    assert (everything.cohort["split"].to_numpy() == truth.loc[everything.cohort["dicom_id"]].to_numpy()).all()
    sampled = prepare_cohort(settings_for(fake, tmp_path, n_studies=7, seed=3), progress=False)
    assert sampled.cohort["study_id"].nunique() == 7 and sampled.summary["counts"]["studies"] == 7


def test_load_cohort_names_notebook_01_when_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cohort\.csv.*notebook 01.*python -m cxr_helpers prepare"):
        load_cohort(tmp_path)
    (tmp_path / "cohort.csv").write_text("subject_id,study_id\n1,2\n")
    with pytest.raises(ValueError, match="lacks columns"):
        load_cohort(tmp_path)


def test_cli_arguments_run_prepare(tmp_path, capsys):
    fake = make_layout(tmp_path).write()
    parser = add_prepare_arguments(argparse.ArgumentParser())
    out = tmp_path / "cli-artifacts"
    args = parser.parse_args(["--data", str(fake.data_dir), "--reports", str(fake.reports_dir), "--out", str(out),
                              "--profile", "mimic", "--studies", "5", "--image-size", "40", "--workers", "1",
                              "--no-progress"])
    assert run_prepare(args) == 0
    assert load_cohort(out)["study_id"].nunique() == 5 and open_image_cache(out, 40).shape == (5, 40, 40)
    printed = capsys.readouterr().out
    assert "5 studies" in printed and "cohort.csv" in printed
    assert parser.parse_args(["--studies", "all", "--all-images"]).all_images is True


def test_16_bit_png_layout_is_scaled(tmp_path):
    # A site might convert its DICOMs to 16-bit PNG under the .jpg names; Pillow detects the format.
    fake = make_layout(tmp_path, n_subjects=1, studies_per_subject=1).write()
    dicom = fake.metadata["dicom_id"].iloc[0]
    Image.fromarray(np.full((40, 48), 65535 // 4, dtype=np.uint16)).save(fake.image_file(dicom), format="PNG")
    result = prepare_cohort(settings_for(fake, tmp_path), progress=False)
    assert abs(float(open_image_cache(tmp_path / "artifacts", 32)[0].mean()) - 255 / 4) < 1.5
    assert result.skipped.empty


# ------------------------------------------------------------------ end to end on a tiny phantom


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from cxr_helpers.phantom import write_phantom

    root = tmp_path_factory.mktemp("phantom")
    write_phantom(root, n_studies=20, image_size=64, seed=0, workers=1, progress=False)
    return root


def phantom_settings(root, tmp_path, **overrides):
    return config.load_settings(profile="phantom", fast=True, data_dir=root / "mimic-cxr-jpg",
                                reports_dir=root / "mimic-cxr-reports", artifacts_dir=tmp_path / "artifacts",
                                prepare_workers=1, **overrides)


def test_phantom_end_to_end(phantom, tmp_path):
    result = prepare_cohort(phantom_settings(phantom, tmp_path), progress=False)
    cohort = load_cohort(tmp_path / "artifacts")
    assert result.skipped.empty and cohort["study_id"].nunique() == len(cohort) == 20
    assert set(cohort["view_position"]) <= {"PA", "AP"}
    assert (cohort.groupby("subject_id")["split"].nunique() == 1).all()
    # labels as in the phantom's chexpert csv, blanks coded -2
    source = pd.read_csv(phantom / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-chexpert.csv.gz").set_index("study_id")
    expected = source.loc[cohort["study_id"], list(CHEXPERT_LABELS)].fillna(-2).astype(int).to_numpy()
    np.testing.assert_array_equal(cohort[list(CHEXPERT_LABELS)].to_numpy(), expected)
    # the cache holds each JPEG as load_image sees it (some phantom JPEGs are not square)
    cache = open_image_cache(tmp_path / "artifacts", 64)
    for row in cohort.head(5).itertuples():
        expected = np.round(load_image(row.image_path, 64) * 255)
        assert np.abs(cache[row.cache_index].astype(int) - expected.astype(int)).max() <= 1


def test_phantom_ground_truth_spans_fall_in_the_extracted_sections(phantom):
    from cxr_helpers.mimic import report_path
    from cxr_helpers.reports import find_headers, last_paragraph_span

    chexpert = pd.read_csv(phantom / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-chexpert.csv.gz").set_index("study_id")
    checked = 0
    for line in (phantom / "ground_truth" / "report_spans.jsonl").read_text().splitlines():
        record = json.loads(line)
        text = report_path(phantom / "mimic-cxr-reports", chexpert.loc[record["study_id"], "subject_id"],
                           record["study_id"]).read_text()
        ranges = {}
        for header in find_headers(text):
            ranges.setdefault(header.name, []).append((header.content_start, header.content_end))
        span = last_paragraph_span(text)
        ranges["last_paragraph"] = [span] if span else []
        for mention in record["spans"]:
            if mention["section"] in ("findings", "impression", "last_paragraph", "indication", "body"):
                inside = any(s <= mention["start"] and mention["end"] <= e for s, e in ranges.get(mention["section"], []))
                assert inside, (record["study_id"], mention, ranges)
                checked += 1
    assert checked > 20


def test_phantom_indication_never_names_a_finding(phantom, tmp_path):
    from cxr_helpers.phantom.phrases import LABEL_KEYWORDS

    cohort = prepare_cohort(phantom_settings(phantom, tmp_path), progress=False).cohort
    keywords = [word for words in LABEL_KEYWORDS.values() for word in words]
    leaking = [text for text in cohort["text_indication"] if any(word in text for word in keywords)]
    assert not leaking
    assert (cohort["text_indication"] != "").all()
    with_keywords = cohort["text_findings_impression"].apply(lambda text: any(word in text for word in keywords))
    assert with_keywords.mean() > 0.5  # the paper's setting does name findings


def test_phantom_profile_builds_the_phantom_when_missing(tmp_path, monkeypatch):
    from cxr_helpers import prepare

    monkeypatch.setitem(prepare.PHANTOM_STUDIES, True, 12)
    root = tmp_path / "data" / "phantom"
    settings = phantom_settings(root, tmp_path)
    result = prepare_cohort(settings, progress=False)
    assert (root / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-chexpert.csv.gz").exists()
    assert result.cohort["study_id"].nunique() == 12


def test_the_split_exercise_is_also_checked_on_the_prepared_cohort(tmp_path, capsys):
    from cxr_helpers import solutions
    from cxr_helpers.exercises import check_split_by_patient

    fake = make_layout(tmp_path, n_subjects=10).write()
    cohort = prepare_cohort(settings_for(fake, tmp_path), progress=False).cohort
    studies = cohort.drop_duplicates("study_id")[["subject_id", "study_id"]].reset_index(drop=True)
    assert check_split_by_patient(solutions.split_by_patient, studies) is True
    mine = solutions.split_by_patient(studies)
    assert mine.groupby(studies["subject_id"]).nunique().max() == 1

    def right_on_hand_made_only(table, fractions=(0.7, 0.2, 0.1), seed=0):  # breaks on the cohort's row count
        return solutions.split_by_patient(table, fractions, seed) if len(table) > 1000 else ["train"]

    assert check_split_by_patient(right_on_hand_made_only, studies) is False
    assert "on the notebook's cohort" in capsys.readouterr().out


def test_no_usable_study_is_a_clear_error(tmp_path):
    fake = make_layout(tmp_path, n_subjects=2)
    fake.reports = {}
    fake.write()
    fake.reports_dir.mkdir()
    settings = settings_for(fake, tmp_path)
    with pytest.raises(RuntimeError, match=r"No usable study.*4 input rows skipped.*skipped\.csv"):
        prepare_cohort(settings, progress=False)
    assert set(load_skipped(settings.artifacts_dir)["reason"]) == {"report file missing"}
