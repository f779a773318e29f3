"""The probe set: one clear finding per frontal image, its mask, and the same image without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxr_helpers.phantom.case import DEVICES, FINDING_LABELS
from cxr_helpers.phantom.counterfactual import to_jpeg_blocks
from cxr_helpers.phantom.layout import as_stored
from cxr_helpers.phantom.probes import PROBE_COLUMNS, load_probes, make_probe, write_probes

PER_LABEL, SIZE, SEED = 4, 64, 1


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("probes")
    write_probes(out, per_label=PER_LABEL, image_size=SIZE, seed=SEED)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_requested_count_of_every_finding_label(probes):
    table = pd.read_csv(probes / "probes.csv", keep_default_na=False)
    assert list(table.columns) == list(PROBE_COLUMNS)
    assert table["label"].value_counts().to_dict() == {label: PER_LABEL for label in FINDING_LABELS}
    assert "No Finding" not in set(table["label"]) and table["probe_id"].is_unique
    assert set(table["view"]) <= {"PA", "AP"} and (table["rows"] == SIZE).all() and (table["cols"] == SIZE).all()
    devices = table.loc[table["label"] == "Support Devices", "device"]
    assert sorted(devices) == sorted(DEVICES)  # one device type each, every type once in four probes
    assert (table.loc[table["label"] != "Support Devices", "device"] == "").all()


def test_one_finding_each_with_its_mask(probes):
    loaded = load_probes(probes)
    assert loaded.images.shape == loaded.without.shape == loaded.masks.shape == (len(loaded.table), SIZE, SIZE)
    for name, label in zip(loaded.table["probe_id"], loaded.table["label"], strict=True):
        with np.load(probes / "masks" / f"{name}.npz") as stored:
            assert stored.files == [label]
            assert stored[label].any() and stored[label].dtype == bool
    differs = loaded.images != loaded.without
    assert all(differs[i][loaded.masks[i]].any() for i in range(len(loaded.table)))


@pytest.mark.parametrize("label", FINDING_LABELS)
def test_the_counterfactual_differs_only_in_the_footprint(label):
    for number in range(3):
        probe = make_probe(label, number, image_size=96, seed=SEED)
        assert probe.mask.any() and probe.footprint[probe.mask].any()
        assert not ((probe.image != probe.without) & ~probe.footprint).any()
        stored = as_stored(probe.image) != as_stored(probe.without)
        assert not (stored & ~to_jpeg_blocks(probe.footprint)).any()
        assert not probe.footprint.all()


def test_deterministic_and_independent_of_the_set_size(probes, tmp_path):
    again, smaller = tmp_path / "again", tmp_path / "smaller"
    write_probes(again, per_label=PER_LABEL, image_size=SIZE, seed=SEED)
    assert _files(again) == _files(probes)
    write_probes(smaller, per_label=2, image_size=SIZE, seed=SEED, labels=("Lung Lesion",))
    for name in ("LES-000", "LES-001"):
        assert (smaller / "images" / f"{name}.jpg").read_bytes() == (probes / "images" / f"{name}.jpg").read_bytes()
    other = make_probe("Lung Lesion", 0, image_size=SIZE, seed=SEED + 1)
    assert not np.array_equal(other.image, make_probe("Lung Lesion", 0, image_size=SIZE, seed=SEED).image)


def test_loaded_images_are_the_stored_probes(probes):
    loaded = load_probes(probes)
    probe = make_probe(loaded.table["label"].iloc[5], 1, image_size=SIZE, seed=SEED)
    assert loaded.table["probe_id"].iloc[5] == probe.row["probe_id"]
    assert np.array_equal(loaded.images[5], as_stored(probe.image))
    assert np.array_equal(loaded.without[5], as_stored(probe.without))
    assert np.array_equal(loaded.masks[5], probe.mask)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no probes for"):
        make_probe("No Finding", 0)
    with pytest.raises(ValueError, match="per_label"):
        write_probes(tmp_path, per_label=0)
    with pytest.raises(FileNotFoundError, match="probes.csv"):
        load_probes(tmp_path / "nothing")
