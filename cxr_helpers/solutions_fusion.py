"""Solutions to notebook 04's exercises (kept apart so the notebook's stubs stay stubs)."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from cxr_helpers.config import TEXT_SETTINGS
from cxr_helpers.labels import NUM_LABELS


def fusion_gains(table: pd.DataFrame, strategy: str = "concat", metric: str = "test_macro_auroc") -> dict[str, float]:
    """Gain of one fusion strategy over the image-only model, per text setting: {setting: fusion - image}.

    ``table`` is ``fusion.comparison_table(...)``; the strategy table's models are named
    fusion_<strategy>_<text_setting> (the end-to-end run has a suffix and does not count).
    """
    scores = table.set_index("model")[metric]
    image = float(scores["image"])
    return {setting: float(scores[f"fusion_{strategy}_{setting}"]) - image for setting in TEXT_SETTINGS
            if f"fusion_{strategy}_{setting}" in scores.index}


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
