"""Counterfactual images: a phantom image re-rendered without one of its findings.

A model "detects" a finding if its score drops when the finding is taken away and nothing else
changes. The phantom can do exactly that: ``ground_truth/phantom.json`` holds the settings the
phantom was written with, so any study can be re-planned and re-sampled (cheap, no pixels), and
one image drawn again with all its findings (``original``: the stored JPEG's pixels exactly) or
with all but one (``image_without``). Both go through the same JPEG encoding as the stored files.

What "identical outside the finding" means: every finding adds to the density map only where it
is drawn, and the noise, exposure curve and blur depend on the anatomy alone, never on the
findings. So the two images differ only in the finding's *footprint*: the pixels where the
finding changes the density map, grown by the reach of the scanner blur (a few pixels), then
grown to whole 8x8 JPEG blocks (the codec encodes each block on its own). Each finding's density
fades out within ``findings.EDGE`` (0.02 of the body frame, about 8 mm: 2-3 pixels at 128 px) of
its mask, so per label the footprint lies within the mask grown by that edge, the blur and the
blocks, where the mask is:

- local findings (effusion, pneumothorax, opacities, consolidation, pneumonia, atelectasis,
  lesion, pleural thickening, devices): where the finding is drawn;
- Fracture: the displaced part of the broken rib and the callus at the break;
- Cardiomegaly: the enlarged heart (the normal heart lies inside it);
- Enlarged Cardiomediastinum: the widened mediastinum with its aortic knob (frontal), the filled
  retrosternal space (lateral);
- except Edema, a diffuse haze: its footprint is both lungs, beyond its (perihilar) mask.

Outside the footprint the pixels are equal, bit for bit (tests check this for every label).
A phantom written with a planted shortcut (``shortcut``) keeps its marker on both images; the
marker itself can be taken away like a finding, under the label ``shortcut.MARKER``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import maximum_filter

from cxr_helpers.phantom.anatomy import Anatomy
from cxr_helpers.phantom.case import FINDING_LABELS
from cxr_helpers.phantom.findings import STRUCTURAL, FindingSpec
from cxr_helpers.phantom.layout import JPG_DIR, METADATA_CSV, TRUTH_DIR, as_stored
from cxr_helpers.phantom.plan import StudyPlan, plan_studies
from cxr_helpers.phantom.render import add_findings, blur_reach, copy_canvas, draw, draw_chest, expose
from cxr_helpers.phantom.settings import SETTINGS_JSON, PhantomSettings, read_settings
from cxr_helpers.phantom.shortcut import MARKER, burn_marker, marker_mask
from cxr_helpers.phantom.study import StudyImage, render_image, sample_study

JPEG_BLOCK = 8  # the JPEG codec encodes 8x8 blocks independently


@dataclass(frozen=True)
class Counterfactual:
    """One image with and without one finding, the finding's mask, and where the two may differ."""

    dicom_id: str
    label: str
    original: np.ndarray  # uint8: the stored JPEG's pixels
    without: np.ndarray  # uint8: the same image re-rendered without the finding, same JPEG encoding
    mask: np.ndarray | None  # bool: the finding's ground-truth mask; None where it is invisible on this image
    footprint: np.ndarray  # bool: the only pixels where ``without`` may differ from ``original``


@dataclass(frozen=True)
class RenderedPair:
    """One image drawn with its findings and without one of them, before JPEG encoding."""

    image: np.ndarray  # uint8
    without: np.ndarray  # uint8
    masks: dict[str, np.ndarray]  # the masks of the image with all its findings
    changed: np.ndarray  # bool: where the finding changed the density map
    pixel: float  # one pixel in canonical units (sets the blur's reach)


def render_pair(anatomy: Anatomy, findings: tuple[FindingSpec, ...] | list[FindingSpec], label: str) -> RenderedPair:
    """Draw an image with all ``findings`` and again without ``label`` (same anatomy, same noise)."""
    rest = [spec for spec in findings if spec.label != label]
    if label in STRUCTURAL:  # it changes the chest itself: draw the chest twice
        with_all, without = draw(anatomy, findings), draw(anatomy, rest)
    else:  # the same chest under both: draw it once
        chest = draw_chest(anatomy, findings)
        with_all, without = add_findings(copy_canvas(chest), findings), add_findings(chest, rest)
    changed = with_all.density != without.density
    return RenderedPair(expose(with_all), expose(without), with_all.masks, changed, with_all.pixel)


def grow(region: np.ndarray, reach: int) -> np.ndarray:
    """A boolean region grown by ``reach`` pixels in every direction (a square neighbourhood)."""
    if reach <= 0 or not region.any():
        return region.copy()
    return maximum_filter(region, size=2 * reach + 1, mode="constant", cval=False)


def to_jpeg_blocks(region: np.ndarray) -> np.ndarray:
    """A boolean region grown to the whole 8x8 JPEG blocks it touches."""
    rows, cols = region.shape
    pad = np.zeros((-(-rows // JPEG_BLOCK) * JPEG_BLOCK, -(-cols // JPEG_BLOCK) * JPEG_BLOCK), dtype=bool)
    pad[:rows, :cols] = region
    blocks = pad.reshape(pad.shape[0] // JPEG_BLOCK, JPEG_BLOCK, pad.shape[1] // JPEG_BLOCK, JPEG_BLOCK).any(axis=(1, 3))
    return np.repeat(np.repeat(blocks, JPEG_BLOCK, axis=0), JPEG_BLOCK, axis=1)[:rows, :cols]


def footprint(changed: np.ndarray, pixel: float) -> np.ndarray:
    """The stored-image pixels a density change can reach: grown by the blur, then to whole JPEG blocks."""
    return to_jpeg_blocks(grow(changed, blur_reach(pixel)))


# --- finding one image of a written phantom ----------------------------------------------------------


@dataclass(frozen=True)
class _Index:
    """A written phantom's settings, its re-made plan, and which study each image belongs to."""

    settings: PhantomSettings
    plans: dict[int, StudyPlan]  # by study_id
    study_of: dict[str, int]  # dicom_id -> study_id


@lru_cache(maxsize=4)
def _load_index(root: str, stamp: tuple) -> _Index:
    """Read phantom.json and the metadata CSV and re-plan the studies (cached per version of the files)."""
    settings = read_settings(Path(root))
    plans, _ = plan_studies(settings.n_studies, settings.seed, settings.split_fractions)
    metadata = pd.read_csv(Path(root) / JPG_DIR / METADATA_CSV, usecols=["dicom_id", "study_id"], dtype={"dicom_id": str})
    return _Index(settings, {plan.study_id: plan for plan in plans},
                  dict(zip(metadata["dicom_id"], metadata["study_id"].astype(int), strict=True)))


def _index(root: Path) -> _Index:
    """The index of the phantom in ``root``, re-read when its files change."""
    root = Path(root)
    files = (root / TRUTH_DIR / SETTINGS_JSON, root / JPG_DIR / METADATA_CSV)
    stamp = tuple((os.stat(f).st_mtime_ns, os.stat(f).st_size) if f.exists() else None for f in files)
    return _load_index(str(root.resolve()), stamp)


def _study_images(root: Path, dicom_ids: list[str]) -> dict[str, StudyImage]:
    """Re-sample the studies of some images (each study once) and return those images."""
    index = _index(root)
    by_study: dict[int, list[str]] = defaultdict(list)
    for dicom_id in dicom_ids:
        if dicom_id not in index.study_of:
            raise KeyError(f"no image {dicom_id!r} in the phantom at {root} (see its {METADATA_CSV})")
        by_study[index.study_of[dicom_id]].append(dicom_id)
    found: dict[str, StudyImage] = {}
    for study_id, wanted in by_study.items():
        settings = index.settings
        study = sample_study(index.plans[study_id], settings.image_size, settings.seed, settings.shortcut)
        images = {image.dicom_id: image for image in study.images}
        for dicom_id in wanted:
            if dicom_id not in images:
                raise RuntimeError(f"re-planning the phantom at {root} does not reproduce image {dicom_id}: "
                                   "were its files written with other settings? Rebuild it")
            found[dicom_id] = images[dicom_id]
    return found


def _check_label(image: StudyImage, label: str) -> None:
    """A clear error for a label the image does not have."""
    if label not in FINDING_LABELS:
        raise ValueError(f"unknown finding label {label!r}; one of: {', '.join(FINDING_LABELS)}")
    if label not in image.visibility:
        present = ", ".join(image.visibility) or "none"
        raise ValueError(f"image {image.dicom_id} has no {label} to take away (its findings: {present})")


def counterfactuals(root: Path, dicom_ids: list[str], label: str) -> list[Counterfactual]:
    """Each image re-rendered with and without ``label``, in the order given (each study sampled once).

    A finding that is invisible on an image was not drawn there: ``without`` equals ``original``,
    ``mask`` is None and the footprint is empty.
    """
    images = _study_images(Path(root), list(dicom_ids))
    return [_without_marker(images[dicom_id]) if label == MARKER else _without_finding(images[dicom_id], label)
            for dicom_id in dicom_ids]


def _without_finding(image: StudyImage, label: str) -> Counterfactual:
    """One image with and without one of its findings (its marker, if any, on both)."""
    _check_label(image, label)
    pair = render_pair(image.anatomy, image.findings, label)
    original_, without = pair.image, pair.without
    if image.marker is not None:  # burned in after exposure, the same on both
        original_, without = burn_marker(original_, image.marker), burn_marker(without, image.marker)
    return Counterfactual(image.dicom_id, label, as_stored(original_), as_stored(without), pair.masks.get(label),
                          footprint(pair.changed, pair.pixel))


def _without_marker(image: StudyImage) -> Counterfactual:
    """One image with and without the planted shortcut's marker."""
    if image.marker is None:
        raise ValueError(f"image {image.dicom_id} carries no shortcut marker to take away")
    pixels = expose(draw(image.anatomy, image.findings))
    mask = marker_mask(image.marker, image.rows, image.cols)
    return Counterfactual(image.dicom_id, MARKER, as_stored(burn_marker(pixels, image.marker)), as_stored(pixels),
                          mask, to_jpeg_blocks(mask))


def counterfactual(root: Path, dicom_id: str, label: str) -> Counterfactual:
    """One image re-rendered with and without ``label`` (see ``counterfactuals``)."""
    return counterfactuals(root, [dicom_id], label)[0]


def images_without(root: Path, dicom_ids: list[str], label: str) -> list[np.ndarray]:
    """Each image re-rendered without ``label`` (uint8, as if stored as the phantom's JPEG)."""
    return [item.without for item in counterfactuals(root, dicom_ids, label)]


def image_without(root: Path, dicom_id: str, label: str) -> np.ndarray:
    """One image re-rendered without ``label`` (uint8, as if stored as the phantom's JPEG)."""
    return counterfactual(root, dicom_id, label).without


def original(root: Path, dicom_id: str) -> np.ndarray:
    """One image re-rendered with all its findings: the stored JPEG's pixels, exactly."""
    image = _study_images(Path(root), [dicom_id])[dicom_id]
    return as_stored(render_image(image)[0])
