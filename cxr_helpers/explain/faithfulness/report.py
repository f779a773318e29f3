"""All faithfulness checks, summarised into ``metrics/faithfulness.json`` and read back as tables.

``run_faithfulness`` runs, on the phantom: Grad-CAM on the probe set (the image model) and on the
first ``settings.explain_studies`` test studies (the image model and the fusion model; with
``settings.image_ensemble`` > 1 also the image ensemble, as model "image ensemble"), scored
only where the model detects the finding; SHAP on those studies' reports (the text model and the
fusion model); the randomisation test; and the resolution each CAM layer allows at best. Every
score sits beside its random baseline, per finding extent (localised / global) and per label.
The per-finding records go to ``explanations/faithfulness_records.csv`` (the browser's filters
read them).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.artifacts import write_csv, write_json
from cxr_helpers.explain.faithfulness.detection import DETECTION_DROP
from cxr_helpers.explain.faithfulness.image_checks import ROAD_LIMIT, probe_checks, study_checks
from cxr_helpers.explain.faithfulness.randomisation import randomisation_checks
from cxr_helpers.explain.faithfulness.resolution import layer_resolution
from cxr_helpers.explain.faithfulness.scores import POINTING_TOLERANCE, proportion_interval, tolerance_pixels
from cxr_helpers.explain.faithfulness.spans import TEXT_SECTIONS, finding_words
from cxr_helpers.explain.faithfulness.text_checks import shap_checks
from cxr_helpers.explain.gradcam import (
    AUTO,
    CAM_LAYER_FOR_EXTENT,
    CAM_METHOD_FOR_EXTENT,
    CAM_METHODS,
    check_cam_method,
)
from cxr_helpers.explain.models import SHAP_ROLES
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.explain.study_finder import ENSEMBLE_MODEL, RECORDS_FILE
from cxr_helpers.phantom.probes import ensure_probes
from cxr_helpers.phantom.truth import load_ground_truth, phantom_root

MAP_COLUMNS = ("hit", "hit_random", "tolerance_share", "hit_exact", "hit_exact_random", "area_share", "energy",
               "energy_random", "hit_baseline", "hit_exact_baseline", "road", "road_random")


@dataclass
class FaithfulnessResult:
    """What ``run_faithfulness`` measured: the JSON summary and the per-case records behind it."""

    summary: dict
    maps: pd.DataFrame  # Grad-CAM records: probes and test studies, every model
    top_k: dict[str, pd.DataFrame]  # role -> SHAP top-k records
    mentions: dict[str, pd.DataFrame]  # role -> SHAP mention records
    randomisation: pd.DataFrame
    path: Path | None = None


def mean(values) -> float | None:
    """The mean of the finite values, None if there are none."""
    array = pd.to_numeric(pd.Series(values), errors="coerce").astype(float).to_numpy()
    array = array[np.isfinite(array)]
    return float(array.mean()) if len(array) else None


def map_summary(records: pd.DataFrame) -> dict:
    """Detected counts and mean map scores over detected findings, per extent and per label.

    Beside the pointing game's hit rate: its 95% (Wilson) interval, and how many of the misses
    peak on another finding drawn on the same image (test studies only; probes hold one finding).
    The map minus the label's baseline is scored where the label has a baseline (``baseline_scored``
    of the detected findings: a label no training image lacks has none).
    """
    if records.empty:
        return {"findings": 0, "detected": 0, "overall": {}, "per_label": {}}

    def block(frame: pd.DataFrame) -> dict:
        detected = frame[frame["detected"].astype(bool)]
        misses = detected[detected["hit"] == 0]
        return {"findings": len(frame), "detected": len(detected), "drop": mean(frame["drop"]),
                **{c: mean(detected[c]) for c in MAP_COLUMNS if c in detected},
                "hit_interval": proportion_interval(int(detected["hit"].sum()), len(detected)),
                "hit_baseline_interval": _share_interval(detected.get("hit_baseline")),
                "baseline_scored": _scored(detected.get("hit_baseline")),  # labels with no negative image: none
                "misses": len(misses),
                "misses_on_other_finding": mean(misses["peak_on_other"]) if "peak_on_other" in misses else None}

    return {"findings": len(records), "detected": int(records["detected"].sum()),
            "overall": {extent: block(group) for extent, group in records.groupby("extent", sort=True)},
            "per_label": {label: {"extent": group["extent"].iloc[0], **block(group)}
                          for label, group in records.groupby("label", sort=True)}}


def _share_interval(outcomes) -> tuple[float, float] | None:
    """Wilson interval of a 0/1 column's share over its scored (non-NaN) rows; None when none was scored."""
    if outcomes is None:
        return None
    scored = pd.to_numeric(pd.Series(outcomes), errors="coerce").dropna()
    return proportion_interval(int(scored.sum()), len(scored))


def _scored(values) -> int:
    """How many of a column's values were scored (not NaN); 0 for a missing column."""
    return 0 if values is None else int(pd.to_numeric(pd.Series(values), errors="coerce").notna().sum())


def text_summary(records: pd.DataFrame, *columns: str, intervals: Sequence[str] = ()) -> dict:
    """Mean of each score and baseline column, overall and per label, with n; for the 0/1 outcome
    columns named in ``intervals``, also the share's 95% (Wilson) interval (``<column>_interval``)."""
    if records.empty:
        return {"overall": {"n": 0}, "per_label": {}}

    def block(frame: pd.DataFrame) -> dict:
        return {"n": len(frame), **{column: mean(frame[column]) for column in columns if column in frame},
                **{f"{column}_interval": _share_interval(frame[column])
                   for column in intervals if column in frame}}

    return {"overall": block(records),
            "per_label": {label: block(group) for label, group in records.groupby("label", sort=True)}}


def randomisation_summary(randomisation: pd.DataFrame) -> dict:
    """Mean Spearman correlation per model and randomisation step."""
    out = {}
    for (kind, role), group in (randomisation.groupby(["kind", "model"], sort=False) if not randomisation.empty else []):
        steps = group.groupby(["step", "randomised_through"], sort=True)["spearman"]
        out[f"{kind} {role}"] = [{"step": int(step), "randomised_through": through, "spearman": mean(values),
                                  "n": int(values.notna().sum())} for (step, through), values in steps]
    return out


def image_baselines(explainer: StudyExplainer, negatives: int, method: str = AUTO):
    """``label -> explainer.baseline_map(label, method, negatives=negatives)``: the image model's baseline
    maps, or None with no image model or ``negatives`` = 0.

    Only the image model's: the fusion model's map also depends on each study's report, so it has
    no single baseline per label.
    """
    if negatives <= 0 or not explainer.has("image"):
        return None
    return functools.partial(explainer.baseline_map, method=method, negatives=negatives)


def image_model_checks(explainer: StudyExplainer, truth, studies: Sequence[int], probe_set, negatives: int,
                       method: str = AUTO, progress: bool = False, road_limit: int = ROAD_LIMIT,
                       model_name: str = "image") -> list[pd.DataFrame]:
    """The explainer's image model's checks: on the test studies and (given a ``probe_set``) the probes,
    each detected map also minus its label's baseline over ``negatives`` images (``image_baselines``).

    For the image ensemble, pass ``explainer.with_image_model(ensemble)`` and ``model_name=ENSEMBLE_MODEL``
    (the records' model, and the progress bars' name): detection by its mean logit, maps the mean of
    its members' maps, baselines its own.
    """
    baselines = image_baselines(explainer, negatives, method)
    parts = [study_checks(explainer, truth, studies, "image", method, explainer.cam_layer, progress, baselines,
                          road_limit, model_name)]
    if probe_set is not None:
        parts.append(probe_checks(explainer.models.get("image"), probe_set, int(explainer.images.shape[-1]), method,
                                  explainer.cam_layer, progress, baselines, model_name=model_name))
    return parts


def training_finding_words(explainer: StudyExplainer, truth) -> dict[str, frozenset[str]]:
    """``spans.finding_words`` of the training split's reports, in the sections the text models read."""
    reports = ((Path(explainer.row(study_id)["report_path"]).read_text(encoding="utf-8"), truth.study_spans(study_id))
               for study_id in explainer.study_ids("train"))
    return finding_words(reports, TEXT_SECTIONS[explainer.text_setting])


def run_faithfulness(settings, explainer: StudyExplainer | None = None, studies: Sequence[int] | None = None,
                     probes: bool = True, randomisation_studies: int | None = None, write: bool = True,
                     progress: bool = True) -> FaithfulnessResult:
    """Every check on the phantom; writes metrics/faithfulness.json and explanations/faithfulness_records.csv."""
    truth = load_ground_truth(phantom_root(settings))
    explainer = explainer or StudyExplainer.from_settings(settings)
    studies = list(studies) if studies is not None else explainer.study_ids("test")[: settings.explain_studies]
    size, method = int(explainer.images.shape[-1]), check_cam_method(explainer.cam_method)
    probe_set = ensure_probes(phantom_root(settings), per_label=settings.probes_per_label) if probes else None
    parts = []
    if explainer.has("fusion"):  # no baseline maps: its map also depends on each study's report
        parts.append(study_checks(explainer, truth, studies, "fusion", method, explainer.cam_layer, progress))
    if explainer.has("image"):
        parts += image_model_checks(explainer, truth, studies, probe_set, settings.cam_baseline_negatives, method,
                                    progress)
    if explainer.models.image_ensemble is not None:
        ensemble = explainer.with_image_model(explainer.models.image_ensemble)
        parts += image_model_checks(ensemble, truth, studies, probe_set, settings.cam_baseline_negatives, method,
                                    progress, model_name=ENSEMBLE_MODEL)
    maps = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    top_k, mentions = {}, {}
    own_words = training_finding_words(explainer, truth)
    for role in (r for r in SHAP_ROLES if explainer.has(r)):
        top_k[role], mentions[role] = shap_checks(explainer, truth, studies, role, settings.top_k_labels,
                                                  progress=progress, own_words=own_words)
    if randomisation_studies is None:
        randomisation_studies = 1 if settings.fast else 3
    randomisation = randomisation_checks(explainer, studies[:randomisation_studies], method, progress=progress)
    summary = {
        "phantom": str(truth.root.parent), "studies": [int(s) for s in studies], "n_studies": len(studies),
        "probes": 0 if probe_set is None else len(probe_set.table),
        "cam_method": dict(CAM_METHOD_FOR_EXTENT) if method == AUTO else method,
        "cam_layers": dict(CAM_LAYER_FOR_EXTENT) if explainer.cam_layer == "auto" else explainer.cam_layer,
        "image_size": size, "tolerance_share": POINTING_TOLERANCE, "tolerance_px": tolerance_pixels(size),
        "detection_drop": DETECTION_DROP, "baseline_negatives": int(settings.cam_baseline_negatives),
        "shap_max_evals": int(explainer.shap_max_evals),
        "top_k_words": int(settings.top_k_labels), "models": dict(explainer.models.names),
        "grad_cam": {source: {role: map_summary(group) for role, group in frame.groupby("model", sort=False)}
                     for source, frame in (maps.groupby("source", sort=False) if not maps.empty else [])},
        "shap_top_k": {role: text_summary(records, "hit", "hit_random", "hit_sentence", "hit_sentence_random",
                                          "hit_own", "hit_own_random", intervals=("hit", "hit_sentence", "hit_own"))
                       for role, records in top_k.items()},
        "finding_words": {label: sorted(words) for label, words in own_words.items()},
        "negation": {role: text_summary(records, "sign_agrees", "random_sign_agrees", intervals=("sign_agrees",))
                     for role, records in mentions.items()},
        "randomisation": randomisation_summary(randomisation),
        "resolution": layer_resolution(probe_set, size) if probe_set is not None else {},
    }
    path = None
    if write:
        path = write_json(Path(settings.artifacts_dir) / "metrics" / "faithfulness.json", summary)
        write_csv(Path(settings.artifacts_dir) / "explanations" / RECORDS_FILE, maps)
    return FaithfulnessResult(summary, maps, top_k, mentions, randomisation, path)


def grad_cam_table(summary: dict) -> pd.DataFrame:
    """One row per (source, model, extent): findings, detected, pointing game vs random map and random peak."""
    rows = []
    for source, models in summary.get("grad_cam", {}).items():
        for model, result in models.items():
            for extent, figures in result.get("overall", {}).items():
                rows.append({"source": source, "model": model, "extent": extent,
                             "method": _per_extent(summary, "cam_method", extent),
                             "layer": _per_extent(summary, "cam_layers", extent), **{k: figures.get(k) for k in (
                                 "findings", "detected", "hit", "hit_interval", "hit_random", "tolerance_share",
                                 "hit_baseline", "hit_baseline_interval", "baseline_scored", "hit_exact",
                                 "hit_exact_random", "area_share", "energy", "energy_random", "road", "road_random",
                                 "misses", "misses_on_other_finding")}})
                for key in ("hit_interval", "hit_baseline_interval"):
                    rows[-1][key] = _rounded(rows[-1][key])
    return pd.DataFrame(rows)


def _rounded(interval) -> tuple[float, float] | None:
    """An interval's bounds to 3 decimals, for display (None stays None)."""
    return None if interval is None else tuple(round(float(v), 3) for v in interval)


def _per_extent(summary: dict, key: str, extent: str) -> str:
    """The CAM method or layer (``key``) used for findings of this extent: one for all, or one per extent."""
    chosen = summary.get(key)
    return chosen.get(extent, "") if isinstance(chosen, dict) else str(chosen)


def grad_cam_per_label(summary: dict, source: str = "probes", model: str = "image") -> pd.DataFrame:
    """Per label: findings, detected and the pointing game (tolerance) against its baselines."""
    result = summary.get("grad_cam", {}).get(source, {}).get(model, {})
    rows = [{"label": label, **{k: figures.get(k) for k in ("extent", "findings", "detected", "drop", "hit",
                                                             "hit_random", "tolerance_share", "hit_baseline",
                                                             "hit_exact")}}
            for label, figures in result.get("per_label", {}).items()]
    return pd.DataFrame(rows).set_index("label") if rows else pd.DataFrame()


def shap_table(summary: dict) -> pd.DataFrame:
    """One row per model: top-k hits in the span and in its sentence, negation sign agreement, each beside random."""
    rows = []
    for model in sorted(set(summary.get("shap_top_k", {})) | set(summary.get("negation", {}))):
        top_k = summary.get("shap_top_k", {}).get(model, {}).get("overall", {})
        negation = summary.get("negation", {}).get(model, {}).get("overall", {})
        rows.append({"model": model, "top-k in span": top_k.get("hit"), "95% interval": _rounded(top_k.get("hit_interval")),
                     "random ranking": top_k.get("hit_random"), "top-k in its sentence": top_k.get("hit_sentence"),
                     "random (sentence)": top_k.get("hit_sentence_random"),
                     "top-k in span or own words": top_k.get("hit_own"),
                     "random (own words)": top_k.get("hit_own_random"), "n stated": top_k.get("n", 0),
                     "negation sign": negation.get("sign_agrees"),
                     "95% interval (sign)": _rounded(negation.get("sign_agrees_interval")),
                     "random words": negation.get("random_sign_agrees"), "n mentions": negation.get("n", 0)})
    return pd.DataFrame(rows)


def resolution_table(summary: dict) -> pd.DataFrame:
    """What each CAM layer can resolve at best (an ideal map at its grid) on the probes, per extent."""
    rows = [{"layer": layer, "grid": f"{by_extent['grid']} x {by_extent['grid']}", "extent": extent,
             "ideal pointing (tolerance)": figures["hit"], "ideal pointing (exact)": figures["hit_exact"],
             "n": figures["n"]}
            for layer, by_extent in summary.get("resolution", {}).items()
            for extent, figures in by_extent.items() if extent != "grid"]
    return pd.DataFrame(rows)


def summary_table(summary: dict) -> pd.DataFrame:
    """Every check in one table: what was checked, on what, the score beside its random baseline, and n."""
    rows = []
    for row in grad_cam_table(summary).to_dict("records"):
        check = f"{CAM_METHODS.get(row['method'], row['method'])} pointing game ({row['extent']}, {row['layer']})"
        rows.append({"check": check, "on": row["source"], "model": row["model"], "score": row["hit"],
                     "random": row["tolerance_share"], "n": row["detected"]})
        if pd.notna(row.get("hit_baseline")):
            rows.append({"check": f"{check}, map minus the label's baseline", "on": row["source"],
                         "model": row["model"], "score": row["hit_baseline"], "random": row["tolerance_share"],
                         "n": row["baseline_scored"]})  # detected findings whose label has a baseline
    for row in shap_table(summary).to_dict("records"):
        rows.append({"check": "SHAP top-k word in the stating span", "on": "test", "model": row["model"],
                     "score": row["top-k in span"], "random": row["random ranking"], "n": row["n stated"]})
        rows.append({"check": "SHAP top-k word in the span's sentence", "on": "test", "model": row["model"],
                     "score": row["top-k in its sentence"], "random": row["random (sentence)"], "n": row["n stated"]})
        if pd.notna(row["top-k in span or own words"]):
            rows.append({"check": "SHAP top-k word in the span or the finding's own words", "on": "test",
                         "model": row["model"], "score": row["top-k in span or own words"],
                         "random": row["random (own words)"], "n": row["n stated"]})
        rows.append({"check": "SHAP sign follows negation", "on": "test", "model": row["model"],
                     "score": row["negation sign"], "random": row["random words"], "n": row["n mentions"]})
    for name, steps in summary.get("randomisation", {}).items():
        if steps:  # the last step randomises the whole model: a faithful explanation no longer resembles itself
            rows.append({"check": f"randomisation: Spearman after {steps[-1]['randomised_through']}", "on": "test",
                         "model": name, "score": steps[-1]["spearman"], "random": None, "n": steps[-1]["n"]})
    return pd.DataFrame(rows, columns=["check", "on", "model", "score", "random", "n"])
