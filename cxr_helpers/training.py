"""The one training loop for every model (image, text head, fusion), and prediction.

``fit`` only relies on the model's ``input_keys`` and on batches being dicts (see datasets.py):
AdamW over the trainable parameters, the paper's masked BCE, per-epoch train/validation loss,
masked accuracy and validation macro AUROC, the best checkpoint by validation loss, and a
last-epoch checkpoint that lets an interrupted run continue to exactly the same result
(file formats in ``checkpoints``).

torchrun: when a process group is initialised, ``fit`` wraps the model in DistributedDataParallel,
loaders from ``datasets.make_loader`` shard with a DistributedSampler, predictions are gathered
from all ranks before metrics, and only rank 0 writes files (see ``distributed`` and docs/scale.md).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cxr_helpers.artifacts import save_checkpoint, write_json
from cxr_helpers.checkpoints import cpu_state_dict, load_checkpoint, rng_state, run_fingerprint, set_rng_state
from cxr_helpers.config import pick_device
from cxr_helpers.datasets import set_loader_epoch
from cxr_helpers.distributed import (
    barrier,
    broadcast_buffers,
    ddp_device,
    gather_arrays,
    gather_rows,
    is_initialized,
    is_main_process,
    seed_rank_epoch,
    unwrap,
    wrap_ddp,
)
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.metrics import macro_auroc, masked_accuracy, masked_bce, sigmoid


@dataclass
class History:
    """Per-epoch figures of one run; train figures are measured during the epoch (dropout on)."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)
    val_macro_auroc: list[float | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int | None = None

    def append(self, **row) -> None:
        """Add one epoch's figures (keys = the list fields)."""
        for key, value in row.items():
            getattr(self, key).append(value)

    def to_dict(self) -> dict:
        """Plain data (for JSON and for checkpoints loaded with weights_only=True)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> History:
        """Inverse of ``to_dict``."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in data.items() if k in names})

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch."""
        data = self.to_dict()
        data.pop("best_epoch")
        return pd.DataFrame(data).set_index("epoch")

    def __len__(self) -> int:
        return len(self.epoch)


def _to_device(batch: Mapping[str, torch.Tensor], keys, device: torch.device) -> dict[str, torch.Tensor]:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"the model needs batch keys {tuple(keys)} but the batch lacks {missing}; check the dataset")
    return {k: batch[k].to(device, non_blocking=True) for k in keys}


def cpu_computes_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX); elsewhere bfloat16 is emulated and slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own probes (private, so guarded)
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _autocast_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 (same range as float32, no loss scaling), except on a GPU without it: float16."""
    return torch.float16 if device.type == "cuda" and not torch.cuda.is_bf16_supported() else torch.bfloat16


WARMUP_SHARE = 0.1  # warmup_linear: the first 10% of the steps ramp the rate up (BERT's recipe)


def lr_factor(step: int, total_steps: int, schedule: str = "constant") -> float:
    """The share of ``settings.lr`` used at optimizer step ``step`` (0-based) of ``total_steps``.

    "constant": 1 throughout (the paper). "warmup_linear" (Devlin et al. 2019, how BERTs are
    fine-tuned): up linearly over the first ``WARMUP_SHARE`` of the steps, then down linearly to 0
    at the last one; large early updates would wreck the pretrained weights, and small late ones
    stop the epoch-to-epoch swings a constant rate leaves.
    """
    if schedule == "constant":
        return 1.0
    if schedule != "warmup_linear":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")
    warmup = max(1, round(WARMUP_SHARE * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def _train_epoch(model, loader, optimizer, scaler, settings, device, progress, description, epoch: int = 0):
    """One pass over the training data; returns the epoch's logits and targets (all ranks).

    The learning rate of each step follows ``settings.lr_schedule`` over all ``settings.epochs``
    epochs (computed from the step number, so a resumed run continues on the same curve).
    """
    keys = unwrap(model).input_keys
    use_amp = _use_amp(settings, device)
    model.train()
    all_logits, all_targets = [], []
    total_steps = settings.epochs * len(loader)
    bar = tqdm(loader, desc=description, leave=False, disable=not progress or not is_main_process())
    for step, batch in enumerate(bar, start=epoch * len(loader)):
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * lr_factor(step, total_steps, settings.lr_schedule)
        inputs = _to_device(batch, keys, device)
        targets = batch["targets"].to(device, non_blocking=True)  # (B, 14) coded
        with torch.autocast(device_type=device.type, dtype=_autocast_dtype(device), enabled=use_amp):
            logits = model(**inputs)  # (B, 14)
        loss = masked_bce(logits.float(), targets, settings.uncertainty_policy, settings.blank_policy)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        all_logits.append(logits.detach().float())
        all_targets.append(targets)
        bar.set_postfix(loss=f"{loss.item():.4f}")
    logits = torch.cat(all_logits).cpu().numpy()
    targets = torch.cat(all_targets).cpu().numpy()
    return gather_arrays(logits), gather_arrays(targets)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits (N, 14), coded targets (N, 14) and cohort rows (N,), sorted by cohort row.

    Under torchrun the shards of all ranks are gathered (and the DistributedSampler's padding
    duplicates dropped), so every rank gets the whole split.
    """
    module = unwrap(model)
    device = (device if isinstance(device, torch.device) else pick_device(device)) if device is not None else next(module.parameters()).device
    was_training = module.training
    module.eval()
    logits, targets, indices = [], [], []
    for batch in loader:
        logits.append(module(**_to_device(batch, module.input_keys, device)).float().cpu())
        targets.append(batch["targets"])
        indices.append(batch["index"])
    module.train(was_training)
    rows, logits_np, targets_np = gather_rows(torch.cat(indices).numpy(), torch.cat(logits).numpy(),
                                              torch.cat(targets).numpy())
    return logits_np, targets_np, rows


@dataclass
class RunFiles:
    """The files of one run called ``name`` in ``folder``: best and last checkpoint, curves."""

    folder: Path
    name: str

    @property
    def best(self) -> Path:
        return self.folder / f"{self.name}.pt"

    @property
    def last(self) -> Path:
        return self.folder / f"{self.name}_last.pt"

    @property
    def history(self) -> Path:
        return self.folder / f"{self.name}_history.json"


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    settings,
    checkpoint_dir: str | Path,
    name: str,
    resume: bool = True,
    progress: bool = True,
    device=None,
    on_epoch_end: Callable[[int, History], None] | None = None,
    restore_best: bool = True,
) -> History:
    """Train ``model`` for ``settings.epochs`` epochs (resuming a saved run) and return its History.

    AdamW(lr, weight_decay) over parameters with requires_grad; loss ``masked_bce`` with the
    settings' uncertainty and blank policies; mixed precision when ``settings.mixed_precision`` (on CUDA,
    or bfloat16 on a CPU with its instructions).
    With ``resume`` and a matching ``<name>_last.pt``, training continues after its last epoch
    (a finished run trains no more: this is how a notebook skips training). At the end the model
    holds the best epoch's weights (lowest validation loss) unless ``restore_best`` is False.
    """
    device = ddp_device(device if isinstance(device, torch.device) else pick_device(device))
    files = RunFiles(Path(checkpoint_dir), name)
    model.to(device)
    optimizer, scaler = _optimizer(model, settings), _scaler(settings, device)
    fingerprint = run_fingerprint(model, settings, len(train_loader.dataset))
    history, best_loss = History(), None
    if resume and files.last.exists():
        history, best_loss = _resume(files, model, optimizer, scaler, fingerprint, settings.epochs, progress)
    trained = wrap_ddp(model, device) if is_initialized() and len(history) < settings.epochs else model
    for epoch in range(len(history), settings.epochs):
        began = time.perf_counter()
        set_loader_epoch(train_loader, epoch)
        if is_initialized():
            seed_rank_epoch(settings.seed, epoch)
        train_logits, train_targets = _train_epoch(trained, train_loader, optimizer, scaler, settings, device,
                                                   progress, f"{name} epoch {epoch + 1}/{settings.epochs}", epoch)
        broadcast_buffers(model)  # one copy of the BatchNorm statistics before evaluating
        row = _epoch_figures(model, train_logits, train_targets, val_loader, settings, device)
        history.append(epoch=epoch + 1, seconds=time.perf_counter() - began, **row)
        score = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
        improved = best_loss is None or score < best_loss
        if improved:
            best_loss, history.best_epoch = score, epoch + 1
        if is_main_process():
            _save_epoch(files, model, optimizer, scaler, history, fingerprint, best_loss, improved, score)
            if progress:
                print(_epoch_line(history))
        barrier()  # the other ranks may read these files next (restore_best, a resumed job)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, history)
    if restore_best and files.best.exists():
        load_checkpoint(files.best, model, device)
    model.eval()
    return history


def _optimizer(model: nn.Module, settings) -> torch.optim.Optimizer:
    """AdamW over the parameters that train (a clear error when everything is frozen)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (everything frozen?)")
    return torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)


def _use_amp(settings, device: torch.device) -> bool:
    """Mixed precision when the settings ask for it: on CUDA, and on a CPU with bfloat16 instructions."""
    if not settings.mixed_precision:
        return False
    return device.type == "cuda" or (device.type == "cpu" and cpu_computes_bfloat16())


def training_precision(settings, device: torch.device) -> str:
    """What ``fit`` computes the forward pass in here: "bfloat16", "float16" (a GPU without bfloat16) or "float32"."""
    return str(_autocast_dtype(device)).removeprefix("torch.") if _use_amp(settings, device) else "float32"


def _scaler(settings, device: torch.device):
    """A gradient scaler, active only for float16 autocast (bfloat16 needs none)."""
    enabled = training_precision(settings, device) == "float16"
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3


def _resume(files: RunFiles, model: nn.Module, optimizer, scaler, fingerprint: dict, epochs: int,
            progress: bool) -> tuple[History, float | None]:
    """Continue a saved run whose fingerprint matches: weights, optimizer, scaler, RNG states, history."""
    saved = torch.load(files.last, map_location="cpu", weights_only=True)
    if saved["meta"].get("fingerprint") != fingerprint:
        warnings.warn(f"{files.last} was trained with other settings ({saved['meta'].get('fingerprint')}); "
                      "training from scratch and overwriting it.", stacklevel=3)
        return History(), None
    unwrap(model).load_state_dict(saved["state_dict"])
    optimizer.load_state_dict(saved["optimizer"])
    if saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    set_rng_state(saved["rng"])
    history = History.from_dict(saved["history"])
    if progress and is_main_process():
        done = "finished" if len(history) >= epochs else "interrupted"
        print(f"Resuming {done} run {files.last} after epoch {len(history)} (resume=False retrains from scratch).")
    return history, saved["best_val_loss"]


def _epoch_figures(model: nn.Module, train_logits: np.ndarray, train_targets: np.ndarray,
                   val_loader: DataLoader | None, settings, device: torch.device) -> dict:
    """The epoch's train loss and accuracy (measured during the epoch) and the validation figures."""
    policy = settings.uncertainty_policy  # loss as trained (blank policy too); accuracy and AUROC as the paper scores them
    row = {"train_loss": masked_bce(train_logits, train_targets, policy, settings.blank_policy),
           "train_accuracy": masked_accuracy(sigmoid(train_logits), train_targets, 0.5, policy),
           "val_loss": None, "val_accuracy": None, "val_macro_auroc": None}
    if val_loader is not None:
        val_logits, val_targets, _ = predict(model, val_loader, device)
        row["val_loss"] = masked_bce(val_logits, val_targets, policy, settings.blank_policy)
        row["val_accuracy"] = masked_accuracy(sigmoid(val_logits), val_targets, 0.5, policy)
        row["val_macro_auroc"] = macro_auroc(val_logits, val_targets, policy)
    return row


def _save_epoch(files: RunFiles, model: nn.Module, optimizer, scaler, history: History, fingerprint: dict,
                best_loss: float, improved: bool, score: float) -> None:
    """Write the best checkpoint (if this epoch is the best), the resume state and the curves."""
    meta = {"name": files.name, "epoch": history.epoch[-1], "fingerprint": fingerprint, "labels": list(CHEXPERT_LABELS),
            "input_keys": list(unwrap(model).input_keys), "history": history.to_dict()}
    state_dict = cpu_state_dict(model)
    if improved:
        save_checkpoint({"state_dict": state_dict, "meta": {**meta, "val_loss": score}}, files.best)
    save_checkpoint({"state_dict": state_dict, "meta": meta, "optimizer": optimizer.state_dict(),
                     "scaler": scaler.state_dict(), "epoch": history.epoch[-1], "history": history.to_dict(),
                     "best_val_loss": best_loss, "rng": rng_state()}, files.last)
    write_json(files.history, history.to_dict())


def _epoch_line(history: History) -> str:
    """A one-line summary of the last epoch."""
    def show(value):
        return "  n/a " if value is None else f"{value:.4f}"

    return (
        f"epoch {history.epoch[-1]:>3}  train loss {show(history.train_loss[-1])} acc {show(history.train_accuracy[-1])}"
        f"  | val loss {show(history.val_loss[-1])} acc {show(history.val_accuracy[-1])}"
        f" AUROC {show(history.val_macro_auroc[-1])}  ({history.seconds[-1]:.1f} s)"
        + ("  *best" if history.best_epoch == history.epoch[-1] else "")
    )


def load_history(checkpoint_dir: str | Path, name: str) -> History:
    """The History a ``fit`` run saved as JSON beside its checkpoints."""
    path = Path(checkpoint_dir) / f"{name}_history.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; train the model first")
    return History.from_dict(json.loads(path.read_text()))
