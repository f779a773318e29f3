"""The patient's anatomy on one image: lungs, heart, mediastinum, ribs, positioning and exposure.

Everything is in canonical body coordinates: the patient in a unit square, x to the image's
right, y down; on frontal views the patient's right is the image's left. A small rotation, shift
and magnification per image (``Anatomy.angle``, ``scale``, ``dx``, ``dy``) later maps them onto the
pixel grid (``geometry``), so findings move with the anatomy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FRONTAL_VIEWS = ("PA", "AP")
APEX_AT = 0.35  # the apex sits this far across the lung's width from its medial border
DOME_SPREAD = 0.58  # half width of the diaphragm dome, as a fraction of the lung width


@dataclass(frozen=True)
class Lung:
    """One lung field (or, on a lateral view, both superimposed) in canonical coordinates.

    ``u = outer * (x - x0)`` runs from the medial border (``u = medial``) to the outer wall
    (``u = medial + width``): lateral on frontal views, posterior on lateral views.
    """

    x0: float
    outer: int
    medial: float
    width: float
    top: float  # apex
    round_height: float  # how far below the apex the lung reaches full width
    base: float  # lowest point of the diaphragm (the costophrenic recess)
    dome_height: float
    dome_centre: float  # peak of the dome as a fraction of the width

    def span_at(self, y: float) -> tuple[float, float]:
        """(medial, outer) extent of the lung in u at height y (numbers, not arrays)."""
        t = min(max((y - self.top) / self.round_height, 0.0), 1.0)
        full = math.sqrt(1.0 - (1.0 - t) ** 2)
        return self.medial + APEX_AT * self.width * (1 - full), self.medial + self.width * (APEX_AT + (1 - APEX_AT) * full)


@dataclass(frozen=True)
class Anatomy:
    """Everything that fixes one image's appearance before findings are added."""

    view: str
    rows: int
    cols: int
    angle: float  # radians
    scale: float  # magnification (AP > 1)
    dx: float
    dy: float
    lungs: tuple[Lung, ...]
    heart: tuple[float, float, float, float, float]  # cx, cy, semi-axis x, semi-axis y, tilt
    mediastinum: float  # half width of the upper mediastinum (frontal)
    body: tuple[float, float, float, float]  # cx, cy, semi-axis x, semi-axis y
    rib_first: float
    rib_spacing: float
    rib_thickness: float
    gain: float
    offset: float
    gamma: float
    noise: float
    heel: float
    stomach_bubble: bool
    noise_seed: int

    @property
    def frontal(self) -> bool:
        """A PA or AP view (not a lateral)."""
        return self.view in FRONTAL_VIEWS



def sample_traits(rng: np.random.Generator) -> dict[str, float]:
    """Per-patient body habitus shared by all of a subject's images."""
    return {
        "width": float(rng.uniform(0.92, 1.08)),
        "height": float(rng.uniform(0.93, 1.07)),
        "heart": float(rng.uniform(0.92, 1.08)),
        "density": float(rng.uniform(0.9, 1.1)),
    }


def sample_anatomy(rng: np.random.Generator, view: str, rows: int, cols: int,
                   traits: dict[str, float] | None = None) -> Anatomy:
    """Anatomy, positioning and exposure of one image (AP: magnified, noisier, flatter contrast)."""
    traits = traits or sample_traits(rng)
    w, h = traits["width"], traits["height"]
    ap = view == "AP"
    common = dict(
        view=view, rows=rows, cols=cols,
        angle=float(rng.normal(0, 0.035 if not ap else 0.06)),
        scale=float(rng.uniform(0.95, 1.02) * (1.07 if ap else 1.0)),
        dx=float(rng.normal(0, 0.015)), dy=float(rng.normal(0, 0.015)),
        gain=float(rng.uniform(1.1, 1.35) * (0.88 if ap else 1.0) * traits["density"]),
        offset=float(rng.uniform(-0.05, 0.05)),
        gamma=float(rng.uniform(0.85, 1.2)),
        noise=float(rng.uniform(0.015, 0.03) * (1.6 if ap else 1.0)),
        heel=float(rng.uniform(-0.12, 0.12)),
        stomach_bubble=bool(rng.random() < 0.6),
        noise_seed=int(rng.integers(2**31)),
        rib_spacing=float(rng.uniform(0.06, 0.068) * h),
        rib_thickness=float(rng.uniform(0.009, 0.012)),
    )
    inspiration = float(rng.normal(0, 0.015)) - (0.03 if ap else 0.0)  # AP: shallower breath
    if view in FRONTAL_VIEWS:
        base = 0.78 * h + inspiration
        mediastinum = float(rng.uniform(0.052, 0.062))
        lungs = tuple(
            Lung(x0=0.5, outer=outer, medial=mediastinum, width=float(0.27 * w * rng.uniform(0.96, 1.04)),
                 top=float(0.12 + rng.normal(0, 0.008)), round_height=0.36 * h,
                 base=float(base - (0.025 if outer < 0 else 0.0)),
                 dome_height=float(0.1 * rng.uniform(0.85, 1.15)), dome_centre=0.42)
            for outer in (-1, 1)
        )
        heart = (0.525 + float(rng.normal(0, 0.006)), float(base - 0.125), 0.14 * traits["heart"],
                 0.105 * traits["heart"], 0.35)
        return Anatomy(lungs=lungs, heart=heart, mediastinum=mediastinum, body=(0.5, 0.62, 0.45 * w, 0.62),
                       rib_first=0.15 * h, **common)
    base = 0.8 * h + inspiration
    lungs = (Lung(x0=0.25, outer=1, medial=0.0, width=float(0.5 * w), top=0.1, round_height=0.3 * h,
                  base=float(base), dome_height=0.12, dome_centre=0.35),)
    heart = (0.37, float(base - 0.16), 0.14 * traits["heart"], 0.125 * traits["heart"], -0.5)
    return Anatomy(lungs=lungs, heart=heart, mediastinum=0.05, body=(0.51, 0.6, 0.41 * w, 0.62),
                   rib_first=0.14 * h, **common)



def side_sign(side: str) -> int:
    """Image x direction of the patient's side on a frontal view (patient right = image left)."""
    return -1 if side == "right" else 1


def mediastinal_half_width(anatomy: Anatomy, Y: np.ndarray, widening: float) -> np.ndarray:
    """Half width of the upper mediastinum at each height (ECM adds a bulge between y 0.12 and 0.52)."""
    if widening <= 0:
        return np.full_like(Y, anatomy.mediastinum)
    bump = np.clip(1 - ((Y - 0.32) / 0.2) ** 2, 0.0, None)
    return anatomy.mediastinum + widening * bump


def aortic_knob(half: np.ndarray) -> tuple[float, float, float, float]:
    """The aortic knob (cx, cy, semi-axis x, semi-axis y) on the left of a mediastinum of half width ``half``."""
    return 0.5 + float(half.max()) - 0.004, 0.29, 0.028, 0.024


# On lateral views a widened mediastinum fills the retrosternal space: this ellipse (cx, cy, a, b).
RETROSTERNAL = (0.34, 0.34, 0.075, 0.13)
