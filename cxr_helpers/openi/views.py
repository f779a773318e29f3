"""Frontal or lateral? From the projections CSV when there is one, else a guess from the image.

Open-i does not say which image of a report is frontal: the captions read like "Xray Chest
PA and Lateral" for both, and the image id's digits only hint at it. The Kaggle projections
CSV does say it (``Frontal`` / ``Lateral``), for either form. Without it, ``guess_view`` reads
one number off the image, the **mediastinum contrast**: on a frontal radiograph the central
vertical strip (spine, mediastinum, heart) is bright between two dark lung fields; on a
lateral the lungs fill the middle and the spine lies near one edge. The score is the central
strip's brightness minus that of the two strips beside it, over the lung rows, on a 32 x 32
z-scored copy of the body (the image cropped to where it is brighter than its darkest 30%, so
an off-centre patient or a black border does not move the strips). Above ``FRONTAL_FROM`` it
says frontal, below ``LATERAL_UNDER`` lateral, and in between "unknown" (such images get a blank
ViewPosition, so the frontal filter leaves them out).

How good is it? On held-out phantom images it is right on every image it decides
(benchmarks/bench_openi_views.py prints the figures, docs/openi.md quotes them). On real
X-rays it is **unmeasured** here (no real images were available): the importer therefore
warns whenever it was used, and where the projections CSV is given it still scores every
image and reports how often the guess agrees with the CSV, so a real run measures it.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

WORK_SIDE, FEATURE_SIDE = 64, 32
BODY_PERCENTILE, BODY_FILL, MIN_BODY_PIXELS = 30, 0.3, 8  # the body: brighter than the darkest 30%
LUNG_ROWS = (0.2, 0.7)  # fraction of the height holding the lung fields
CENTRE = (0.42, 0.58)  # the mediastinum strip, as fractions of the width
FLANKS = ((0.15, 0.35), (0.65, 0.85))  # where the two lung fields are on a frontal view
# Chosen on one phantom (seed 0: frontal images score +1.10 to +2.44, laterals -0.78 to +0.18), about
# 0.2 inside each end of the gap; checked on another (benchmarks/bench_openi_views.py). Between: "unknown".
FRONTAL_FROM = 0.9
LATERAL_UNDER = 0.4
VIEW_POSITIONS = {"frontal": "PA", "lateral": "LATERAL", "unknown": ""}
_AP_EXAM = re.compile(r"\b(AP|portable)\b", re.IGNORECASE)
_PA_EXAM = re.compile(r"\bPA\b|posteroanterior|postero-anterior", re.IGNORECASE)


def _span(n: int, fractions: tuple[float, float]) -> slice:
    """Index range of a fraction range of n pixels."""
    return slice(int(round(fractions[0] * n)), int(round(fractions[1] * n)))


def body_crop(pixels: np.ndarray) -> np.ndarray:
    """The bounding box of the body: rows and columns where most pixels are brighter than the darkest 30%."""
    body = pixels > np.percentile(pixels, BODY_PERCENTILE)
    columns, rows = body.sum(axis=0), body.sum(axis=1)
    xs = np.flatnonzero(columns > BODY_FILL * max(columns.max(), 1))
    ys = np.flatnonzero(rows > BODY_FILL * max(rows.max(), 1))
    if len(xs) < MIN_BODY_PIXELS or len(ys) < MIN_BODY_PIXELS:
        return pixels
    return pixels[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]


def mediastinum_contrast(image: Image.Image) -> float:
    """Central strip minus lung-field strips over the lung rows of the body, in standard deviations."""
    work = image.convert("L").resize((WORK_SIDE, WORK_SIDE), Image.Resampling.BILINEAR)
    body = body_crop(np.asarray(work, dtype=np.float32))
    small = Image.fromarray(body).resize((FEATURE_SIDE, FEATURE_SIDE), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.float64)
    spread = pixels.std()
    if spread < 1e-6:  # a flat image has no anatomy to read
        return 0.0
    profile = ((pixels - pixels.mean()) / spread)[_span(FEATURE_SIDE, LUNG_ROWS)].mean(axis=0)
    centre = profile[_span(FEATURE_SIDE, CENTRE)].mean()
    flanks = np.concatenate([profile[_span(FEATURE_SIDE, f)] for f in FLANKS]).mean()
    return round(float(centre - flanks), 4)


def guess_view(score: float) -> str:
    """The view a mediastinum-contrast score says: "frontal", "lateral" or "unknown"."""
    if score >= FRONTAL_FROM:
        return "frontal"
    if score < LATERAL_UNDER:
        return "lateral"
    return "unknown"


def view_position(view: str, examination: str = "") -> str:
    """MIMIC's ViewPosition for a view: lateral -> LATERAL, unknown -> "" (blank), frontal -> PA,
    or AP where the examination says AP or portable and not PA (Open-i rarely says which)."""
    if view == "frontal" and _AP_EXAM.search(examination) and not _PA_EXAM.search(examination):
        return "AP"
    return VIEW_POSITIONS[view]


def decide_view(csv_view: str | None, score: float | None, classify: bool) -> tuple[str, str]:
    """(view, where it came from): the projections CSV first, then the image guess, else unknown."""
    if csv_view in ("frontal", "lateral"):
        return csv_view, "projections csv"
    if classify and score is not None:
        view = guess_view(score)
        return view, "image guess" if view != "unknown" else "image guess: unsure"
    return "unknown", "none"
