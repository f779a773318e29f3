"""Procedural chest radiographs for the phantom, with a boolean mask for every finding drawn.

An image is built as a "density" map (how much each point attenuates X-rays: air 0, soft tissue
about 0.5, bone and metal more) on a grid of canonical body coordinates, then turned into a
grayscale radiograph (bright = dense) with exposure, contrast, blur and noise. Canonical
coordinates put the patient in a unit square (x to the image's right, y down; on frontal views
the patient's right is the image's left); a small rotation, shift and magnification per image
maps them onto the pixel grid, so findings move with the anatomy. Everything is vectorised
numpy on whole images (no per-pixel Python loops); thin lines and tubes are rasterised with PIL.

``render(anatomy, findings)`` draws the same anatomy (and the same noise) with or without
findings, so tests can compare an image with its finding-free twin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEWS = ("LATERAL", "LL")
STRENGTH = {"clear": 1.0, "subtle": 0.45, "invisible": 0.0}
LUT_SIZE = 4096
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
    dome_center: float  # peak of the dome as a fraction of the width

    def span_at(self, y: float) -> tuple[float, float]:
        """(medial, outer) extent of the lung in u at height y (numbers, not arrays)."""
        t = min(max((y - self.top) / self.round_height, 0.0), 1.0)
        full = math.sqrt(1.0 - (1.0 - t) ** 2)
        return self.medial + APEX_AT * self.width * (1 - full), self.medial + self.width * (APEX_AT + (1 - APEX_AT) * full)

    def dome_at(self, u: float) -> float:
        """Diaphragm height under the lung at distance u from the midline (numbers)."""
        c = self.medial + self.dome_center * self.width
        return self.base - self.dome_height * max(1 - ((u - c) / (DOME_SPREAD * self.width)) ** 2, 0.0)


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
        return self.view in FRONTAL_VIEWS


@dataclass(frozen=True)
class FindingSpec:
    """How one finding is drawn on one image."""

    label: str
    strength: float = 1.0  # 1 clear, ~0.45 subtle
    severity: int = 1  # 0 mild, 1 moderate, 2 severe
    side: str = "right"  # right / left / bilateral / midline (the patient's side)
    zone: str = "lower"  # upper / middle / lower
    devices: tuple[str, ...] = ()
    seed: int = 0


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
                 dome_height=float(0.1 * rng.uniform(0.85, 1.15)), dome_center=0.42)
            for outer in (-1, 1)
        )
        heart = (0.525 + float(rng.normal(0, 0.006)), float(base - 0.125), 0.14 * traits["heart"],
                 0.105 * traits["heart"], 0.35)
        return Anatomy(lungs=lungs, heart=heart, mediastinum=mediastinum, body=(0.5, 0.62, 0.45 * w, 0.62),
                       rib_first=0.15 * h, **common)
    base = 0.8 * h + inspiration
    lungs = (Lung(x0=0.25, outer=1, medial=0.0, width=float(0.5 * w), top=0.1, round_height=0.3 * h,
                  base=float(base), dome_height=0.12, dome_center=0.35),)
    heart = (0.37, float(base - 0.16), 0.14 * traits["heart"], 0.125 * traits["heart"], -0.5)
    return Anatomy(lungs=lungs, heart=heart, mediastinum=0.05, body=(0.51, 0.6, 0.41 * w, 0.62),
                   rib_first=0.14 * h, **common)


# --- grids and primitives ---------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _pixel_grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred pixel coordinates in units of the long side: x, y each (rows, cols) float32."""
    side = max(rows, cols)
    x = (np.arange(cols, dtype=np.float32) + 0.5 - cols / 2) / side
    y = (np.arange(rows, dtype=np.float32) + 0.5 - rows / 2) / side
    return np.meshgrid(x, y)


def canonical_grid(anatomy: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Canonical body coordinates (X, Y) of every pixel, each (rows, cols) float32."""
    x, y = _pixel_grid(anatomy.rows, anatomy.cols)
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
    heart_soft: np.ndarray
    pixel: float  # one pixel in canonical units
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
    extra = medial - lung.medial  # a widened mediastinum pushes the medial border out
    f_outer = lung.medial + lung.width * (APEX_AT + (1 - APEX_AT) * full) - u
    f_outer = np.minimum(f_outer, (Y - lung.top) * 0.7)
    f_medial = u - (lung.medial + APEX_AT * lung.width * (1 - full)) - extra
    c = lung.medial + lung.dome_center * lung.width
    dome = lung.base - lung.dome_height * np.clip(1 - ((u - c) / (DOME_SPREAD * lung.width)) ** 2, 0.0, None)
    f = np.minimum(np.minimum(f_outer, f_medial), dome - Y)
    soft = ramp(f, eps)
    return LungField(lung, u, f_outer, f, soft, f > 0)


# --- the normal chest --------------------------------------------------------------------------------


def _mediastinal_half_width(anatomy: Anatomy, Y: np.ndarray, widening: float) -> np.ndarray:
    """Half width of the upper mediastinum at each height (ECM adds a bulge between y 0.12 and 0.5)."""
    if widening <= 0:
        return np.full_like(Y, anatomy.mediastinum)
    bump = np.clip(1 - ((Y - 0.32) / 0.2) ** 2, 0.0, None)
    return anatomy.mediastinum + widening * bump


def _structural_changes(anatomy: Anatomy, findings: list[FindingSpec]) -> tuple[Anatomy, float]:
    """Cardiomegaly enlarges the heart; Enlarged Cardiomediastinum widens the mediastinum."""
    widening = 0.0
    for spec in findings:
        if spec.label == "Cardiomegaly":
            factor = 1 + spec.strength * (0.22 + 0.1 * spec.severity)
            cx, cy, a, b, tilt = anatomy.heart
            shift = (a * factor - a) * (0.35 if anatomy.frontal else -0.3)
            anatomy = replace(anatomy, heart=(cx + shift, cy - (b * factor - b) * 0.3, a * factor,
                                              b * (1 + (factor - 1) * 0.6), tilt))
        elif spec.label == "Enlarged Cardiomediastinum":
            widening = spec.strength * (0.03 + 0.012 * spec.severity)
    return anatomy, widening


def _draw_ribs(canvas: Canvas, fracture: FindingSpec | None) -> None:
    """Posterior (brighter) and anterior ribs; a fracture breaks one posterior rib with a step and callus."""
    a, X, Y = canvas.anatomy, canvas.X, canvas.Y
    t = a.rib_thickness
    body = ramp(ellipse_field(X, Y, *a.body[:2], a.body[2] * 0.93, a.body[3]), 0.02)
    body = body * ramp(max(lung.base for lung in a.lungs) + 0.03 - Y, 0.04)  # ribs stop at the diaphragm
    if a.frontal:
        sides = ((-1, X - 0.5), (1, X - 0.5))
    else:
        sides = ((1, X - 0.25),)
    for side, dx in sides:
        u = dx * side if a.frontal else dx
        if a.frontal:
            curve = -0.12 * u + 1.1 * u * u
            extent = (u > 0.03) & (u < 0.4)
        else:
            curve = 0.28 * u
            extent = (u > 0.0) & (u < 0.55)
        phase = (Y - curve - a.rib_first) * (1.0 / a.rib_spacing)  # rib k where phase is near k
        broken = fracture is not None and (not a.frontal or _side_sign(fracture.side) == side)
        if broken:  # one rib, beyond the break point, steps up or down; a gap and a callus at the break
            rng = np.random.default_rng(fracture.seed)
            k_f = int(rng.integers(3, 8))
            u_b = float(rng.uniform(0.17, 0.3)) if a.frontal else float(rng.uniform(0.15, 0.4))
            step = float(rng.choice((-1, 1)) * rng.uniform(0.5, 0.9) * t * 2) * fracture.strength
            on_rib = np.rint(phase) == k_f
            phase = phase + (on_rib & (u > u_b)) * np.float32(step / a.rib_spacing)
            gap = on_rib & (np.abs(u - u_b) < 0.008 * (0.5 + fracture.strength))
        k = np.rint(phase)
        dist = np.abs(phase - k) * a.rib_spacing
        band = np.clip(1 - dist / t, 0.0, 1.0) * (extent & (k >= 0) & (k < 10))
        if broken:
            band = band * ~gap
            bx = 0.5 + side * u_b if a.frontal else 0.25 + u_b
            curve_b = (-0.12 * u_b + 1.1 * u_b * u_b) if a.frontal else 0.28 * u_b
            by = a.rib_first + k_f * a.rib_spacing + curve_b
            sl, Xw, Yw = canvas.window(bx - 0.045, bx + 0.045, by - 0.045, by + 0.045)
            canvas.density[sl] += 0.2 * fracture.strength * ramp(ellipse_field(Xw, Yw, bx, by, 0.03, 0.018), 0.008)
            mask = np.zeros(X.shape, dtype=bool)
            mask[sl] = (Xw - bx) ** 2 + (Yw - by) ** 2 < 0.04**2
            canvas.masks["Fracture"] = mask
        canvas.density += 0.1 * band * body
        if a.frontal:  # anterior ribs, fainter, sloping down towards the midline
            phase_a = (Y + 0.45 * u - a.rib_first - 0.12) / (a.rib_spacing * 1.15)
            dist_a = np.abs(phase_a - np.rint(phase_a)) * a.rib_spacing * 1.15
            canvas.density += 0.045 * np.clip(1 - dist_a / (t * 1.2), 0, 1) * ((u > 0.12) & (u < 0.4)) * body


def _side_sign(side: str) -> int:
    """Image x direction of the patient's side on a frontal view (patient right = image left)."""
    return -1 if side == "right" else 1


def _normal_chest(canvas: Canvas, widening: float, rng: np.random.Generator) -> None:
    """Body, lungs with vessel markings, heart, mediastinum, spine, trachea, clavicles, bowel gas."""
    a, X, Y, D = canvas.anatomy, canvas.X, canvas.Y, canvas.density
    bx, by, ba, bb = a.body
    dxn, dyn = np.abs((X - bx) * (1.0 / ba)), np.abs((Y - by) * (1.0 / bb))
    body = ramp((1 - (dxn * dxn * dxn + dyn * dyn * dyn)) * 0.15, 0.01)  # a rounded-box torso
    D += body * (0.5 + 0.2 * np.clip(dxn - 0.75, 0, None))  # more tissue seen edge-on at the flanks
    if a.frontal:
        sl, Xw, Yw = canvas.window(0.4, 0.6, -0.3, 0.17)
        D[sl] += 0.45 * ramp(0.085 - np.abs(Xw - 0.5), 0.01) * ramp(0.14 - Yw, 0.03) * (1 - body[sl])  # neck
    else:
        D += 0.12 * ramp(0.3 - Y, 0.14) * body  # raised arms over the upper chest
    # vessel markings: smooth noise, denser towards the hila
    texture = gaussian_filter(rng.standard_normal(X.shape, dtype=np.float32), sigma=max(0.7, 0.007 / canvas.pixel))
    texture *= 1.0 / (texture.std() + 1e-6)
    texture = np.clip(texture, -1.5, 1.5)
    air = np.zeros_like(X)
    markings = np.zeros_like(X)
    for lf in canvas.lungs:
        lung = lf.lung
        hilum_u = lung.medial + 0.12 * lung.width
        hilum_y = lung.top + 0.48 * (lung.base - lung.top)
        hilar = np.exp(-((lf.u - hilum_u) ** 2 + (Y - hilum_y) ** 2) * (1.0 / (2 * 0.12**2)))
        air += lf.soft
        markings += lf.soft * (0.02 + 0.09 * hilar) * (0.6 + 0.4 * texture)
    air = np.clip(air, 0, 1)
    cx, cy, ha, hb, tilt = a.heart
    heart = ramp(ellipse_field(X, Y, cx, cy, ha, hb, tilt), 0.01)
    canvas.heart_soft = heart
    if a.frontal:
        half = _mediastinal_half_width(a, Y, widening)
        medi = ramp(half - np.abs(X - 0.5), 0.01) * ramp(Y - 0.02, 0.03) * ramp(cy - Y + 0.03, 0.05)
        knob_x = 0.5 + float(half.max()) - 0.004
        sl, Xw, Yw = canvas.window(knob_x - 0.04, knob_x + 0.04, 0.25, 0.33)
        medi[sl] = np.maximum(medi[sl], ramp(ellipse_field(Xw, Yw, knob_x, 0.29, 0.028, 0.024), 0.01))
    else:  # lateral: ascending aorta / great vessels above the heart, retrosternal space filling with ECM
        medi = ramp(ellipse_field(X, Y, 0.5, 0.3, 0.07, 0.14, 0.3), 0.03) * 0.5
        if widening > 0:
            medi = np.maximum(medi, min(1.0, widening * 18) * ramp(ellipse_field(X, Y, 0.34, 0.34, 0.075, 0.13), 0.02))
    central = np.maximum(heart, medi)
    visible_air = air * (1 - central)
    for lf in canvas.lungs:  # findings inside the lung are hidden where the heart overlies it
        lf.visible = lf.soft * (1 - central)
        lf.inside = lf.inside & (central < 0.5)
    D += visible_air * -0.36 + markings * (1 - 0.6 * central)
    D += 0.13 * central
    if a.frontal:
        sl, Xw, Yw = canvas.window(0.45, 0.55, -0.3, 1.3)
        spine = ramp(0.03 - np.abs(Xw - 0.5), 0.01) * (0.8 + 0.2 * np.cos(Yw * (2 * np.pi / 0.042)))
        D[sl] += 0.08 * spine * body[sl]
        sl, Xw, Yw = canvas.window(0.47, 0.53, -0.3, 0.34)
        D[sl] -= 0.14 * ramp(0.012 - np.abs(Xw - 0.5 - 0.015 * (Yw - 0.15)), 0.006) * ramp(0.31 - Yw, 0.02)  # trachea
        for side in (-1, 1):  # clavicles
            sl, Xw, Yw = canvas.window(*sorted((0.5 + side * 0.04, 0.5 + side * 0.38)), 0.06, 0.22)
            u = side * (Xw - 0.5)
            line = 0.17 - 0.12 * (u - 0.05) + 0.35 * (u - 0.22) ** 2
            D[sl] += 0.12 * ramp(0.011 - np.abs(Yw - line), 0.006) * ramp(u - 0.05, 0.01) * ramp(0.36 - u, 0.02)
        if a.stomach_bubble:
            y = a.lungs[1].base + 0.03
            sl, Xw, Yw = canvas.window(0.57, 0.71, y - 0.035, y + 0.035)
            D[sl] -= 0.16 * ramp(ellipse_field(Xw, Yw, 0.64, y, 0.06, 0.028), 0.01)
    else:
        shift = 0.05 * (Y - 0.5)
        spine = ramp(0.045 - np.abs(X - 0.8 - shift), 0.01)
        discs = 0.75 + 0.25 * (np.cos(Y * (2 * np.pi / 0.05)) > -0.6)
        D += 0.22 * spine * discs * body
        D += 0.08 * ramp(0.03 - np.abs(X - 0.88 - shift), 0.02) * body  # posterior elements
        sl, Xw, Yw = canvas.window(0.15, 0.25, 0.15, 0.6)
        D[sl] += 0.12 * ramp(0.012 - np.abs(Xw - 0.2 + 0.05 * (Yw - 0.4)), 0.006) * ramp(Yw - 0.18, 0.02) * ramp(0.56 - Yw, 0.02)
        sl, Xw, Yw = canvas.window(0.4, 0.55, -0.3, 0.36)
        D[sl] -= 0.12 * ramp(0.015 - np.abs(Xw - 0.45 - 0.2 * Yw), 0.006) * ramp(0.33 - Yw, 0.02)  # trachea


# --- findings ----------------------------------------------------------------------------------------


def _lungs_for(canvas: Canvas, side: str) -> list[LungField]:
    """Lung fields a finding on ``side`` lives in (both lungs for bilateral; the one lung on laterals)."""
    if not canvas.anatomy.frontal:
        return canvas.lungs
    if side == "bilateral":
        return canvas.lungs
    return [canvas.lungs[0] if side == "right" else canvas.lungs[1]]


ZONE_RANGES = {"upper": (0.12, 0.36), "middle": (0.38, 0.6), "lower": (0.62, 0.82)}


def _point_in_zone(rng: np.random.Generator, lung: Lung, zone: str) -> tuple[float, float, float]:
    """A canonical point (X, Y) inside a lung zone, and the lung's width there."""
    lo, hi = ZONE_RANGES.get(zone, (0.3, 0.7))
    y = lung.top + float(rng.uniform(lo, hi)) * (lung.base - lung.dome_height - lung.top)
    u_medial, u_outer = lung.span_at(y)
    u = u_medial + float(rng.uniform(0.3, 0.75)) * (u_outer - u_medial)
    return lung.x0 + lung.outer * u, y, u_outer - u_medial


def _add(canvas: Canvas, label: str, amount: np.ndarray, mask: np.ndarray,
         sl: tuple[slice, slice] = (slice(None), slice(None))) -> None:
    """Add density and merge the finding's mask (both cut to the window ``sl`` if given)."""
    canvas.density[sl] += amount
    full = canvas.masks.get(label)
    if full is None:
        full = canvas.masks[label] = np.zeros(canvas.X.shape, dtype=bool)
    full[sl] |= mask


def draw_effusion(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """Fluid filling the lung base with a meniscus that climbs the outer wall (blunted angle)."""
    for lf in _lungs_for(canvas, spec.side):
        lung = lf.lung
        depth = (0.07, 0.14, 0.24)[spec.severity] * float(rng.uniform(0.85, 1.15))
        level = lung.base - depth
        rise = 0.05 + 0.03 * spec.severity
        meniscus = level - rise * np.clip((lf.u - lung.medial) / lung.width, 0, 1.2) ** 2
        fluid = ramp(canvas.Y - meniscus, 0.03)
        amount = 0.36 * spec.strength * fluid * lf.visible
        _add(canvas, "Pleural Effusion", amount, lf.inside & (canvas.Y > meniscus))


def draw_pneumothorax(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """Apical air between chest wall and a visible pleural line, without lung markings."""
    for lf in _lungs_for(canvas, spec.side):
        lung = lf.lung
        gap = (0.04, 0.065, 0.1)[spec.severity] * float(rng.uniform(0.85, 1.15))
        extent = lung.top + (0.35 + 0.15 * spec.severity) * (lung.base - lung.top)
        fade = ramp(extent - canvas.Y, 0.06)
        air = ramp(gap - lf.f_outer, 0.006) * lf.visible * fade
        line = np.clip(1 - np.abs(lf.f_outer - gap) / 0.004, 0, 1) * lf.visible * fade
        amount = spec.strength * (-0.2 * air + 0.12 * line)
        _add(canvas, "Pneumothorax", amount, lf.inside & (lf.f_outer < gap) & (fade > 0.5))


def _airspace(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator, label: str,
              n_blobs: tuple[int, int], size: tuple[float, float], density: float, patchy: float) -> None:
    """Opacity made of Gaussian blobs inside a lung zone; ``patchy`` mixes in texture."""
    for lf in _lungs_for(canvas, spec.side):
        cx, cy, width = _point_in_zone(rng, lf.lung, spec.zone)
        blobs = []
        for _ in range(int(rng.integers(*n_blobs))):
            s = float(rng.uniform(*size)) * (1 + 0.25 * spec.severity)
            blobs.append((cx + float(rng.normal(0, 0.25 * width)), cy + float(rng.normal(0, 0.04)),
                          s, s * float(rng.uniform(0.7, 1.3))))
        reach = 3 * max(max(b[2], b[3]) for b in blobs)
        sl, Xw, Yw = canvas.window(min(b[0] for b in blobs) - reach, max(b[0] for b in blobs) + reach,
                                   min(b[1] for b in blobs) - reach, max(b[1] for b in blobs) + reach)
        blob = np.zeros_like(Xw)
        for bx, by, sx, sy in blobs:
            blob = np.maximum(blob, gaussian_blob(Xw, Yw, bx, by, sx, sy))
        if patchy and blob.size:
            noise = gaussian_filter(rng.standard_normal(blob.shape, dtype=np.float32), sigma=max(0.8, 0.012 / canvas.pixel))
            noise *= 1.0 / (noise.std() + 1e-6)
            blob = blob * np.clip(1 - patchy + patchy * (0.6 + 0.5 * noise), 0, 1.3)
        shape = ramp(blob - 0.35, 0.25) * lf.visible[sl]
        _add(canvas, label, density * spec.strength * shape, lf.inside[sl] & (blob > 0.4), sl)


def draw_consolidation(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """Dense, lobar opacity."""
    _airspace(canvas, spec, rng, "Consolidation", (2, 4), (0.04, 0.06), 0.34, 0.15)


def draw_pneumonia(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """Lobar or patchy airspace opacity."""
    _airspace(canvas, spec, rng, "Pneumonia", (2, 5), (0.035, 0.055), 0.28, 0.45)


def draw_opacity(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """Patchy, less dense opacities."""
    _airspace(canvas, spec, rng, "Lung Opacity", (3, 7), (0.02, 0.035), 0.26, 0.6)


def draw_atelectasis(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """Plate-like (linear) opacity at the lung base."""
    for lf in _lungs_for(canvas, spec.side):
        cx, cy, width = _point_in_zone(rng, lf.lung, "lower")
        theta = float(rng.uniform(-0.3, 0.3))
        length = float(rng.uniform(0.5, 0.8)) * width
        thick = (0.011, 0.016, 0.024)[spec.severity]
        reach = length / 2 + thick + 0.02
        sl, Xw, Yw = canvas.window(cx - reach, cx + reach, cy - reach, cy + reach)
        c, s = math.cos(theta), math.sin(theta)
        along = c * (Xw - cx) + s * (Yw - cy)
        across = -s * (Xw - cx) + c * (Yw - cy)
        band = np.clip(1 - np.abs(across) / thick, 0, 1) * ramp(length / 2 - np.abs(along), 0.02)
        _add(canvas, "Atelectasis", 0.34 * spec.strength * band * lf.visible[sl], lf.inside[sl] & (band > 0.25), sl)


def draw_lesion(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """A round nodule, or a lobulated mass when severe."""
    lf = _lungs_for(canvas, spec.side)[0]
    cx, cy, width = _point_in_zone(rng, lf.lung, spec.zone)
    radius = (0.026, 0.036, 0.06)[spec.severity] * float(rng.uniform(0.85, 1.15))
    sl, Xw, Yw = canvas.window(cx - 2.2 * radius, cx + 2.2 * radius, cy - 2.2 * radius, cy + 2.2 * radius)
    field_ = ellipse_field(Xw, Yw, cx, cy, radius, radius)
    if spec.severity == 2:
        for _ in range(2):
            ox, oy = rng.normal(0, 0.5 * radius, 2)
            field_ = np.maximum(field_, ellipse_field(Xw, Yw, cx + ox, cy + oy, radius * 0.7, radius * 0.7))
    _add(canvas, "Lung Lesion", 0.36 * spec.strength * ramp(field_, 0.008), field_ > 0, sl)


def draw_edema(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """Bilateral perihilar haze (bat wing) with a few Kerley lines at the bases."""
    for lf in canvas.lungs:
        lung = lf.lung
        hilum_u = lung.medial + 0.2 * lung.width
        hilum_y = lung.top + 0.5 * (lung.base - lung.top)
        su, sy = 0.12 + 0.03 * spec.severity, 0.13 + 0.03 * spec.severity
        haze = np.exp(-(((lf.u - hilum_u) / su) ** 2 + ((canvas.Y - hilum_y) / sy) ** 2) * 0.5)
        amount = (0.16 + 0.05 * spec.severity) * spec.strength * haze * lf.visible
        _add(canvas, "Edema", amount, lf.inside & (haze > 0.45))


def draw_pleural_thickening(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """A band of pleural thickening along the outer wall (an apical cap in the upper zone)."""
    lf = _lungs_for(canvas, spec.side)[0]
    lung = lf.lung
    thick = (0.022, 0.03, 0.04)[spec.severity]
    lo, hi = ZONE_RANGES.get(spec.zone, (0.3, 0.7))
    y0 = lung.top + (lo - 0.12) * (lung.base - lung.top)
    y1 = lung.top + (hi + 0.05) * (lung.base - lung.top)
    along = ramp(canvas.Y - y0, 0.03) * ramp(y1 - canvas.Y, 0.03)
    band = ramp(thick - lf.f_outer, 0.006) * lf.visible * along
    _add(canvas, "Pleural Other", 0.4 * spec.strength * band, lf.inside & (lf.f_outer < thick) & (along > 0.5))


DEVICE_PATHS_FRONTAL = {
    "et_tube": [(0.5, -0.05), (0.5, 0.1), (0.505, 0.26)],
    "ng_tube": [(0.49, -0.05), (0.495, 0.3), (0.51, 0.6), (0.57, 0.79), (0.63, 0.82)],
    "central_line": [(0.39, 0.0), (0.41, 0.12), (0.445, 0.22), (0.46, 0.36)],
    "pacemaker_lead": [(0.74, 0.2), (0.62, 0.22), (0.5, 0.27), (0.455, 0.4), (0.47, 0.56), (0.54, 0.66)],
}
DEVICE_PATHS_LATERAL = {
    "et_tube": [(0.49, -0.05), (0.52, 0.12), (0.55, 0.28)],
    "ng_tube": [(0.5, -0.05), (0.55, 0.3), (0.6, 0.6), (0.5, 0.82)],
    "central_line": [(0.45, 0.0), (0.45, 0.15), (0.44, 0.28), (0.43, 0.38)],
    "pacemaker_lead": [(0.2, 0.22), (0.35, 0.3), (0.42, 0.45), (0.38, 0.62)],
}


def draw_devices(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """Lines and tubes (ET tube, NG tube, central line) and a pacemaker with its lead, very dense."""
    a = canvas.anatomy
    layer = Image.new("L", (a.cols, a.rows), 0)
    draw = ImageDraw.Draw(layer)
    paths = DEVICE_PATHS_FRONTAL if a.frontal else DEVICE_PATHS_LATERAL
    width = max(1, round(0.009 / canvas.pixel))
    jitter = rng.normal(0, 0.008, 2)
    for device in spec.devices:
        names = ["pacemaker_lead"] if device == "pacemaker" else [device]
        for name in names:
            pts = [(x + jitter[0], y + jitter[1] * (i > 0)) for i, (x, y) in enumerate(paths[name])]
            if name == "central_line" and a.frontal and spec.side == "left":  # mirrored: a left-sided line
                pts = [(1.0 - x, y) for x, y in pts[:-1]] + [(0.47, 0.34)]
            draw.line(to_pixels(a, pts), fill=255, width=width, joint="curve")
        if device == "pacemaker":
            cx, cy = (0.74, 0.2) if a.frontal else (0.2, 0.22)
            corners = [(cx - 0.04, cy - 0.028), (cx + 0.04, cy - 0.028), (cx + 0.04, cy + 0.028), (cx - 0.04, cy + 0.028)]
            draw.polygon(to_pixels(a, corners), fill=255)
    metal = np.asarray(layer, dtype=np.float32) * (1.0 / 255.0)
    _add(canvas, "Support Devices", 0.55 * max(spec.strength, 0.6) * metal, metal > 0.5)


DRAWERS = {
    "Pleural Effusion": draw_effusion,
    "Pneumothorax": draw_pneumothorax,
    "Consolidation": draw_consolidation,
    "Pneumonia": draw_pneumonia,
    "Lung Opacity": draw_opacity,
    "Atelectasis": draw_atelectasis,
    "Lung Lesion": draw_lesion,
    "Edema": draw_edema,
    "Pleural Other": draw_pleural_thickening,
    "Support Devices": draw_devices,
}
# Drawn by changing the anatomy itself (Cardiomegaly, Enlarged Cardiomediastinum) or the ribs (Fracture).
STRUCTURAL = ("Cardiomegaly", "Enlarged Cardiomediastinum", "Fracture")


def render(anatomy: Anatomy, findings: list[FindingSpec] | tuple = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The radiograph (uint8, rows x cols) and a boolean mask (rows x cols) per finding drawn.

    Findings with strength 0 (invisible) are skipped. The same anatomy gives the same pixels
    outside the findings' influence, with or without findings (noise comes from the anatomy).
    """
    findings = [spec for spec in findings if spec.strength > 0]
    anatomy, widening = _structural_changes(anatomy, findings)
    X, Y = canonical_grid(anatomy)
    pixel = 1.0 / max(anatomy.rows, anatomy.cols) / anatomy.scale  # one pixel in canonical units
    eps = max(0.012, 1.5 * pixel)
    if anatomy.frontal:
        half = _mediastinal_half_width(anatomy, Y, widening)
        lungs = [lung_field(X, Y, lung, half, eps) for lung in anatomy.lungs]
    else:
        lungs = [lung_field(X, Y, lung, lung.medial, eps) for lung in anatomy.lungs]
    canvas = Canvas(anatomy, X, Y, np.zeros_like(X), lungs, np.zeros_like(X), pixel)
    noise_rng = np.random.default_rng(anatomy.noise_seed)
    _normal_chest(canvas, widening, noise_rng)
    fracture = next((spec for spec in findings if spec.label == "Fracture"), None)
    _draw_ribs(canvas, fracture)
    for spec in findings:
        if spec.label == "Cardiomegaly":
            canvas.masks["Cardiomegaly"] = ellipse_field(X, Y, *anatomy.heart) > 0
        elif spec.label == "Enlarged Cardiomediastinum":
            if anatomy.frontal:
                half = _mediastinal_half_width(anatomy, Y, widening)
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
    heel = 1.0 + anatomy.heel * _pixel_grid(anatomy.rows, anatomy.cols)[1]
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
