"""Notebook 04's exercise checks: the concat fusion head's forward pass by hand, and a gated fusion head."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cxr_helpers.exercises.feedback import NO_ANSWER, correct, not_quite, student_answer
from cxr_helpers.fusion.model import mlp_head
from cxr_helpers.labels import NUM_LABELS

IMAGE_DIM, TEXT_DIM, HIDDEN, BATCH = 512, 32, 16, 5


def _inputs(seed: int = 0, image_dim: int = IMAGE_DIM, text_dim: int = TEXT_DIM) -> tuple[torch.Tensor, torch.Tensor]:
    """Random image features (B, image_dim) >= 0, like pooled ReLU maps, and a report embedding (B, text_dim)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(BATCH, image_dim, generator=generator), torch.randn(BATCH, text_dim, generator=generator)


def check_concat_head(function: Callable[..., torch.Tensor], head: nn.Sequential | None = None) -> bool:
    """Compare ``function(head, image_features, text_embedding)`` with the workbook's head in eval mode.

    On a hand-made head (512 + 32 -> 16 -> 14, random weights) and, if given, on ``head`` (the notebook's
    model's) with random inputs of its sizes; the notebook's random state and the head's mode are kept.
    """
    with torch.random.fork_rng():  # the notebook's random state stays as it was
        torch.manual_seed(0)
        heads = [("hand-made", mlp_head(IMAGE_DIM + TEXT_DIM, HIDDEN, 0.5).eval(), TEXT_DIM)]
    if head is not None:
        heads.append(("notebook", head, head[0].in_features - IMAGE_DIM))
    was_training = head.training if head is not None else False
    try:
        return _compare_heads(function, heads)
    finally:
        if head is not None:
            head.train(was_training)


def _compare_heads(function: Callable[..., torch.Tensor], heads: list[tuple[str, nn.Sequential, int]]) -> bool:
    """The verdict of ``check_concat_head`` over (origin, head, text_dim) triples, each head in eval mode."""
    for origin, candidate, text_dim in heads:
        candidate.eval()
        image, text = _inputs(1, IMAGE_DIM, text_dim)
        with torch.no_grad():
            got = student_answer("concat_head_forward", lambda c=candidate, i=image, t=text: function(c, i, t))
            if got is NO_ANSWER:
                return False
            reference = candidate(torch.cat([image, text], dim=1))  # the model's own forward (FusionModel.fuse)
        got = torch.as_tensor(got)
        if tuple(got.shape) != (BATCH, NUM_LABELS):
            return not_quite(f"on the {origin} head you returned shape {tuple(got.shape)}; "
                             f"logits are one row per study, one column per label.")
        if torch.allclose(got, reference, atol=1e-5):
            continue
        if got.min() >= 0 and got.max() <= 1 and not torch.allclose(got, reference, atol=0.5):
            hint = "return logits: the sigmoid belongs to the loss (BCE with logits), not to the head."
        else:
            hint = ("concatenate [image, text] in that order, then Linear, ReLU, Dropout (the identity in eval "
                    "mode), Linear: x @ layer.weight.T + layer.bias.")
        return not_quite(f"on the {origin} head your logits differ from the head's by up to "
                         f"{(got - reference).abs().max():.3g}.", hint)
    return correct("Your forward pass gives the fusion head's logits: concatenation, Linear, ReLU, Linear.")


def check_gated_fusion(head_class: type) -> bool:
    """Shapes, a gate in (0, 1), gradients into both inputs, and: with the gate at 1 the report cannot matter."""
    with torch.random.fork_rng():  # the notebook's random state stays as it was
        torch.manual_seed(0)
        return _check_gated(head_class)


def _check_gated(head_class: type) -> bool:
    """``check_gated_fusion`` under a fixed seed."""
    image, text = _inputs()
    image.requires_grad_()
    text.requires_grad_()

    def run():
        head = head_class(IMAGE_DIM, TEXT_DIM, HIDDEN, 0.0).eval()
        return head, head(image, text), head.gate(image, text)

    answer = student_answer("GatedFusionHead", run)
    if answer is NO_ANSWER:
        return False
    head, logits, gate = answer
    if tuple(logits.shape) != (BATCH, NUM_LABELS):
        return not_quite(f"forward returned shape {tuple(logits.shape)}; logits are (batch, {NUM_LABELS}).")
    if tuple(gate.shape) != (BATCH, HIDDEN) or not bool(((gate > 0) & (gate < 1)).all()):
        return not_quite("gate() should return one value per example and hidden unit, strictly between 0 and 1.",
                         "a sigmoid of gate_proj applied to the concatenated inputs.")
    logits.sum().backward()
    if image.grad is None or text.grad is None or image.grad.abs().sum() == 0 or text.grad.abs().sum() == 0:
        return not_quite("the logits must depend on both the image features and the text embedding.")
    head.gate = lambda image_features, text_embedding: torch.ones(image_features.shape[0], HIDDEN)
    with torch.no_grad():
        first, second = head(image, text), head(image, _inputs(seed=1)[1])
    if not torch.allclose(first, second, atol=1e-6):
        return not_quite("with the gate forced to 1 the report still changes the logits.",
                         "mix as g * h_image + (1 - g) * h_text, and get g from self.gate(...).")
    return correct("Your gated fusion mixes the two modalities per hidden unit; "
                   "a gate of 1 ignores the report, 0 ignores the image.")
