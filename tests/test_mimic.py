"""Reading the MIMIC layout: joins, bad input (errors naming file/row, counted skips), views, sampling, splits."""

import gzip

import numpy as np
import pandas as pd
import pytest
from layout_factory import make_layout

from cxr_helpers.cohort import filter_views, random_split_by_patient, select_cohort
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.mimic import MimicLayoutError, image_path, read_layout, report_path


@pytest.fixture
def layout(tmp_path):
    return make_layout(tmp_path)


def read(fake, **kwargs):
    return read_layout(fake.data_dir, fake.reports_dir, **kwargs)


@pytest.mark.parametrize("gz", [True, False])
def test_join_gives_one_row_per_image_with_its_studys_labels(layout, gz):
    layout.write(gz=gz)
    table = read(layout).images
    assert len(table) == len(layout.metadata) and read(layout).skipped.empty
    row = table.iloc[3]
    source = layout.chexpert[layout.chexpert["study_id"] == row.study_id].iloc[0]
    expected = [{"1.0": 1, "0.0": 0, "-1.0": -1, "": -2}[source[label]] for label in CHEXPERT_LABELS]
    assert row[list(CHEXPERT_LABELS)].tolist() == expected
    assert set(np.unique(table[list(CHEXPERT_LABELS)].to_numpy())) <= {1, 0, -1, -2}
    assert row.image_path == str(image_path(layout.data_dir.resolve(), row.subject_id, row.study_id, row.dicom_id))
    assert "/files/p10/p10000032/" in table.iloc[0].image_path and table.iloc[0].image_path.endswith(".jpg")
    assert row.report_path == str(report_path(layout.reports_dir.resolve(), row.subject_id, row.study_id))
    assert set(table["official_split"]) == {"train", "validate", "test"}


def test_missing_csv_names_the_file(layout):
    layout.write()
    (layout.data_dir / "mimic-cxr-2.0.0-metadata.csv.gz").unlink()
    with pytest.raises(MimicLayoutError, match="mimic-cxr-2.0.0-metadata.csv.gz"):
        read(layout)


def test_split_csv_optional_unless_official(layout):
    layout.write()
    (layout.data_dir / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    assert len(read(layout).images) == len(layout.metadata)
    with pytest.raises(MimicLayoutError, match="mimic-cxr-2.0.0-split"):
        read(layout, need_split=True)


def test_csv_missing_a_column_names_file_and_column(layout):
    layout.chexpert = layout.chexpert.drop(columns="Edema")
    layout.write()
    with pytest.raises(MimicLayoutError, match=r"chexpert\.csv\.gz.*missing column.*Edema"):
        read(layout)


def test_label_value_outside_codes_names_file_and_row(layout):
    layout.chexpert.loc[4, "Pneumonia"] = "2.0"
    layout.write(gz=False)
    with pytest.raises(MimicLayoutError, match=r"chexpert\.csv: row 6, column 'Pneumonia'.*'2.0'"):
        read(layout)
    layout.chexpert.loc[4, "Pneumonia"] = "yes"
    layout.write(gz=False)
    with pytest.raises(MimicLayoutError, match=r"row 6.*'yes'"):
        read(layout)


def test_malformed_csv_names_the_file(layout):
    layout.write()
    path = layout.data_dir / "mimic-cxr-2.0.0-split.csv.gz"
    path.write_bytes(gzip.compress(b"dicom_id,study_id,subject_id,split\na,1,2,train\nb,1,2,train,extra,x\n"))
    with pytest.raises(MimicLayoutError, match=r"split\.csv\.gz: malformed CSV.*line 3"):
        read(layout)
    path.write_bytes(b"\x1f\x8b\x08 not really gzip")
    with pytest.raises(MimicLayoutError, match=r"split\.csv\.gz: malformed CSV"):
        read(layout)


def test_non_integer_id_names_file_and_row(layout):
    layout.metadata["study_id"] = layout.metadata["study_id"].astype(str)
    layout.metadata.loc[2, "study_id"] = "s5x"
    layout.write()
    with pytest.raises(MimicLayoutError, match=r"metadata\.csv\.gz: row 4: study_id 's5x'"):
        read(layout)


def test_ids_in_one_csv_but_not_another_are_counted_skips(layout):
    orphan_study = int(layout.chexpert["study_id"].iloc[0])
    layout.chexpert = layout.chexpert.iloc[1:]  # its images now have no labels
    imageless = layout.chexpert.iloc[[0]].assign(study_id=59999999)
    layout.chexpert = pd.concat([layout.chexpert, imageless])
    layout.split = pd.concat([layout.split, layout.split.iloc[[0]].assign(dicom_id="ffffffff-0000")])
    layout.write()
    result = read(layout)
    reasons = result.skipped["reason"].value_counts()
    n_orphan_images = int((layout.metadata["study_id"] == orphan_study).sum())
    assert reasons["study in metadata but not in chexpert csv"] == n_orphan_images
    assert reasons["study in chexpert csv but not in metadata"] == 1
    unknown = result.skipped[result.skipped["reason"].str.startswith("unknown dicom_id")]
    assert unknown["dicom_id"].tolist() == ["ffffffff-0000"] and unknown["file"].iloc[0].endswith("split.csv.gz")
    assert orphan_study not in set(result.images["study_id"])
    assert len(result.images) == len(layout.metadata) - n_orphan_images


def test_unsplit_images_are_skipped_only_for_the_official_split(layout):
    dropped = layout.split["dicom_id"].iloc[0]
    layout.split = layout.split.iloc[1:]
    layout.write()
    assert dropped in set(read(layout).images["dicom_id"])
    result = read(layout, need_split=True)
    assert dropped not in set(result.images["dicom_id"])
    assert result.skipped["reason"].tolist() == ["dicom_id in metadata but not in split csv"]


def test_subject_mismatch_and_duplicates_are_skips(layout):
    layout.metadata.loc[0, "subject_id"] = 19999999
    layout.metadata = pd.concat([layout.metadata, layout.metadata.iloc[[1]]], ignore_index=True)
    layout.chexpert = pd.concat([layout.chexpert, layout.chexpert.iloc[[2]]], ignore_index=True)
    layout.write()
    reasons = read(layout).skipped.set_index("reason")["row"]
    assert reasons["subject_id differs between metadata and chexpert csv"] == 2
    assert reasons["duplicate dicom_id in metadata csv (first row kept)"] == len(layout.metadata) + 1
    assert reasons["duplicate study_id in chexpert csv (first row kept)"] == len(layout.chexpert) + 1


def test_view_filter_and_pa_preferred_over_ap(layout):
    # one study with both an AP and a PA image: the PA one must be chosen, whatever the order
    study = int(layout.metadata["study_id"].iloc[0])
    extra = layout.metadata.iloc[[0]].assign(dicom_id="00000000-pa", ViewPosition="PA")
    layout.metadata = pd.concat([layout.metadata, extra], ignore_index=True)
    layout.write()
    images = read(layout).images
    assert set(filter_views(images, "frontal")["view_position"]) == {"PA", "AP"}
    assert "LATERAL" in set(filter_views(images, "all")["view_position"])
    cohort = select_cohort(read(layout)).cohort
    assert cohort["study_id"].is_unique and set(cohort["view_position"]) <= {"PA", "AP"}
    assert cohort.loc[cohort["study_id"] == study, "dicom_id"].item() == "00000000-pa"
    everything = select_cohort(read(layout), views="all", one_image_per_study=False).cohort
    assert len(everything) == len(layout.metadata)


def test_sample_is_seeded_and_splits_do_not_share_patients(tmp_path):
    fake = make_layout(tmp_path, n_subjects=30, studies_per_subject=2).write()
    layout = read(fake)
    first = select_cohort(layout, n_studies=25, seed=1)
    again = select_cohort(layout, n_studies=25, seed=1)
    other = select_cohort(layout, n_studies=25, seed=2)
    assert first.cohort["study_id"].nunique() == 25
    pd.testing.assert_frame_equal(first.cohort, again.cohort)
    assert set(first.cohort["study_id"]) != set(other.cohort["study_id"])
    assert (first.cohort.groupby("subject_id")["split"].nunique() == 1).all()
    assert first.filtered["study not sampled (beyond n_studies)"] == 60 - 25


def test_random_split_follows_the_fractions_by_patient():
    subjects = np.repeat(np.arange(1000), 2)
    studies = pd.DataFrame({"subject_id": subjects, "study_id": np.arange(2000)})
    split = random_split_by_patient(studies, (0.7, 0.2, 0.1), seed=0)
    shares = split.value_counts(normalize=True)
    assert abs(shares["train"] - 0.7) < 0.01 and abs(shares["validate"] - 0.2) < 0.01 and abs(shares["test"] - 0.1) < 0.01
    assert (studies.assign(split=split).groupby("subject_id")["split"].nunique() == 1).all()


def test_official_split_is_kept(layout):
    layout.write()
    cohort = select_cohort(read(layout, need_split=True), split="official").cohort
    truth = layout.split.drop_duplicates("study_id").set_index("study_id")["split"]
    assert (cohort["split"].to_numpy() == truth.loc[cohort["study_id"]].to_numpy()).all()


def test_missing_or_empty_report_and_missing_image_are_counted_skips(layout):
    studies = layout.chexpert["study_id"].astype(int).tolist()
    del layout.reports[studies[0]]
    layout.reports[studies[1]] = "  \n"
    ap_or_pa = layout.metadata[(layout.metadata["study_id"] == studies[2]) & (layout.metadata["ViewPosition"] != "LATERAL")]
    layout.skip_images = {ap_or_pa["dicom_id"].item()}
    layout.write()
    selection = select_cohort(read(layout))
    reasons = selection.skipped.set_index("study_id")["reason"]
    assert reasons[studies[0]] == "report file missing" and reasons[studies[1]] == "report file empty"
    assert reasons[studies[2]] == "image file missing"
    assert selection.skipped.set_index("study_id").loc[studies[2], "file"].endswith(".jpg")
    assert not set(studies[:3]) & set(selection.cohort["study_id"])
    assert selection.cohort["study_id"].nunique() == len(studies) - 3


def test_sampling_replaces_skipped_studies_to_reach_n(layout):
    del layout.reports[int(layout.chexpert["study_id"].iloc[0])]
    layout.write()
    selection = select_cohort(read(layout), n_studies=len(layout.chexpert) - 1, seed=0)
    assert selection.cohort["study_id"].nunique() == len(layout.chexpert) - 1


def test_missing_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MIMIC-CXR-JPG folder .*nowhere.*CXR_DATA_DIR"):
        read_layout(tmp_path / "nowhere", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"reports folder .*noreports.*CXR_REPORTS_DIR"):
        read_layout(tmp_path, tmp_path / "noreports")
