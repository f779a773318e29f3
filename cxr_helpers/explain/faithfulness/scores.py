"""Pure scores of one explanation against the truth: heatmap vs mask, word ranking vs stating words, rank agreement.

Each takes arrays and returns a number; none runs a model. Random baselines are computed the
same way from a random map or ranking (or in closed form, as ``random_top_k_hit``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score


def pointing_game_hit(cam: np.ndarray, mask: np.ndarray) -> bool:
    """True if the heatmap's peak (first maximum) lies inside the mask."""
    cam, mask = np.asarray(cam), np.asarray(mask, dtype=bool)
    if cam.shape != mask.shape:
        raise ValueError(f"heatmap {cam.shape} and mask {mask.shape} differ in shape")
    return bool(mask.flat[int(np.argmax(cam))])


def mask_area_share(mask: np.ndarray) -> float:
    """The mask's share of the image: the pointing-game hit rate and energy share of a random map."""
    return float(np.asarray(mask, dtype=bool).mean())


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


def top_k_hit(values: np.ndarray, relevant: set[int], k: int = 3) -> bool:
    """True if one of the k words with the largest values is relevant."""
    order = np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")[:k]
    return any(int(i) in relevant for i in order)


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
