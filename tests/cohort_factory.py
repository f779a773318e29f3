"""For unit tests: a cohort table in the artifacts' column layout (ids, a 2:1:1 split, cache rows), a tiny model."""

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.prepare import COHORT_COLUMNS


def toy_cohort_frame(n: int) -> pd.DataFrame:
    """n rows with empty text columns, MIMIC-like ids and splits train/train/validate/test cycling."""
    cohort = pd.DataFrame({name: "" for name in COHORT_COLUMNS if name not in CHEXPERT_LABELS}, index=range(n))
    cohort["subject_id"] = 10000000 + np.arange(n)
    cohort["study_id"] = 50000000 + np.arange(n)
    cohort["dicom_id"] = [f"dicom-{i:04d}" for i in range(n)]
    cohort["split"] = np.array(["train", "train", "validate", "test"])[np.arange(n) % 4]
    cohort["cache_index"] = np.arange(n)
    return cohort


class TinyConvModel(nn.Module):
    """A 4-channel convolution and a linear head, (B, 1, S, S) -> (B, 14): a few hundred parameters.

    ``dropout`` > 0 makes RNG state matter (resume tests); 0 (with no BatchNorm) keeps the result
    independent of how a batch is split across ranks (the torchrun equivalence test).
    """

    input_keys = ("image",)

    def __init__(self, stride: int = 4, dropout: float = 0.5):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=stride)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4, 14))

    def forward(self, image):
        return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))  # (B, 14)
