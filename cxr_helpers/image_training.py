"""Notebook 02's job: train the image model with the workbook's one loop, then score it.

``train_image`` trains the default model ("image"); under another name it trains a variant (the
paper's blank policy, say) beside it, and ``label_policy_table`` compares them label by label.
``train_image_ensemble`` trains more models of the same recipe with other seeds (``settings.image_ensemble``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from torch.utils.data import DataLoader

from cxr_helpers.config import seed_everything
from cxr_helpers.datasets import CohortImageDataset, load_split_datasets, make_loader
from cxr_helpers.evaluation import record_results
from cxr_helpers.image_model import (
    ENSEMBLE_NAME,
    ImageEnsemble,
    build_image_model,
    load_image_encoder,
    member_names,
)
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.metrics import forget_metrics, read_metrics
from cxr_helpers.training import fit


def image_loaders(settings, datasets: Mapping) -> dict[str, DataLoader]:
    """Training loader (shuffled by seed and epoch) and unshuffled evaluation loaders per split.

    The training loader's images are shifted by up to ``settings.augment_shift`` of the side (a new
    draw every epoch); the evaluation loaders, the train split's included, see the images as they are.
    """
    train = datasets["train"]
    augmented = CohortImageDataset(train.cohort, train.images, "train", max_shift=settings.augment_shift,
                                   seed=settings.seed)
    loaders = {"fit": make_loader(augmented, settings.batch_size, True, settings.seed,
                                  num_workers=settings.num_workers)}
    for split, dataset in datasets.items():
        loaders[split] = make_loader(dataset, settings.batch_size, False, settings.seed, num_workers=settings.num_workers)
    return loaders


def train_image(settings, progress: bool = True, resume: bool = True, name: str = "image") -> dict:
    """Notebook 02's whole job: train the image model, then write metrics, baselines and test predictions.

    Reads cohort.csv + images_<S>.npy from ``settings.artifacts_dir``; writes checkpoints/<name>*.pt,
    metrics/image.json (model ``name`` + trivial baselines) and predictions/<name>_test.csv. The
    fusion models of notebook 04 start from the one called "image".
    """
    datasets = load_split_datasets(settings)
    loaders = image_loaders(settings, datasets)
    seed_everything(settings.seed)
    model = build_image_model(settings)
    checkpoint_dir = Path(settings.artifacts_dir) / "checkpoints"
    history = fit(model, loaders["fit"], loaders["validate"], settings, checkpoint_dir, name, resume, progress)
    evaluation = {split: loaders[split] for split in ("train", "validate", "test")}
    results = record_results(model, evaluation, settings, "image", name)
    return {"model": model, "history": history, "metrics": results, "checkpoint": checkpoint_dir / f"{name}.pt"}


def train_image_ensemble(settings, progress: bool = True, resume: bool = True) -> dict:
    """The ensemble of ``settings.image_ensemble`` image models: notebook 02's "image" and more of its recipe.

    Member i (``image_model.member_names``) is trained as ``train_image`` trains, with seed
    ``settings.seed + i``; finished members are loaded, not retrained (``resume``). The ensemble
    (``ImageEnsemble``: the mean logit) is scored into metrics/image.json as "image_ensemble", and
    notebook 05 scores its mean map beside the single model's. Needs checkpoints/image.pt.
    """
    if settings.image_ensemble < 2:
        raise ValueError(f"image_ensemble is {settings.image_ensemble}: set CXR_IMAGE_ENSEMBLE to 2 or more for an ensemble")
    checkpoint_dir = Path(settings.artifacts_dir) / "checkpoints"
    datasets = load_split_datasets(settings)
    members = [load_image_encoder(settings).eval()]
    for offset, name in enumerate(member_names(settings.image_ensemble), start=1):
        run = dataclasses.replace(settings, seed=settings.seed + offset)
        loaders = image_loaders(run, datasets)
        seed_everything(run.seed)
        model = build_image_model(run)
        fit(model, loaders["fit"], loaders["validate"], run, checkpoint_dir, name, resume, progress)
        members.append(model.eval())
    device = next(members[-1].parameters()).device  # where fit trained (a GPU, say); the first was loaded on the CPU
    ensemble = ImageEnsemble(members).to(device).eval()
    loaders = image_loaders(settings, datasets)
    evaluation = {split: loaders[split] for split in ("train", "validate", "test")}
    results = record_results(ensemble, evaluation, settings, "image", ENSEMBLE_NAME, baselines=False)
    return {"model": ensemble, "metrics": results, "members": [checkpoint_dir / f"{n}.pt" for n in member_names(settings.image_ensemble)]}


def forget_image_ensemble(settings) -> bool:
    """With one image model (``settings.image_ensemble`` 1), drop an earlier run's "image_ensemble" figures
    (metrics/image.json and its test predictions), so that the tables show only what this run scores.
    The members' checkpoints stay; ``train_image_ensemble`` scores them again. Whether anything was dropped.
    Under torchrun call it on the main process only (it rewrites metrics/image.json)."""
    if settings.image_ensemble > 1:
        return False
    artifacts = Path(settings.artifacts_dir)
    (artifacts / "predictions" / f"{ENSEMBLE_NAME}_test.csv").unlink(missing_ok=True)
    return forget_metrics(artifacts / "metrics" / "image.json", ENSEMBLE_NAME)


def label_policy_table(artifacts_dir: Path, names: Mapping[str, str], split: str = "test") -> pd.DataFrame:
    """Per label and model: the share of images it calls positive, AUROC against the report labels, against the truth.

    ``names`` maps a column title to a model name in metrics/image.json (with its predictions CSV).
    The share predicted positive is over every test image (p >= 0.5); the report-label AUROC is over
    the labels the report mentions (the paper's masking); the truth AUROC (phantom only) over every image.
    """
    models = read_metrics(Path(artifacts_dir) / "metrics" / "image.json")["models"]
    columns = {}
    for title, name in names.items():
        predictions = pd.read_csv(Path(artifacts_dir) / "predictions" / f"{name}_test.csv")
        figures = models[name][split]
        columns[(title, "predicted positive")] = {label: float((predictions[f"prob_{label}"] >= 0.5).mean())
                                                  for label in CHEXPERT_LABELS}
        columns[(title, "AUROC, report labels")] = dict(figures["auroc"])
        if "truth" in figures:
            columns[(title, "AUROC, truth")] = dict(figures["truth"]["auroc"])
    table = pd.DataFrame(columns).reindex(list(CHEXPERT_LABELS))
    table.loc["macro"] = table.mean(numeric_only=True)
    return table
