"""Notebook 02's job: train the image model with the workbook's one loop, then score it.

``train_image`` trains the default model ("image"); under another name it trains a variant (the
paper's blank policy, say) beside it, and ``label_policy_table`` compares them label by label.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from torch.utils.data import DataLoader

from cxr_helpers.config import seed_everything
from cxr_helpers.datasets import CohortImageDataset, load_split_datasets, make_loader
from cxr_helpers.evaluation import record_results
from cxr_helpers.image_model import build_image_model
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.metrics import read_metrics
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
