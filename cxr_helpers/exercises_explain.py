"""Checks for notebook 05's "Your turn" exercises: they print feedback and never stop a run-all."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cxr_helpers.explain import TextExplanation


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def _peak(size: int, row: int, column: int) -> np.ndarray:
    cam = np.zeros((size, size), dtype=np.float32)
    cam[row, column] = 1.0
    return cam


# (cam, mask, tolerance, expected hit): a peak inside, a peak 3 px right of the mask's edge, far away.
POINTING_CASES = [
    (_peak(32, 10, 10), _square(32, 8, 8, 6), 0, True),
    (_peak(32, 10, 16), _square(32, 8, 8, 6), 0, False),
    (_peak(32, 10, 16), _square(32, 8, 8, 6), 2, False),
    (_peak(32, 10, 16), _square(32, 8, 8, 6), 3, True),
    (_peak(32, 30, 30), _square(32, 8, 8, 6), 15, False),
    (_peak(32, 20, 20), _square(32, 8, 8, 6), 15, True),
]


def check_pointing_game_with_tolerance(function: Callable[[np.ndarray, np.ndarray, float], bool]) -> bool:
    """Compare the student's tolerant pointing game with hand-made peaks and masks."""
    for number, (cam, mask, tolerance, expected) in enumerate(POINTING_CASES):
        got = function(cam, mask, tolerance)
        if got is None:
            print("Not done yet: pointing_game_with_tolerance returns None. Fill in the TODO and run the cell again.")
            return False
        if bool(got) != expected:
            print(f"Not quite: case {number} (tolerance {tolerance} px) should be a {'hit' if expected else 'miss'}.")
            print("Hint: find the peak with np.unravel_index(np.argmax(cam), cam.shape), then the smallest "
                  "Euclidean distance from it to any mask pixel (np.argwhere(mask)).")
            return False
    print("Correct! With a tolerance, the pointing game forgives a peak just beside the finding "
          "(Zhang et al. used 15 px at 224 px): how much does that matter for a 4 x 4 layer4 map?")
    return True


def _explanation() -> TextExplanation:
    words = ["there ", "is ", "no ", "pneumothorax ", "mild ", "cardiomegaly"]
    return TextExplanation("Pneumothorax", words, np.array([0.01, 0.02, -0.9, 0.4, -0.05, -0.3]), -1.0, -1.82)


def check_words_pushing_away(function: Callable[[TextExplanation, int], list[str]]) -> bool:
    """Compare the student's "blue words" with the hand-made explanation's."""
    explanation = _explanation()
    got = function(explanation, 2)
    if got is None:
        print("Not done yet: words_pushing_away returns None. Fill in the TODO and run the cell again.")
        return False
    if list(got) != ["no", "cardiomegaly"]:
        print(f"Not quite: expected ['no', 'cardiomegaly'] (the two most negative values), got {list(got)}.")
        print("Hint: np.argsort(explanation.values)[:k] gives the k most negative first; use explanation.words.")
        return False
    if list(function(explanation, 1)) != ["no"]:
        print("Not quite: with k=1 only the single most negative word should come back.")
        return False
    print("Correct! 'no' argues hardest against Pneumothorax: the model has learned the negation.")
    return True
