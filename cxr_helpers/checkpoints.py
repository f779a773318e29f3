"""Checkpoints: what must match to resume a run, saving and loading state dicts + plain metadata.

Files in ``checkpoint_dir`` for a run called ``name``: ``<name>.pt`` the best epoch {"state_dict",
"meta"}; ``<name>_last.pt`` the same plus "optimizer", "scaler", "epoch", "history", "rng" (for
resuming); ``<name>_history.json`` the curves. All hold tensors and plain Python values only,
so ``torch.load(..., weights_only=True)`` reads them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxr_helpers.distributed import unwrap, world_size


def run_fingerprint(model: nn.Module, settings, train_size: int) -> dict:
    """What must match for a saved run to be resumed (epochs may grow at a constant rate: that just trains on)."""
    trainable = sum(p.numel() for p in unwrap(model).parameters() if p.requires_grad)
    return {
        "model": type(unwrap(model)).__name__,
        "trainable_parameters": int(trainable),
        "lr": float(settings.lr),
        "weight_decay": float(settings.weight_decay),
        "batch_size": int(settings.batch_size),
        "dropout": float(settings.dropout),
        "seed": int(settings.seed),
        "uncertainty_policy": settings.uncertainty_policy,
        "blank_policy": settings.blank_policy,
        "image_size": int(settings.image_size),
        "augment_shift": float(settings.augment_shift),
        "train_size": int(train_size),
    } | ({"world_size": world_size()} if world_size() > 1 else {}) | (  # per-rank batch: the global batch needs both
        # a scheduled rate's curve spans all the epochs: more epochs is another curve, so another run
        # (left out for the constant rate, so runs saved before schedules existed still resume)
        {"lr_schedule": settings.lr_schedule, "epochs": int(settings.epochs)} if settings.lr_schedule != "constant" else {})


def load_checkpoint(path: str | Path, model: nn.Module, device=None) -> dict:
    """Load a checkpoint's weights into ``model`` (weights_only=True); returns its meta dict."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found; train the model first (notebooks 02-04)")
    checkpoint = torch.load(path, map_location=device or "cpu", weights_only=True)
    unwrap(model).load_state_dict(checkpoint["state_dict"])
    return checkpoint["meta"]


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state dict on the CPU (what a checkpoint stores)."""
    return {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}


def rng_state() -> dict:
    """Torch (CPU, CUDA), NumPy and Python random states as tensors and plain values."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_state(state: Mapping) -> None:
    """Inverse of ``rng_state``."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
