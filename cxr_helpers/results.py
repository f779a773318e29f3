"""The results across stages, read from the metrics JSON files every notebook writes.

``readme_table`` (the README's test table with 95% bootstrap intervals), ``comparisons_table``
(the paired differences the notebooks discuss) and ``best_model`` (the best of some models on the
validation split).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

STAGES = ("image", "text", "fusion")
# The paper's reported figures (loss, masked accuracy) for comparison.
PAPER = {
    "paper: image-only ResNet-18": {"train": (0.2877, 0.7648), "validate": (0.4436, 0.7047)},
    "paper: late fusion": {"train": (0.1302, 0.8296), "validate": (0.2707, 0.7916), "test": (0.2592, 0.7950)},
}


def _stage_models(metrics_dir: Path) -> dict[str, tuple[str, dict]]:
    """{model: (stage, its figures per split)} over every stage's metrics JSON that exists.

    A name stored by several stages (the trivial baselines) keeps its first stage.
    """
    models = {}
    for stage in STAGES:
        path = Path(metrics_dir) / f"{stage}.json"
        if path.exists():
            for name, splits in json.loads(path.read_text())["models"].items():
                models.setdefault(name, (stage, splits))
    return models


def format_interval(interval, digits: int = 3) -> str:
    """"[low, high]" to ``digits`` decimals, or "-" when there is no interval."""
    if not interval or interval[0] is None:
        return "-"
    return f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def readme_table(metrics_dir: str | Path, include_paper: bool = True) -> pd.DataFrame:
    """One row per model: test masked accuracy and macro AUROC, each with its 95% bootstrap interval over studies."""
    rows = []
    for name, (stage, splits) in _stage_models(Path(metrics_dir)).items():
        if name.startswith("baseline:") and name != "baseline: train prevalence":
            continue  # one trivial baseline (every stage stores the same ones)
        test = splits.get("test") or {}
        rows.append({"stage": stage, "model": name, "test accuracy": test.get("accuracy"),
                     "accuracy 95% CI": format_interval(test.get("accuracy_ci")),
                     "test macro AUROC": test.get("macro_auroc"),
                     "AUROC 95% CI": format_interval(test.get("macro_auroc_ci")), "n": test.get("n")})
    if include_paper:
        for name, splits in PAPER.items():
            split = "test" if "test" in splits else "validate"
            rows.append({"stage": "paper", "model": f"{name} ({split})", "test accuracy": splits[split][1],
                         "accuracy 95% CI": "-", "test macro AUROC": None, "AUROC 95% CI": "-", "n": None})
    table = pd.DataFrame(rows)
    return table.astype({"n": "Int64"}) if not table.empty else table


def comparisons_table(metrics_dir: str | Path, stages: tuple[str, ...] = ("text", "fusion")) -> pd.DataFrame:
    """The paired differences stored under "comparisons": estimate, 95% interval, and whether it excludes 0."""
    rows = []
    for stage in stages:
        path = Path(metrics_dir) / f"{stage}.json"
        comparisons = json.loads(path.read_text()).get("comparisons", {}) if path.exists() else {}
        for result in comparisons.values():
            low, high = result["ci"]
            rows.append({"stage": stage, "model": result["model"], "minus": result["baseline"],
                         "difference": result["estimate"], "ci_low": low, "ci_high": high,
                         "CI excludes 0": result["excludes_zero"], "resamples": result["resamples"],
                         "question": result["question"]})
    return pd.DataFrame(rows)


def best_model(metrics_dir: str | Path, names: list[str], split: str = "validate", metric: str = "macro_auroc") -> str | None:
    """The model among ``names`` with the highest ``metric`` on ``split`` (None if none has a figure)."""
    models = _stage_models(Path(metrics_dir))
    scores = {name: ((models[name][1].get(split) or {}).get(metric)) for name in names if name in models}
    scores = {name: score for name, score in scores.items() if score is not None}
    return max(scores, key=scores.get) if scores else None


def _frame_text(frame: pd.DataFrame) -> str:
    """A table as aligned text, numbers to 3 decimals ("(none yet)" when empty)."""
    if frame.empty:
        return "  (none yet)"
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        return frame.to_string(index=False)


def class_figures(artifacts_dir: str | Path, faithfulness_table: Callable[[dict], pd.DataFrame] | None = None) -> str:
    """The figures a class should see in each notebook, read from an artifacts folder's JSON files.

    Notebook 05's checks are shown with ``faithfulness_table`` (``explain.faithfulness.report.summary_table``,
    passed in by the CLI so that this module does not import the explanations).
    """
    artifacts_dir = Path(artifacts_dir)
    metrics_dir = artifacts_dir / "metrics"
    parts = []
    summary_path = artifacts_dir / "cohort_summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        splits = pd.DataFrame(summary["splits"]).T.reset_index(names="split")
        parts.append(f"== 01 data prep: {summary['counts']['studies']} studies, {summary['counts']['images']} images; "
                     f"patients in several splits: {summary['patients_in_several_splits']}\n{_frame_text(splits)}")
    readme = readme_table(metrics_dir, include_paper=False) if metrics_dir.exists() else pd.DataFrame()
    comparisons = comparisons_table(metrics_dir) if metrics_dir.exists() else pd.DataFrame()
    for stage, title in (("image", "02 image baseline"), ("text", "03 text baseline"), ("fusion", "04 fusion")):
        if readme.empty or stage not in set(readme["stage"]):
            continue
        rows = readme[readme["stage"] == stage].drop(columns="stage")
        text = f"== {title} (test split, 95% bootstrap intervals over studies)\n{_frame_text(rows)}"
        if not comparisons.empty and stage in set(comparisons["stage"]):
            chosen = comparisons[comparisons["stage"] == stage].drop(columns=["stage", "question", "resamples"])
            text += f"\n-- differences (paired bootstrap)\n{_frame_text(chosen)}"
        parts.append(text)
    faithfulness = metrics_dir / "faithfulness.json"
    if faithfulness.exists() and faithfulness_table is not None:
        checks = faithfulness_table(json.loads(faithfulness.read_text()))
        parts.append(f"== 05 interpretation (faithfulness checks)\n{_frame_text(checks)}")
    return "\n\n".join(parts) if parts else f"no figures under {artifacts_dir}: run the notebooks (make demo) first"


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
