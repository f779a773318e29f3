"""Notebook 02's job: train the image model with the workbook's one loop, then score it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch.utils.data import DataLoader

from cxr_helpers.config import seed_everything
from cxr_helpers.datasets import load_split_datasets, make_loader
from cxr_helpers.evaluation import record_results
from cxr_helpers.image_model import build_image_model
from cxr_helpers.training import fit


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
    datasets = load_split_datasets(settings)
    loaders = image_loaders(settings, datasets)
    seed_everything(settings.seed)
    model = build_image_model(settings)
    checkpoint_dir = Path(settings.artifacts_dir) / "checkpoints"
    history = fit(model, loaders["fit"], loaders["validate"], settings, checkpoint_dir, "image", resume, progress)
    evaluation = {split: loaders[split] for split in ("train", "validate", "test")}
    results = record_results(model, evaluation, settings, "image", "image")
    return {"model": model, "history": history, "metrics": results, "checkpoint": checkpoint_dir / "image.pt"}
