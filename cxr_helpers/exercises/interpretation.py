"""Notebook 05's exercise checks: a pointing game with a tolerance, and the words that push away from a label."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from cxr_helpers.exercises.feedback import NO_ANSWER, correct, not_quite, student_answer
from cxr_helpers.explain.shap_text import TextExplanation


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    """A (size, size) mask with one side x side square set."""
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def _peak(size: int, row: int, column: int) -> np.ndarray:
    """A (size, size) heatmap that is 1 at one pixel and 0 elsewhere."""
    cam = np.zeros((size, size), dtype=np.float32)
    cam[row, column] = 1.0
    return cam


# (what the case is, cam, mask, tolerance, hit?): the mask is rows and columns 8-13 of a 32 x 32 map.
POINTING_CASES = [
    ("peak inside the mask", _peak(32, 10, 10), _square(32, 8, 8, 6), 0, True),
    ("peak 3 px right of the mask's edge", _peak(32, 10, 16), _square(32, 8, 8, 6), 0, False),
    ("peak 3 px right of the mask's edge", _peak(32, 10, 16), _square(32, 8, 8, 6), 2, False),
    ("peak 3 px right of the mask's edge", _peak(32, 10, 16), _square(32, 8, 8, 6), 3, True),
    ("peak about 24 px diagonally from the mask", _peak(32, 30, 30), _square(32, 8, 8, 6), 15, False),
    ("peak about 10 px diagonally from the mask", _peak(32, 20, 20), _square(32, 8, 8, 6), 15, True),
]


def check_pointing_game_with_tolerance(function: Callable[[np.ndarray, np.ndarray, float], bool]) -> bool:
    """Compare the student's tolerant pointing game with hand-made peaks and masks."""
    for what, cam, mask, tolerance, hit in POINTING_CASES:
        got = student_answer("pointing_game_with_tolerance", lambda c=cam, m=mask, t=tolerance: function(c, m, t))
        if got is NO_ANSWER:
            return False
        if bool(got) != hit:
            return not_quite(f"{what}, tolerance {tolerance} px: your function said {'hit' if got else 'miss'}.",
                             "find the peak with np.unravel_index(np.argmax(cam), cam.shape), then the smallest "
                             "Euclidean distance from it to any mask pixel (np.argwhere(mask)).")
    return correct("With a tolerance, the pointing game forgives a peak just beside the finding (Zhang et al. used "
                   "15 px at 224 px): how much does that matter for a map only S/32 (layer4) or S/16 (layer3) cells wide?")


def _explanation() -> TextExplanation:
    """A hand-made SHAP explanation of "there is no pneumothorax mild cardiomegaly" for Pneumothorax."""
    words = ["there ", "is ", "no ", "pneumothorax ", "mild ", "cardiomegaly"]
    return TextExplanation("Pneumothorax", words, np.array([0.01, 0.02, -0.9, 0.4, -0.05, -0.3]), -1.0, -1.82)


def check_words_pushing_away(function: Callable[[TextExplanation, int], list[str]]) -> bool:
    """Compare the student's "blue words" with ``TextExplanation.top_words`` of the mirrored explanation."""
    explanation = _explanation()
    mirrored = dataclasses.replace(explanation, values=-explanation.values)  # most negative = top of the mirror
    for k in (2, 1, 4):
        got = student_answer("words_pushing_away", lambda k=k: function(explanation, k))
        if got is NO_ANSWER:
            return False
        reference = [word for word, _ in mirrored.top_words(k)]
        if [str(word).strip() for word in got] != reference:
            return not_quite(f"with k={k} you returned {list(got)}.",
                             "np.argsort(explanation.values)[:k] gives the k most negative first; "
                             "map them to explanation.words.")
    return correct("'no' argues hardest against Pneumothorax: the model has learned the negation.")
