"""Solutions to notebook 05's exercises (kept apart so the notebook's stubs stay stubs)."""

from __future__ import annotations

import numpy as np

from cxr_helpers.explain import TextExplanation


def pointing_game_with_tolerance(cam: np.ndarray, mask: np.ndarray, tolerance: float = 0) -> bool:
    """True if the heatmap's peak lies within ``tolerance`` pixels (Euclidean) of the finding's mask."""
    peak = np.array(np.unravel_index(int(np.argmax(cam)), cam.shape))  # (row, column)
    inside = np.argwhere(mask)  # (M, 2) mask pixel coordinates
    if len(inside) == 0:
        return False
    return bool(np.sqrt(((inside - peak) ** 2).sum(axis=1)).min() <= tolerance)


def words_pushing_away(explanation: TextExplanation, k: int = 3) -> list[str]:
    """The k words with the most negative SHAP values: the blue words, arguing against the label."""
    order = np.argsort(explanation.values, kind="stable")[:k]
    return [explanation.words[i] for i in order]
