"""The shortcut lesson: a model right for the wrong reason, and the explanation that gives it away.

Chest X-ray models have learned hospital tokens and scanner markers instead of disease (Zech et
al., PLOS Med 2018; DeGrave et al., Nat Mach Intell 2021). The phantom can plant such a cue
(``phantom.shortcut``): a corner marker that goes with one finding in the training and validation
studies but appears at random in the test studies. Two small worlds are built from the same
studies, with and without the marker; the workbook's image model is trained on each with the
same settings, and compared: validation vs test AUROC for the label, and where its Grad-CAM
points (its energy on the marker vs on the finding).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.config import Settings
from cxr_helpers.explain.faithfulness.scores import energy_inside_mask, pointing_game_hit
from cxr_helpers.explain.gradcam import cam_for_label
from cxr_helpers.image_training import train_image
from cxr_helpers.images import resize_mask, resize_pixels
from cxr_helpers.phantom import write_phantom
from cxr_helpers.phantom.counterfactual import images_without, original
from cxr_helpers.phantom.shortcut import MARKER, Marker, Shortcut, load_markers, marker_mask
from cxr_helpers.phantom.truth import load_ground_truth
from cxr_helpers.phantom.writer import SHORTCUT_SPLIT_FRACTIONS
from cxr_helpers.prepare import load_cohort, open_image_cache, prepare_cohort

WORLDS = ("with marker", "without marker")
LESSON_STUDIES = {True: 120, False: 600}  # keyed by settings.fast
LESSON_IMAGE_SIZE = {True: 64, False: 96}
LESSON_EPOCHS = {True: 2, False: 6}


def _world_folder(world: str, label: str) -> str:
    """"with_marker_atelectasis", "without_marker": the folder of a world under ``<artifacts>/shortcut``."""
    return world.replace(" ", "_") + (f"_{label.lower().replace(' ', '_')}" if world == "with marker" else "")


def world_settings(settings: Settings, world: str, label: str) -> Settings:
    """Settings of one small world of the lesson: its own phantom and artifacts under ``<artifacts>/shortcut``.

    The marked world has one folder per lesson label (the marker goes with that label); the world
    without the marker is the same for every label.
    """
    root = Path(settings.artifacts_dir) / "shortcut" / _world_folder(world, label)
    return dataclasses.replace(
        settings, profile="phantom", data_dir=root / "phantom" / "mimic-cxr-jpg", reports_dir=root / "phantom" / "mimic-cxr-reports",
        artifacts_dir=root / "artifacts", split="official", n_studies=None, blank_policy="negative",
        image_size=LESSON_IMAGE_SIZE[settings.fast], epochs=LESSON_EPOCHS[settings.fast], freeze_through="none",
        image_weights=None, augment_shift=0.0)  # a marker always in the same corners, as on real films


def build_world(settings: Settings, label: str, world: str, progress: bool = False) -> Settings:
    """Write the world's phantom (the same studies in both worlds; the marker only in one) and its cohort."""
    lesson = world_settings(settings, world, label)
    phantom = lesson.data_dir.parent
    if not (phantom / "ground_truth" / "phantom.json").exists():
        write_phantom(phantom, n_studies=LESSON_STUDIES[settings.fast], image_size=2 * lesson.image_size,
                      seed=settings.seed, workers=settings.prepare_workers, progress=progress,
                      shortcut=Shortcut(label) if world == "with marker" else None,
                      split_fractions=SHORTCUT_SPLIT_FRACTIONS)
    if not (lesson.artifacts_dir / "cohort.csv").exists():
        prepare_cohort(lesson, progress=progress)
    return lesson


def train_world(settings: Settings, label: str, world: str, progress: bool = False) -> dict:
    """Build one world and train the workbook's image model on it; its label's AUROC per split."""
    lesson = build_world(settings, label, world, progress)
    run = train_image(lesson, progress=progress)
    figures = {split: run["metrics"][split] for split in ("train", "validate", "test")}
    return {"settings": lesson, "model": run["model"], "history": run["history"],
            "auroc": {split: figures[split]["auroc"][label] for split in figures},
            "truth_auroc": {split: figures[split].get("truth", {}).get("auroc", {}).get(label) for split in figures}}


def auroc_table(runs: dict[str, dict], label: str) -> pd.DataFrame:
    """The label's AUROC on validation and test (report labels and, the phantom's, the truth) per world."""
    rows = [{"world": world, "validation AUROC": run["auroc"]["validate"], "test AUROC": run["auroc"]["test"],
             "test AUROC vs truth": run["truth_auroc"]["test"]} for world, run in runs.items()]
    return pd.DataFrame(rows).set_index("world").rename_axis(label)


def where_the_map_points(run: dict, label: str, limit: int = 40, layer: str = "auto") -> pd.DataFrame:
    """On test images with the marker and the finding: the map's energy on the marker vs on the finding.

    The Grad-CAM is computed on ``layer`` ("auto": the finding's layer, ``gradcam.cam_layer_for``).
    The marker's mask comes from ``ground_truth/markers.csv`` (on the world without a marker, the
    same corner is scored, where nothing is drawn); the finding's from the phantom's masks.
    """
    lesson = run["settings"]
    phantom = lesson.data_dir.parent
    truth = load_ground_truth(phantom)
    markers = load_markers(_marked_world(phantom, label)).set_index("dicom_id")
    cohort = load_cohort(lesson.artifacts_dir)
    images = open_image_cache(lesson.artifacts_dir, lesson.image_size)
    test = cohort[(cohort["split"] == "test") & cohort["dicom_id"].isin(markers.index[markers["marker"] == 1])]
    records = []
    for row in test.head(limit).itertuples(index=False):
        finding = truth.mask(row.dicom_id, label, lesson.image_size)
        if finding is None:
            continue
        spot = markers.loc[row.dicom_id]
        raw = truth.raw_mask(row.dicom_id, label)
        marker = Marker(int(spot["top"]), int(spot["left"]), int(spot["size"]))
        corner = resize_mask(marker_mask(marker, *raw.shape), lesson.image_size)
        image = np.asarray(images[row.cache_index], dtype=np.float32) / 255.0
        model = run["model"]
        cam = cam_for_label(model, image, label, "gradcam", layer)
        records.append({"study_id": row.study_id, "energy on marker": energy_inside_mask(cam, corner),
                        "energy on finding": energy_inside_mask(cam, finding),
                        "peak on marker": float(pointing_game_hit(cam, corner)),
                        "marker share of image": float(corner.mean()), "finding share of image": float(finding.mean())})
    return pd.DataFrame(records)


def _marked_world(phantom: Path, label: str) -> Path:
    """The world with the marker for ``label``: markers.csv lives there (both worlds share studies and splits)."""
    return phantom.parent.parent / _world_folder("with marker", label) / "phantom"


def marker_effect(run: dict, label: str, probability_shift, limit: int = 8) -> pd.DataFrame:
    """On test images of the marked world with the marker but WITHOUT the finding: p with the marker, without it.

    ``probability_shift(model, with_marker, without_marker, label)`` is the notebook's exercise;
    the image without the marker is the phantom's counterfactual (everything else identical).
    """
    lesson = run["settings"]
    phantom = lesson.data_dir.parent
    truth = load_ground_truth(phantom)
    markers = load_markers(phantom).set_index("dicom_id")
    cohort = load_cohort(lesson.artifacts_dir)
    marked = cohort[(cohort["split"] == "test") & cohort["dicom_id"].isin(markers.index[markers["marker"] == 1])]
    chosen = [row for row in marked.itertuples(index=False) if not truth.present(row.study_id, label)][:limit]
    withouts = images_without(phantom, [row.dicom_id for row in chosen], MARKER)
    originals = [original(phantom, row.dicom_id) for row in chosen]
    rows = []
    for row, with_marker, without_marker in zip(chosen, originals, withouts, strict=True):
        shift = probability_shift(run["model"], resize_pixels(with_marker, lesson.image_size),
                                  resize_pixels(without_marker, lesson.image_size), label)
        rows.append({"study_id": row.study_id, "p(with marker) - p(without)": shift})
    return pd.DataFrame(rows)
