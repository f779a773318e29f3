"""One study in memory: its clinical case, its images (views, anatomy, findings) and its report.

``sample_study`` fixes everything about a study from its plan and the seed, drawing from the
study's own random stream, without drawing a pixel; ``render_image`` then draws one of its images.
Re-sampling a study is cheap, so an image can be re-rendered later (with or without a finding)
without regenerating the phantom.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cxr_helpers.phantom.anatomy import Anatomy, sample_anatomy, sample_traits
from cxr_helpers.phantom.case import SEVERITIES, ClinicalCase, sample_case
from cxr_helpers.phantom.findings import STRENGTH, FindingSpec
from cxr_helpers.phantom.plan import StudyPlan
from cxr_helpers.phantom.render import render
from cxr_helpers.phantom.reports import Report, derive_labels, write_report
from cxr_helpers.phantom.shortcut import (
    Marker,
    Shortcut,
    burn_marker,
    marker_stream,
    place_marker,
    wants_marker,
)


@dataclass(frozen=True)
class StudyImage:
    """One image of a study, fixed before it is drawn."""

    dicom_id: str
    view: str
    rows: int
    cols: int
    anatomy: Anatomy
    visibility: dict[str, str]  # per finding of the case: clear / subtle / invisible on this image
    findings: tuple[FindingSpec, ...]  # how each finding is drawn (strength 0 when invisible)
    orientation: str  # Erect or Recumbent
    marker: Marker | None = None  # the planted shortcut's marker, if the phantom has one and this study carries it


@dataclass(frozen=True)
class Study:
    """One study: its plan, clinical case, examination, images and report."""

    plan: StudyPlan
    case: ClinicalCase
    exam: str
    images: tuple[StudyImage, ...]
    report: Report

    @property
    def labels(self) -> dict[str, float | None]:
        """The CheXpert labels the labeler derives from the report."""
        return derive_labels(self.report.spans, self.report.labeler_section)


def _dicom_id(rng: np.random.Generator) -> str:
    """A 44-character MIMIC-style dicom id: five dash-separated groups of 8 hex digits."""
    return "-".join(f"{int(v):08x}" for v in rng.integers(0, 2**32, size=5, dtype=np.uint64))


def _exam_and_views(rng: np.random.Generator, case: ClinicalCase) -> tuple[str, list[str]]:
    """Examination type and the view of each image: portable AP in the ICU, PA + lateral for outpatients."""
    if case.setting == "icu" or (case.setting == "inpatient" and rng.random() < 0.45):
        views = ["AP"] * (2 if rng.random() < 0.1 else 1)
        if rng.random() < (0.08 if case.setting == "icu" else 0.3):
            views.append("LATERAL")
        return ("AP_LAT" if len(views) > 1 and "LATERAL" in views else "AP"), views
    if rng.random() < 0.13:
        return "PA", ["PA"]
    views = ["PA", "LATERAL" if rng.random() < 0.85 else "LL"]
    if rng.random() < 0.05:
        views.insert(1, "PA")
    return "PA_LAT", views


def _image_shape(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(Rows, Columns): mostly square, some portrait or landscape, to exercise odd-aspect handling."""
    r = rng.random()
    short = max(16, int(round(size * 0.86)))
    if r < 0.15:
        return size, short
    if r < 0.2:
        return short, size
    return size, size


def _image_visibility(rng: np.random.Generator, visibility: str, view: str) -> str:
    """A lateral view shows a finding one step less clearly, half of the time."""
    if view in ("LATERAL", "LL") and visibility != "invisible" and rng.random() < 0.5:
        return "subtle" if visibility == "clear" else "invisible"
    return visibility


def _finding_specs(case: ClinicalCase, visibility: dict[str, str], base_seed: int) -> list[FindingSpec]:
    """How each present finding is drawn on one image (seeded per study, so all views agree)."""
    specs = []
    for i, label in enumerate(case.findings):
        specs.append(FindingSpec(
            label=label, strength=STRENGTH[visibility[label]], severity=SEVERITIES.index(case.severity[label]),
            side=case.side[label], zone=case.zone[label], devices=case.devices, seed=base_seed + 7919 * (i + 1),
        ))
    return specs


def sample_study(plan: StudyPlan, image_size: int, seed: int, shortcut: Shortcut | None = None) -> Study:
    """Everything about one study except its pixels, from the study's own random stream.

    With a ``shortcut``, the study then decides from a stream of its own whether its images carry
    the marker, and where, so that everything else is as without one.
    """
    rng = np.random.default_rng([seed, 2, plan.index])
    case = sample_case(rng, sex=plan.sex)
    exam, views = _exam_and_views(rng, case)
    traits = sample_traits(np.random.default_rng([seed, 3, plan.traits_seed]))
    finding_seed = int(rng.integers(2**31))
    images = []
    for view in views:
        dicom_id = _dicom_id(rng)
        rows, cols = _image_shape(rng, image_size)
        anatomy = sample_anatomy(rng, view, rows, cols, traits)
        visibility = {label: _image_visibility(rng, case.visibility[label], view) for label in case.findings}
        orientation = "Recumbent" if view == "AP" and case.setting == "icu" and rng.random() < 0.5 else "Erect"
        images.append(StudyImage(dicom_id, view, rows, cols, anatomy, visibility,
                                 tuple(_finding_specs(case, visibility, finding_seed)), orientation))
    study = Study(plan, case, exam, tuple(images), write_report(rng, case, exam))
    return _with_markers(study, shortcut, seed) if shortcut is not None else study


def _with_markers(study: Study, shortcut: Shortcut, seed: int) -> Study:
    """The study with the shortcut's marker on each of its images, if the study carries it."""
    rng = marker_stream(seed, study.plan)
    if not wants_marker(rng, shortcut, study.plan.split, study.labels[shortcut.label] == 1.0):
        return study
    images = tuple(replace(image, marker=place_marker(rng, image.rows, image.cols)) for image in study.images)
    return replace(study, images=images)


def render_image(image: StudyImage) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The radiograph (uint8, with its marker if any) and the mask of each finding drawn on one image."""
    pixels, masks = render(image.anatomy, list(image.findings))
    return (burn_marker(pixels, image.marker) if image.marker is not None else pixels), masks
