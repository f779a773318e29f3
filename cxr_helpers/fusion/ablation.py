"""Remove a modality: which one does a fusion model lean on? (notebook 04 over a split, notebook 05 per study).

The report is replaced by an empty report (the encoder's output for "", or zeros), the image by
a blank (all-zero) image; the model is scored (or its probabilities compared) with both
modalities, without the report, and without the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from cxr_helpers.distributed import gather_rows
from cxr_helpers.fusion.model import FusionModel
from cxr_helpers.labels import label_index
from cxr_helpers.metrics import evaluate

TEXT_REMOVALS = ("empty_report", "zeros")
ABLATION_CONDITIONS = ("full", "text_removed", "image_blanked")


def empty_text_embedding(model: FusionModel, text_removal: str = "empty_report") -> torch.Tensor:
    """The embedding (H,) that stands for "no report": the encoder's output for "" (default), or zeros.

    An empty report is what the model would really meet without a report, and lies where the
    encoder's outputs lie; a zero vector is a point no encoder ever produces.
    """
    if text_removal not in TEXT_REMOVALS:
        raise ValueError(f"text_removal must be one of {TEXT_REMOVALS}, got {text_removal!r}")
    device = next(model.parameters()).device
    if text_removal == "zeros":
        return torch.zeros(model.text_dim, device=device)
    with torch.no_grad():
        return model.embed_texts([""])[0]  # (H,)


def blank_image_trunk(model: FusionModel, size: int, device: torch.device) -> torch.Tensor:
    """The image trunk's output (1, ...) for a blank (all-zero) image: what "no image" looks like to the model."""
    return model.image_trunk(torch.zeros(1, 1, size, size, device=device))


def ablated_logits(model: FusionModel, trunk: torch.Tensor, text: torch.Tensor, empty_text: torch.Tensor,
                   blank_trunk: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logits (B, 14) per ABLATION_CONDITIONS from a batch's image trunk (B, ...) and report embedding (B, H).

    ``empty_text`` (H,) stands for the removed report, ``blank_trunk`` (1, ...) for the blanked image.
    """
    n = trunk.shape[0]
    return {"full": model.fuse(trunk, text),
            "text_removed": model.fuse(trunk, empty_text.expand(n, -1)),
            "image_blanked": model.fuse(blank_trunk.expand(n, *blank_trunk.shape[1:]), text)}


@torch.no_grad()
def modality_ablation(
    model: FusionModel, loader, uncertainty_policy: str = "zeros", text_removal: str = "empty_report",
    device=None, empty_text: torch.Tensor | None = None,
) -> dict:
    """Score ``model`` with both modalities, with the report removed, and with the image blanked (zeros).

    Returns {"full", "text_removed", "image_blanked"}: ``metrics.evaluate`` figures each, plus
    "reliance" = the macro-AUROC drop when each modality is removed (larger = leaned on more),
    and how the text was removed. Works in image mode and in cached-image mode.
    """
    device = next(model.parameters()).device if device is None else torch.device(device)
    model.eval()
    empty = (empty_text if empty_text is not None else empty_text_embedding(model, text_removal)).to(device)  # (H,)
    blank_trunk = None
    logits = {condition: [] for condition in ABLATION_CONDITIONS}
    targets, rows = [], []
    for batch in loader:
        inputs = {k: batch[k].to(device) for k in model.input_keys}
        text = model.encode_text(inputs.get("text_features"), inputs.get("input_ids"), inputs.get("attention_mask"))
        trunk = inputs["image_features"].float() if model.cached_image else model.image_trunk(inputs["image"])
        if blank_trunk is None:
            blank_trunk = blank_image_trunk(model, model.image_size or int(batch["image"].shape[-1]), device)
        for condition, values in ablated_logits(model, trunk, text, empty, blank_trunk).items():
            logits[condition].append(values.cpu())
        targets.append(batch["targets"])
        rows.append(batch["index"])
    # Under torchrun each rank saw a shard of the split: score the whole split on every rank.
    _, target_array, *condition_logits = gather_rows(torch.cat(rows).numpy(), torch.cat(targets).numpy(),
                                                     *(torch.cat(logits[c]).numpy() for c in ABLATION_CONDITIONS))
    result = {c: evaluate(scores, target_array, uncertainty_policy)
              for c, scores in zip(ABLATION_CONDITIONS, condition_logits, strict=True)}
    full = result["full"]["macro_auroc"]

    def drop(condition: str) -> float | None:
        value = result[condition]["macro_auroc"]
        return None if full is None or value is None else full - value

    result["reliance"] = {"text": drop("text_removed"), "image": drop("image_blanked")}
    result["text_removal"], result["image_removal"] = text_removal, "zeros"
    return result


@torch.no_grad()
def study_reliance(model: FusionModel, image: torch.Tensor, text_embedding: torch.Tensor,
                   labels: Sequence[str]) -> pd.DataFrame:
    """One study: how far the fusion model's probabilities move when the report or the image is taken away.

    ``image`` (1, 1, S, S) and ``text_embedding`` (1, H), removed as in ``modality_ablation``. One row
    per label: p with both, without the report, without the image, and the two shifts.
    """
    model.eval()
    empty = empty_text_embedding(model)
    blank = blank_image_trunk(model, int(image.shape[-1]), image.device)
    logits = ablated_logits(model, model.image_trunk(image), text_embedding, empty, blank)
    both, without_report, without_image = (torch.sigmoid(logits[c])[0].double().cpu().numpy()
                                           for c in ABLATION_CONDITIONS)
    columns = [label_index(name) for name in labels]
    return pd.DataFrame({
        "label": list(labels),
        "p(image + report)": both[columns],
        "p(image only)": without_report[columns],
        "p(report only)": without_image[columns],
        "shift without report": (without_report - both)[columns],
        "shift without image": (without_image - both)[columns],
    })


def reliance_on_report(table) -> float:
    """Share of the prediction's movement due to the report: |shift without report| / (both shifts), mean over rows."""
    report = np.abs(table["shift without report"].to_numpy(dtype=float)).mean()
    image = np.abs(table["shift without image"].to_numpy(dtype=float)).mean()
    return float(report / (report + image)) if report + image > 0 else float("nan")
