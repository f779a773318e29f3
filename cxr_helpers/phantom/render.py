"""From anatomy and findings to a radiograph: draw the density map, then expose it.

``render(anatomy, findings)`` draws the same anatomy (and the same noise) with or without
findings, so an image can be compared with its finding-free twin. Everything is vectorised numpy
on whole images (no per-pixel Python loops); thin lines and tubes are rasterised with PIL.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
from scipy.ndimage import gaussian_filter

from cxr_helpers.phantom.anatomy import Anatomy, mediastinal_half_width
from cxr_helpers.phantom.canvas import Canvas, lung_field
from cxr_helpers.phantom.chest import draw_normal_chest, draw_ribs
from cxr_helpers.phantom.findings import DRAWERS, FindingSpec, structural_changes
from cxr_helpers.phantom.geometry import canonical_grid, pixel_grid

LUT_SIZE = 4096
BLUR_TRUNCATE = 4.0  # the scanner blur's Gaussian is cut at 4 sigma (scipy's default)


def draw_chest(anatomy: Anatomy, findings: list[FindingSpec] | tuple = ()) -> Canvas:
    """One image's chest before its findings: the normal chest as the structural findings change it.

    The structural findings enlarge the heart, widen the mediastinum or break a rib.
    """
    findings = [spec for spec in findings if spec.strength > 0]
    anatomy, widening = structural_changes(anatomy, findings)
    X, Y = canonical_grid(anatomy)
    pixel = 1.0 / max(anatomy.rows, anatomy.cols) / anatomy.scale  # one pixel in canonical units
    eps = max(0.012, 1.5 * pixel)
    if anatomy.frontal:
        half = mediastinal_half_width(anatomy, Y, widening)
        lungs = [lung_field(X, Y, lung, half, eps) for lung in anatomy.lungs]
    else:
        lungs = [lung_field(X, Y, lung, lung.medial, eps) for lung in anatomy.lungs]
    canvas = Canvas(anatomy, X, Y, np.zeros_like(X), lungs, pixel, np.random.default_rng(anatomy.noise_seed), widening)
    draw_normal_chest(canvas)
    draw_ribs(canvas, next((spec for spec in findings if spec.label == "Fracture"), None))
    return canvas


def add_findings(canvas: Canvas, findings: list[FindingSpec] | tuple) -> Canvas:
    """Draw the findings (those with a drawer and strength > 0) on the chest; returns the canvas."""
    for spec in findings:
        if spec.strength > 0 and spec.label in DRAWERS:
            DRAWERS[spec.label](canvas, spec, np.random.default_rng(spec.seed))
    return canvas


def copy_canvas(canvas: Canvas) -> Canvas:
    """An independent copy of a canvas to draw on (density, masks and noise stream copied)."""
    return replace(canvas, density=canvas.density.copy(), noise=copy.deepcopy(canvas.noise),
                   masks={label: mask.copy() for label, mask in canvas.masks.items()})


def draw(anatomy: Anatomy, findings: list[FindingSpec] | tuple = ()) -> Canvas:
    """The density map of one image and a boolean mask (rows x cols) per finding drawn.

    Findings with strength 0 (invisible) are skipped. Each finding only adds to the density where
    it is drawn, and the noise comes from the anatomy, so the same anatomy gives the same density
    outside a finding's footprint with or without that finding (``counterfactual`` relies on it).
    """
    return add_findings(draw_chest(anatomy, findings), findings)


def blur_sigma(pixel: float) -> float:
    """The scanner blur in pixels, for a pixel of ``pixel`` canonical units."""
    return max(0.5, 0.0025 / pixel)


def blur_reach(pixel: float) -> int:
    """How many pixels the blur spreads a change (the Gaussian's truncated radius)."""
    return int(BLUR_TRUNCATE * blur_sigma(pixel) + 0.5)


def expose(canvas: Canvas) -> np.ndarray:
    """Density to a uint8 radiograph: slight blur, exposure curve, heel effect and quantum noise.

    Every step is per pixel or a fixed blur, with settings from the anatomy alone (no
    normalisation by the image's content), so findings never change the exposure elsewhere.
    """
    anatomy = canvas.anatomy
    blurred = gaussian_filter(canvas.density, sigma=blur_sigma(canvas.pixel), truncate=BLUR_TRUNCATE)
    heel = 1.0 + anatomy.heel * pixel_grid(anatomy.rows, anatomy.cols)[1]
    linear = blurred * heel
    linear *= anatomy.gain * (LUT_SIZE - 1)
    linear += anatomy.offset * (LUT_SIZE - 1)
    np.clip(linear, 0, LUT_SIZE - 1, out=linear)
    curve = np.linspace(0.0, 1.0, LUT_SIZE, dtype=np.float32) ** anatomy.gamma  # exposure curve as a lookup table
    intensity = curve[linear.astype(np.int32)]
    intensity += anatomy.noise * canvas.noise.standard_normal(intensity.shape, dtype=np.float32)
    intensity *= 255.0
    intensity += 0.5
    return np.clip(intensity, 0.0, 255.0, out=intensity).astype(np.uint8)


def render(anatomy: Anatomy, findings: list[FindingSpec] | tuple = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The radiograph (uint8, rows x cols) and a boolean mask (rows x cols) per finding drawn."""
    canvas = draw(anatomy, findings)
    return expose(canvas), canvas.masks
