"""Figures shared by the notebooks. Each function draws one figure and returns it.

Cohort figures (notebook 01): label codes per label, section availability, report lengths,
an image grid with labels.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cxr_helpers.labels import CHEXPERT_LABELS

# Colours for the label codes 1 / 0 / -1 / -2, used by every label figure.
CODE_COLOURS = {1: "#c0392b", 0: "#2e86c1", -1: "#f39c12", -2: "#d5d8dc"}
CODE_NAMES = {1: "positive (1)", 0: "negative (0)", -1: "uncertain (-1)", -2: "not mentioned (-2)"}


def _axes(ax, figsize: tuple[float, float]):
    """The given axes and its figure, or a new figure with one axes."""

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_label_codes(cohort: pd.DataFrame, split: str | None = "train", ax=None):
    """Horizontal stacked bars: share of studies coded 1 / 0 / -1 / -2, per label."""
    studies = cohort.drop_duplicates("study_id")
    if split is not None:
        studies = studies[studies["split"] == split]
    fig, ax = _axes(ax, (8, 5))
    left = np.zeros(len(CHEXPERT_LABELS))
    for code, colour in CODE_COLOURS.items():
        share = np.array([(studies[label] == code).mean() if len(studies) else 0.0 for label in CHEXPERT_LABELS])
        ax.barh(CHEXPERT_LABELS, share, left=left, color=colour, label=CODE_NAMES[code])
        left += share
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of studies")
    ax.set_title(f"Label codes per label ({split or 'all splits'}, {len(studies)} studies)")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    return fig


def plot_section_availability(summary: dict, ax=None):
    """Bars: share of reports holding each section (from cohort_summary.json)."""
    sections = summary["sections"]
    n = max(sections["reports"], 1)
    names = list(sections["present"])
    fig, ax = _axes(ax, (7, 3.5))
    shares = [sections["present"][name] / n for name in names]
    colours = ["#c0392b" if name in ("findings", "impression", "last_paragraph") else "#7f8c8d" for name in names]
    ax.bar(names, shares, color=colours)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of reports")
    ax.set_title(f"Sections found in {sections['reports']} reports (red: what the labeler read)")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def plot_report_lengths(cohort: pd.DataFrame, ax=None):
    """Histograms of words per study in the two text settings."""
    studies = cohort.drop_duplicates("study_id")
    fig, ax = _axes(ax, (7, 3.5))
    for column, colour in (("text_findings_impression", "#c0392b"), ("text_indication", "#2e86c1")):
        words = studies[column].fillna("").str.split().str.len()
        ax.hist(words, bins=30, alpha=0.6, color=colour, label=f"{column} (median {int(words.median())})")
    ax.set_xlabel("words (cleaned)")
    ax.set_ylabel("studies")
    ax.set_title("Report text length per setting")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def positive_labels(row: pd.Series) -> list[str]:
    """The labels coded 1 for one cohort row."""
    return [label for label in CHEXPERT_LABELS if int(row[label]) == 1]


def plot_image_grid(cohort: pd.DataFrame, images: np.ndarray, n: int = 8, seed: int = 0, columns: int = 4):
    """A grid of ``n`` random cohort images (from the cache, via cache_index) titled with their labels."""

    rows = cohort.sample(n=min(n, len(cohort)), random_state=seed)
    n_rows = int(np.ceil(len(rows) / columns))
    fig, axes = plt.subplots(n_rows, columns, figsize=(3 * columns, 3.3 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (_, row) in zip(axes.ravel(), rows.iterrows(), strict=False):
        ax.imshow(images[int(row["cache_index"])], cmap="gray", vmin=0, vmax=255)  # (S, S) uint8
        title = textwrap.fill(", ".join(positive_labels(row)) or "no positive label", 38)
        ax.set_title(f"{row['view_position']} s{row['study_id']} ({row['split']})\n{title}", fontsize=8)
    fig.tight_layout()
    return fig
