"""Counterfactual re-rendering: the same phantom image without one finding, identical elsewhere."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_helpers.phantom import write_phantom
from cxr_helpers.phantom.anatomy import sample_anatomy
from cxr_helpers.phantom.case import FINDING_LABELS
from cxr_helpers.phantom.counterfactual import (
    counterfactual,
    counterfactuals,
    footprint,
    grow,
    image_without,
    images_without,
    original,
    render_pair,
    to_jpeg_blocks,
)
from cxr_helpers.phantom.findings import EDGE, FindingSpec
from cxr_helpers.phantom.layout import JPG_DIR, METADATA_CSV, TRUTH_DIR, as_stored, image_path
from cxr_helpers.phantom.render import blur_reach, draw

N_STUDIES, SIZE, SEED = 40, 64, 2
ALL_DEVICES = ("et_tube", "central_line", "ng_tube", "pacemaker")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    write_phantom(out, n_studies=N_STUDIES, image_size=SIZE, seed=SEED, workers=1, progress=False)
    return out


def _metadata(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / JPG_DIR / METADATA_CSV)


def _stored(root: Path, row) -> np.ndarray:
    with Image.open(image_path(root, row.subject_id, row.study_id, row.dicom_id)) as image:
        return np.asarray(image)


def _visible(root: Path) -> pd.DataFrame:
    images = pd.read_csv(root / TRUTH_DIR / "images.csv")
    return images[images["visibility"] != "invisible"]


def test_original_equals_every_stored_jpeg(phantom):
    for row in _metadata(phantom).itertuples():
        assert np.array_equal(original(phantom, row.dicom_id), _stored(phantom, row)), row.dicom_id


def test_phantom_json_records_the_settings(phantom):
    record = json.loads((phantom / TRUTH_DIR / "phantom.json").read_text())
    assert (record["seed"], record["n_studies"], record["image_size"]) == (SEED, N_STUDIES, SIZE)
    assert isinstance(record["version"], int)


def test_without_differs_only_in_the_footprint_and_inside_the_mask(phantom):
    visible = _visible(phantom)
    assert visible["label"].nunique() >= 8  # the fixture exercises most labels
    for label, rows in visible.groupby("label"):
        for item in counterfactuals(phantom, rows["dicom_id"].tolist(), label):
            changed = item.original != item.without
            assert not (changed & ~item.footprint).any(), (label, item.dicom_id)
            assert item.mask is not None and item.mask.shape == item.original.shape
            if item.mask.any():
                assert changed[item.mask].any(), (label, item.dicom_id)


def test_the_mask_is_the_stored_ground_truth(phantom):
    row = _visible(phantom).iloc[0]
    item = counterfactual(phantom, row["dicom_id"], row["label"])
    with np.load(phantom / TRUTH_DIR / "masks" / f"{row['dicom_id']}.npz") as masks:
        assert np.array_equal(item.mask, masks[row["label"]])


def test_an_invisible_finding_changes_nothing(phantom):
    images = pd.read_csv(phantom / TRUTH_DIR / "images.csv")
    hidden = images[images["visibility"] == "invisible"]
    assert len(hidden)  # the fixture has one (15% of findings are invisible)
    item = counterfactual(phantom, hidden["dicom_id"].iloc[0], hidden["label"].iloc[0])
    assert item.mask is None and not item.footprint.any()
    assert np.array_equal(item.without, item.original)


def test_batch_equals_one_by_one_and_is_deterministic(phantom):
    rows = _visible(phantom)
    label = rows["label"].value_counts().index[0]
    ids = rows.loc[rows["label"] == label, "dicom_id"].tolist()[:4]
    batch = images_without(phantom, ids, label)
    for dicom_id, image in zip(ids, batch, strict=True):
        assert np.array_equal(image, image_without(phantom, dicom_id, label))
        assert image.dtype == np.uint8


def test_clear_errors(phantom, tmp_path):
    row = _metadata(phantom).iloc[0]
    images = pd.read_csv(phantom / TRUTH_DIR / "images.csv")
    has = set(images.loc[images["dicom_id"] == row.dicom_id, "label"])
    missing = next(label for label in FINDING_LABELS if label not in has)
    with pytest.raises(KeyError, match="no image"):
        image_without(phantom, "0" * 44, "Edema")
    with pytest.raises(ValueError, match=f"has no {missing}"):
        image_without(phantom, row.dicom_id, missing)
    with pytest.raises(ValueError, match="unknown finding label"):
        image_without(phantom, row.dicom_id, "No Finding")
    with pytest.raises(FileNotFoundError, match="phantom.json"):
        original(tmp_path, row.dicom_id)


def test_an_older_generator_version_is_refused(phantom, tmp_path):
    copy = tmp_path / "old"
    (copy / TRUTH_DIR).mkdir(parents=True)
    (copy / JPG_DIR).mkdir()
    (copy / JPG_DIR / METADATA_CSV).write_bytes((phantom / JPG_DIR / METADATA_CSV).read_bytes())
    record = json.loads((phantom / TRUTH_DIR / "phantom.json").read_text())
    record["version"] -= 1
    (copy / TRUTH_DIR / "phantom.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="generator version"):
        original(copy, _metadata(phantom)["dicom_id"].iloc[0])


@pytest.mark.parametrize("view", ["PA", "LATERAL"])
@pytest.mark.parametrize("label", FINDING_LABELS)
def test_every_label_changes_only_its_footprint(label, view):
    """Two findings drawn; taking one away leaves every pixel outside its footprint equal, bit for bit."""
    anatomy = sample_anatomy(np.random.default_rng(4), view, 96, 88)
    other = "Pleural Effusion" if label != "Pleural Effusion" else "Lung Opacity"
    findings = [FindingSpec(label, 1.0, 1, "left", "middle", ALL_DEVICES, seed=21),
                FindingSpec(other, 1.0, 1, "right", "lower", seed=22)]
    pair = render_pair(anatomy, findings, label)
    assert set(pair.masks) == {label, other}
    changed = as_stored(pair.image) != as_stored(pair.without)
    region = footprint(pair.changed, pair.pixel)
    assert changed.any() and not (changed & ~region).any()
    assert not region.all()
    assert (pair.image != pair.without)[pair.masks[label]].any()


@pytest.mark.parametrize("view", ["PA", "AP", "LATERAL"])
@pytest.mark.parametrize("label", FINDING_LABELS)
def test_outside_the_grown_mask_nothing_changes(label, view):
    """Hand check with the ground-truth mask alone: a finding changes the density only within EDGE of its
    mask (Edema: within the lungs), so the stored image changes only within that, the blur's reach and
    the JPEG blocks around it."""
    anatomy = sample_anatomy(np.random.default_rng(7), view, 128, 112)
    pair = render_pair(anatomy, [FindingSpec(label, 1.0, 2, "right", "upper", ALL_DEVICES, seed=3)], label)
    mask = pair.masks[label]
    assert mask.any()
    if label == "Edema":  # diffuse: its haze fades out over both lungs, beyond its mask
        region = np.logical_or.reduce([lung.soft > 0 for lung in draw(anatomy, []).lungs])
    else:
        region = grow(mask, math.ceil(EDGE / pair.pixel) + 1)
    assert not (pair.changed & ~region).any()
    stored_changed = as_stored(pair.image) != as_stored(pair.without)
    assert not (stored_changed & ~to_jpeg_blocks(grow(region, blur_reach(pair.pixel)))).any()
    assert stored_changed[mask].any()


def test_jpeg_blocks_cover_whole_blocks():
    region = np.zeros((20, 19), dtype=bool)
    region[9, 17] = True
    grown = to_jpeg_blocks(region)
    assert grown[8:16, 16:19].all() and grown.sum() == 8 * 3
