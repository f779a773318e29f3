"""The one training loop for every model (image, text head, fusion), checkpoints, prediction.

``fit`` only relies on the model's ``input_keys`` and on batches being dicts (see datasets.py):
AdamW over the trainable parameters, the paper's masked BCE, per-epoch train/validation loss,
masked accuracy and validation macro AUROC, the best checkpoint by validation loss, and a
last-epoch checkpoint that lets an interrupted run continue to exactly the same result.

Files in ``checkpoint_dir`` for a run called ``name``:
``<name>.pt`` best epoch {"state_dict", "meta"}; ``<name>_last.pt`` the same plus "optimizer",
"scaler", "epoch", "history", "rng" (for resuming); ``<name>_history.json`` the curves.
All hold tensors and plain Python values only, so ``torch.load(..., weights_only=True)`` reads them.

torchrun: when a process group is initialised, ``fit`` wraps the model in DistributedDataParallel,
loaders from ``datasets.make_loader`` shard with a DistributedSampler, predictions are gathered
from all ranks before metrics, and only rank 0 writes files (SyncBatchNorm on CUDA, per-rank
dropout streams, rank 0's BatchNorm buffers broadcast before evaluation: see docs/scale.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
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

from cxr_helpers.config import pick_device
from cxr_helpers.datasets import make_loader, set_loader_epoch
from cxr_helpers.distributed import (
    barrier,
    gather_arrays,
    gather_rows,
    is_initialized,
    is_main_process,
    rank,
    world_size,
)
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.metrics import (
    evaluate,
    macro_auroc,
    masked_accuracy,
    masked_bce,
    sigmoid,
    write_baselines,
    write_metrics,
)


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


# ----------------------------------------------------------------------------- process group helpers


def _seed_rank_epoch(seed: int, epoch: int) -> None:
    """Under torchrun, a torch RNG stream per (seed, epoch, rank).

    Without it every rank would draw the same dropout masks (the same seed everywhere), and a
    resumed job repeats an uninterrupted one exactly because the stream depends on the epoch only.
    """
    entropy = np.random.SeedSequence([int(seed), int(epoch), rank()]).generate_state(1)[0]
    torch.manual_seed(int(entropy))


def _ddp_device(device: torch.device) -> torch.device:
    """Under torchrun on CUDA, "cuda" means this rank's GPU (set by distributed.init_distributed)."""
    if device.type == "cuda" and device.index is None and is_initialized():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel, with SyncBatchNorm on CUDA so BatchNorm sees the global batch.

    ``convert_sync_batchnorm`` swaps the BatchNorm modules inside ``model`` in place and keeps the
    same Parameter objects (the optimizer is unaffected, state_dict keys are unchanged). Gloo on the
    CPU has no SyncBatchNorm kernel: there each rank normalises with its own batch's statistics.
    """
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics) before evaluating.

    DDP broadcasts them at the start of each training forward, but the last step leaves each
    rank's statistics updated by its own shard; evaluation and the saved checkpoint need one copy.
    """
    if is_initialized():
        for buffer in _unwrap(model).buffers():
            torch.distributed.broadcast(buffer, src=0)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _resolve_device(device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    return pick_device(device)


# ----------------------------------------------------------------------------- random state


def _rng_state() -> dict:
    """Torch (CPU, CUDA), NumPy and Python random states as tensors and plain values."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }


def _set_rng_state(state: Mapping) -> None:
    """Inverse of ``_rng_state``."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


# ----------------------------------------------------------------------------- checkpoints


def _atomic_save(payload: dict, path: Path) -> None:
    """torch.save through a temporary file, so a crash never leaves half a checkpoint."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def run_fingerprint(model: nn.Module, settings, train_size: int) -> dict:
    """What must match for a saved run to be resumed (epochs may grow: that just trains on)."""
    trainable = sum(p.numel() for p in _unwrap(model).parameters() if p.requires_grad)
    return {
        "model": type(_unwrap(model)).__name__,
        "trainable_parameters": int(trainable),
        "lr": float(settings.lr),
        "weight_decay": float(settings.weight_decay),
        "batch_size": int(settings.batch_size),
        "dropout": float(settings.dropout),
        "seed": int(settings.seed),
        "uncertainty_policy": settings.uncertainty_policy,
        "image_size": int(settings.image_size),
        "train_size": int(train_size),
    } | ({"world_size": world_size()} if world_size() > 1 else {})  # per-rank batch: the global batch needs both


def load_checkpoint(path: str | Path, model: nn.Module, device=None) -> dict:
    """Load a checkpoint's weights into ``model`` (weights_only=True); returns its meta dict."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found; train the model first (notebooks 02-04)")
    checkpoint = torch.load(path, map_location=device or "cpu", weights_only=True)
    _unwrap(model).load_state_dict(checkpoint["state_dict"])
    return checkpoint["meta"]


def _cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()}


# ----------------------------------------------------------------------------- loop


def _to_device(batch: Mapping[str, torch.Tensor], keys, device: torch.device) -> dict[str, torch.Tensor]:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"the model needs batch keys {tuple(keys)} but the batch lacks {missing}; check the dataset")
    return {k: batch[k].to(device, non_blocking=True) for k in keys}


def _autocast_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16


def _make_scaler(enabled: bool):
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3


def _train_epoch(model, loader, optimizer, scaler, settings, device, use_amp, progress, description):
    """One pass over the training data; returns the epoch's logits and targets (all ranks)."""
    from tqdm.auto import tqdm

    keys = _unwrap(model).input_keys
    model.train()
    all_logits, all_targets = [], []
    bar = tqdm(loader, desc=description, leave=False, disable=not progress or not is_main_process())
    for batch in bar:
        inputs = _to_device(batch, keys, device)
        targets = batch["targets"].to(device, non_blocking=True)  # (B, 14) coded
        with torch.autocast(device_type=device.type, dtype=_autocast_dtype(device), enabled=use_amp):
            logits = model(**inputs)  # (B, 14)
        loss = masked_bce(logits.float(), targets, settings.uncertainty_policy)
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
    module = _unwrap(model)
    device = _resolve_device(device) if device is not None else next(module.parameters()).device
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

    AdamW(lr, weight_decay) over parameters with requires_grad; loss ``masked_bce`` with
    ``settings.uncertainty_policy``; mixed precision on CUDA when ``settings.mixed_precision``.
    With ``resume`` and a matching ``<name>_last.pt``, training continues after its last epoch
    (a finished run trains no more: this is how a notebook skips training). At the end the model
    holds the best epoch's weights (lowest validation loss) unless ``restore_best`` is False.
    """
    device = _ddp_device(_resolve_device(device))
    checkpoint_dir = Path(checkpoint_dir)
    best_path, last_path = checkpoint_dir / f"{name}.pt", checkpoint_dir / f"{name}_last.pt"
    history_path = checkpoint_dir / f"{name}_history.json"
    model.to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (everything frozen?)")
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    use_amp = bool(settings.mixed_precision) and device.type == "cuda"
    scaler = _make_scaler(use_amp and _autocast_dtype(device) == torch.float16)
    fingerprint = run_fingerprint(model, settings, len(train_loader.dataset))
    history, start, best_val = History(), 0, None

    if resume and last_path.exists():
        saved = torch.load(last_path, map_location="cpu", weights_only=True)
        if saved["meta"].get("fingerprint") == fingerprint:
            _unwrap(model).load_state_dict(saved["state_dict"])
            optimizer.load_state_dict(saved["optimizer"])
            if saved.get("scaler"):
                scaler.load_state_dict(saved["scaler"])
            history, start, best_val = History.from_dict(saved["history"]), int(saved["epoch"]), saved["best_val_loss"]
            _set_rng_state(saved["rng"])
            if progress and is_main_process():
                done = "finished" if start >= settings.epochs else "interrupted"
                print(f"Resuming {done} run {last_path} after epoch {start} (resume=False retrains from scratch).")
        else:
            warnings.warn(
                f"{last_path} was trained with other settings ({saved['meta'].get('fingerprint')}); "
                "training from scratch and overwriting it.",
                stacklevel=2,
            )

    trained = model
    if is_initialized() and start < settings.epochs:
        trained = _wrap_ddp(model, device)
    if is_main_process():
        checkpoint_dir.mkdir(parents=True, exist_ok=True)

    for epoch in range(start, settings.epochs):
        began = time.perf_counter()
        set_loader_epoch(train_loader, epoch)
        if is_initialized():
            _seed_rank_epoch(settings.seed, epoch)
        label = f"{name} epoch {epoch + 1}/{settings.epochs}"
        train_logits, train_targets = _train_epoch(
            trained, train_loader, optimizer, scaler, settings, device, use_amp, progress, label
        )
        _broadcast_buffers(model)
        row = {
            "epoch": epoch + 1,
            "train_loss": masked_bce(train_logits, train_targets, settings.uncertainty_policy),
            "train_accuracy": masked_accuracy(sigmoid(train_logits), train_targets, 0.5, settings.uncertainty_policy),
            "val_loss": None,
            "val_accuracy": None,
            "val_macro_auroc": None,
        }
        if val_loader is not None:
            val_logits, val_targets, _ = predict(model, val_loader, device)
            row["val_loss"] = masked_bce(val_logits, val_targets, settings.uncertainty_policy)
            row["val_accuracy"] = masked_accuracy(sigmoid(val_logits), val_targets, 0.5, settings.uncertainty_policy)
            row["val_macro_auroc"] = macro_auroc(val_logits, val_targets, settings.uncertainty_policy)
        row["seconds"] = time.perf_counter() - began
        history.append(**row)
        score = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
        improved = best_val is None or score < best_val
        if improved:
            best_val, history.best_epoch = score, epoch + 1
        if is_main_process():
            meta = {"name": name, "epoch": epoch + 1, "fingerprint": fingerprint, "labels": list(CHEXPERT_LABELS),
                    "input_keys": list(_unwrap(model).input_keys), "history": history.to_dict()}
            state_dict = _cpu_state_dict(model)
            if improved:
                _atomic_save({"state_dict": state_dict, "meta": {**meta, "val_loss": score}}, best_path)
            _atomic_save(
                {"state_dict": state_dict, "meta": meta, "optimizer": optimizer.state_dict(),
                 "scaler": scaler.state_dict(), "epoch": epoch + 1, "history": history.to_dict(),
                 "best_val_loss": best_val, "rng": _rng_state()},
                last_path,
            )
            history_path.write_text(json.dumps(history.to_dict(), indent=2))
            if progress:
                print(_epoch_line(history))
        barrier()  # the other ranks may read these files next (restore_best, a resumed job)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, history)

    if restore_best and best_path.exists():
        load_checkpoint(best_path, model, device)
    model.eval()
    return history


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


# ----------------------------------------------------------------------------- predictions and results


def save_predictions(path: str | Path, cohort_rows: pd.DataFrame, probabilities: np.ndarray, targets: np.ndarray) -> Path:
    """Write predictions/<name>_test.csv: study_id, dicom_id, prob_<label> x14, the 14 coded targets."""
    probabilities, targets = np.asarray(probabilities), np.asarray(targets)
    if not (len(cohort_rows) == len(probabilities) == len(targets)):
        raise ValueError(
            f"cohort_rows ({len(cohort_rows)}), probabilities ({len(probabilities)}) and targets ({len(targets)}) "
            "must have one row per image"
        )
    table = pd.DataFrame({"study_id": cohort_rows["study_id"].to_numpy(), "dicom_id": cohort_rows["dicom_id"].to_numpy()})
    for column, name in enumerate(CHEXPERT_LABELS):
        table[f"prob_{name}"] = probabilities[:, column].astype(np.float64)
    for column, name in enumerate(CHEXPERT_LABELS):
        table[name] = targets[:, column].astype(np.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, float_format="%.6f")
    return path


def record_results(
    model: nn.Module,
    loaders: Mapping[str, DataLoader],
    settings,
    stage: str,
    model_name: str,
    device=None,
    baselines: bool = True,
) -> dict[str, dict]:
    """Evaluate ``model`` on each split, write metrics/<stage>.json and predictions/<model_name>_test.csv.

    ``loaders`` maps split names to unshuffled loaders over CohortImageDataset-like datasets
    (with a ``cohort`` and ``targets``). With ``baselines``, the trivial baselines (fit on the train
    split's targets) are stored beside the model. Returns {split: figures}.
    """
    results, test = {}, None
    for split, loader in loaders.items():
        logits, targets, indices = predict(model, loader, device)
        results[split] = evaluate(logits, targets, settings.uncertainty_policy)
        if split == "test":
            test = (logits, targets, indices, loader.dataset)
    if is_main_process():
        metrics_path = Path(settings.artifacts_dir) / "metrics" / f"{stage}.json"
        write_metrics(metrics_path, model_name, results)
        if baselines and "train" in loaders:
            split_targets = {split: loader.dataset.targets for split, loader in loaders.items()}
            write_baselines(metrics_path, split_targets["train"], split_targets, settings.uncertainty_policy)
        if test is not None:
            logits, targets, indices, dataset = test
            path = Path(settings.artifacts_dir) / "predictions" / f"{model_name}_test.csv"
            save_predictions(path, dataset.cohort.iloc[indices], sigmoid(logits), targets)
    return results


def image_loaders(settings, datasets: Mapping) -> dict[str, DataLoader]:
    """Training loader (shuffled by seed and epoch) and unshuffled evaluation loaders per split."""
    loaders = {"fit": make_loader(datasets["train"], settings.batch_size, True, settings.seed,
                                  num_workers=settings.num_workers)}
    for split, dataset in datasets.items():
        loaders[split] = make_loader(dataset, settings.batch_size, False, settings.seed, num_workers=settings.num_workers)
    return loaders


def train_image(settings, progress: bool = True, resume: bool = True) -> dict:
    """Notebook 02's whole job: train the image model, then write metrics, baselines and test predictions.

    Reads cohort.csv + images_<S>.npy from ``settings.artifacts_dir``; writes checkpoints/image*.pt,
    metrics/image.json (model "image" + trivial baselines) and predictions/image_test.csv.
    """
    from cxr_helpers.config import seed_everything
    from cxr_helpers.datasets import load_split_datasets
    from cxr_helpers.image_model import build_image_model

    datasets = load_split_datasets(settings)
    loaders = image_loaders(settings, datasets)
    seed_everything(settings.seed)
    model = build_image_model(settings)
    checkpoint_dir = Path(settings.artifacts_dir) / "checkpoints"
    history = fit(model, loaders["fit"], loaders["validate"], settings, checkpoint_dir, "image", resume, progress)
    evaluation = {split: loaders[split] for split in ("train", "validate", "test")}
    results = record_results(model, evaluation, settings, "image", "image")
    return {"model": model, "history": history, "metrics": results, "checkpoint": checkpoint_dir / "image.pt"}
