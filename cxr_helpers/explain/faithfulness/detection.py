"""Does the model detect a finding? Its logit must drop when the phantom takes the finding away.

"Correctly predicted" (p >= 0.5) is not evidence that a model sees a finding: a label it says
yes to for every study is "correct" on every positive study. The phantom can re-render an image
without one finding, identical elsewhere (``phantom.counterfactual``); a model that uses the
finding gives it a lower logit there. A finding counts as *detected* when the drop exceeds
``DETECTION_DROP`` (one unit of logit: the odds fall by a factor of e); only detected findings
are scored against their masks, the rest are "no claim" (nothing there for an explanation to find).
Both images go through the same resize (``images.resize_pixels``), so the drop isolates the finding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxr_helpers.images import resize_pixels
from cxr_helpers.labels import label_index
from cxr_helpers.phantom.counterfactual import counterfactuals

DETECTION_DROP = 1.0  # logit units


def model_inputs(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """uint8 images (H, W) of any size as a model batch (B, 1, size, size) in [0, 1]."""
    return torch.from_numpy(np.stack([resize_pixels(image, size) for image in images]))[:, None]


@torch.no_grad()
def logit_drops(model: nn.Module | Callable, originals: Sequence[np.ndarray], withouts: Sequence[np.ndarray],
                label: str, size: int) -> np.ndarray:
    """logit(with the finding) - logit(without it) for ``label``, one per image pair (K,)."""
    column = label_index(label)
    parameter = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    device = parameter.device if parameter is not None else torch.device("cpu")
    batch = model_inputs([*originals, *withouts], size).to(device)  # (2K, 1, S, S)
    logits = model(batch)[:, column].float().cpu().numpy()
    return logits[: len(originals)] - logits[len(originals):]


def study_drops(image_model_for: Callable[[int], nn.Module], phantom: Path, cases, size: int) -> np.ndarray:
    """The logit drop of every (study_id, dicom_id, label) case: its image re-rendered without the label.

    ``image_model_for(study_id)`` gives the module ``image -> logits`` to test (for the fusion model,
    one that holds the study's report fixed). Cases of one label are re-rendered together.
    """
    drops = np.full(len(cases), np.nan)
    positions = {}
    for i, case in enumerate(cases.itertuples(index=False)):
        positions.setdefault(case.label, []).append(i)
    for label, rows in positions.items():
        chosen = cases.iloc[rows]
        pairs = counterfactuals(phantom, chosen["dicom_id"].tolist(), label)
        for i, case, pair in zip(rows, chosen.itertuples(index=False), pairs, strict=True):
            drops[i] = logit_drops(image_model_for(case.study_id), [pair.original], [pair.without], label, size)[0]
    return drops
