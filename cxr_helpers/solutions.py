"""Reference solutions to the notebooks' "Your turn" exercises, one section per notebook.

Kept apart from the notebooks so their stubs stay stubs. Nothing imports this module but the
tests (which run every check against its solution): ``cxr_helpers.exercises`` checks behaviour,
so an instructor can delete this file from a student copy and every notebook and check still runs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.model_selection import GroupShuffleSplit
from torch import nn

from cxr_helpers.labels import NUM_LABELS, label_index


# ----------------------------------------------------------------------------- notebook 01: data preparation
def split_by_patient(studies: pd.DataFrame, fractions: tuple[float, float, float] = (0.7, 0.2, 0.1),
                     seed: int = 0) -> pd.Series:
    """Split name per row of ``studies`` (subject_id, study_id), drawn by patient with GroupShuffleSplit twice.

    GroupShuffleSplit's sizes count groups (patients), not rows (studies): the shares of studies
    come out close to the fractions, not equal to them.
    """
    train, validate, test = fractions
    groups = studies["subject_id"].to_numpy()
    rows = np.arange(len(studies))
    first = GroupShuffleSplit(n_splits=1, train_size=train, random_state=seed)
    train_rows, rest = next(first.split(rows, groups=groups))  # positions: train patients vs the others
    second = GroupShuffleSplit(n_splits=1, train_size=validate / (validate + test), random_state=seed)
    validate_at, test_at = next(second.split(rest, groups=groups[rest]))  # positions within ``rest``
    names = np.empty(len(studies), dtype=object)
    names[train_rows], names[rest[validate_at]], names[rest[test_at]] = "train", "validate", "test"
    return pd.Series(names, index=studies.index, name="split")

# ----------------------------------------------------------------------------- notebook 02: image baseline
def masked_bce_by_hand(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The paper's masked BCE from its equation: -[y log p + (1 - y) log(1 - p)], averaged over the valid entries."""
    mask = (targets != -2).to(probabilities.dtype)  # not mentioned: left out
    clamped = targets.clamp(0, 1)  # U-Zeros: uncertain (-1) counts as 0
    p = probabilities.clamp(1e-7, 1 - 1e-7)  # keep the logarithms finite
    per_entry = -(clamped * torch.log(p) + (1 - clamped) * torch.log(1 - p))  # (N, 14)
    return (per_entry * mask).sum() / mask.sum().clamp_min(1)


# ----------------------------------------------------------------------------- notebook 03: text baseline
def top_words(tfidf_model, label: str = "Pleural Effusion", k: int = 10) -> list[str]:
    """The k TF-IDF features (words or word pairs) with the largest coefficients for ``label``, largest first."""
    classifier = tfidf_model.classifiers[label_index(label)]
    if classifier is None:  # one class in the training split: no regression was fit
        return []
    vocabulary = tfidf_model.vectorizer.get_feature_names_out()  # column j of the TF-IDF matrix -> its word
    order = np.argsort(-classifier.coef_[0], kind="stable")[:k]  # coef_ is (1, n_features)
    return [str(vocabulary[i]) for i in order]

# ----------------------------------------------------------------------------- notebook 04: fusion
def concat_head_forward(head: nn.Sequential, image_features: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
    """The concat fusion head's forward pass in plain torch, with the weights of ``head`` (Linear, ReLU, Dropout, Linear)."""
    first, _, _, last = head
    fused = torch.cat([image_features, text_embedding], dim=1)  # (B, 512 + H): image first, as the model does
    hidden = torch.relu(fused @ first.weight.T + first.bias)  # (B, hidden)
    # Dropout is the identity in eval mode (in training it zeroes units with probability p, scales the rest by 1/(1-p)).
    return hidden @ last.weight.T + last.bias  # (B, 14) logits: the sigmoid belongs to the loss


class GatedFusionHead(nn.Module):
    """A gated multimodal unit (Arevalo et al., 2017): a learned per-unit gate mixes the two modalities.

    h_image = tanh(W_i x), h_text = tanh(W_t t), g = sigmoid(W_g [x; t]),
    h = g * h_image + (1 - g) * h_text, logits = Linear(Dropout(h)).
    The gate says, per example and per hidden unit, how much to trust the image over the report.
    """

    def __init__(self, image_dim: int, text_dim: int, hidden: int = 256, dropout: float = 0.5,
                 num_labels: int = NUM_LABELS):
        super().__init__()
        self.image_proj = nn.Linear(image_dim, hidden)
        self.text_proj = nn.Linear(text_dim, hidden)
        self.gate_proj = nn.Linear(image_dim + text_dim, hidden)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_labels))

    def gate(self, image_features: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        """g (B, hidden) in (0, 1): 1 = trust the image, 0 = trust the report."""
        return torch.sigmoid(self.gate_proj(torch.cat([image_features, text_embedding], dim=1)))

    def forward(self, image_features: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        h_image = torch.tanh(self.image_proj(image_features))  # (B, hidden)
        h_text = torch.tanh(self.text_proj(text_embedding))  # (B, hidden)
        g = self.gate(image_features, text_embedding)  # (B, hidden)
        return self.out(g * h_image + (1 - g) * h_text)  # (B, 14)

# ----------------------------------------------------------------------------- notebook 05: interpretation
def pointing_game_with_tolerance(cam: np.ndarray, mask: np.ndarray, tolerance: float = 0) -> bool:
    """True if the heatmap's peak lies within ``tolerance`` pixels (Euclidean) of the finding's mask."""
    peak = np.array(np.unravel_index(int(np.argmax(cam)), cam.shape))  # (row, column)
    inside = np.argwhere(mask)  # (M, 2) mask pixel coordinates
    if len(inside) == 0:
        return False
    return bool(np.sqrt(((inside - peak) ** 2).sum(axis=1)).min() <= tolerance)


def exact_shapley(value: Callable[[frozenset], float], n: int) -> np.ndarray:
    """Shapley values by enumerating every coalition: phi_i = sum_S |S|!(n-|S|-1)!/n! [v(S + i) - v(S)]."""
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for coalition in itertools.combinations(others, size):
                phi[i] += weight * (value(frozenset(coalition) | {i}) - value(frozenset(coalition)))
    return phi


def gradcam_from_hooks(model: nn.Module, layer: nn.Module, image: torch.Tensor, label: int) -> np.ndarray:
    """Grad-CAM of one label: hooks catch the layer's activations A and gradients dy/dA (image (1, 1, S, S))."""
    caught = {}
    forward = layer.register_forward_hook(lambda module, inputs, output: caught.update(activations=output))
    backward = layer.register_full_backward_hook(lambda module, grad_in, grad_out: caught.update(gradients=grad_out[0]))
    try:
        model.zero_grad()
        model(image.clone().requires_grad_(True))[0, label].backward()  # the label's raw logit
    finally:
        forward.remove()
        backward.remove()
    alpha = caught["gradients"].mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1): the paper's alpha_k
    cam = torch.relu((alpha * caught["activations"]).sum(dim=1))[0].detach()  # (h, w)
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)  # [0, 1], as pytorch-grad-cam scales it
    size = image.shape[-2:]
    return F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def probability_shift(model: nn.Module, with_marker: np.ndarray, without_marker: np.ndarray, label: str) -> float:
    """p(label) on the image with the marker minus on the same image without it."""
    batch = torch.from_numpy(np.stack([with_marker, without_marker]).astype(np.float32))[:, None]  # (2, 1, S, S)
    with torch.no_grad():
        p = torch.sigmoid(model(batch)[:, label_index(label)])
    return float(p[0] - p[1])
