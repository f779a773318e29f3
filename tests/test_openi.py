"""The Open-i importer: both download forms, the layout it writes read back by the workbook, every skip."""

import gzip
import io
import tarfile
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pandas as pd
import pytest
from openi_factory import REPORTS, WRITTEN_UIDS, nlm_xml, write_kaggle, write_nlm
from PIL import Image

from cxr_helpers import cli, config
from cxr_helpers.labeler import label_sections
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.mimic import read_layout
from cxr_helpers.openi import labeling
from cxr_helpers.openi.convert import shrink, to_gray8
from cxr_helpers.openi.importer import ImportOptions, import_openi
from cxr_helpers.openi.layout import report_text, written_sections
from cxr_helpers.openi.nlm import parse_report_xml
from cxr_helpers.openi.records import OpenIError, OpenIReport, image_key, parse_uid, study_id, subject_id
from cxr_helpers.openi.views import guess_view, mediastinum_contrast, view_position
from cxr_helpers.phantom import write_phantom
from cxr_helpers.prepare import load_cohort, prepare_cohort
from cxr_helpers.reports import extract_sections

MESH_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "No Finding",
    "Pleural Effusion",
    "Pneumonia",
    "Pneumothorax",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for var in (*config.ENV_VARS, "CXR_PROFILE", "CXR_FAST"):
        monkeypatch.delenv(var, raising=False)


def run_import(reports, images, out, **options):
    values = dict(reports=reports, images=images, out=out, workers=1, progress=False)
    values.update(options)
    return import_openi(ImportOptions(**values), log=lambda line: None)


def read_gz(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def layout_files(out):
    """Every file of the MIMIC layout under out, as {relative path: bytes}."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for folder in ("mimic-cxr-jpg", "mimic-cxr-reports")
        for p in sorted((out / folder).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def nlm_import(tmp_path_factory):
    """NLM form as .tgz archives, imported once (no projections CSV: views guessed from the image)."""
    root = tmp_path_factory.mktemp("nlm")
    reports, images = write_nlm(root / "download", archive=True)
    result = run_import(reports, images, root / "out")
    return root, result


# ------------------------------------------------------------------------------------------ ids, XML, text
def test_ids_map_back_and_nlm_ids_meet_kaggle_file_names():
    assert image_key("CXR1_1_IM-0001-3001") == image_key("1_IM-0001-3001.dcm.png") == "1_IM-0001-3001"
    assert image_key("NLMCXR_png/CXR1000_IM-0003-1001.png") == image_key("1000_IM-0003-1001.dcm.png")
    assert image_key("CXR1_1_IM-0001-3001") != image_key(
        "CXR11_IM-0001-3001"
    )  # the extra "_1" is not the uid
    assert parse_uid("CXR12") == parse_uid("12") == parse_uid(" 0012 ") == 12 and parse_uid("CXR") is None
    assert (subject_id(12), study_id(12)) == (10000012, 50000012)
    assert str(subject_id(3999)).startswith("1") and len(str(study_id(3999))) == 8


def test_nlm_xml_sections_mesh_images_and_caption():
    report = parse_report_xml(nlm_xml(REPORTS[3]), "4.xml")  # empty <AbstractText Label="FINDINGS"/>
    assert (
        report.uid == 4
        and report.sections["findings"] == ""
        and report.sections["impression"] == "No acute disease."
    )
    assert report.examination == "AP portable chest" and report.image_ids == ["CXR4_IM-0104-1001"]
    three = parse_report_xml(nlm_xml(REPORTS[2]), "3.xml")
    assert (
        three.mesh == "Pulmonary Atelectasis/base/left;Opacity/lung/base/left"
    )  # major + minor, no <automatic>
    assert len(three.image_ids) == 3
    with pytest.raises(ValueError, match="DOCTYPE"):
        parse_report_xml(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><eCitation/>', "evil.xml")
    with pytest.raises(ET.ParseError):
        parse_report_xml(b"<eCitation><uId id='CXR3'/>", "cut.xml")


def test_report_text_is_mimic_style_and_parses_back_to_its_sections():
    for fixture in [r for r in REPORTS if r.findings or r.impression]:
        report = parse_report_xml(nlm_xml(fixture), "x.xml")
        text = report_text(report)
        assert text.lstrip().startswith("FINAL REPORT") and "IMPRESSION:" in text
        assert extract_sections(text) == written_sections(report)
    assert "COMPARISON:  XXXX" in report_text(parse_report_xml(nlm_xml(REPORTS[1]), "2.xml"))  # XXXX kept
    tricky = OpenIReport(
        5,
        "x",
        "CHEST 2V FRONTAL/LATERAL XXXX",
        {
            "indication": "XXXX-year-old female.\nHISTORY: cough",
            "comparison": "",
            "findings": "IMPRESSION: see below. Heart: normal.\n\nLungs:\nclear",
            "impression": "XXXX. No acute disease.",
        },
    )
    assert extract_sections(report_text(tricky)) == written_sections(tricky)
    assert "comparison" not in written_sections(tricky)  # empty sections are not written


# ------------------------------------------------------------------------------------------ NLM form
def test_nlm_import_reads_back_through_the_workbook(nlm_import, tmp_path):
    root, result = nlm_import
    out = root / "out"
    layout = read_layout(out / "mimic-cxr-jpg", out / "mimic-cxr-reports", need_split=True)
    assert layout.skipped.empty
    assert sorted(layout.images["study_id"].unique()) == [study_id(u) for u in WRITTEN_UIDS]
    ids = pd.read_csv(out / "openi-ids.csv", dtype={"dicom_id": str})
    assert set(ids["dicom_id"]) == set(layout.images["dicom_id"])
    assert "CXR1_1_IM-0101-1001" in set(ids["dicom_id"])  # the NLM id, kept as the dicom_id
    assert (ids["subject_id"] == ids["uid"] + 10_000_000).all() and (
        ids["study_id"] == ids["uid"] + 50_000_000
    ).all()
    settings = config.load_settings(
        profile="openi",
        fast=True,
        data_dir=out / "mimic-cxr-jpg",
        reports_dir=out / "mimic-cxr-reports",
        artifacts_dir=tmp_path / "artifacts",
        image_size=32,
        prepare_workers=1,
    )
    prepared = prepare_cohort(settings, progress=False)
    cohort = load_cohort(settings.artifacts_dir)
    assert sorted(cohort["study_id"]) == [study_id(u) for u in WRITTEN_UIDS] and prepared.skipped.empty
    assert set(cohort["view_position"]) <= {"PA", "AP"}  # the frontal image of each study
    two = cohort.set_index("study_id").loc[study_id(2)]
    assert two["impression"] == "Mild cardiomegaly with a small left pleural effusion."
    assert (
        two["findings"].startswith("The heart is mildly enlarged")
        and two["indication"] == "Shortness of breath"
    )
    assert cohort.set_index("study_id").loc[study_id(4), "view_position"] == "AP"  # "AP portable chest"


def test_nlm_import_counts_every_skip_and_names_the_file(nlm_import):
    root, result = nlm_import
    summary = result.summary
    assert summary["reports"] == {
        "read": len(REPORTS) + 2,
        "parsed": len(REPORTS) + 1,
        "written": len(WRITTEN_UIDS),
    }
    expected = {
        "report XML unreadable": 1,
        "duplicate report uid (first kept)": 1,
        "report without images": 1,
        "report without findings or impression": 1,
        "image of a skipped report": 1,
        "image without report": 1,
        "duplicate image file (first kept)": 1,
        "image unreadable": 2,
        "report's image not in the images": 1,
        "report without a readable image": 1,
    }
    assert summary["skipped"]["by_reason"] == expected
    skipped = pd.read_csv(root / "out" / "openi-skipped.csv", dtype=str, keep_default_na=False)
    by_reason = skipped.groupby("reason")["file"].apply(list).to_dict()
    assert by_reason["report XML unreadable"] == [
        f"{root / 'download' / 'NLMCXR_reports.tgz'}:ecgen-radiology/broken.xml"
    ]
    assert by_reason["image without report"][0].endswith("CXR99_IM-0999-1001.png")
    assert sorted(f.rsplit("/", 1)[-1] for f in by_reason["image unreadable"]) == [
        "CXR7_IM-0107-2001.png",
        "CXR9_IM-0109-1001.png",
    ]
    assert by_reason["report without a readable image"][0].endswith("9.xml")
    assert skipped.loc[skipped["reason"] == "report without images", "uid"].tolist() == ["5"]
    details = skipped.set_index("image_id")["detail"]
    assert "truncated" in details["CXR9_IM-0109-1001"] and "0x" not in details["CXR7_IM-0107-2001"]
    assert summary["images"]["png_modes"] == {"L": 9, "I;16": 1, "RGB": 1}
    assert summary["images"]["written"] == 11 and summary["images"]["png_files_seen"] == 16


def test_views_are_guessed_without_a_projections_csv_and_warned_about(nlm_import):
    root, result = nlm_import
    ids = pd.read_csv(root / "out" / "openi-ids.csv")
    truth = {i.nlm_id: i.view for r in REPORTS for i in r.images}
    assert (
        ids["projection"] == ids["dicom_id"].map(truth)
    ).all()  # the schematic views, 16-bit and RGB included
    assert set(ids["view_source"]) == {"image guess"}
    assert any("VIEWS GUESSED" in w and "--projections" in w for w in result.warnings)


def test_labels_from_the_labeler_and_from_mesh_are_both_written(nlm_import):
    root, result = nlm_import
    out = root / "out"
    chexpert = read_gz(out / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-chexpert.csv.gz")
    labeler = read_gz(out / "openi-labels-labeler.csv.gz").set_index("uid")
    mesh = read_gz(out / "openi-labels-mesh.csv.gz").set_index("uid")
    assert chexpert.drop(columns=["subject_id", "study_id"]).equals(
        labeler[list(CHEXPERT_LABELS)].reset_index(drop=True)
    )
    for uid in WRITTEN_UIDS:  # the labeler read the text as the layout holds it
        text = (
            out / "mimic-cxr-reports" / "files" / "p10" / f"p{subject_id(uid)}" / f"s{study_id(uid)}.txt"
        ).read_text()
        expected = label_sections(extract_sections(text), read="findings_impression").labels  # the default
        assert [labeler.loc[str(uid), n] for n in CHEXPERT_LABELS] == [
            "" if expected.get(n) is None else str(float(expected[n])) for n in CHEXPERT_LABELS
        ]
    assert labeler.loc["7", "Pneumothorax"] == "1.0" and labeler.loc["1", "No Finding"] == "1.0"
    assert (mesh.loc["2", ["Cardiomegaly", "Pleural Effusion", "No Finding"]] == ["1.0", "1.0", "0.0"]).all()
    assert mesh.loc["1", "No Finding"] == "1.0" and mesh.loc["3", "Atelectasis"] == "1.0"
    assert (
        (mesh[[n for n in CHEXPERT_LABELS if n not in MESH_LABELS]] == "").all().all()
    )  # no MeSH counterpart
    agreement = pd.DataFrame(result.summary["labels"]["agreement_with_mesh"])
    assert tuple(agreement["label"]) == MESH_LABELS
    assert agreement.set_index("label").loc[
        "Pneumothorax", ["mesh positive", "labeler positive"]
    ].tolist() == [1, 1]


def test_mesh_labels_can_make_the_chexpert_csv_and_sections_reach_the_labeler(tmp_path, monkeypatch):
    reads = []

    def spy(sections, read="impression"):
        reads.append(read)
        return label_sections(sections, read=read)

    monkeypatch.setattr(labeling, "label_sections", spy)
    reports, images = write_nlm(tmp_path / "download", archive=False)
    run_import(reports, images, tmp_path / "out", labels="mesh", label_sections="impression")
    chexpert = read_gz(tmp_path / "out" / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-chexpert.csv.gz")
    mesh = read_gz(tmp_path / "out" / "openi-labels-mesh.csv.gz")
    assert chexpert.equals(mesh.drop(columns="uid")) and set(reads) == {"impression"}
    layout = read_layout(tmp_path / "out" / "mimic-cxr-jpg", tmp_path / "out" / "mimic-cxr-reports")
    assert (layout.images["Fracture"] == -2).all()  # blank = not mentioned: masked out when training


def test_archive_and_folder_forms_and_serial_and_parallel_write_the_same_layout(nlm_import, tmp_path):
    root, _ = nlm_import
    reports, images = write_nlm(tmp_path / "download", archive=False)
    run_import(reports, images, tmp_path / "out", workers=2)
    archive, folder = layout_files(root / "out"), layout_files(tmp_path / "out")
    assert archive.keys() == folder.keys() and len(archive) > 10
    assert all(archive[name] == folder[name] for name in archive)


# ------------------------------------------------------------------------------------------ Kaggle form
def test_kaggle_form_takes_views_from_its_projections_csv(tmp_path):
    reports, images = write_kaggle(tmp_path)
    result = run_import(reports, images, tmp_path / "out")
    ids = pd.read_csv(tmp_path / "out" / "openi-ids.csv")
    assert sorted(ids["uid"].unique()) == list(WRITTEN_UIDS)
    assert set(ids["view_source"]) == {"projections csv"} and "CXR1_IM-0101-1001" in set(ids["dicom_id"])
    assert result.summary["views"]["guess_vs_projections_csv"] == {
        "compared": 11,
        "agree": 11,
        "unsure": 0,
        "disagree": 0,
    }
    reasons = result.summary["skipped"]["by_reason"]
    assert reasons["duplicate report uid (first kept)"] == 1 and reasons["report without images"] == 1
    assert reasons["report's image not in the images"] == 1 and reasons["image without report"] == 1
    assert reasons["image unreadable"] == 2 and not result.warnings
    layout = read_layout(tmp_path / "out" / "mimic-cxr-jpg", tmp_path / "out" / "mimic-cxr-reports")
    assert layout.skipped.empty and layout.view_counts == {"PA": 6, "LATERAL": 4, "AP": 1}


def test_the_kaggle_zip_as_downloaded_gives_the_same_layout(tmp_path):
    folder, images = write_kaggle(tmp_path)
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                handle.write(path, path.relative_to(folder).as_posix())
    run_import(folder, images, tmp_path / "from-folder")
    run_import(archive, archive, tmp_path / "from-zip")
    assert layout_files(tmp_path / "from-folder") == layout_files(tmp_path / "from-zip")


def test_nlm_form_takes_views_from_kaggles_projections_csv(tmp_path):
    reports, images = write_nlm(tmp_path / "nlm", archive=True)
    folder, _ = write_kaggle(tmp_path)
    result = run_import(reports, images, tmp_path / "out", projections=folder / "indiana_projections.csv")
    ids = pd.read_csv(tmp_path / "out" / "openi-ids.csv").set_index("dicom_id")
    assert set(ids["view_source"]) == {"projections csv"}
    assert ids.loc["CXR1_1_IM-0101-1001", "projection"] == "frontal"  # NLM's extra "_1" still matches
    assert not result.warnings


def test_without_projections_and_guess_views_are_blank_and_prepare_needs_all_views(tmp_path):
    reports, images = write_nlm(tmp_path / "download", archive=True)
    result = run_import(reports, images, tmp_path / "out", guess_views=False)
    assert any("--views all" in w for w in result.warnings)
    out = tmp_path / "out"
    values = dict(
        profile="openi",
        data_dir=out / "mimic-cxr-jpg",
        reports_dir=out / "mimic-cxr-reports",
        image_size=32,
        prepare_workers=1,
    )
    with pytest.raises(RuntimeError, match="No usable study"):
        prepare_cohort(config.load_settings(artifacts_dir=tmp_path / "a1", **values), progress=False)
    cohort = prepare_cohort(
        config.load_settings(artifacts_dir=tmp_path / "a2", views="all", **values), progress=False
    ).cohort
    assert len(cohort) == len(WRITTEN_UIDS) and set(cohort["view_position"]) == {""}


# ------------------------------------------------------------------------------------------ robustness
def test_never_writes_into_the_download(tmp_path):
    reports, images = write_nlm(tmp_path / "download", archive=False)
    before = sorted(p for p in (tmp_path / "download").rglob("*"))
    for out in (images, images / "out", reports / "sub" / "out"):
        with pytest.raises(OpenIError, match="inside the download"):
            run_import(reports, images, out)
    run_import(reports, images, tmp_path / "out")
    assert sorted(p for p in (tmp_path / "download").rglob("*")) == before


def test_refuses_a_layout_it_did_not_write(tmp_path):
    reports, images = write_nlm(tmp_path / "download", archive=True)
    foreign = tmp_path / "mimic" / "mimic-cxr-jpg"
    foreign.mkdir(parents=True)
    (foreign / "mimic-cxr-2.0.0-metadata.csv.gz").write_bytes(gzip.compress(b"dicom_id\n"))
    with pytest.raises(OpenIError, match="did not write"):
        run_import(reports, images, tmp_path / "mimic")


def test_a_truncated_images_archive_keeps_what_was_read(tmp_path):
    reports, images = write_nlm(tmp_path / "download", archive=True)
    data = images.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = [m.name for m in tar.getmembers()]
    images.write_bytes(data[: int(len(data) * 0.6)])
    result = run_import(reports, images, tmp_path / "out")
    reasons = result.summary["skipped"]["by_reason"]
    assert reasons["images archive damaged: images after this point not read"] == 1
    assert 0 < result.summary["images"]["png_files_seen"] < len(names)
    assert reasons["report's image not in the images"] > 1 and result.summary["images"]["written"] > 0


def test_missing_inputs_and_wrong_kinds_are_clear_errors(tmp_path):
    reports, images = write_nlm(tmp_path / "download", archive=True)
    with pytest.raises(OpenIError, match="not found"):
        run_import(tmp_path / "nowhere.tgz", images, tmp_path / "out")
    with pytest.raises(ValueError, match="max side"):
        run_import(reports, images, tmp_path / "out", max_side=-1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OpenIError, match="no XML reports"):
        run_import(empty, images, tmp_path / "out")
    (tmp_path / "kaggle").mkdir()
    pd.DataFrame({"uid": [1], "findings": ["x"]}).to_csv(
        tmp_path / "kaggle" / "indiana_reports.csv", index=False
    )
    pd.DataFrame({"uid": [1], "filename": ["1_IM-0001-1001.dcm.png"], "projection": ["Frontal"]}).to_csv(
        tmp_path / "kaggle" / "indiana_projections.csv", index=False
    )
    with pytest.raises(OpenIError, match="missing column"):
        run_import(tmp_path / "kaggle", images, tmp_path / "out")
    (tmp_path / "kaggle" / "indiana_reports.csv").write_bytes(b'uid,findings\n1,"unclosed\n')
    with pytest.raises(OpenIError, match=r"indiana_reports\.csv.*malformed CSV"):
        run_import(tmp_path / "kaggle", images, tmp_path / "out")


def test_images_become_8_bit_gray_and_shrink_keeping_their_aspect():
    sixteen = Image.fromarray(np.array([[1000, 1500], [2000, 3000]], dtype=np.uint16))
    assert np.asarray(to_gray8(sixteen)).tolist() == [[0, 64], [128, 255]]  # scaled by its own range
    assert to_gray8(Image.new("RGB", (4, 4), (200, 200, 200))).mode == "L"
    assert np.asarray(to_gray8(Image.new("F", (3, 3), 5.0))).max() == 0  # flat: no range to scale
    big = Image.new("L", (2500, 2000))
    assert shrink(big, 1024).size == (1024, 819) and shrink(big, None) is big and shrink(big, 4000) is big


def test_view_guess_on_phantom_frontal_and_lateral_images(tmp_path):
    write_phantom(tmp_path, n_studies=24, image_size=96, seed=7, workers=1, progress=False)
    data = tmp_path / "mimic-cxr-jpg"
    metadata = pd.read_csv(data / "mimic-cxr-2.0.0-metadata.csv.gz")
    layout = read_layout(data, tmp_path / "mimic-cxr-reports").images.set_index("dicom_id")
    guesses, truth = [], []
    for row in metadata.itertuples():
        with Image.open(layout.loc[row.dicom_id, "image_path"]) as image:
            guesses.append(guess_view(mediastinum_contrast(image)))
        truth.append("frontal" if row.ViewPosition in ("PA", "AP") else "lateral")
    decided = [(g, t) for g, t in zip(guesses, truth, strict=True) if g != "unknown"]
    assert len(decided) >= 0.9 * len(truth) and {t for t in truth} == {"frontal", "lateral"}
    assert all(g == t for g, t in decided)
    assert (
        view_position("frontal", "AP portable chest") == "AP"
        and view_position("frontal", "PA and AP") == "PA"
    )
    assert view_position("unknown") == "" and view_position("lateral", "AP") == "LATERAL"


# ------------------------------------------------------------------------------------------ CLI, profile
def test_cli_states_licence_and_citation_and_refuses_with_a_clear_error(tmp_path, capsys):
    reports, images = write_nlm(tmp_path / "download", archive=True)
    args = ["openi", "--reports", str(reports), "--images", str(images), "--workers", "1", "--no-progress"]
    assert cli.main([*args, "--out", str(tmp_path / "out"), "--max-side", "64"]) == 0
    printed = capsys.readouterr().out
    assert (
        "CC BY-NC-ND 4.0" in printed and "Demner-Fushman D" in printed and "J Am Med Inform Assoc" in printed
    )
    assert "image without report" in printed and "CXR_PROFILE=openi" in printed
    assert "labeler positives on the labels MeSH does not code: Enlarged Cardiomediastinum" in printed
    assert max(Image.open(p).size[1] for p in (tmp_path / "out").rglob("*.jpg")) == 64
    assert cli.main([*args, "--out", str(tmp_path / "download" / "x")]) == 0  # beside the archives is fine
    folder_reports, folder_images = write_nlm(tmp_path / "unpacked", archive=False)
    assert (
        cli.main(
            [
                "openi",
                "--reports",
                str(folder_reports),
                "--images",
                str(folder_images),
                "--out",
                str(folder_images / "converted"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "inside the download" in capsys.readouterr().out


def test_openi_profile_is_the_phantoms_training_on_the_imported_layout(tmp_path):
    s = config.load_settings(profile="openi", fast=False)
    assert s.data_dir == config.workbook_root() / "data" / "openi" / "mimic-cxr-jpg"
    assert s.reports_dir.name == "mimic-cxr-reports" and s.artifacts_dir.name == "openi"
    assert (s.image_size, s.n_studies, s.image_weights, s.text_model) == (128, None, None, "tiny-bert")
    phantom = config.load_settings(profile="phantom", fast=False)
    assert (s.lr, s.epochs, s.conv1_init) == (phantom.lr, phantom.epochs, phantom.conv1_init)
    missing = config.load_settings(profile="openi", data_dir=tmp_path / "none", artifacts_dir=tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="python -m cxr_helpers openi"):
        prepare_cohort(missing, progress=False)
