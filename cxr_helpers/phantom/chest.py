"""The normal chest: body, lungs with vessel markings, heart, mediastinum, spine, ribs.

Drawn as density on the canvas before any finding. Two findings change the normal anatomy itself
rather than adding to it (``findings.structural_changes``): Cardiomegaly enlarges the heart and
Enlarged Cardiomediastinum widens the mediastinum (``widening``); a Fracture breaks one rib.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from cxr_helpers.phantom.anatomy import RETROSTERNAL, Anatomy, aortic_knob, mediastinal_half_width, side_sign
from cxr_helpers.phantom.canvas import Canvas
from cxr_helpers.phantom.findings import FindingSpec, draw_fracture, rib_break
from cxr_helpers.phantom.geometry import ellipse_field, ramp


def draw_normal_chest(canvas: Canvas) -> None:
    """Body, lungs with vessel markings, heart, mediastinum, spine, trachea, clavicles, bowel gas."""
    a, X, Y, D, widening = canvas.anatomy, canvas.X, canvas.Y, canvas.density, canvas.widening
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
    texture = gaussian_filter(canvas.noise.standard_normal(X.shape, dtype=np.float32), sigma=max(0.7, 0.007 / canvas.pixel))
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
    if a.frontal:
        half = mediastinal_half_width(a, Y, widening)
        medi = ramp(half - np.abs(X - 0.5), 0.01) * ramp(Y - 0.02, 0.03) * ramp(cy - Y + 0.03, 0.05)
        knob = aortic_knob(half)
        sl, Xw, Yw = canvas.window(knob[0] - 0.04, knob[0] + 0.04, 0.25, 0.33)
        medi[sl] = np.maximum(medi[sl], ramp(ellipse_field(Xw, Yw, *knob), 0.01))
    else:  # lateral: ascending aorta / great vessels above the heart, retrosternal space filling with ECM
        medi = ramp(ellipse_field(X, Y, 0.5, 0.3, 0.07, 0.14, 0.3), 0.03) * 0.5
        if widening > 0:
            medi = np.maximum(medi, min(1.0, widening * 18) * ramp(ellipse_field(X, Y, *RETROSTERNAL), 0.02))
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


def _rib_band(phase: np.ndarray, a: Anatomy, extent: np.ndarray) -> np.ndarray:
    """Soft 0..1 bands of ribs 0-9 where ``phase`` (rib number) is near a whole number."""
    k = np.rint(phase)
    dist = np.abs(phase - k) * a.rib_spacing
    return np.clip(1 - dist / a.rib_thickness, 0.0, 1.0) * (extent & (k >= 0) & (k < 10))


def draw_ribs(canvas: Canvas, fracture: FindingSpec | None) -> None:
    """Posterior (brighter) and anterior ribs; a fracture breaks one posterior rib (``findings.rib_break``)."""
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
        band = _rib_band(phase, a, extent)
        if fracture is not None and (not a.frontal or side_sign(fracture.side) == side):
            # the rib beyond the break point steps up or down, with a gap at the break
            brk = rib_break(fracture, a)
            on_rib = np.rint(phase) == brk.rib
            intact = band
            band = _rib_band(phase + (on_rib & (u > brk.at)) * np.float32(brk.step / a.rib_spacing), a, extent)
            band = band * ~(on_rib & (np.abs(u - brk.at) < brk.gap))
            draw_fracture(canvas, fracture, brk, side, (band != intact) & (body > 0))
        canvas.density += 0.1 * band * body
        if a.frontal:  # anterior ribs, fainter, sloping down towards the midline
            phase_a = (Y + 0.45 * u - a.rib_first - 0.12) / (a.rib_spacing * 1.15)
            dist_a = np.abs(phase_a - np.rint(phase_a)) * a.rib_spacing * 1.15
            canvas.density += 0.045 * np.clip(1 - dist_a / (t * 1.2), 0, 1) * ((u > 0.12) & (u < 0.4)) * body
