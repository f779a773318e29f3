"""From anatomy and findings to a radiograph: draw the density map, then expose it.

``render(anatomy, findings)`` draws the same anatomy (and the same noise) with or without
findings, so an image can be compared with its finding-free twin. Everything is vectorised numpy
on whole images (no per-pixel Python loops); thin lines and tubes are rasterised with PIL.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from cxr_helpers.phantom.anatomy import Anatomy
from cxr_helpers.phantom.canvas import Canvas, lung_field
from cxr_helpers.phantom.chest import draw_normal_chest, draw_ribs, mediastinal_half_width
from cxr_helpers.phantom.findings import DRAWERS, FindingSpec, structural_changes
from cxr_helpers.phantom.geometry import canonical_grid, ellipse_field, pixel_grid

LUT_SIZE = 4096


def render(anatomy: Anatomy, findings: list[FindingSpec] | tuple = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The radiograph (uint8, rows x cols) and a boolean mask (rows x cols) per finding drawn.

    Findings with strength 0 (invisible) are skipped. The same anatomy gives the same pixels
    outside the findings' influence, with or without findings (noise comes from the anatomy).
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
    canvas = Canvas(anatomy, X, Y, np.zeros_like(X), lungs, pixel)
    noise_rng = np.random.default_rng(anatomy.noise_seed)
    draw_normal_chest(canvas, widening, noise_rng)
    fracture = next((spec for spec in findings if spec.label == "Fracture"), None)
    draw_ribs(canvas, fracture)
    for spec in findings:
        if spec.label == "Cardiomegaly":
            canvas.masks["Cardiomegaly"] = ellipse_field(X, Y, *anatomy.heart) > 0
        elif spec.label == "Enlarged Cardiomediastinum":
            if anatomy.frontal:
                half = mediastinal_half_width(anatomy, Y, widening)
                canvas.masks[spec.label] = (np.abs(X - 0.5) < half) & (Y > 0.12) & (Y < 0.52)
            else:
                canvas.masks[spec.label] = ellipse_field(X, Y, 0.34, 0.34, 0.07, 0.12) > 0
        elif spec.label in DRAWERS:
            DRAWERS[spec.label](canvas, spec, np.random.default_rng(spec.seed))
    image = expose(canvas.density, anatomy, noise_rng, pixel)
    return image, canvas.masks


def expose(density: np.ndarray, anatomy: Anatomy, rng: np.random.Generator, pixel: float) -> np.ndarray:
    """Density to a uint8 radiograph: slight blur, exposure curve, heel effect and quantum noise."""
    blurred = gaussian_filter(density, sigma=max(0.5, 0.0025 / pixel))
    heel = 1.0 + anatomy.heel * pixel_grid(anatomy.rows, anatomy.cols)[1]
    linear = blurred * heel
    linear *= anatomy.gain * (LUT_SIZE - 1)
    linear += anatomy.offset * (LUT_SIZE - 1)
    np.clip(linear, 0, LUT_SIZE - 1, out=linear)
    curve = np.linspace(0.0, 1.0, LUT_SIZE, dtype=np.float32) ** anatomy.gamma  # exposure curve as a lookup table
    intensity = curve[linear.astype(np.int32)]
    intensity += anatomy.noise * rng.standard_normal(intensity.shape, dtype=np.float32)
    intensity *= 255.0
    intensity += 0.5
    return np.clip(intensity, 0.0, 255.0, out=intensity).astype(np.uint8)
