"""Building a fusion model on notebook 02's image encoder, and rebuilding a trained one from its checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cxr_helpers.artifacts import save_checkpoint
from cxr_helpers.config import load_settings, pick_device
from cxr_helpers.fusion.model import FusionModel
from cxr_helpers.image_model import ImageClassifier, load_image_encoder
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.text.embeddings import load_text_encoder
from cxr_helpers.text.encoder import text_pooling

# Checkpoint meta keys ``load_fusion_model`` rebuilds a model from.
META_KEYS = ("strategy", "text_dim", "hidden", "dropout", "text_setting", "text_model", "image_size",
             "end_to_end", "freeze_image", "pooling", "max_text_length")


def build_fusion_model(
    settings,
    strategy: str,
    text_dim: int,
    image_checkpoint: str | Path | None = "auto",
    text_encoder: nn.Module | None = None,
    freeze_image: bool = False,
) -> FusionModel:
    """A FusionModel for ``settings`` (fusion_hidden, dropout, image_size), the image encoder from notebook 02.

    ``text_encoder`` given = end to end (its hidden size must equal ``text_dim``); ``freeze_image``
    freezes the image encoder (False = the paper: no layer frozen).
    """
    image_model = load_image_encoder(settings, image_checkpoint)
    return FusionModel(image_model, text_dim, strategy, hidden=settings.fusion_hidden, dropout=settings.dropout,
                       text_encoder=text_encoder, pooling=text_pooling(settings), freeze_image=freeze_image,
                       image_size=settings.image_size)


def fusion_meta(model: FusionModel, settings, text_setting: str) -> dict:
    """What ``load_fusion_model`` needs to rebuild ``model`` (plain values only)."""
    return {
        "strategy": model.strategy, "text_dim": model.text_dim, "hidden": model.hidden, "dropout": model.dropout,
        "text_setting": text_setting, "text_model": str(settings.text_model), "image_size": int(settings.image_size),
        "end_to_end": model.end_to_end, "freeze_image": model.image_frozen, "pooling": model.pooling,
        "max_text_length": int(settings.max_text_length), "uncertainty_policy": settings.uncertainty_policy,
        "labels": list(CHEXPERT_LABELS),
    }


def add_checkpoint_meta(path: Path, extra: Mapping) -> None:
    """Merge ``extra`` into a checkpoint's meta (atomic rewrite; the weights stay as they are)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["meta"] = {**checkpoint["meta"], **dict(extra)}
    save_checkpoint(checkpoint, path)


def load_fusion_model(artifacts_dir: str | Path, name: str, device=None, text_tools: bool = True) -> FusionModel:
    """Rebuild a trained fusion model from checkpoints/<name>.pt (eval mode, image input).

    With ``text_tools`` the tokenizer (and, for cached-text models, the frozen encoder of notebook
    03) is attached, so ``model.embed_texts(strings)`` works (what SHAP needs).
    """
    path = Path(artifacts_dir) / "checkpoints" / f"{name}.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; train the fusion models with notebook 04 "
                                "(notebooks/04_fusion_training.ipynb) or `python -m cxr_helpers train fusion`")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    meta = checkpoint["meta"]
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{path} is not a fusion checkpoint (meta lacks {missing}); retrain it with notebook 04")
    settings = load_settings(artifacts_dir=Path(artifacts_dir).resolve(), text_model=meta["text_model"],
                             max_text_length=meta["max_text_length"], image_size=meta["image_size"])
    tokenizer = encoder = None
    if meta["end_to_end"] or text_tools:
        tokenizer, encoder = load_text_encoder(meta["text_model"], settings, progress=False)
    image_model = ImageClassifier(dropout=meta["dropout"], freeze_through="none")
    model = FusionModel(image_model, meta["text_dim"], meta["strategy"], meta["hidden"], meta["dropout"],
                        text_encoder=encoder if meta["end_to_end"] else None, pooling=meta["pooling"],
                        freeze_image=meta["freeze_image"], image_size=meta["image_size"])
    model.load_state_dict(checkpoint["state_dict"])
    if tokenizer is not None and (text_tools or meta["end_to_end"]):
        model.attach_text_tools(tokenizer, None if meta["end_to_end"] else encoder, meta["max_text_length"])
    model.checkpoint_meta = meta
    return model.to(pick_device(device) if not isinstance(device, torch.device) else device).eval()
