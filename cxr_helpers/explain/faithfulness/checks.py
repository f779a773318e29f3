"""The checks that run the models: Grad-CAM against finding masks, SHAP against stating words, per study.

Each returns one record per (study, label) with the explanation's score and its random
baseline's; ``report`` summarises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from tqdm.auto import tqdm

from cxr_helpers.explain.faithfulness.scores import (
    energy_inside_mask,
    mask_area_share,
    mask_auroc,
    pointing_game_hit,
    random_top_k_hit,
    top_k_hit,
)
from cxr_helpers.explain.faithfulness.spans import TEXT_SECTIONS, span_word_indices
from cxr_helpers.explain.faithfulness.truth import GroundTruth
from cxr_helpers.explain.gradcam import RANDOM_CAM
from cxr_helpers.labels import CHEXPERT_LABELS, label_index

ROAD_PERCENTILES = (30, 70)
ROAD_LIMIT = 20  # findings per model scored by ROAD (its imputation dominates the checks' time on a CPU)


def visible_findings(explainer, truth: GroundTruth, studies: Sequence[int], role: str = "fusion") -> pd.DataFrame:
    """Truly present findings with a visible, non-empty mask on each study's image (one row each)."""
    size = int(explainer.images.shape[-1])
    rows = []
    for study_id in studies:
        dicom_id = str(explainer.row(study_id)["dicom_id"])
        probabilities = explainer.probabilities(study_id, role)
        for label in CHEXPERT_LABELS:
            visibility = truth.image_visibility(dicom_id, label)
            if not truth.present(study_id, label) or visibility in (None, "invisible"):
                continue
            if truth.mask(dicom_id, label, size) is None:
                continue
            p = float(probabilities[label_index(label)])
            rows.append({"study_id": int(study_id), "dicom_id": dicom_id, "label": label, "visibility": visibility,
                         "probability": p, "correct": p >= 0.5})
    return pd.DataFrame(rows, columns=["study_id", "dicom_id", "label", "visibility", "probability", "correct"])


def road_scores(model: nn.Module, image: np.ndarray, cams: Sequence[np.ndarray], labels: Sequence[str],
                percentiles: Sequence[int] = ROAD_PERCENTILES, seed: int = 0) -> np.ndarray:
    """ROADCombined per label (K,): (logit drop removing the least relevant - removing the most relevant) / 2.

    Higher is better: imputing the map's top pixels away should hurt the label's logit more than
    imputing its bottom pixels. The imputation noise is seeded.
    """

    batch = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None].repeat(len(labels), 1, 1, 1)  # (K, 1, S, S)
    batch = batch.to(next(model.parameters()).device)
    targets = [ClassifierOutputTarget(label_index(name)) for name in labels]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        scores = ROADCombined(percentiles=list(percentiles))(batch, np.stack(cams), targets, model.eval())
    return np.asarray(scores, dtype=np.float64).reshape(len(labels))


def cam_checks(explainer, truth: GroundTruth, studies: Sequence[int], role: str = "fusion", method: str = "gradcam",
               road_percentiles: Sequence[int] | None = ROAD_PERCENTILES, progress: bool = False,
               road_limit: int | None = ROAD_LIMIT) -> pd.DataFrame:
    """Pointing game, energy inside the mask, mask AUROC and ROAD for each visible present finding,
    for ``method`` and for RandomCAM on the same image (one row per study and label).

    ROAD is scored on the first ``road_limit`` findings only (NaN after; None = all).
    """


    cases = visible_findings(explainer, truth, studies, role)
    size = int(explainer.images.shape[-1])
    records = []
    groups = list(cases.groupby("study_id", sort=False))
    for study_id, group in tqdm(groups, desc=f"Grad-CAM checks ({role})", disable=not progress):
        labels = group["label"].tolist()
        cams = explainer.cams(study_id, labels, role, method)
        randoms = explainer.cams(study_id, labels, role, RANDOM_CAM)
        road = road_random = [np.nan] * len(labels)
        if road_percentiles and (road_limit is None or len(records) < road_limit):
            model, _ = explainer.cam_model(study_id, role)
            image = explainer.image(study_id)
            road = road_scores(model, image, [cams[label] for label in labels], labels, road_percentiles)
            road_random = road_scores(model, image, [randoms[label] for label in labels], labels, road_percentiles)
        for i, case in enumerate(group.itertuples(index=False)):
            mask = truth.mask(case.dicom_id, case.label, size)
            cam, random_cam = cams[case.label], randoms[case.label]
            records.append({
                **case._asdict(), "model": role,
                "pointing": float(pointing_game_hit(cam, mask)),
                "pointing_random_cam": float(pointing_game_hit(random_cam, mask)),
                "area_share": mask_area_share(mask),
                "energy": energy_inside_mask(cam, mask), "energy_random_cam": energy_inside_mask(random_cam, mask),
                "auroc": mask_auroc(cam, mask), "auroc_random_cam": mask_auroc(random_cam, mask),
                "road": float(road[i]), "road_random_cam": float(road_random[i]),
            })
    return pd.DataFrame(records)


def _labels_with_code(spans: Sequence[dict], code: int) -> list[str]:
    return list(dict.fromkeys(span["label"] for span in spans if int(span["code"]) == code))


def shap_checks(explainer, truth: GroundTruth, studies: Sequence[int], role: str = "fusion", k: int = 3,
                max_labels: int = 4, seed: int = 0, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(top-k records, mention records) for the SHAP values of ``role`` on each study's report.

    Labels explained per study: those the report states positively (top-k check and positive
    mentions), then those it negates (negation check), at most ``max_labels``.
    """
    sections = TEXT_SECTIONS[explainer.text_setting]
    rng = np.random.default_rng(seed)
    top_k, mentions, skipped = [], [], 0
    for study_id in tqdm(list(studies), desc=f"SHAP checks ({role})", disable=not progress):
        cleaned = explainer.text(study_id)
        spans = [s for s in truth.study_spans(study_id) if s.get("section") in sections]
        positives, negated = _labels_with_code(spans, 1), _labels_with_code(spans, 0)
        labels = (positives + [name for name in negated if name not in positives])[:max_labels]
        if not cleaned.strip() or not labels:
            continue
        report = Path(explainer.row(study_id)["report_path"]).read_text(encoding="utf-8")
        explanations = explainer.shap_values(study_id, labels, role)
        probabilities = explainer.probabilities(study_id, role)
        for label in labels:
            values = explanations[label].values
            n_words = len(values)
            if n_words != len(cleaned.split()):
                skipped += 1
                continue
            p = float(probabilities[label_index(label)])
            if label in positives:
                relevant = span_word_indices(report, cleaned, spans, label, (1,), sections)
                if relevant:
                    top_k.append({"study_id": int(study_id), "label": label, "model": role, "probability": p,
                                  "correct": p >= 0.5, "truly_present": truth.present(study_id, label),
                                  "hit": float(top_k_hit(values, relevant, k)),
                                  "hit_random": random_top_k_hit(n_words, len(relevant), k),
                                  "n_words": n_words, "n_relevant": len(relevant)})
            for code, expected in ((1, 1.0), (0, -1.0)):
                mention = span_word_indices(report, cleaned, spans, label, (code,), sections, with_negation_cue=True)
                if not mention:
                    continue
                value = float(values[sorted(mention)].sum())
                random_value = float(values[rng.choice(n_words, size=len(mention), replace=False)].sum())
                mentions.append({"study_id": int(study_id), "label": label, "model": role, "code": code,
                                 "mention": " ".join(cleaned.split()[i] for i in sorted(mention)),
                                 "mention_value": value, "random_value": random_value,
                                 "sign_agrees": float(np.sign(value) == expected),
                                 "random_sign_agrees": float(np.sign(random_value) == expected)})
    if skipped:
        print(f"SHAP checks ({role}): {skipped} explanations skipped (their words did not match the cleaned text)")
    return pd.DataFrame(top_k), pd.DataFrame(mentions)
