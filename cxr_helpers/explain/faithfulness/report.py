"""All faithfulness checks on a set of test studies, summarised into ``metrics/faithfulness.json``, with tables and plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cxr_helpers.artifacts import write_json
from cxr_helpers.explain.faithfulness.checks import ROAD_LIMIT, ROAD_PERCENTILES, cam_checks, shap_checks
from cxr_helpers.explain.faithfulness.randomisation import randomisation_checks
from cxr_helpers.explain.faithfulness.truth import load_ground_truth, phantom_root
from cxr_helpers.explain.models import CAM_ROLES, SHAP_ROLES
from cxr_helpers.explain.study import StudyExplainer

CHECKS = {
    # name: (records key, score column, random baseline column, uniform baseline column or None, description)
    "pointing_game": ("cam", "pointing", "pointing_random_cam", "area_share",
                      "share of findings whose heatmap peak lies inside the finding's mask"),
    "energy_inside_mask": ("cam", "energy", "energy_random_cam", "area_share",
                           "share of the heatmap's mass inside the finding's mask"),
    "mask_auroc": ("cam", "auroc", "auroc_random_cam", None,
                   "AUROC of heatmap values for mask vs other pixels (0.5 = chance)"),
    "road": ("cam", "road", "road_random_cam", None,
             "ROADCombined: logit drop removing least minus most relevant pixels, halved (higher = better)"),
    "shap_top_k": ("top_k", "hit", "hit_random", None,
                   "share of positively stated findings with one of the top-k SHAP words inside the stating span"),
    "negation": ("mentions", "sign_agrees", "random_sign_agrees", None,
                 "share of mentions whose SHAP sum has the right sign (+ positive mention, - negated)"),
}
CHECK_TITLES = {"pointing_game": "pointing game", "energy_inside_mask": "energy inside mask",
                "mask_auroc": "mask AUROC", "road": "ROAD (higher = better)", "shap_top_k": "SHAP top-k words",
                "negation": "negation sign"}


@dataclass
class FaithfulnessResult:
    """What ``run_faithfulness`` measured: the JSON summary and the per-case records behind it."""

    summary: dict
    cam: dict[str, pd.DataFrame]  # role -> cam_checks records
    top_k: dict[str, pd.DataFrame]  # role -> shap_checks top-k records
    mentions: dict[str, pd.DataFrame]  # role -> shap_checks mention records
    randomisation: pd.DataFrame
    path: Path | None = None


def summarise(records: pd.DataFrame, columns: Sequence[str]) -> dict:
    """{"overall": {column: mean, ..., "n"}, "per_label": {label: {...}}}; NaN ignored, n counts the first column's values."""

    def block(frame: pd.DataFrame) -> dict:
        first = pd.to_numeric(frame[columns[0]], errors="coerce") if columns[0] in frame else pd.Series(dtype=float)
        return {"n": int(np.isfinite(first.astype(float)).sum()),
                **{c: (_mean(frame[c]) if c in frame else None) for c in columns}}

    if records is None or records.empty:
        return {"overall": {"n": 0}, "per_label": {}}
    return {"overall": block(records),
            "per_label": {label: block(group) for label, group in records.groupby("label", sort=False)}}


def _mean(values) -> float | None:
    array = pd.to_numeric(pd.Series(values), errors="coerce").astype(float).to_numpy()
    array = array[np.isfinite(array)]
    return float(array.mean()) if len(array) else None


def _subset(records: pd.DataFrame, check: str, correct_only: bool) -> pd.DataFrame:
    if records.empty or not correct_only or "correct" not in records:
        return records
    return records[records["correct"].astype(bool)]


def _mention_means(mentions: pd.DataFrame) -> dict:
    """Mean SHAP sum over positive and over negated mentions (they should differ in sign)."""
    return {"positive mention": _mean(mentions.loc[mentions["code"] == 1, "mention_value"]),
            "negated mention": _mean(mentions.loc[mentions["code"] == 0, "mention_value"]),
            "n positive": int((mentions["code"] == 1).sum()), "n negated": int((mentions["code"] == 0).sum())}


def summarise_checks(cam: dict, top_k: dict, mentions: dict, randomisation: pd.DataFrame,
                     correct_only: bool = True) -> dict:
    """The ``checks`` block of faithfulness.json: per check and model, overall and per label, with baselines."""
    sources = {"cam": cam, "top_k": top_k, "mentions": mentions}
    checks = {}
    for name, (source, score, baseline, uniform, description) in CHECKS.items():
        columns = [c for c in (score, baseline, uniform) if c]
        models = {}
        for role, records in sources[source].items():
            chosen = _subset(records, name, correct_only)
            if name == "negation" and not chosen.empty:
                models[role] = summarise(chosen, columns)
                models[role]["overall"]["by_code"] = _mention_means(chosen)
                for label, group in chosen.groupby("label", sort=False):
                    models[role]["per_label"][label]["by_code"] = _mention_means(group)
            else:
                models[role] = summarise(chosen, columns)
        checks[name] = {"description": description, "score": score, "baseline": baseline, "uniform": uniform,
                        "subset": "correctly predicted (p >= 0.5)" if correct_only and source != "mentions" else "all",
                        "models": models}
    rand = {}
    if not randomisation.empty:
        for (kind, role), group in randomisation.groupby(["kind", "model"], sort=False):
            steps = group.groupby(["step", "randomised_through"], sort=True)["spearman"]
            rand[f"{kind} {role}"] = [{"step": int(step), "randomised_through": through, "spearman": _mean(values),
                                       "n": int(values.notna().sum())} for (step, through), values in steps]
    checks["randomisation"] = {
        "description": "Spearman rank correlation between the explanation of the trained model and of a copy with "
                       "its weights randomised from the top down (should fall towards 0)",
        "score": "spearman", "baseline": None, "models": rand,
    }
    return checks


def run_faithfulness(settings, explainer=None, studies: Sequence[int] | None = None, k: int | None = None,
                     road_percentiles: Sequence[int] | None = ROAD_PERCENTILES, randomisation_studies: int | None = None,
                     write: bool = True, progress: bool = True) -> FaithfulnessResult:
    """All checks on the first ``settings.explain_studies`` test studies; writes metrics/faithfulness.json.

    Image checks for the fusion and image-only models, text checks for the fusion and text-only
    models, the randomisation test on ``randomisation_studies`` studies (default 3, 1 with CXR_FAST). Scores are over correctly
    predicted findings (p >= 0.5); ``faithfulness.json`` also holds them over all present findings.
    """
    truth = load_ground_truth(phantom_root(settings))
    explainer = explainer or StudyExplainer.from_settings(settings)
    studies = list(studies) if studies is not None else explainer.study_ids("test")[: settings.explain_studies]
    k = int(k or settings.top_k_labels)
    method = explainer.cam_method
    cam = {role: cam_checks(explainer, truth, studies, role, method, road_percentiles, progress)
           for role in CAM_ROLES if explainer.has(role)}
    top_k, mentions = {}, {}
    for role in SHAP_ROLES:
        if explainer.has(role):
            top_k[role], mentions[role] = shap_checks(explainer, truth, studies, role, k, progress=progress)
    if randomisation_studies is None:
        randomisation_studies = 1 if settings.fast else 3
    randomisation = randomisation_checks(explainer, studies[:randomisation_studies], method, progress=progress)
    summary = {
        "phantom": str(truth.root.parent),
        "studies": [int(s) for s in studies],
        "n_studies": len(studies),
        "cam_method": method,
        "shap_max_evals": int(explainer.shap_max_evals),
        "top_k_words": k,
        "road_percentiles": list(road_percentiles or []),
        "road_limit_per_model": ROAD_LIMIT,
        "models": dict(explainer.models.names),
        "checks": summarise_checks(cam, top_k, mentions, randomisation, correct_only=True),
        "checks_all_present": summarise_checks(cam, top_k, mentions, randomisation, correct_only=False),
    }
    path = None
    if write:
        path = Path(settings.artifacts_dir) / "metrics" / "faithfulness.json"
        write_json(path, summary)
    return FaithfulnessResult(summary, cam, top_k, mentions, randomisation, path)


def summary_table(summary: dict) -> pd.DataFrame:
    """One row per (check, model): the score, its random baseline(s) and n, from ``run_faithfulness``'s summary."""
    rows = []
    for check, spec in summary["checks"].items():
        if check == "randomisation":
            continue
        for model, result in spec["models"].items():
            overall = result.get("overall", {})
            rows.append({"check": check, "model": model, "score": overall.get(spec["score"]),
                         "random baseline": overall.get(spec["baseline"]),
                         **({"uniform baseline": overall.get(spec["uniform"])} if spec.get("uniform") else {}),
                         "n": overall.get("n", 0)})
    return pd.DataFrame(rows)


def per_label_table(summary: dict, check: str) -> pd.DataFrame:
    """Per label: each model's score and baseline for one check."""
    spec = summary["checks"][check]
    rows = []
    for model, result in spec["models"].items():
        for label, figures in result.get("per_label", {}).items():
            rows.append({"label": label, "model": model, "score": figures.get(spec["score"]),
                         "random baseline": figures.get(spec["baseline"]), "n": figures.get("n", 0)})
    return pd.DataFrame(rows)


def negation_table(summary: dict) -> pd.DataFrame:
    """Per label and model: mean SHAP sum over positive and over negated mentions, and the sign agreement."""
    rows = []
    for model, result in summary["checks"]["negation"]["models"].items():
        for label, figures in result.get("per_label", {}).items():
            by_code = figures.get("by_code", {})
            rows.append({"label": label, "model": model, "SHAP sum, positive mentions": by_code.get("positive mention"),
                         "n positive": by_code.get("n positive"),
                         "SHAP sum, negated mentions": by_code.get("negated mention"),
                         "n negated": by_code.get("n negated"), "right sign": figures.get("sign_agrees"),
                         "right sign, random words": figures.get("random_sign_agrees")})
    return pd.DataFrame(rows)


def plot_checks(summary: dict, title: str = "Are the explanations right? (phantom ground truth)"):
    """One panel per check: each model's score beside its random baseline."""

    table = summary_table(summary)
    checks = list(dict.fromkeys(table["check"]))
    figure, axes = plt.subplots(1, len(checks), figsize=(2.6 * len(checks), 3.4), squeeze=False)
    for axis, check in zip(axes[0], checks, strict=True):
        rows = table[table["check"] == check]
        x = np.arange(len(rows))
        score = rows["score"].astype(float).to_numpy()
        baseline = rows["random baseline"].astype(float).to_numpy()
        axis.bar(x - 0.2, score, 0.4, label="explanation", color="#c0392b")
        axis.bar(x + 0.2, baseline, 0.4, label="random baseline", color="#95a5a6")
        axis.set_xticks(x, [f"{m}\nn={n}" for m, n in zip(rows["model"], rows["n"], strict=True)], fontsize=8)
        axis.set_title(CHECK_TITLES.get(check, check), fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
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
