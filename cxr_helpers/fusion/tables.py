"""Notebook 04's tables and figures, read from the metrics JSON files (image.json, text.json, fusion.json)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cxr_helpers.config import TEXT_SETTINGS
from cxr_helpers.fusion.model import STRATEGIES, fusion_name, training_label
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.metrics import BASELINE_NAMES, read_metrics
from cxr_helpers.results import PAPER

MIN_GAIN_FOR_SHARE = 0.01  # leakage_table: below this gain (in the metric's units) no share is computed


def _load_models(metrics_dir: Path, stage: str) -> dict:
    data = read_metrics(Path(metrics_dir) / f"{stage}.json")
    return {name: splits for name, splits in data["models"].items() if name not in BASELINE_NAMES.values()}


def _text_setting_of(name: str) -> str | None:
    return next((s for s in TEXT_SETTINGS if s in name), None)


def comparison_table(metrics_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """One row per model (image-only, text-only, every fusion model): accuracy and macro AUROC on ``split``.

    Reads metrics/image.json, text.json and fusion.json (whichever exist); "runs" in fusion.json
    says how each fusion model was trained. ``ci_low`` / ``ci_high``: the macro AUROC's 95% bootstrap
    interval over test studies (empty on other splits).
    """
    metrics_dir = Path(metrics_dir)
    runs = read_metrics(metrics_dir / "fusion.json").get("runs", {})
    rows = []
    for stage, modality in (("image", "image"), ("text", "text"), ("fusion", "image+text")):
        for name, splits in _load_models(metrics_dir, stage).items():
            figures = splits.get(split) or {}
            run = runs.get(name, {})
            rows.append({
                "model": name, "modality": modality,
                "strategy": run.get("strategy", "-"), "text_setting": _text_setting_of(name) or "-",
                "training": training_label(not run.get("freeze_image", True), bool(run.get("end_to_end")))
                if stage == "fusion" else "-",
                f"{split}_loss": figures.get("loss"), f"{split}_accuracy": figures.get("accuracy"),
                f"{split}_macro_auroc": figures.get("macro_auroc"),
                "ci_low": (figures.get("macro_auroc_ci") or [None, None])[0],
                "ci_high": (figures.get("macro_auroc_ci") or [None, None])[1],
            })
    return pd.DataFrame(rows)


def paper_comparison(metrics_dir: str | Path, name: str = "fusion_concat_findings_impression") -> pd.DataFrame:
    """One fusion model's loss, masked accuracy and macro AUROC per split, beside the paper's late fusion."""
    splits = _load_models(Path(metrics_dir), "fusion").get(name)
    if splits is None:
        raise KeyError(f"no model {name!r} in {Path(metrics_dir) / 'fusion.json'}; train it with notebook 04")
    paper = PAPER["paper: late fusion"]
    rows = []
    for split in ("train", "validate", "test"):
        figures = splits.get(split, {})
        paper_loss, paper_accuracy = paper.get(split, (None, None))
        rows.append({"split": split, "loss": figures.get("loss"), "paper loss": paper_loss,
                     "accuracy": figures.get("accuracy"), "paper accuracy": paper_accuracy,
                     "macro AUROC": figures.get("macro_auroc")})
    return pd.DataFrame(rows).set_index("split")


def leakage_table(metrics_dir: str | Path, split: str = "test", metric: str = "macro_auroc") -> pd.DataFrame:
    """Per strategy: the fusion score with each text setting, the gain over image-only, and the share of
    the findings+impression gain that the indication alone does not give (what the labels' own text adds).

    The share is clipped to [0, 1] (1: the indication alone gains nothing, or loses) and left empty
    (None) when the findings+impression gain is below MIN_GAIN_FOR_SHARE: a share of no gain says nothing.
    """
    metrics_dir = Path(metrics_dir)
    image = (_load_models(metrics_dir, "image").get("image", {}).get(split) or {}).get(metric)
    fusion = _load_models(metrics_dir, "fusion")
    rows = []
    for strategy in STRATEGIES:
        if not any(fusion_name(strategy, s) in fusion for s in TEXT_SETTINGS):
            continue
        scores = {s: (fusion.get(fusion_name(strategy, s), {}).get(split) or {}).get(metric) for s in TEXT_SETTINGS}
        row = {"strategy": strategy, "image only": image, **scores}
        for setting in TEXT_SETTINGS:
            row[f"gain ({setting})"] = None if image is None or scores[setting] is None else scores[setting] - image
        gain_fi, gain_ind = row["gain (findings_impression)"], row["gain (indication)"]
        row["share of gain not given by the indication"] = (
            None if gain_fi is None or gain_ind is None or gain_fi < MIN_GAIN_FOR_SHARE
            else float(np.clip((gain_fi - gain_ind) / gain_fi, 0.0, 1.0))
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index("strategy") if rows else pd.DataFrame()


def reliance_table(metrics_dir: str | Path, metric: str = "macro_auroc") -> pd.DataFrame:
    """Per fusion model: the test score with both modalities, with the report removed, with the image blanked."""
    ablation = read_metrics(Path(metrics_dir) / "fusion.json").get("ablation", {})
    rows = []
    for name, result in ablation.items():
        rows.append({"model": name, "both": result["full"][metric], "report removed": result["text_removed"][metric],
                     "image blanked": result["image_blanked"][metric], "text reliance": result["reliance"]["text"],
                     "image reliance": result["reliance"]["image"]})
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def per_label_table(metrics_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """AUROC per label (rows) for image-only, text-only and fusion models (columns), plus the macro mean."""
    metrics_dir = Path(metrics_dir)
    columns = {}
    for stage in ("image", "text", "fusion"):
        for name, splits in _load_models(metrics_dir, stage).items():
            figures = splits.get(split) or {}
            if "auroc" in figures:
                columns[name] = {**figures["auroc"], "macro": figures.get("macro_auroc")}
    return pd.DataFrame(columns).reindex([*CHEXPERT_LABELS, "macro"])


def label_aurocs(metrics_dir: str | Path, names: Sequence[str], split: str = "test") -> dict[str, dict]:
    """{model: {label: AUROC or None}} for the named models of any stage (for plots_training.plot_label_auroc)."""
    metrics_dir = Path(metrics_dir)
    models = {name: splits for stage in ("image", "text", "fusion") for name, splits in _load_models(metrics_dir, stage).items()}
    return {name: dict((models[name].get(split) or {}).get("auroc", {})) for name in names if name in models}


def epoch_seconds_table(metrics_dir: str | Path) -> pd.DataFrame:
    """Seconds per training epoch of every fusion model, with how it was trained."""
    runs = read_metrics(Path(metrics_dir) / "fusion.json").get("runs", {})
    return pd.DataFrame([{"model": name, "training": training_label(not run.get("freeze_image"), bool(run.get("end_to_end"))),
                          "epochs": run.get("epochs"), "seconds per epoch": run.get("epoch_seconds")}
                         for name, run in runs.items()]).set_index("model") if runs else pd.DataFrame()


def plot_reliance(table: pd.DataFrame, title: str = "Which modality does each fusion model lean on? (test macro AUROC)"):
    """Grouped bars per fusion model: both modalities, report removed, image blanked; 0.5 = chance."""

    conditions = ["both", "report removed", "image blanked"]
    colours = ["#555555", "#2e86c1", "#c0392b"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(table) + 2), 3.8))
    positions = np.arange(len(table))
    width = 0.8 / len(conditions)
    for k, (condition, colour) in enumerate(zip(conditions, colours, strict=True)):
        values = [np.nan if v is None else v for v in table[condition]]
        ax.bar(positions - 0.4 + width * (k + 0.5), values, width=width, label=condition, color=colour)
    ax.axhline(0.5, color="black", ls="--", lw=0.8)
    short = [name.replace("fusion_", "").replace("findings_impression", "F+I").replace("indication", "ind")
             .replace("_end_to_end", "\n(end to end)") for name in table.index]
    ax.set_xticks(positions, short, fontsize=8)
    ax.set(ylim=(0.3, 1.0), ylabel="macro AUROC", title=title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
