"""Pure scores of one explanation against the truth: heatmap vs mask, word ranking vs stating words, rank agreement.

Each takes arrays and returns a number; none runs a model. Random baselines are computed the
same way from a random map or ranking (or in closed form, as ``random_top_k_hit``). The
pointing game forgives a peak just beside the finding: ``POINTING_TOLERANCE`` of the image side,
as the original pointing game's 15 px at 224 px (Zhang et al., 2016).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.stats import norm, rankdata
from sklearn.metrics import roc_auc_score

POINTING_TOLERANCE = 0.05  # of the image side: 6.4 px at 128 px (the original: 15 px at 224 px, 6.7%)


def tolerance_pixels(image_size: int, share: float = POINTING_TOLERANCE) -> float:
    """The pointing game's tolerance in pixels: a share of the image side (15 px at 224 px in the original)."""
    return float(share) * int(image_size)


def distance_to_mask(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) from every pixel to the nearest mask pixel (0 inside; inf for an empty mask)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return distance_transform_edt(~mask)


def pointing_game_hit(cam: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> bool:
    """True if the heatmap's peak (first maximum) lies within ``tolerance`` pixels of the mask (0: inside it)."""
    cam, mask = np.asarray(cam), np.asarray(mask, dtype=bool)
    if cam.shape != mask.shape:
        raise ValueError(f"heatmap {cam.shape} and mask {mask.shape} differ in shape")
    peak = int(np.argmax(cam))
    if tolerance <= 0:
        return bool(mask.flat[peak])
    return bool(distance_to_mask(mask).flat[peak] <= tolerance)


def peak_on_other_finding(cam: np.ndarray, other_masks: list[np.ndarray | None], tolerance: float) -> bool:
    """True if the map's peak lies within ``tolerance`` of another finding drawn on the same image.

    Tells a map that points at a neighbouring finding (one the model may use as context) from one
    that points at nothing in particular; False when the image holds no other finding.
    """
    masks = [np.asarray(m, dtype=bool) for m in other_masks if m is not None and np.any(m)]
    return bool(masks) and pointing_game_hit(cam, np.logical_or.reduce(masks), tolerance)


def proportion_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a hit rate (None for n = 0): how sure a share of few findings is."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]: got {successes} of {n}")
    z = float(norm.ppf(0.5 + level / 2))
    share, z2 = successes / n, z * z / n
    centre = (share + z2 / 2) / (1 + z2)
    half = z * math.sqrt(share * (1 - share) / n + z2 / (4 * n)) / (1 + z2)
    return max(0.0, centre - half), min(1.0, centre + half)


def mask_area_share(mask: np.ndarray, tolerance: float = 0.0) -> float:
    """The share of pixels within ``tolerance`` of the mask: the hit rate of a uniformly random peak."""
    mask = np.asarray(mask, dtype=bool)
    if tolerance <= 0:
        return float(mask.mean())
    return float((distance_to_mask(mask) <= tolerance).mean())


def ideal_map(mask: np.ndarray, cells: int) -> np.ndarray:
    """The best map a ``cells`` x ``cells`` layer can give: each cell set to the mask's coverage there,
    upsampled bilinearly to the image as pytorch-grad-cam does. What a layer can resolve at best."""
    mask = np.asarray(mask, dtype=np.float32)
    rows, cols = mask.shape
    grid = cv2.resize(mask, (cells, cells), interpolation=cv2.INTER_AREA)  # coverage per cell
    return cv2.resize(grid, (cols, rows), interpolation=cv2.INTER_LINEAR)


def energy_inside_mask(cam: np.ndarray, mask: np.ndarray) -> float:
    """The heatmap's mass inside the mask over its total mass (NaN for an all-zero map)."""
    cam = np.clip(np.asarray(cam, dtype=np.float64), 0, None)
    total = cam.sum()
    return float(cam[np.asarray(mask, dtype=bool)].sum() / total) if total > 0 else float("nan")


def mask_auroc(cam: np.ndarray, mask: np.ndarray) -> float:
    """AUROC of heatmap values separating mask pixels from the rest (0.5 = chance, NaN if undefined)."""
    mask = np.asarray(mask, dtype=bool).ravel()
    if mask.all() or not mask.any():
        return float("nan")
    return float(roc_auc_score(mask, np.asarray(cam, dtype=np.float64).ravel()))


def top_k_words(values: np.ndarray, k: int = 3) -> list[int]:
    """Indices of the k words with the largest values, largest first (ties: the earlier word)."""
    return [int(i) for i in np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")[:k]]


def top_k_hit(values: np.ndarray, relevant: set[int], k: int = 3) -> bool:
    """True if one of the k words with the largest values is relevant."""
    return any(i in relevant for i in top_k_words(values, k))


def random_top_k_hit(n_words: int, n_relevant: int, k: int = 3) -> float:
    """Probability that k words drawn at random (a random ranking) include a relevant one."""
    k = min(k, n_words)
    if n_relevant <= 0 or n_words <= 0:
        return 0.0
    return 1.0 - math.comb(n_words - n_relevant, k) / math.comb(n_words, k)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two explanations (flattened); NaN if one is constant."""
    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])
