"""Grad-CAM against the finding's mask: on test studies (for detected findings) and on the probe set.

One record per explained finding: whether the model detects it (``detection``), and for the map
(the label's CAM layer, ``gradcam.cam_layer_for``) and for a RandomCAM map on the same layer: the
pointing game exact and within the tolerance, the map's energy inside the mask, and the hit rate
of a uniformly random peak (the mask's area share, exact and within the tolerance). Given the
label's baseline map (its mean map over images the labels call negative), the pointing game of the
map minus that baseline too: a map always peaks somewhere, and on a normal chest it peaks at the
label's learned default; the difference peaks where this image departs from it. The probe set
(fresh images with one finding each, ``phantom.probes``) is the main localisation test: there no
other finding is in the image for the map to point at instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from tqdm.auto import tqdm

from cxr_helpers.explain.faithfulness.detection import DETECTION_DROP, logit_drops, model_inputs, study_drops
from cxr_helpers.explain.faithfulness.scores import (
    energy_inside_mask,
    mask_area_share,
    peak_on_other_finding,
    pointing_game_hit,
    tolerance_pixels,
)
from cxr_helpers.explain.gradcam import (
    RANDOM_CAM,
    cam_layer_for,
    cam_method_for,
    compute_cams,
    finding_extent,
)
from cxr_helpers.images import resize_mask
from cxr_helpers.labels import CHEXPERT_LABELS, label_index
from cxr_helpers.phantom.probes import ProbeSet
from cxr_helpers.phantom.truth import GroundTruth

CASE_COLUMNS = ["study_id", "dicom_id", "label", "extent", "visibility"]
ROAD_PERCENTILES = (30, 70)
Baselines = Callable[[str], np.ndarray | None]  # label -> its baseline map (gradcam.label_baselines)
ROAD_LIMIT = 20  # findings per model scored by ROAD (its imputation dominates the checks' time on a CPU)


def map_scores(cam: np.ndarray, random_cam: np.ndarray, mask: np.ndarray, tolerance: float,
               baseline: np.ndarray | None = None) -> dict:
    """The map's and a random map's scores against one mask, with the uniform-peak baselines, and where the map peaks.

    With the label's ``baseline`` map (``gradcam.label_baseline_map``), also the pointing game of
    ``cam - baseline``: where this image's map differs from the label's normal chest (NaN without one).
    """
    peak_y, peak_x = np.unravel_index(int(np.argmax(cam)), np.shape(cam))
    contrast = None if baseline is None else np.asarray(cam, dtype=np.float32) - baseline
    return {
        "hit": float(pointing_game_hit(cam, mask, tolerance)),
        "hit_exact": float(pointing_game_hit(cam, mask)),
        "energy": energy_inside_mask(cam, mask),
        "hit_baseline": np.nan if contrast is None else float(pointing_game_hit(contrast, mask, tolerance)),
        "hit_exact_baseline": np.nan if contrast is None else float(pointing_game_hit(contrast, mask)),
        "hit_random": float(pointing_game_hit(random_cam, mask, tolerance)),
        "hit_exact_random": float(pointing_game_hit(random_cam, mask)),
        "energy_random": energy_inside_mask(random_cam, mask),
        "area_share": mask_area_share(mask),
        "tolerance_share": mask_area_share(mask, tolerance),
        "peak_y": int(peak_y), "peak_x": int(peak_x),  # pixel of the map's maximum (row, column)
    }


def road_scores(model: nn.Module, image: np.ndarray, cams: Sequence[np.ndarray], labels: Sequence[str],
                percentiles: Sequence[int] = ROAD_PERCENTILES, seed: int = 0) -> np.ndarray:
    """ROADCombined per label (K,): (logit drop removing the least relevant - removing the most relevant) / 2.

    Higher is better: imputing the map's top pixels away should hurt the label's logit more than
    imputing its bottom pixels. The imputation noise is seeded.
    """

    batch = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None].repeat(len(labels), 1, 1, 1)  # (K, 1, S, S)
    batch = batch.to(next(model.parameters()).device)
    targets = [ClassifierOutputTarget(label_index(name)) for name in labels]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        scores = ROADCombined(percentiles=list(percentiles))(batch, np.stack(cams), targets, model.eval())
    return np.asarray(scores, dtype=np.float64).reshape(len(labels))


def test_cases(explainer, truth: GroundTruth, studies: Sequence[int]) -> pd.DataFrame:
    """Truly present findings (not No Finding) drawn visibly on each study's image, one row each."""
    size = int(explainer.images.shape[-1])
    rows = []
    for study_id in studies:
        dicom_id = str(explainer.row(study_id)["dicom_id"])
        for label in CHEXPERT_LABELS:
            visibility = truth.image_visibility(dicom_id, label)
            if label == "No Finding" or not truth.present(study_id, label) or visibility in (None, "invisible"):
                continue
            if truth.mask(dicom_id, label, size) is not None:
                rows.append({"study_id": int(study_id), "dicom_id": dicom_id, "label": label,
                             "extent": finding_extent(label), "visibility": visibility})
    return pd.DataFrame(rows, columns=CASE_COLUMNS)


def study_checks(explainer, truth: GroundTruth, studies: Sequence[int], role: str = "image",
                 method: str = "auto", layer: str = "auto", progress: bool = False,
                 baselines: Baselines | None = None, road_limit: int = ROAD_LIMIT,
                 model_name: str | None = None) -> pd.DataFrame:
    """Detection and map scores for every visible present finding of the studies, for one model (role).

    ``baselines`` (``gradcam.label_baselines`` of this role's model): also score each detected
    finding's map minus its label's baseline. ROAD scores the first ``road_limit`` detected findings.
    ``model_name`` names the model in the records and the progress bar (default: the role).
    """
    model_name = model_name or role
    cases = test_cases(explainer, truth, studies)
    size = int(explainer.images.shape[-1])
    tolerance = tolerance_pixels(size)
    drops = study_drops(lambda study_id: explainer.cam_model(study_id, role)[0], truth.root.parent, cases, size)
    masks = {(case.dicom_id, case.label): truth.mask(case.dicom_id, case.label, size) for case in cases.itertuples()}
    records, road_left = [], road_limit
    for case, drop in tqdm(list(zip(cases.itertuples(index=False), drops, strict=True)),
                           desc=f"Grad-CAM checks ({model_name})", disable=not progress):
        how, name = cam_method_for(case.label, method), cam_layer_for(case.label, layer)
        cam = explainer.cams(case.study_id, [case.label], role, how, name)[case.label]
        random_cam = explainer.cams(case.study_id, [case.label], role, RANDOM_CAM, name)[case.label]
        p = float(explainer.probabilities(case.study_id, role)[label_index(case.label)])
        detected = bool(drop > DETECTION_DROP)
        baseline = baselines(case.label) if baselines is not None and detected else None
        record = {**case._asdict(), "source": "test", "model": model_name, "layer": name, "method": how,
                  "probability": p, "drop": float(drop), "detected": detected,
                  **map_scores(cam, random_cam, masks[case.dicom_id, case.label], tolerance, baseline),
                  "peak_on_other": float(peak_on_other_finding(
                      cam, [mask for (dicom_id, label), mask in masks.items()
                            if dicom_id == case.dicom_id and label != case.label], tolerance)),
                  "road": np.nan, "road_random": np.nan}
        if record["detected"] and road_left > 0:  # ROAD needs no mask: the check that also works on real data
            model, image = explainer.cam_model(case.study_id, role)[0], explainer.image(case.study_id)
            record["road"], record["road_random"] = road_scores(model, image, [cam, random_cam], [case.label] * 2)
            road_left -= 1
        records.append(record)
    return pd.DataFrame(records)


def probe_checks(model, probes: ProbeSet, size: int, method: str = "auto", layer: str = "auto",
                 progress: bool = False, baselines: Baselines | None = None, batch_size: int = 32,
                 model_name: str = "image") -> pd.DataFrame:
    """Detection and map scores of an image model on each probe (one finding per image); with
    ``baselines`` (``gradcam.label_baselines`` of this model), also of each detected map minus its label's
    baseline. ``model_name`` names the model in the records and the progress bar.

    The probes of one label go through the model, the CAM and the random CAM in batches of
    ``batch_size`` (the same maps as one image at a time, about twice as fast on a CPU); one
    record per probe with a visible mask, in the probe table's order.
    """
    tolerance = tolerance_pixels(size)
    table = probes.table
    records = {}
    for label in tqdm(list(dict.fromkeys(table["label"])), desc=f"probe checks ({model_name})", disable=not progress):
        masks = {k: resize_mask(probes.masks[k], size) for k in table.index[table["label"] == label]}
        kept = [k for k, mask in masks.items() if mask.any()]
        how, name = cam_method_for(label, method), cam_layer_for(label, layer)
        target = model.cam_layer(name)
        for start in range(0, len(kept), batch_size):
            chunk = kept[start : start + batch_size]
            drops = logit_drops(model, [probes.images[k] for k in chunk], [probes.without[k] for k in chunk], label, size)
            images = model_inputs([probes.images[k] for k in chunk], size)  # (B, 1, S, S)
            targets = [label_index(label)] * len(chunk)
            cams = compute_cams(model, target, images, targets, how)
            random_cams = compute_cams(model, target, images, targets, RANDOM_CAM)
            for k, drop, cam, random_cam in zip(chunk, drops, cams, random_cams, strict=True):
                detected = bool(drop > DETECTION_DROP)
                baseline = baselines(label) if baselines is not None and detected else None
                records[k] = {"source": "probe", "probe_id": table.at[k, "probe_id"], "label": label,
                              "extent": finding_extent(label), "model": model_name, "layer": name, "method": how,
                              "drop": float(drop), "detected": detected,
                              **map_scores(cam, random_cam, masks[k], tolerance, baseline)}
    return pd.DataFrame([records[k] for k in table.index if k in records])
