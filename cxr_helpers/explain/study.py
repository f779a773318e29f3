"""``StudyExplainer``: predictions, Grad-CAMs, SHAP values and modality reliance per study, cached."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxr_helpers.explain.cache import ExplanationCache
from cxr_helpers.explain.gradcam import (
    FixedTextImageModel,
    cam_layer_for,
    cam_method_for,
    cams_for_labels,
    check_cam_method,
    label_baselines,
)
from cxr_helpers.explain.models import (
    CAM_ROLES,
    MODEL_ROLES,
    SHAP_ROLES,
    LoadedModels,
    fusion_text_logit_fn,
    load_models,
    text_logit_fn,
)
from cxr_helpers.explain.shap_text import TextExplanation, explain_text
from cxr_helpers.fusion.ablation import study_reliance
from cxr_helpers.labels import CHEXPERT_LABELS, label_index
from cxr_helpers.prepare import load_cohort, open_image_cache


class UnknownStudyError(LookupError):
    """A study id that is not in the cohort (the message says where to find valid ones)."""


def check_study_id(cohort, study_id: int) -> int:
    """``study_id`` as int if the cohort has it, else UnknownStudyError saying where valid ids are."""
    known = set(int(s) for s in cohort["study_id"].unique())
    if int(study_id) not in known:
        test = cohort.loc[cohort["split"] == "test", "study_id"].drop_duplicates().head(5).tolist()
        raise UnknownStudyError(
            f"study {study_id} is not in the cohort (cohort.csv). Valid ids: the study_id column of "
            f"cohort.csv (split == 'test' for held-out studies) or of predictions/<model>_test.csv, "
            f"or StudyExplainer.study_ids('test'); for example {', '.join(str(s) for s in test)}"
        )
    return int(study_id)


class StudyExplainer:
    """Predictions, Grad-CAMs, SHAP values and modality reliance per study, cached.

    ``images`` is the uint8 cache (N, S, S) that the cohort's ``cache_index`` points into; the
    text a model reads is the cohort's cleaned ``text_<text_setting>``. Build it from an
    artifacts folder with ``StudyExplainer.from_settings(settings)``.
    """

    def __init__(self, cohort, images: np.ndarray, models: LoadedModels, text_setting: str = "findings_impression",
                 cache: ExplanationCache | None = None, max_length: int = 256, pooling: str = "cls",
                 batch_size: int = 32, shap_max_evals: int = 300, top_k: int = 3, cam_method: str = "gradcam",
                 cam_layer: str = "auto", baseline_negatives: int = 40):
        self.cohort = cohort
        self.images = images
        self.models = models
        self.text_setting = text_setting
        self.cache = cache if cache is not None else ExplanationCache()
        self.max_length, self.pooling, self.batch_size = max_length, pooling, batch_size
        self.shap_max_evals, self.top_k, self.cam_method, self.cam_layer = shap_max_evals, top_k, cam_method, cam_layer
        self.baseline_negatives = baseline_negatives
        self._baselines: dict[tuple[str, str, int], Callable[[str], np.ndarray | None]] = {}
        lateral = (~cohort["view_position"].isin(["PA", "AP"])).astype(int) if "view_position" in cohort else 0
        first = cohort.assign(_lateral=lateral).sort_values("_lateral", kind="stable").drop_duplicates("study_id")
        self._rows = {int(s): i for s, i in zip(first["study_id"], first.index, strict=True)}  # frontal view first
        self._logits: dict[tuple[int, str], np.ndarray] = {}

    @classmethod
    def from_settings(cls, settings, roles: Sequence[str] = MODEL_ROLES, fusion_name: str | None = None,
                      cache: bool = True) -> StudyExplainer:
        """Load the cohort, the image cache and the trained models of ``roles`` from the artifacts folder."""
        cohort = load_cohort(settings.artifacts_dir)
        images = open_image_cache(settings.artifacts_dir, settings.image_size)
        models = load_models(settings, roles, fusion_name)
        root = Path(settings.artifacts_dir) / "explanations" if cache else None
        return cls(cohort, images, models, text_setting=models.text_setting, cache=ExplanationCache(root),
                   max_length=models.text_max_length, pooling=models.text_pooling, batch_size=settings.batch_size,
                   shap_max_evals=settings.shap_max_evals, top_k=settings.top_k_labels,
                   cam_method=settings.cam_method, cam_layer=settings.cam_layer,
                   baseline_negatives=settings.cam_baseline_negatives)

    def with_image_model(self, model: nn.Module) -> StudyExplainer:
        """A copy that explains ``model`` (an ``ImageEnsemble``, say) as its image model, with its own
        in-memory caches (this explainer's disk cache holds the other model's maps)."""
        models = dataclasses.replace(self.models, image=model, image_ensemble=None)
        return StudyExplainer(self.cohort, self.images, models, text_setting=self.text_setting, cache=ExplanationCache(),
                              max_length=self.max_length, pooling=self.pooling, batch_size=self.batch_size,
                              shap_max_evals=self.shap_max_evals, top_k=self.top_k, cam_method=self.cam_method,
                              cam_layer=self.cam_layer, baseline_negatives=self.baseline_negatives)

    # -- studies
    def example_study(self, split: str = "test", role: str = "fusion", search: int = 50) -> int:
        """A study worth showing first: among the first ``search`` studies with a positive finding (not
        No Finding) and report text, one whose top predicted label is such a finding; else the first."""
        table = self.cohort.drop_duplicates("study_id")
        table = table[table["split"] == split] if (table["split"] == split).any() else table
        findings = [name for name in CHEXPERT_LABELS if name != "No Finding"]
        chosen = table[(table[findings] == 1).any(axis=1) & (table[f"text_{self.text_setting}"].str.strip() != "")]
        candidates = [int(s) for s in (chosen if len(chosen) else table)["study_id"]]
        if self.has(role):
            for study_id in candidates[:search]:
                top = self.top_labels(study_id, role, 1)[0]
                if top != "No Finding" and self.coded_labels(study_id)[top] == 1:
                    return study_id
        return candidates[0]

    def study_ids(self, split: str | None = "test") -> list[int]:
        """Study ids of a split (all studies with ``split=None``), in cohort order."""
        table = self.cohort.drop_duplicates("study_id")
        if split is not None:
            table = table[table["split"] == split]
        return [int(s) for s in table["study_id"]]

    def row(self, study_id: int):
        """The cohort row of a study (its first frontal image); UnknownStudyError for ids not in the cohort."""
        if int(study_id) not in self._rows:
            check_study_id(self.cohort, study_id)
        return self.cohort.loc[self._rows[int(study_id)]]

    def image(self, study_id: int) -> np.ndarray:
        """The study's image from the cache, float32 (S, S) in [0, 1]."""
        return np.asarray(self.images[int(self.row(study_id)["cache_index"])], dtype=np.float32) / 255.0

    def image_tensor(self, study_id: int) -> torch.Tensor:
        """The study's image as the models take it: (1, 1, S, S)."""
        return torch.from_numpy(self.image(study_id))[None, None]

    def text(self, study_id: int) -> str:
        """The cleaned report text the text models read."""
        return str(self.row(study_id)[f"text_{self.text_setting}"])

    def coded_labels(self, study_id: int) -> dict[str, int]:
        """The study's 14 labels as coded in the cohort (1/0/-1/-2)."""
        row = self.row(study_id)
        return {name: int(row[name]) for name in CHEXPERT_LABELS}

    def label_negatives(self, label: str, n: int, split: str = "train") -> list[np.ndarray]:
        """The images (S, S) of the first ``n`` studies of ``split`` whose report labels call ``label``
        negative or leave it unmentioned (coded 0 or blank): the label's normal chests, by the labels
        alone, as ``gradcam.label_baseline_map`` takes them. No truth needed: this works on real data."""
        label_index(label)  # a clear error for an unknown label
        chosen = [s for s in self.study_ids(split) if int(self.row(s)[label]) not in (1, -1)][: max(int(n), 0)]
        return [self.image(s) for s in chosen]

    def baseline_map(self, label: str, method: str | None = None, layer: str | None = None,
                     negatives: int | None = None) -> np.ndarray | None:
        """The image model's baseline map of ``label`` (S, S): its mean map over ``label_negatives``
        (``negatives``, default ``baseline_negatives``; ``gradcam.label_baseline_map``), with the method and
        on the layer ``cams`` would use; computed once per label, method and layer, in memory. None when
        no study of the training split lacks the label."""
        negatives = self.baseline_negatives if negatives is None else int(negatives)
        key = (check_cam_method(method or self.cam_method), layer or self.cam_layer, negatives)
        if key not in self._baselines:
            self._baselines[key] = label_baselines(self.models.get("image"),
                                                   lambda name: self.label_negatives(name, negatives), *key[:2])
        return self._baselines[key](label)

    # -- predictions
    def _device(self, role: str) -> torch.device:
        return next(self.models.get(role).parameters()).device

    def text_embedding(self, study_id: int | None = None, text: str | None = None) -> torch.Tensor:
        """The fusion model's report embedding (1, H) of a study (or of ``text``)."""
        text = self.text(study_id) if text is None else text
        with torch.no_grad():
            return self.models.get("fusion").embed_texts([text], batch_size=1)

    def text_logit_fn(self, study_id: int, role: str = "fusion") -> Callable[[Sequence[str]], np.ndarray]:
        """texts -> logits (N, 14): what SHAP explains (for fusion, with the study's image held fixed)."""
        if role not in SHAP_ROLES:
            raise ValueError(f"SHAP explains report text: role must be one of {SHAP_ROLES}, got {role!r}")
        if role == "text":
            return text_logit_fn(self.models, batch_size=self.batch_size)
        return fusion_text_logit_fn(self.models.get("fusion"), self.image_tensor(study_id), self.batch_size)

    def cam_model(self, study_id: int, role: str = "fusion", layer: str = "layer4") -> tuple[nn.Module, nn.Module]:
        """(module image -> logits, target layer) for Grad-CAM; the fusion model gets the report held fixed."""
        if role not in CAM_ROLES:
            raise ValueError(f"Grad-CAM explains images: role must be one of {CAM_ROLES}, got {role!r}")
        model = self.models.get(role)
        if role == "image":
            return model, model.cam_layer(layer)
        return FixedTextImageModel(model, self.text_embedding(study_id)), model.cam_layer(layer)

    def logits(self, study_id: int, role: str = "fusion") -> np.ndarray:
        """The model's logits (14,) for the study (memoised)."""
        key = (int(study_id), role)
        if key not in self._logits:
            model = self.models.get(role)
            model.eval()
            with torch.no_grad():
                if role == "text":
                    out = self.text_logit_fn(study_id, "text")([self.text(study_id)])[0]
                elif role == "image":
                    out = model(self.image_tensor(study_id).to(self._device(role)))[0].float().cpu().numpy()
                else:
                    image = self.image_tensor(study_id).to(self._device(role))
                    out = model.forward_features(image, self.text_embedding(study_id))[0].float().cpu().numpy()
            self._logits[key] = np.asarray(out, dtype=np.float32)
        return self._logits[key]

    def logits_many(self, study_ids: Sequence[int], role: str = "fusion") -> np.ndarray:
        """Logits (N, 14) of many studies, computed in batches for those not yet memoised (then memoised)."""
        missing = [int(s) for s in dict.fromkeys(study_ids) if (int(s), role) not in self._logits]
        model = self.models.get(role)
        model.eval()
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            with torch.no_grad():
                if role == "text":
                    out = self.text_logit_fn(chunk[0], "text")([self.text(s) for s in chunk])
                else:
                    images = torch.cat([self.image_tensor(s) for s in chunk]).to(self._device(role))  # (B, 1, S, S)
                    if role == "image":
                        out = model(images).float().cpu().numpy()
                    else:
                        texts = model.embed_texts([self.text(s) for s in chunk], batch_size=len(chunk))
                        out = model.forward_features(images, texts).float().cpu().numpy()
            for study_id, logits in zip(chunk, np.asarray(out, dtype=np.float32), strict=True):
                self._logits[(study_id, role)] = logits
        return np.stack([self._logits[(int(s), role)] for s in study_ids]) if len(study_ids) else np.zeros((0, 14))

    def probabilities(self, study_id: int, role: str = "fusion") -> np.ndarray:
        """Predicted probabilities (14,)."""
        return 1.0 / (1.0 + np.exp(-self.logits(study_id, role).astype(np.float64)))

    def top_labels(self, study_id: int, role: str = "fusion", k: int | None = None) -> list[str]:
        """The k labels with the highest predicted probability (the paper's top-3)."""
        order = np.argsort(-self.logits(study_id, role), kind="stable")[: k or self.top_k]
        return [CHEXPERT_LABELS[i] for i in order]

    def prediction_table(self, study_id: int, roles: Sequence[str] | None = None):
        """Probabilities per label for each loaded model beside the cohort's coded labels (a DataFrame)."""
        roles = [r for r in (roles or MODEL_ROLES) if self.has(r)]
        table = pd.DataFrame({"label": list(CHEXPERT_LABELS), "coded label": list(self.coded_labels(study_id).values())})
        for role in roles:
            table[f"p({role})"] = self.probabilities(study_id, role)
        return table

    def has(self, role: str) -> bool:
        """Whether a model for ``role`` is loaded."""
        return {"fusion": self.models.fusion, "image": self.models.image, "text": self.models.text}[role] is not None

    # -- explanations
    def cams(self, study_id: int, labels: Sequence[str] | None = None, role: str = "fusion",
             method: str | None = None, layer: str | None = None) -> dict[str, np.ndarray]:
        """{label: CAM (S, S) in [0, 1]} for the study (default: its top-3 labels), cached.

        ``method`` and ``layer``: a CAM method and a ResNet stage, or "auto" (the default
        ``cam_method`` and ``cam_layer`` settings): each label with the method and on the layer that
        suit its extent (``gradcam.cam_method_for``, ``gradcam.cam_layer_for``).
        """
        method = check_cam_method(method or self.cam_method)  # validated before anything is computed
        labels = list(labels) if labels is not None else self.top_labels(study_id, role)
        groups: dict[tuple[str, str], list[str]] = {}
        for label in labels:
            chosen = (cam_method_for(label, method), cam_layer_for(label, layer or self.cam_layer))
            groups.setdefault(chosen, []).append(label)
        found = {}
        for (how, name), group in groups.items():

            def compute(missing: list[str], how=how, name=name) -> dict[str, np.ndarray]:
                model, target = self.cam_model(study_id, role, name)
                return cams_for_labels(model, target, self.image(study_id), missing, how)

            found.update(self.cache.get_many("cam", self.models.names.get(role, role), study_id, group,
                                             f"{how}@{name}", self.models.fingerprints.get(role, ""), compute))
        return {label: found[label] for label in labels}

    def shap_values(self, study_id: int, labels: Sequence[str] | None = None, role: str = "fusion",
                    max_evals: int | None = None) -> dict[str, TextExplanation]:
        """{label: TextExplanation} for the study's report (default: its top-3 labels), cached."""
        max_evals = int(max_evals or self.shap_max_evals)
        labels = list(labels) if labels is not None else self.top_labels(study_id, role)

        def compute(missing: list[str]) -> dict[str, TextExplanation]:
            return explain_text(self.text_logit_fn(study_id, role), self.text(study_id), missing, max_evals,
                                batch_size=max(self.batch_size, 32))

        return self.cache.get_many("shap", self.models.names.get(role, role), study_id, labels,
                                   f"partition{max_evals}", self.models.fingerprints.get(role, ""), compute)

    # -- modality reliance
    def modality_reliance(self, study_id: int, labels: Sequence[str] | None = None) -> pd.DataFrame:
        """How far the fusion model's probabilities move without the report or the image (``fusion.ablation``).

        One row per label (default: the top-3): p with both, without the report, without the image,
        and the two shifts; the modalities are removed as in notebook 04's ablation.
        """
        labels = list(labels) if labels is not None else self.top_labels(study_id, "fusion")
        image = self.image_tensor(study_id).to(self._device("fusion"))
        return study_reliance(self.models.get("fusion"), image, self.text_embedding(study_id), labels)
