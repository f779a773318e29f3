"""How each finding is drawn: where it sits in the anatomy, how dense it is, and its mask.

Most findings add density inside a lung field (``draw_*``, one function per finding, listed in
``DRAWERS``) and record a boolean mask of where they were drawn. Three are ``STRUCTURAL``: they
change the normal chest itself before it is drawn (``render.draw_chest``): Cardiomegaly enlarges
the heart and Enlarged Cardiomediastinum widens the mediastinum (``structural_changes``; their
drawers only mark them), a Fracture breaks one rib (``rib_break``, drawn by ``chest.draw_ribs``
and ``draw_fracture``). Each finding draws with its own random stream (``FindingSpec.seed``), so
adding or removing one leaves the others unchanged.

A finding's mask is where it is drawn, and its density fades out within ``EDGE`` of the mask
(``fade_beyond``), so the mask bounds everything the finding changes; Edema alone is diffuse (its
haze fades out over both lungs). Where the heart or mediastinum overlies a lung the finding is
hidden: it is drawn fainter there and left out of the mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import distance_transform_edt, gaussian_filter

from cxr_helpers.phantom.anatomy import RETROSTERNAL, Anatomy, Lung, aortic_knob, mediastinal_half_width
from cxr_helpers.phantom.canvas import Canvas, LungField
from cxr_helpers.phantom.geometry import ellipse_field, gaussian_blob, ramp, to_pixels

STRENGTH = {"clear": 1.0, "subtle": 0.45, "invisible": 0.0}
EDGE = 0.02  # a finding's soft edge fades out within this distance of its mask (canonical units, ~8 mm)
# Sizes by severity (mild, moderate, severe) in canonical units (the body frame, about 40 cm across).
# The small findings are drawn larger than they often are in life, so that a model at 128 px can
# see them: at least 5 px across at 128 px (docs/phantom.md has the sizes before and after).
LESION_RADIUS = (0.045, 0.055, 0.07)  # masses 3-6 cm across (real nodules are often under 1 cm)
ATELECTASIS_HALF_THICKNESS = (0.02, 0.024, 0.03)  # a band 1.6-2.4 cm thick (plate-like: often a few mm)
PLEURAL_THICKNESS = (0.04, 0.048, 0.056)  # 1.6-2.2 cm of pleural thickening along the wall
RIB_STEP = (1.0, 1.4)  # a fracture displaces the rib beyond the break by 1-1.4 rib widths
CALLUS = (0.04, 0.025)  # semi-axes of the callus at the break


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


def structural_changes(anatomy: Anatomy, findings: list[FindingSpec]) -> tuple[Anatomy, float]:
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


@dataclass(frozen=True)
class RibBreak:
    """Where a fracture breaks a posterior rib: which rib, where along it, the step and the gap."""

    rib: int  # rib number counted from the first
    at: float  # distance from the midline (frontal) or from the back (lateral) of the break
    step: float  # how far the rib beyond the break is displaced (canonical units)
    gap: float  # half width of the gap at the break


def rib_break(spec: FindingSpec, anatomy: Anatomy) -> RibBreak:
    """The break a fracture makes (the same on every view of the study)."""
    rng = np.random.default_rng(spec.seed)
    rib = int(rng.integers(3, 8))
    at = float(rng.uniform(0.17, 0.3)) if anatomy.frontal else float(rng.uniform(0.15, 0.4))
    step = float(rng.choice((-1, 1)) * rng.uniform(*RIB_STEP) * anatomy.rib_thickness * 2) * spec.strength
    return RibBreak(rib, at, step, 0.012 * (0.5 + spec.strength))


def draw_fracture(canvas: Canvas, spec: FindingSpec, brk: RibBreak, side: int, displaced: np.ndarray) -> None:
    """A callus at the break of a rib; the mask is the callus and the displaced part of the rib.

    ``chest.draw_ribs`` draws the step and the gap, and passes where they moved the rib (``displaced``).
    """
    a, u_b = canvas.anatomy, brk.at
    bx = 0.5 + side * u_b if a.frontal else 0.25 + u_b
    curve_b = (-0.12 * u_b + 1.1 * u_b * u_b) if a.frontal else 0.28 * u_b
    by = a.rib_first + brk.rib * a.rib_spacing + curve_b
    sl, Xw, Yw = canvas.window(bx - 0.05, bx + 0.05, by - 0.05, by + 0.05)
    callus = ellipse_field(Xw, Yw, bx, by, *CALLUS)
    canvas.density[sl] += 0.25 * spec.strength * ramp(callus, 0.008)
    mask = displaced.copy()
    mask[sl] |= callus > -0.004  # the callus's soft edge included
    canvas.masks["Fracture"] = mask


def draw_cardiomegaly(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """Marks the enlarged heart (``structural_changes`` enlarged it before the chest was drawn)."""
    canvas.masks["Cardiomegaly"] = ellipse_field(canvas.X, canvas.Y, *canvas.anatomy.heart) > 0


def draw_enlarged_cardiomediastinum(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """Marks the widened mediastinum with its aortic knob (frontal) or the filled retrosternal space (lateral)."""
    X, Y = canvas.X, canvas.Y
    if canvas.anatomy.frontal:
        half = mediastinal_half_width(canvas.anatomy, Y, canvas.widening)
        mask = (np.abs(X - 0.5) < half) & (Y > 0.12) & (Y < 0.52)
        mask |= ellipse_field(X, Y, *aortic_knob(half)) > 0
    else:
        mask = ellipse_field(X, Y, *RETROSTERNAL) > -0.005  # where the fill reaches a quarter of its density
    canvas.masks["Enlarged Cardiomediastinum"] = mask


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


def fade_beyond(amount: np.ndarray, mask: np.ndarray, pixel: float) -> np.ndarray:
    """The density faded to zero within ``EDGE`` of the mask, so the mask bounds what a finding draws."""
    faded = np.zeros_like(amount)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return faded
    reach = math.ceil(EDGE / pixel)  # only pixels this close to the mask can keep some density
    box = (slice(max(rows[0] - reach, 0), rows[-1] + reach + 1), slice(max(cols[0] - reach, 0), cols[-1] + reach + 1))
    distance = distance_transform_edt(~mask[box])  # pixels to the mask
    faded[box] = amount[box] * np.clip(1.0 - distance * (pixel / EDGE), 0.0, 1.0).astype(amount.dtype)
    return faded


def _add(canvas: Canvas, label: str, amount: np.ndarray, mask: np.ndarray,
         sl: tuple[slice, slice] = (slice(None), slice(None)), bounded: bool = True) -> None:
    """Add density (faded out beyond the mask unless not ``bounded``) and merge the finding's mask.

    Both are cut to the window ``sl`` if given.
    """
    canvas.density[sl] += fade_beyond(amount, mask, canvas.pixel) if bounded else amount
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
    """Plate-like (linear) opacity at the lung base: a band, thicker than in life (``ATELECTASIS_HALF_THICKNESS``)."""
    for lf in _lungs_for(canvas, spec.side):
        cx, cy, width = _point_in_zone(rng, lf.lung, "lower")
        theta = float(rng.uniform(-0.3, 0.3))
        length = float(rng.uniform(0.6, 0.9)) * width
        thick = ATELECTASIS_HALF_THICKNESS[spec.severity]
        reach = length / 2 + thick + 0.02
        sl, Xw, Yw = canvas.window(cx - reach, cx + reach, cy - reach, cy + reach)
        c, s = math.cos(theta), math.sin(theta)
        along = c * (Xw - cx) + s * (Yw - cy)
        across = -s * (Xw - cx) + c * (Yw - cy)
        band = ramp(thick - np.abs(across), 0.008) * ramp(length / 2 - np.abs(along), 0.02)  # a plate, soft-edged
        _add(canvas, "Atelectasis", 0.34 * spec.strength * band * lf.visible[sl], lf.inside[sl] & (band > 0.25), sl)


def draw_lesion(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """A round mass, 3-6 cm across (``LESION_RADIUS``: larger than many real nodules), lobulated when severe."""
    lf = _lungs_for(canvas, spec.side)[0]
    cx, cy, width = _point_in_zone(rng, lf.lung, spec.zone)
    radius = LESION_RADIUS[spec.severity] * float(rng.uniform(0.85, 1.15))
    sl, Xw, Yw = canvas.window(cx - 2.2 * radius, cx + 2.2 * radius, cy - 2.2 * radius, cy + 2.2 * radius)
    field_ = ellipse_field(Xw, Yw, cx, cy, radius, radius)
    if spec.severity == 2:
        for _ in range(2):
            ox, oy = rng.normal(0, 0.5 * radius, 2)
            field_ = np.maximum(field_, ellipse_field(Xw, Yw, cx + ox, cy + oy, radius * 0.7, radius * 0.7))
    _add(canvas, "Lung Lesion", 0.36 * spec.strength * ramp(field_, 0.008), field_ > 0, sl)


def draw_edema(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """Bilateral perihilar haze (bat wing), fading out across both lungs (beyond its mask too)."""
    for lf in canvas.lungs:
        lung = lf.lung
        hilum_u = lung.medial + 0.2 * lung.width
        hilum_y = lung.top + 0.5 * (lung.base - lung.top)
        su, sy = 0.12 + 0.03 * spec.severity, 0.13 + 0.03 * spec.severity
        haze = np.exp(-(((lf.u - hilum_u) / su) ** 2 + ((canvas.Y - hilum_y) / sy) ** 2) * 0.5)
        amount = (0.16 + 0.05 * spec.severity) * spec.strength * haze * lf.visible
        _add(canvas, "Edema", amount, lf.inside & (haze > 0.45), bounded=False)


def draw_pleural_thickening(canvas: Canvas, spec: FindingSpec, rng: np.random.Generator) -> None:
    """A band of pleural thickening along the outer wall (an apical cap in the upper zone)."""
    lf = _lungs_for(canvas, spec.side)[0]
    lung = lf.lung
    thick = PLEURAL_THICKNESS[spec.severity]
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
    _add(canvas, "Support Devices", 0.55 * max(spec.strength, 0.6) * metal, metal > 0.5, bounded=False)  # hard-edged


DRAWERS = {
    "Cardiomegaly": draw_cardiomegaly,
    "Enlarged Cardiomediastinum": draw_enlarged_cardiomediastinum,
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
# Drawn by changing the anatomy itself (Cardiomegaly, Enlarged Cardiomediastinum: their DRAWERS only
# mark them) or the ribs (Fracture, drawn by chest.draw_ribs).
STRUCTURAL = ("Cardiomegaly", "Enlarged Cardiomediastinum", "Fracture")

