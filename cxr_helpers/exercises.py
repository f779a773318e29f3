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
from cxr_helpers.explain.gradcam import cams_for_labels
from cxr_helpers.image_model import ImageClassifier
from cxr_helpers.labels import NUM_LABELS, label_index
from cxr_helpers.metrics import masked_bce


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
def _bce_cases(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(probabilities, coded targets) batches: one by hand, then random ones with every code."""
    generator = torch.Generator().manual_seed(seed)
    cases = [(torch.tensor([[0.9, 0.2, 0.7], [0.4, 0.6, 0.1]]), torch.tensor([[1.0, -2.0, 0.0], [-1.0, 1.0, -2.0]]))]
    for n in (5, 32):
        probabilities = torch.rand(n, 14, generator=generator).clamp(0.02, 0.98)
        codes = torch.tensor([1.0, 0.0, -1.0, -2.0])[torch.randint(4, (n, 14), generator=generator)]
        cases.append((probabilities, codes))
    return cases


def check_masked_bce(function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]) -> bool:
    """Compare the student's masked BCE with ``metrics.masked_bce`` (U-Zeros, blanks left out) on several batches."""
    for number, (probabilities, targets) in enumerate(_bce_cases()):
        got = function(probabilities.clone(), targets.clone())
        if got is None:
            print("Not done yet: masked_bce_by_hand returns None. Fill in the TODO and run the cell again.")
            return False
        expected = masked_bce(torch.logit(probabilities.double()), targets.double())
        value = float(got)
        if np.isclose(value, -float(expected), rtol=1e-4):
            print("Not quite: your loss has the wrong sign. log(p) is negative: BCE is MINUS the mean of the logs.")
            return False
        if not np.isclose(value, float(expected), rtol=1e-4):
            hint = ("Hint: leave out the -2 entries entirely: they must count neither in the sum nor in the "
                    "number you divide by; -1 entries count as 0.")
            print(f"Not quite: batch {number} ({tuple(targets.shape)}) gives a different loss. {hint}")
            return False
    print("Correct! Your masked BCE matches the workbook's on every batch: the mask decides which entries count.")
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


# Cooperative games whose Shapley values are known in closed form: the check needs no solution file.
GAMES = {
    "additive": (3, lambda players: sum((1.0, 2.0, -0.5)[i] for i in players), (1.0, 2.0, -0.5)),
    "pair": (3, lambda players: 3.0 * (0 in players and 1 in players) + 1.0 * (2 in players), (1.5, 1.5, 1.0)),
    "majority": (4, lambda players: float(len(players) >= 3), (0.25, 0.25, 0.25, 0.25)),
}


def check_exact_shapley(function: Callable[[Callable[[frozenset], float], int], np.ndarray | None]) -> bool:
    """The student's exact Shapley values on games with known answers (additivity, a pure pair, a vote)."""
    for name, (n, value, known) in GAMES.items():
        got = function(lambda players, value=value: value(frozenset(players)), n)
        if got is None:
            print("Not done yet: exact_shapley returns None. Fill in the TODO and run the cell again.")
            return False
        got = np.asarray(got, dtype=float)
        if got.shape != (n,):
            print(f"Not quite: return one value per player, shape ({n},); got shape {got.shape}.")
            return False
        total = value(frozenset(range(n))) - value(frozenset())
        if not np.isclose(got.sum(), total):
            print(f"Not quite: in the {name!r} game your values do not add up to v(all) - v(none) (efficiency). "
                  "Hint: weight each marginal contribution by |S|! (n - |S| - 1)! / n!.")
            return False
        if not np.allclose(got, known):
            print(f"Not quite: the {name!r} game's values add up, but are not shared fairly between the players. "
                  "Hint: loop over every coalition S without player i, add weight * (v(S + i) - v(S)).")
            return False
    print("Correct! Your enumeration gives the Shapley values: 2^n coalitions per player, so it only scales to short texts.")
    return True


def check_gradcam_from_hooks(function: Callable[..., np.ndarray | None], size: int = 64) -> bool:
    """The student's Grad-CAM from hooks against pytorch-grad-cam's GradCAM, on a small ResNet-18 and two labels."""
    torch.manual_seed(0)
    model = ImageClassifier(freeze_through="none").eval()
    images = torch.rand(2, 1, 1, size, size, generator=torch.Generator().manual_seed(1))
    for image, label in zip(images, ("Cardiomegaly", "Pleural Effusion"), strict=True):
        got = function(model, model.cam_layer("layer4"), image.clone(), label_index(label))
        if got is None:
            print("Not done yet: gradcam_from_hooks returns None. Fill in the TODO and run the cell again.")
            return False
        got = np.asarray(got, dtype=np.float32)
        if got.shape != (size, size):
            print(f"Not quite: return the map at the image's size ({size}, {size}); got {got.shape}. "
                  "Hint: upsample the layer's grid bilinearly (F.interpolate(..., mode='bilinear')).")
            return False
        expected = cams_for_labels(model, model.cam_layer("layer4"), image[0, 0].numpy(), [label])[label]
        if not np.allclose(got, expected, atol=1e-3):
            print(f"Not quite: your map for {label} differs from pytorch-grad-cam's. Hint: alpha = the gradient's "
                  "mean over the grid, map = ReLU(sum of alpha * activations), then min-max to [0, 1], then resize.")
            return False
    print("Correct! Your hooks give pytorch-grad-cam's map: alpha weights, a weighted sum, a ReLU, an upsample.")
    return True


def check_probability_shift(function: Callable[..., float | None]) -> bool:
    """The student's shift in probability when the marker is taken away, on a model that only looks at one corner."""

    class Corner(torch.nn.Module):
        def forward(self, image):
            return (image[:, :, :4, :4].mean(dim=(1, 2, 3)) * 20 - 10)[:, None].repeat(1, 14)

    marked = np.zeros((16, 16), np.float32)
    marked[:4, :4] = 1.0
    plain = np.zeros((16, 16), np.float32)
    got = function(Corner(), marked, plain, "Atelectasis")
    if got is None:
        print("Not done yet: probability_shift returns None. Fill in the TODO and run the cell again.")
        return False
    if np.isclose(float(got), -(torch.sigmoid(torch.tensor(10.0)) - torch.sigmoid(torch.tensor(-10.0))).item(), atol=1e-4):
        print("Not quite: the sign is the wrong way round: p(with the marker) minus p(without it).")
        return False
    if not np.isclose(float(got), (torch.sigmoid(torch.tensor(10.0)) - torch.sigmoid(torch.tensor(-10.0))).item(),
                      atol=1e-4):
        print("Not quite: run the model on both images (shape (1, 1, S, S)), take the label's column, apply the "
              "sigmoid, and subtract.")
        return False
    print("Correct! A model that reads the marker changes its mind when the marker goes, with the finding untouched.")
    return True
