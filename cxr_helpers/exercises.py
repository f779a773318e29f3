"""Checks for the notebooks' "Your turn" exercises: compare a student's answer with the solution.

A check prints one line (not done yet / correct / not quite, with a hint) and returns True only
when the answer is right, so a notebook with the stub still runs top to bottom. The reference
answers are in ``cxr_helpers.solutions``; tests run every check against its solution.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from cxr_helpers import solutions
from cxr_helpers.explain.shap_text import TextExplanation
from cxr_helpers.labels import NUM_LABELS, label_index
from cxr_helpers.metrics import masked_accuracy


# ----------------------------------------------------------------------------- notebook 01: data preparation
def check_count_uncertain(count_uncertain: Callable[..., int | None], cohort: pd.DataFrame) -> bool:
    """Notebook 01: check ``count_uncertain(cohort, label, split)`` on a few labels and splits."""
    cases = [("Pleural Effusion", "train"), ("Edema", "validate"), ("Atelectasis", "test")]
    for label, split in cases:
        answer = count_uncertain(cohort, label, split)
        if answer is None:
            print("Not done yet: count_uncertain returns None. Fill in the function and run the cell again.")
            return False
        expected = solutions.count_uncertain(cohort, label, split)
        if answer != expected:
            print(f"Not quite: for {label!r} in {split!r} you returned {answer}. "
                  "Hint: keep the split's rows, one per study, and count the label's -1 codes.")
            return False
    print(f"Correct! {cases[0][0]} is uncertain (-1) in {solutions.count_uncertain(cohort)} training studies.")
    return True

# ----------------------------------------------------------------------------- notebook 02: image baseline
# A small case to reason about by hand: 4 studies x 3 labels.
# label 0: valid 1, 0, -1 -> negatives 0, -1 -> 2/3; label 1: 0, 0, 0, 1 -> 3/4; label 2: one valid -> skipped.
HAND_CASE = np.array([[1, 0, -2], [0, 0, -2], [-2, 0, 1], [-1, 1, -2]])
HAND_ANSWER = (2 / 3 + 3 / 4) / 2


def _cases(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    cases = [HAND_CASE]
    for n in (5, 40):
        cases.append(rng.choice([1, 0, -1, -2], size=(n, 14), p=[0.25, 0.2, 0.1, 0.45]))
    return cases


def check_all_negative_accuracy(function: Callable[[np.ndarray], float]) -> bool:
    """Compare the student's all-negative accuracy with masked_accuracy on all-zero predictions."""
    for number, targets in enumerate(_cases()):
        expected = masked_accuracy(np.zeros(targets.shape), targets)
        got = function(targets)
        if got is None:
            print("Not done yet: all_negative_accuracy returns None. Fill in the TODO and run the cell again.")
            return False
        if not np.isclose(float(got), expected, atol=1e-9):
            print(f"Not quite: case {number} ({targets.shape[0]} studies) expected {expected:.4f}, got {float(got):.4f}.")
            if number == 0:
                print("Hint: per label, drop the -2 entries, count -1 as 0, skip labels with fewer than 2 left.")
            return False
    print(f"Correct! On the hand case the all-negative model scores {HAND_ANSWER:.4f} without seeing an image.")
    return True

# ----------------------------------------------------------------------------- notebook 03: text baseline
CHECKED_LABELS = ("Pleural Effusion", "Cardiomegaly", "Support Devices", "Pneumothorax")


def check_top_words(function: Callable[..., list[str] | None], tfidf_model, k: int = 10) -> bool:
    """Compare the student's ``top_words(tfidf_model, label, k)`` with the solution on a few labels."""
    # labels with a fitted regression (a tiny training split can hold one class only for some labels)
    labels = [label for label in CHECKED_LABELS if tfidf_model.classifiers[label_index(label)] is not None]
    if not labels:
        print("No label of the check has both classes in this training split; try a larger cohort.")
        return False
    for label in labels:
        answer = function(tfidf_model, label, k)
        if answer is None:
            print("Not done yet: top_words returns None. Fill in the function and run the cell again.")
            return False
        expected = solutions.top_words(tfidf_model, label, k)
        answer = [str(word) for word in answer]
        if answer == expected:
            continue
        if sorted(answer) == sorted(expected):
            print(f"Almost: for {label!r} you have the right words in the wrong order. Largest coefficient first.")
        elif len(answer) != len(expected):
            print(f"Not quite: for {label!r} you returned {len(answer)} words, expected {len(expected)}.")
        else:
            print(f"Not quite: for {label!r} you returned {answer[:3]}... Hint: column j of the TF-IDF matrix is "
                  "the word vectorizer.get_feature_names_out()[j]; its weight is classifier.coef_[0, j].")
        return False
    print(f"Correct! The strongest words for {labels[0]!r}: {', '.join(solutions.top_words(tfidf_model, labels[0], 5))}")
    return True

# ----------------------------------------------------------------------------- notebook 04: fusion
IMAGE_DIM, TEXT_DIM, HIDDEN, BATCH = 512, 32, 16, 5


def check_fusion_gains(function: Callable[..., dict | None], table: pd.DataFrame) -> bool:
    """Compare the student's per-setting fusion gains with the solution on the notebook's own table."""
    answer = function(table)
    if answer is None:
        print("Not done yet: fusion_gains returns None. Fill in the function and run the cell again.")
        return False
    expected = solutions.fusion_gains(table)
    if set(answer) != set(expected):
        print(f"Not quite: expected one gain per text setting {sorted(expected)}, got keys {sorted(answer)}.")
        return False
    for setting, value in expected.items():
        if abs(float(answer[setting]) - value) > 1e-9:
            print(f"Not quite: for {setting!r} you computed {float(answer[setting]):+.4f}, expected {value:+.4f}. "
                  "Hint: the score of fusion_concat_<setting> minus the score of the model \"image\".")
            return False
    lines = ", ".join(f"{s}: {v:+.3f}" for s, v in expected.items())
    print(f"Correct! Gain in test macro AUROC over the image-only model: {lines}.")
    return True


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(BATCH, IMAGE_DIM, generator=generator), torch.randn(BATCH, TEXT_DIM, generator=generator)


def check_gated_fusion(head_class: type) -> bool:
    """Shapes, a gate in (0, 1), gradients into both inputs, and: with the gate at 1 the report cannot matter."""
    torch.manual_seed(0)
    try:
        head = head_class(IMAGE_DIM, TEXT_DIM, HIDDEN, 0.0).eval()
        image, text = _inputs()
        image.requires_grad_()
        text.requires_grad_()
        logits = head(image, text)
        gate = head.gate(image, text)
    except NotImplementedError:
        print("Not done yet: GatedFusionHead still raises NotImplementedError. Fill in gate() and forward().")
        return False
    if tuple(logits.shape) != (BATCH, NUM_LABELS):
        print(f"Not quite: forward should return logits of shape ({BATCH}, {NUM_LABELS}), got {tuple(logits.shape)}.")
        return False
    if tuple(gate.shape) != (BATCH, HIDDEN) or not bool(((gate > 0) & (gate < 1)).all()):
        print(f"Not quite: gate() should return ({BATCH}, {HIDDEN}) values strictly between 0 and 1 (a sigmoid).")
        return False
    logits.sum().backward()
    if image.grad is None or text.grad is None or image.grad.abs().sum() == 0 or text.grad.abs().sum() == 0:
        print("Not quite: the logits must depend on both the image features and the text embedding.")
        return False
    head.gate = lambda image_features, text_embedding: torch.ones(image_features.shape[0], HIDDEN)
    with torch.no_grad():
        first, second = head(image, text), head(image, _inputs(seed=1)[1])
    if not torch.allclose(first, second, atol=1e-6):
        print("Not quite: with the gate forced to 1 the report still changes the logits. "
              "Hint: mix as g * h_image + (1 - g) * h_text, and get g from self.gate(...).")
        return False
    print("Correct! Your gated fusion mixes the two modalities per hidden unit; "
          "a gate of 1 ignores the report, 0 ignores the image.")
    return True

# ----------------------------------------------------------------------------- notebook 05: interpretation
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
