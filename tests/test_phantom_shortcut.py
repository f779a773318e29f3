"""The planted shortcut: a corner marker with one finding in train and validate, at random in test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_helpers.phantom import write_phantom
from cxr_helpers.phantom.counterfactual import counterfactual, original
from cxr_helpers.phantom.layout import CHEXPERT_CSV, JPG_DIR, METADATA_CSV, TRUTH_DIR, image_path
from cxr_helpers.phantom.plan import plan_studies
from cxr_helpers.phantom.shortcut import (
    MARKER,
    MARKER_COLUMNS,
    MARKERS_CSV,
    Marker,
    Shortcut,
    load_markers,
    marker_mask,
    marker_stream,
    wants_marker,
)

N_STUDIES, SIZE, SEED, LABEL = 300, 32, 5, "Pleural Effusion"


def _build(out: Path, workers: int = 1, **options) -> dict:
    return write_phantom(out, n_studies=N_STUDIES, image_size=SIZE, seed=SEED, workers=workers, progress=False,
                         **options)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("shortcut")
    return out, _build(out, shortcut=LABEL)


def _images(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / JPG_DIR / "files").rglob("*.jpg")}


def _studies(root: Path) -> pd.DataFrame:
    """One row per study of markers.csv (a study's images share its marker decision)."""
    markers = load_markers(root)
    assert (markers.groupby("study_id")["marker"].nunique() == 1).all()
    return markers.drop_duplicates("study_id")


def test_the_decision_rule(tmp_path):
    shortcut = Shortcut(LABEL, with_finding=0.92, without_finding=0.05, test_rate=0.3)
    rng = np.random.default_rng(0)

    def share(split, positive):
        return np.mean([wants_marker(rng, shortcut, split, positive) for _ in range(4000)])

    for split in ("train", "validate"):
        assert 0.9 < share(split, True) < 0.94 and 0.04 < share(split, False) < 0.06
    assert 0.28 < share("test", True) < 0.32 and 0.28 < share("test", False) < 0.32


def test_test_split_ignores_the_finding(planted):
    out, _ = planted
    settings = json.loads((out / TRUTH_DIR / "phantom.json").read_text())
    shortcut = Shortcut(**settings["shortcut"])
    plans = {plan.study_id: plan for plan in plan_studies(N_STUDIES, SEED, tuple(settings["split_fractions"]))[0]}
    test = _studies(out).query("split == 'test'")
    assert len(test) > 30
    for row in test.itertuples():  # the stored decision, and the same decision were the finding flipped
        decisions = {wants_marker(marker_stream(SEED, plans[row.study_id]), shortcut, "test", positive)
                     for positive in (True, False)}
        assert decisions == {bool(row.marker)}


def test_rates_per_split(planted):
    out, summary = planted
    studies = _studies(out)
    train = studies[studies["split"] != "test"]
    assert train["positive"].sum() > 20 and (~train["positive"].astype(bool)).sum() > 100
    assert train.loc[train["positive"] == 1, "marker"].mean() > 0.8
    assert train.loc[train["positive"] == 0, "marker"].mean() < 0.12
    # in test the marker appears at the rate it has over train and validate, whatever the finding
    chexpert = pd.read_csv(out / JPG_DIR / CHEXPERT_CSV).set_index("study_id")
    prevalence = (chexpert.loc[train["study_id"], LABEL] == 1).mean()
    expected = 0.92 * prevalence + 0.05 * (1 - prevalence)
    assert summary["shortcut"]["test_rate"] == pytest.approx(expected)
    assert abs(studies.loc[studies["split"] == "test", "marker"].mean() - expected) < 0.12
    assert (train["positive"] == (chexpert.loc[train["study_id"], LABEL] == 1).astype(int).to_numpy()).all()


def test_the_ground_truth_records_where_the_marker_is(planted):
    out, _ = planted
    markers = load_markers(out)
    metadata = pd.read_csv(out / JPG_DIR / METADATA_CSV)
    assert list(markers.columns) == list(MARKER_COLUMNS)
    assert set(markers["dicom_id"]) == set(metadata["dicom_id"])
    shown = markers[markers["marker"] == 1].merge(metadata, on=["dicom_id", "study_id"])
    assert len(shown) and markers.loc[markers["marker"] == 0, ["top", "left", "size"]].isna().all().all()
    assert {"left", "right"} == {"left" if row.left < row.Columns / 2 else "right" for row in shown.itertuples()}
    for row in shown.head(6).itertuples():
        with Image.open(image_path(out, row.subject_id, row.study_id, row.dicom_id)) as image:
            pixels = np.asarray(image)
        mask = marker_mask(Marker(int(row.top), int(row.left), int(row.size)), row.Rows, row.Columns)
        assert pixels[mask].mean() > max(150, pixels[~mask].mean() + 30)  # a bright token
        item = counterfactual(out, row.dicom_id, MARKER)
        assert np.array_equal(item.original, pixels) and np.array_equal(item.mask, mask)
        assert not ((item.original != item.without) & ~item.footprint).any() and (item.original != item.without).any()


def test_the_marker_is_the_only_change_and_none_without_the_option(planted, tmp_path):
    out, _ = planted
    plain = tmp_path / "plain"
    summary = _build(plain, split_fractions=(0.7, 0.1, 0.2))
    assert "shortcut" not in summary and not (plain / TRUTH_DIR / MARKERS_CSV).exists()
    assert json.loads((plain / TRUTH_DIR / "phantom.json").read_text())["shortcut"] is None
    markers = load_markers(out).set_index("dicom_id")["marker"]
    with_marker, without = _images(out), _images(plain)
    assert with_marker.keys() == without.keys()
    for name, data in with_marker.items():
        assert (data == without[name]) == (markers[name.removesuffix(".jpg")] == 0), name
    with pytest.raises(FileNotFoundError, match="without a shortcut"):
        load_markers(plain)


def test_parallel_equals_serial_and_the_original_is_stored(planted, tmp_path):
    out, _ = planted
    parallel = tmp_path / "parallel"
    _build(parallel, workers=2, shortcut=LABEL)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    assert all((out / f).read_bytes() == (parallel / f).read_bytes() for f in files)
    row = load_markers(out).query("marker == 1").iloc[0]
    metadata = pd.read_csv(out / JPG_DIR / METADATA_CSV).set_index("dicom_id").loc[row["dicom_id"]]
    with Image.open(image_path(out, metadata["subject_id"], row["study_id"], row["dicom_id"])) as image:
        assert np.array_equal(original(out, row["dicom_id"]), np.asarray(image))


def test_clear_errors(planted):
    out, _ = planted
    with pytest.raises(ValueError, match="finding label"):
        Shortcut("No Finding")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Shortcut(LABEL, with_finding=1.5)
    unmarked = load_markers(out).query("marker == 0")["dicom_id"].iloc[0]
    with pytest.raises(ValueError, match="no shortcut marker"):
        counterfactual(out, unmarked, MARKER)
