"""Checks for notebook 04's "Your turn" exercises: they print feedback and never stop a run-all."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch

from cxr_helpers import solutions_fusion
from cxr_helpers.labels import NUM_LABELS

IMAGE_DIM, TEXT_DIM, HIDDEN, BATCH = 512, 32, 16, 5


def check_fusion_gains(function: Callable[..., dict | None], table: pd.DataFrame) -> bool:
    """Compare the student's per-setting fusion gains with the solution on the notebook's own table."""
    answer = function(table)
    if answer is None:
        print("Not done yet: fusion_gains returns None. Fill in the function and run the cell again.")
        return False
    expected = solutions_fusion.fusion_gains(table)
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
