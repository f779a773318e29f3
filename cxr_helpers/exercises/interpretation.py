"""Notebook 05's exercise checks: Grad-CAM from hooks, exact Shapley values, the shortcut's marker, the pointing game."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cxr_helpers.exercises.feedback import NO_ANSWER, correct, not_quite, student_answer
from cxr_helpers.explain.gradcam import cams_for_labels
from cxr_helpers.image_model import ImageClassifier
from cxr_helpers.labels import label_index


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


# Cooperative games whose Shapley values are known in closed form: the check needs no solution file.
GAMES = {
    "additive": (3, lambda players: sum((1.0, 2.0, -0.5)[i] for i in players), (1.0, 2.0, -0.5)),
    "pair": (3, lambda players: 3.0 * (0 in players and 1 in players) + 1.0 * (2 in players), (1.5, 1.5, 1.0)),
    "majority": (4, lambda players: float(len(players) >= 3), (0.25, 0.25, 0.25, 0.25)),
}


def check_exact_shapley(function: Callable[[Callable[[frozenset], float], int], np.ndarray]) -> bool:
    """The student's exact Shapley values on games whose values are known (additive, a pure pair, a vote)."""
    for name, (n, value, known) in GAMES.items():
        got = student_answer("exact_shapley", lambda n=n, value=value: function(lambda s: value(frozenset(s)), n))
        if got is NO_ANSWER:
            return False
        got = np.asarray(got, dtype=float)
        if got.shape != (n,):
            return not_quite(f"the {name!r} game has {n} players; you returned shape {got.shape}.",
                             "return one value per player.")
        if not np.isclose(got.sum(), value(frozenset(range(n))) - value(frozenset())):
            return not_quite(f"in the {name!r} game your values do not add up to v(all players) - v(none).",
                             "weight each marginal contribution v(S + i) - v(S) by |S|! (n - |S| - 1)! / n!.")
        if not np.allclose(got, known):
            return not_quite(f"in the {name!r} game your values add up, but are not shared as Shapley values are.",
                             "loop over every coalition S of the OTHER players (itertools.combinations), all sizes.")
    return correct("Your enumeration gives the Shapley values: 2^(n-1) coalitions per word, so only short texts.")


def check_gradcam_from_hooks(function: Callable[..., np.ndarray], size: int = 64) -> bool:
    """The student's Grad-CAM from hooks against pytorch-grad-cam's GradCAM, on a fresh ResNet-18 and two labels."""
    with torch.random.fork_rng():  # a fresh model without touching the notebook's random state
        torch.manual_seed(0)
        model = ImageClassifier(freeze_through="none").eval()
    images = torch.rand(2, 1, 1, size, size, generator=torch.Generator().manual_seed(1))
    for image, label in zip(images, ("Cardiomegaly", "Pleural Effusion"), strict=True):
        got = student_answer("gradcam_from_hooks", lambda image=image, label=label: function(
            model, model.cam_layer("layer4"), image.clone(), label_index(label)))
        if got is NO_ANSWER:
            return False
        got = np.asarray(got, dtype=np.float32)
        if got.shape != (size, size):
            return not_quite(f"your map has shape {got.shape}, the image is ({size}, {size}).",
                             "upsample the layer's grid bilinearly: F.interpolate(cam[None, None], size=..., "
                             "mode='bilinear').")
        reference = cams_for_labels(model, model.cam_layer("layer4"), image[0, 0].numpy(), [label])[label]
        if not np.allclose(got, reference, atol=1e-3):
            return not_quite(f"your map for {label} differs from pytorch-grad-cam's.",
                             "alpha = the gradient's mean over the grid; map = ReLU(sum_k alpha_k A^k); then minus "
                             "its minimum, over its maximum; then resize.")
    return correct("Your hooks give pytorch-grad-cam's map: alpha weights, a weighted sum, a ReLU, an upsample.")


class _Corner(torch.nn.Module):
    """A model that only looks at the top-left corner of the image: every logit is 20 x its brightness - 10."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image[:, :, :4, :4].mean(dim=(1, 2, 3)) * 20 - 10)[:, None].repeat(1, 14)


def check_probability_shift(function: Callable[..., float]) -> bool:
    """The student's p(with the marker) - p(without it), on a model that reads only the corner where a marker sits."""
    marked, plain = np.zeros((16, 16), np.float32), np.zeros((16, 16), np.float32)
    marked[:4, :4] = 1.0
    got = student_answer("probability_shift", lambda: function(_Corner(), marked, plain, "Atelectasis"))
    if got is NO_ANSWER:
        return False
    reference = float(torch.sigmoid(torch.tensor(10.0)) - torch.sigmoid(torch.tensor(-10.0)))
    if np.isclose(float(got), -reference, atol=1e-4):
        return not_quite("your shift has the wrong sign.", "p(with the marker) minus p(without it).")
    if not np.isclose(float(got), reference, atol=1e-4):
        return not_quite("your shift is not the difference of the model's two probabilities for the label.",
                         "a batch of shape (2, 1, S, S), the label's column of the logits, a sigmoid, a subtraction.")
    return correct("A model that reads the marker changes its mind when the marker goes, the finding untouched.")
