"""The shortcut lesson: two worlds with the same studies, the marker in one; a model trained on each."""

import pandas as pd
import pytest

from cxr_helpers.config import load_settings
from cxr_helpers.explain.shortcut import WORLDS, auroc_table, build_world, train_world, where_the_map_points
from cxr_helpers.phantom.shortcut import load_markers

LABEL = "Pleural Effusion"


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return load_settings(profile="phantom", fast=True, artifacts_dir=tmp_path_factory.mktemp("lesson"))


@pytest.fixture(scope="module")
def runs(settings):
    return {world: train_world(settings, LABEL, world) for world in WORLDS}


def test_the_two_worlds_hold_the_same_studies_and_only_one_has_the_marker(settings, runs):
    marked, plain = (runs[world]["settings"] for world in WORLDS)
    cohorts = [pd.read_csv(s.artifacts_dir / "cohort.csv") for s in (marked, plain)]
    assert cohorts[0][["study_id", "dicom_id", "split"]].equals(cohorts[1][["study_id", "dicom_id", "split"]])
    markers = load_markers(marked.data_dir.parent)
    train = markers[markers["split"] != "test"]
    assert train.groupby("positive")["marker"].mean()[1] > train.groupby("positive")["marker"].mean()[0]
    with pytest.raises(FileNotFoundError):
        load_markers(plain.data_dir.parent)
    stamp = (marked.artifacts_dir / "cohort.csv").stat().st_mtime_ns
    assert build_world(settings, LABEL, WORLDS[0]) == marked  # already built: nothing is rewritten
    assert (marked.artifacts_dir / "cohort.csv").stat().st_mtime_ns == stamp
    other = build_world(settings, "Cardiomegaly", WORLDS[0])  # another lesson label: its own marked world
    assert other.data_dir != marked.data_dir
    assert build_world(settings, "Cardiomegaly", WORLDS[1]).data_dir == plain.data_dir  # one unmarked world


def test_the_lesson_reports_auroc_per_world_and_where_the_map_points(runs):
    table = auroc_table(runs, LABEL)
    assert list(table.index) == list(WORLDS) and {"validation AUROC", "test AUROC"} <= set(table.columns)
    points = where_the_map_points(runs[WORLDS[0]], LABEL)
    assert {"energy on marker", "energy on finding", "peak on marker"} <= set(points.columns)
    assert len(points) and ((points["energy on marker"] >= 0) & (points["energy on marker"] <= 1)).all()
