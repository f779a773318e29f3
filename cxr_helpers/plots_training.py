"""Training figures and tables (notebooks 02-04): curves, per-label AUROC bars, results vs the paper.

Each plotting function draws one figure and returns it; tables are pandas DataFrames.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.metrics import BASELINE_NAMES, read_metrics
from cxr_helpers.results import PAPER

TRAIN_COLOUR, VAL_COLOUR = "#2e86c1", "#c0392b"
SPLIT_NAMES = {"train": "train", "validate": "val", "test": "test"}


def plot_history(history, title: str = "Training curves", paper: str | None = None):
    """Train and validation loss and masked accuracy per epoch (the paper's Figure 6 layout).

    ``history`` is a training.History (or its dict); ``paper`` names a row of ``results.PAPER``
    whose final train/validation figures are drawn as dotted lines for comparison.
    """

    data = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    epochs = data["epoch"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, metric, label in ((axes[0], "loss", "masked BCE loss"), (axes[1], "accuracy", "masked accuracy")):
        ax.plot(epochs, data[f"train_{metric}"], "o-", color=TRAIN_COLOUR, label="train")
        validation = [np.nan if v is None else v for v in data[f"val_{metric}"]]
        ax.plot(epochs, validation, "o-", color=VAL_COLOUR, label="validation")
        if paper is not None:
            index = 0 if metric == "loss" else 1
            ax.axhline(PAPER[paper]["train"][index], color=TRAIN_COLOUR, ls=":", lw=1, label="paper, train")
            ax.axhline(PAPER[paper]["validate"][index], color=VAL_COLOUR, ls=":", lw=1, label="paper, validation")
        if data.get("best_epoch"):
            ax.axvline(data["best_epoch"], color="grey", ls="--", lw=0.8, label="best epoch")
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_label_auroc(aurocs: Mapping[str, Mapping[str, float | None]], title: str = "AUROC per label", ax=None):
    """Horizontal bars of AUROC per label for one or more models ({model: {label: auroc or None}}).

    A missing bar with "n/a" means the split holds only one class for that label (AUROC undefined);
    the dashed line at 0.5 is what a model that ignores the image gets.
    """

    models = list(aurocs)
    labels = list(next(iter(aurocs.values()))) if aurocs else list(CHEXPERT_LABELS)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(labels) * max(1, len(models) * 0.6) + 1.2))
    fig = ax.figure
    height = 0.8 / max(1, len(models))
    positions = np.arange(len(labels))
    for m, model in enumerate(models):
        values = [aurocs[model].get(label) for label in labels]
        offsets = positions - 0.4 + height * (m + 0.5)
        bars = [np.nan if v is None else v for v in values]
        ax.barh(offsets, bars, height=height, label=model)
        for y, value in zip(offsets, values, strict=True):
            if value is None:
                ax.text(0.01, y, "n/a", va="center", fontsize=7, color="grey")
    ax.axvline(0.5, color="black", ls="--", lw=0.8)
    ax.set(yticks=positions, yticklabels=labels, xlim=(0, 1), xlabel="AUROC", title=title)
    ax.invert_yaxis()
    if len(models) > 1:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def results_vs_paper(metrics: Mapping | str | Path, paper: str | None = "paper: image-only ResNet-18") -> pd.DataFrame:
    """One row per model in a metrics JSON (baselines included) plus the paper's row.

    Columns: loss, masked accuracy and macro AUROC per split (train / val / test). ``metrics`` is
    the loaded JSON or its path. The paper reported loss and accuracy only.
    """
    data = read_metrics(Path(metrics)) if isinstance(metrics, (str, Path)) else metrics
    rows = {}
    for model, splits in data["models"].items():
        rows[model] = {
            (SPLIT_NAMES[split], key): figures.get(key)
            for split, figures in splits.items() if split in SPLIT_NAMES
            for key in ("loss", "accuracy", "macro_auroc")
        }
    if paper is not None:
        rows[paper] = {(SPLIT_NAMES[split], key): value for split, (loss, accuracy) in PAPER[paper].items()
                       for key, value in (("loss", loss), ("accuracy", accuracy))}
    table = pd.DataFrame.from_dict(rows, orient="index")
    order = [(split, key) for split in SPLIT_NAMES.values() for key in ("loss", "accuracy", "macro_auroc")]
    table = table.reindex(columns=pd.MultiIndex.from_tuples([c for c in order if c in table.columns]))
    baselines = [name for name in BASELINE_NAMES.values() if name in table.index]
    others = [name for name in table.index if name not in baselines and name != paper]
    return table.loc[others + baselines + ([paper] if paper else [])].astype(float)


def save_figure(fig, artifacts_dir: str | Path, name: str) -> Path:
    """Save ``fig`` as figures/<name>.png in the artifacts folder; returns the path."""
    path = Path(artifacts_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
