"""The results table across stages, read from the metrics JSON files every notebook writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

STAGES = ("image", "text", "fusion")
# The paper's reported figures (loss, masked accuracy) for comparison.
PAPER = {
    "paper: image-only ResNet-18": {"train": (0.2877, 0.7648), "validate": (0.4436, 0.7047)},
    "paper: late fusion": {"train": (0.1302, 0.8296), "validate": (0.2707, 0.7916), "test": (0.2592, 0.7950)},
}


def results_table(metrics_dir: Path, include_paper: bool = True) -> pd.DataFrame:
    """One row per (stage, model): loss, masked accuracy and macro AUROC per split."""
    rows = []
    for stage in STAGES:
        path = Path(metrics_dir) / f"{stage}.json"
        if not path.exists():
            continue
        for model, splits in json.loads(path.read_text())["models"].items():
            row = {"stage": stage, "model": model}
            for split, figures in splits.items():
                if not isinstance(figures, dict):
                    continue
                for key in ("loss", "accuracy", "macro_auroc"):
                    if figures.get(key) is not None:
                        row[f"{split}_{key}"] = figures[key]
            rows.append(row)
    if include_paper:
        for model, splits in PAPER.items():
            row = {"stage": "paper", "model": model}
            for split, (loss, accuracy) in splits.items():
                row[f"{split}_loss"], row[f"{split}_accuracy"] = loss, accuracy
            rows.append(row)
    table = pd.DataFrame(rows)
    order = ["stage", "model"] + [
        f"{split}_{key}" for split in ("train", "validate", "test") for key in ("loss", "accuracy", "macro_auroc")
    ]
    return table.reindex(columns=[c for c in order if c in table.columns])


def notebook_times(executed_dir: Path) -> dict[str, float]:
    """Seconds each executed notebook took (first cell started to last cell finished), from nbclient's timing."""
    times = {}
    for path in sorted(Path(executed_dir).glob("*.ipynb")):
        stamps = [cell.get("metadata", {}).get("execution", {}) for cell in json.loads(path.read_text())["cells"]]
        starts = [s["iopub.execute_input"] for s in stamps if "iopub.execute_input" in s]
        ends = [s["shell.execute_reply"] for s in stamps if "shell.execute_reply" in s]
        if starts and ends:
            times[path.stem] = (pd.Timestamp(max(ends)) - pd.Timestamp(min(starts))).total_seconds()
    return times
