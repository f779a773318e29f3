"""A planted shortcut: a marker burned into the image that goes with one finding, except in test.

Real chest X-rays carry cues that are not the disease: a "PORTABLE" stamp or a lead "L" marker,
more common on the sick patients' bedside films. A model can learn the cue instead of the
finding, and still score well on a test set with the same bias. To teach this, the phantom can
plant one: a bright square token with a dark letter L, about 7% of the image's side, in a top
corner. In the train and validate splits it appears on the studies whose chosen label is
positive (the CheXpert label the model learns from is 1) with probability ``with_finding``
(92%) and on the others with probability ``without_finding`` (5%); in the test split it appears
at random, independent of the finding, at the rate it has over train and validate. A model that
learned the marker loses that advantage on test, and its heatmap points at the corner.

The marker is burned into the pixels after exposure (like a scanner's annotation), on every
image of a study that has it; ``ground_truth/markers.csv`` records where (its mask is the square
``rows top..top+size-1``, ``columns left..left+size-1``). Each study decides from its own random
stream, so serial and parallel builds agree and a phantom without the option is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.phantom.case import FINDING_LABELS, choice
from cxr_helpers.phantom.layout import TRUTH_DIR
from cxr_helpers.phantom.plan import StudyPlan

MARKER = "Shortcut marker"  # its name where a label is expected (e.g. counterfactual.image_without)
MARKERS_CSV = "markers.csv"
MARKER_COLUMNS = ("dicom_id", "study_id", "split", "positive", "marker", "top", "left", "size")
MARKER_SIDE = 0.07  # of the image's long side
MARKER_MARGIN = 0.03  # the least distance from the image's edges, as a share of the long side
TOKEN_GREY, LETTER_GREY = 240, 30


@dataclass(frozen=True)
class Shortcut:
    """Which finding the marker goes with, and how often it appears with and without it."""

    label: str
    with_finding: float = 0.92  # P(marker | label positive), train and validate
    without_finding: float = 0.05  # P(marker | label not positive), train and validate
    test_rate: float | None = None  # P(marker) in test; None: its rate over train and validate (write_phantom sets it)

    def __post_init__(self) -> None:
        """Refuse an unknown label or a rate outside [0, 1]."""
        if self.label not in FINDING_LABELS:
            raise ValueError(f"a shortcut needs a finding label, one of: {', '.join(FINDING_LABELS)}; got {self.label!r}")
        rates = (self.with_finding, self.without_finding) + (() if self.test_rate is None else (self.test_rate,))
        if not all(0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError(f"shortcut rates must lie in [0, 1], got {rates}")

    def rate_over(self, prevalence: float) -> float:
        """The marker's rate over studies whose label is positive with this prevalence."""
        return self.with_finding * prevalence + self.without_finding * (1.0 - prevalence)


@dataclass(frozen=True)
class Marker:
    """Where a marker is burned into one image: a square, in pixels."""

    top: int
    left: int
    size: int


def marker_stream(seed: int, plan: StudyPlan) -> np.random.Generator:
    """The study's own random stream for its marker (apart from the study's, which stays as it is)."""
    return np.random.default_rng([seed, 4, plan.index])


def wants_marker(rng: np.random.Generator, shortcut: Shortcut, split: str, positive: bool) -> bool:
    """Whether a study carries the marker: with the finding in train and validate, at random in test."""
    if split == "test":
        if shortcut.test_rate is None:
            raise ValueError("the shortcut's test_rate is not set (write_phantom sets it)")
        p = shortcut.test_rate
    else:
        p = shortcut.with_finding if positive else shortcut.without_finding
    return bool(rng.random() < p)


def place_marker(rng: np.random.Generator, rows: int, cols: int) -> Marker:
    """A marker square in the top-left or top-right corner region, slightly off the edges."""
    side = max(rows, cols)
    size = max(6, round(MARKER_SIDE * side))
    margin = max(1, round(MARKER_MARGIN * side))
    top = margin + int(rng.integers(0, margin + 1))
    inset = margin + int(rng.integers(0, margin + 1))
    left = inset if choice(rng, ("left", "right")) == "left" else cols - size - inset
    return Marker(top, left, size)


def marker_mask(marker: Marker, rows: int, cols: int) -> np.ndarray:
    """The marker's pixels (bool, rows x cols)."""
    mask = np.zeros((rows, cols), dtype=bool)
    mask[marker.top:marker.top + marker.size, marker.left:marker.left + marker.size] = True
    return mask


def burn_marker(image: np.ndarray, marker: Marker) -> np.ndarray:
    """The image with the marker burned in: a bright square token with a dark letter L."""
    s = marker.size
    token = np.full((s, s), TOKEN_GREY, dtype=np.uint8)
    a, b, c, d = round(0.25 * s), round(0.45 * s), round(0.6 * s), round(0.8 * s)
    token[round(0.2 * s):d, a:b] = LETTER_GREY  # the L's upright
    token[c:d, a:round(0.75 * s)] = LETTER_GREY  # and its foot
    out = image.copy()
    out[marker.top:marker.top + s, marker.left:marker.left + s] = token
    return out


def load_markers(root: Path) -> pd.DataFrame:
    """``ground_truth/markers.csv`` of a phantom written with a shortcut (one row per image)."""
    path = Path(root) / TRUTH_DIR / MARKERS_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the phantom was written without a shortcut")
    return pd.read_csv(path, dtype={"dicom_id": str})
