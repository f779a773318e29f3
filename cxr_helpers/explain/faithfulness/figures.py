"""Figures of the faithfulness checks: each explanation's score beside its random baselines, and the randomisation test."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cxr_helpers.explain.faithfulness.report import grad_cam_table, shap_table


def plot_checks(summary: dict, title: str = "Are the explanations right? (phantom ground truth)"):
    """Grad-CAM's pointing game (detected findings, per source, model and extent) and SHAP's checks, vs random."""
    maps, words = grad_cam_table(summary), shap_table(summary)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    if not maps.empty:
        x = np.arange(len(maps))
        for offset, column, colour, name in ((-0.3, "hit", "#c0392b", "Grad-CAM"),
                                             (-0.1, "hit_baseline", "#e67e22", "minus the label's baseline"),
                                             (0.1, "hit_random", "#95a5a6", "random map"),
                                             (0.3, "tolerance_share", "#d5dbdb", "random peak")):
            if column in maps and maps[column].notna().any():
                left.bar(x + offset, maps[column].astype(float).fillna(0), 0.2, color=colour, label=name)
        left.set_xticks(x, [f"{r.source}\n{r.model}, {r.extent}\n{r.layer}, n={r.detected}"
                            for r in maps.itertuples()], fontsize=7)
        left.set(ylim=(0, 1), ylabel="pointing game (tolerance)", title="Grad-CAM: peak on the finding?")
        left.legend(fontsize=8)
    if not words.empty:
        x = np.arange(len(words))
        right.bar(x - 0.2, words["top-k in span"].astype(float).fillna(0), 0.2, color="#c0392b", label="top-k in span")
        right.bar(x, words["random ranking"].astype(float).fillna(0), 0.2, color="#95a5a6", label="random ranking")
        right.bar(x + 0.2, words["negation sign"].astype(float).fillna(0), 0.2, color="#2e86c1", label="negation sign")
        right.set_xticks(x, words["model"], fontsize=8)
        right.set(ylim=(0, 1), title="SHAP: the stating words?")
        right.legend(fontsize=7)
    for axis in (left, right):
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_randomisation(randomisation: pd.DataFrame, title: str = "Model randomisation test"):
    """Mean Spearman correlation between original and randomised explanations, per randomisation step."""

    figure, axis = plt.subplots(figsize=(7, 3.4))
    if randomisation.empty:
        axis.text(0.5, 0.5, "no randomisation records", ha="center", transform=axis.transAxes)
        return figure
    cams = randomisation[randomisation["kind"] == "Grad-CAM"]
    for role, group in cams.groupby("model", sort=False):
        means = group.groupby("step")["spearman"].mean()
        axis.plot(means.index, means.to_numpy(), marker="o", label=f"Grad-CAM, {role} model")
    shap = randomisation[randomisation["kind"] == "SHAP"]
    for offset, (role, group) in zip((-0.08, 0.08), shap.groupby("model", sort=False), strict=False):
        axis.scatter([1 + offset], [group["spearman"].mean()], marker="s", s=60, label=f"SHAP, {role} model (head)")
    steps = cams.drop_duplicates("step").sort_values("step") if not cams.empty else cams
    if not steps.empty:
        axis.set_xticks(steps["step"], steps["randomised_through"], fontsize=8)
    axis.axhline(1.0, color="black", lw=0.6, ls=":")
    axis.axhline(0.0, color="black", lw=0.6)
    axis.set(xlabel="randomised from the top down to", ylabel="Spearman vs trained", ylim=(-0.5, 1.05), title=title)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure

