"""The model randomisation test (Adebayo et al., 2018): an explanation that survives randomised weights explains nothing.

Randomise the trained weights from the top layer down and compare each explanation with the
trained model's by Spearman rank correlation; it should fall towards 0.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from cxr_helpers.explain.faithfulness.scores import rank_correlation
from cxr_helpers.explain.gradcam import FixedTextImageModel, cam_layer_for, cam_method_for, compute_cams
from cxr_helpers.explain.models import fusion_text_logit_fn, text_logit_fn
from cxr_helpers.explain.shap_text import explain_text
from cxr_helpers.labels import label_index


def cascading_stages(model: nn.Module) -> list[tuple[str, list[str]]]:
    """Steps of the cascading randomisation, top down: (step name, module names), the head(s) first.

    Every model gets the same steps after its head ("layer4" ... "conv1"), so curves line up.
    """
    resnet = ("layer4", "layer3", "layer2", "layer1", "conv1")
    if hasattr(model, "image_model"):  # fusion.FusionModel: its fusion layers, then the image encoder
        heads = [name for name in ("head", "text_head", "film4", "film3") if hasattr(model, name)]
        if getattr(model, "strategy", "concat") != "concat":
            heads.append("image_model.backbone.fc")  # decision and film use the image model's own head
        return [("head", heads)] + [(n, [f"image_model.backbone.{n}"]) for n in resnet]
    if hasattr(model, "backbone"):  # image_model.ImageClassifier
        return [("head", ["backbone.fc"])] + [(n, [f"backbone.{n}"]) for n in resnet]
    if hasattr(model, "mlp"):  # text.heads.TextHead
        return [("head", ["mlp.3", "mlp.0"])]
    if hasattr(getattr(model, "head", None), "mlp"):  # text.heads.TextClassifier: its head, then the encoder
        return [("head", ["head.mlp.3", "head.mlp.0"]), ("encoder", ["encoder"])]
    if getattr(getattr(model, "head", None), "reads_tokens", False):  # ... with a LabelAttentionHead
        return [("head", ["head"]), ("encoder", ["encoder"])]
    raise TypeError(f"no cascading stages known for {type(model).__name__}")


def head_stages(model: nn.Module) -> list[str]:
    """The modules after the encoders (the first cascading step): what SHAP's randomisation re-initialises."""
    return cascading_stages(model)[0][1]


def randomise_modules(model: nn.Module, names: Sequence[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with the named submodules re-initialised (their ``reset_parameters``).

    The fusion model's attached text tools (tokenizer, frozen encoder) and a text classifier's
    tokenizer are shared, not copied.
    """
    tools = [*getattr(model, "_text_tools", ()), getattr(model, "tokenizer", None)]
    memo = {id(tool): tool for tool in tools if tool is not None}
    copied = copy.deepcopy(model, memo)
    modules = dict(copied.named_modules())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in names:
            if name not in modules:
                raise KeyError(f"{type(model).__name__} has no submodule {name!r}")
            for module in modules[name].modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return copied.eval()


def _constant(array: np.ndarray) -> bool:
    return bool(np.ptp(np.asarray(array)) == 0)


def randomisation_checks(explainer, studies: Sequence[int], method: str = "auto", seed: int = 0,
                         progress: bool = False) -> pd.DataFrame:
    """Spearman correlation between each model's explanation and that of its randomised copy.

    Grad-CAM: cascading randomisation from the head down to conv1 (one row per step). SHAP: the
    layers after the encoders (the text head, or the fusion layers) randomised at once. A map
    that turns constant after randomisation counts as correlation 0 (it ranks nothing any more).
    Each map is computed with the label's method and on its layer (``explainer.cam_layer``), before
    and after.
    """


    records = []
    for study_id in tqdm(list(studies), desc="randomisation test", disable=not progress):
        for role in ("fusion", "image"):
            if not explainer.has(role):
                continue
            model = explainer.models.get(role)
            label = explainer.top_labels(study_id, role, 1)[0]
            how, name = cam_method_for(label, method), cam_layer_for(label, explainer.cam_layer)
            original = explainer.cams(study_id, [label], role, how, name)[label]
            image = explainer.image_tensor(study_id)
            stages = cascading_stages(model)
            for step in range(1, len(stages) + 1):
                randomised = randomise_modules(model, [m for _, names in stages[:step] for m in names], seed)
                if role == "fusion":
                    cam_model = FixedTextImageModel(randomised, explainer.text_embedding(study_id))
                    layer = randomised.cam_layer(name)
                else:
                    cam_model, layer = randomised, randomised.cam_layer(name)
                cam = compute_cams(cam_model, layer, image, [label_index(label)], how)[0]
                rho = 0.0 if _constant(cam) and not _constant(original) else rank_correlation(original, cam)
                records.append({"kind": "Grad-CAM", "model": role, "study_id": int(study_id), "label": label,
                                "step": step, "randomised_through": stages[step - 1][0], "spearman": rho})
        for role in ("fusion", "text"):
            if not explainer.has(role) or not explainer.text(study_id).strip():
                continue
            model = explainer.models.get(role)
            label = explainer.top_labels(study_id, role, 1)[0]
            original = explainer.shap_values(study_id, [label], role)[label].values
            stages = head_stages(model)
            randomised = randomise_modules(model, stages, seed)
            if role == "text":
                logit_fn = text_logit_fn(explainer.models, randomised, explainer.batch_size)
            else:
                logit_fn = fusion_text_logit_fn(randomised, explainer.image_tensor(study_id), explainer.batch_size)
            values = explain_text(logit_fn, explainer.text(study_id), [label], explainer.shap_max_evals)[label].values
            rho = 0.0 if _constant(values) and not _constant(original) else rank_correlation(original, values)
            records.append({"kind": "SHAP", "model": role, "study_id": int(study_id), "label": label, "step": 1,
                            "randomised_through": "head", "spearman": rho})
    return pd.DataFrame(records)
