"""The canvas: one image under construction (density map, per-pixel lung fields, finding masks).

The density map says how much each pixel attenuates X-rays (air 0, soft tissue about 0.5, bone
and metal more); ``render.expose`` later turns it into a radiograph. Findings add density inside
the lung fields and record a boolean mask of where they were drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cxr_helpers.phantom.anatomy import APEX_AT, DOME_SPREAD, Anatomy, Lung
from cxr_helpers.phantom.geometry import ramp, to_pixels


@dataclass
class LungField:
    """Per-pixel fields of one lung: distance from the midline, implicit distances, soft mask."""

    lung: Lung
    u: np.ndarray
    f_outer: np.ndarray  # to the outer wall and apex
    f: np.ndarray  # to any border (outer wall, apex, mediastinum, diaphragm)
    soft: np.ndarray
    inside: np.ndarray
    visible: np.ndarray | None = None  # soft, less where the heart and mediastinum hide the lung


@dataclass
class Canvas:
    """One image under construction: grids, density map and the fields findings need."""

    anatomy: Anatomy
    X: np.ndarray
    Y: np.ndarray
    density: np.ndarray
    lungs: list[LungField]
    pixel: float  # one pixel in canonical units
    noise: np.random.Generator  # the anatomy's noise stream: vessel texture, then (in expose) quantum noise
    widening: float = 0.0  # of the upper mediastinum (Enlarged Cardiomediastinum), canonical units
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        """Pixel slices covering a canonical box (plus a margin), with the grids cut to it.

        Local structures are computed on this window only, which keeps rendering fast.
        """
        a = self.anatomy
        corners = to_pixels(a, [(x0, y0), (x1, y0), (x0, y1), (x1, y1)])
        c0 = max(0, math.floor(min(c for c, _ in corners)) - 2)
        c1 = min(a.cols, math.ceil(max(c for c, _ in corners)) + 3)
        r0 = max(0, math.floor(min(r for _, r in corners)) - 2)
        r1 = min(a.rows, math.ceil(max(r for _, r in corners)) + 3)
        sl = (slice(r0, max(r0, r1)), slice(c0, max(c0, c1)))
        return sl, self.X[sl], self.Y[sl]


def lung_field(X: np.ndarray, Y: np.ndarray, lung: Lung, medial: np.ndarray | float, eps: float) -> LungField:
    """Implicit fields of a lung: rounded apex, convex outer wall, medial border, diaphragm dome below."""
    u = (X - lung.x0) if lung.outer > 0 else (lung.x0 - X)
    t = np.clip((Y - lung.top) * (1.0 / lung.round_height), 0.0, 1.0)
    full = np.sqrt(1.0 - (1.0 - t) ** 2)  # 0 at the apex, 1 where the lung reaches full width
    f_outer = lung.medial + lung.width * (APEX_AT + (1 - APEX_AT) * full) - u
    f_outer = np.minimum(f_outer, (Y - lung.top) * 0.7)
    # the medial border curves out towards the apex; a widened mediastinum pushes it out where it reaches it
    f_medial = u - np.maximum(lung.medial + APEX_AT * lung.width * (1 - full), medial)
    c = lung.medial + lung.dome_centre * lung.width
    dome = lung.base - lung.dome_height * np.clip(1 - ((u - c) / (DOME_SPREAD * lung.width)) ** 2, 0.0, None)
    f = np.minimum(np.minimum(f_outer, f_medial), dome - Y)
    soft = ramp(f, eps)
    return LungField(lung, u, f_outer, f, soft, f > 0)

