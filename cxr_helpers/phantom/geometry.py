"""Where pixels are in the body, and the soft shapes every structure is drawn with.

``canonical_grid`` gives the canonical body coordinates (X, Y) of every pixel of an image;
``to_pixels`` maps canonical points back to pixel positions (for PIL's line drawing). Shapes are
implicit fields, positive inside (``ellipse_field``), turned into soft 0..1 indicators by ``ramp``
so that edges are anti-aliased at any image size.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from cxr_helpers.phantom.anatomy import Anatomy


@lru_cache(maxsize=16)
def pixel_grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred pixel coordinates in units of the long side: x, y each (rows, cols) float32."""
    side = max(rows, cols)
    x = (np.arange(cols, dtype=np.float32) + 0.5 - cols / 2) / side
    y = (np.arange(rows, dtype=np.float32) + 0.5 - rows / 2) / side
    return np.meshgrid(x, y)


def canonical_grid(anatomy: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Canonical body coordinates (X, Y) of every pixel, each (rows, cols) float32."""
    x, y = pixel_grid(anatomy.rows, anatomy.cols)
    c, s = math.cos(anatomy.angle), math.sin(anatomy.angle)
    k = 1.0 / anatomy.scale
    X = (c * k) * x + (s * k) * y + (0.5 + anatomy.dx)
    Y = (-s * k) * x + (c * k) * y + (0.5 + anatomy.dy)
    return X, Y


def to_pixels(anatomy: Anatomy, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Canonical (X, Y) points to pixel (column, row) positions: the inverse of ``canonical_grid``."""
    c, s = math.cos(anatomy.angle), math.sin(anatomy.angle)
    side = max(anatomy.rows, anatomy.cols)
    out = []
    for X, Y in points:
        p, q = (X - 0.5 - anatomy.dx) * anatomy.scale, (Y - 0.5 - anatomy.dy) * anatomy.scale
        x, y = c * p - s * q, s * p + c * q
        out.append((x * side + anatomy.cols / 2 - 0.5, y * side + anatomy.rows / 2 - 0.5))
    return out


def ramp(f: np.ndarray, eps: float) -> np.ndarray:
    """Soft inside-indicator of an implicit field (positive inside): 0 -> 1 over a band of width eps."""
    out = f * (1.0 / eps)
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def ellipse_field(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, a: float, b: float,
                  tilt: float = 0.0) -> np.ndarray:
    """Approximate signed distance to an (optionally tilted) ellipse, positive inside."""
    dx, dy = X - cx, Y - cy
    if tilt:
        c, s = math.cos(tilt), math.sin(tilt)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    r = np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
    return (1.0 - r) * min(a, b)


def gaussian_blob(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    """An axis-aligned Gaussian bump with peak 1."""
    return np.exp(-(((X - cx) / sx) ** 2 + ((Y - cy) / sy) ** 2) * 0.5)

