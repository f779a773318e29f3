"""One study's explanations to files: the Grad-CAM PNG and the SHAP HTML page (``python -m cxr_helpers explain``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from cxr_helpers.artifacts import write_text
from cxr_helpers.explain.cache import label_slug
from cxr_helpers.explain.figures import cam_figure
from cxr_helpers.explain.gradcam import CAM_METHODS
from cxr_helpers.explain.models import CAM_ROLES, SHAP_ROLES
from cxr_helpers.explain.shap_text import shap_html_page
from cxr_helpers.explain.study import StudyExplainer, check_study_id
from cxr_helpers.labels import label_index
from cxr_helpers.prepare import load_cohort


def _roles_for(model_name: str | None) -> tuple[tuple[str, ...], str | None]:
    """(roles to load, fusion checkpoint name) for explain_study_to_files' ``model_name``."""
    if model_name in (None, "fusion"):
        return ("fusion",), None
    if model_name.startswith("fusion_"):
        return ("fusion",), model_name
    if model_name in ("image", "text"):
        return (model_name,), None
    raise ValueError(f"model_name must be 'fusion', a fusion checkpoint name (fusion_<strategy>_<setting>...), "
                     f"'image' or 'text'; got {model_name!r}")


def explain_study_to_files(settings, study_id: int, out_dir: Path | None = None,
                           model_name: str | None = None) -> list[Path]:
    """Write one study's Grad-CAM PNG (X-ray + top-3 overlays with probabilities) and SHAP HTML.

    ``model_name``: None or "fusion" (the default fusion model), a fusion checkpoint name, "image"
    (PNG only) or "text" (HTML only). Files go to ``out_dir`` (default ``<artifacts>/explanations``)
    as ``study_<id>_<model>_<method>.png`` and ``study_<id>_<model>_shap.html``; returns their paths.
    """

    matplotlib.use("Agg", force=False)


    roles, fusion_name = _roles_for(model_name)
    study_id = check_study_id(load_cohort(settings.artifacts_dir), study_id)  # before loading any model
    explainer = StudyExplainer.from_settings(settings, roles=roles, fusion_name=fusion_name)
    role = roles[0]
    name = explainer.models.names[role]
    out_dir = Path(out_dir) if out_dir is not None else Path(settings.artifacts_dir) / "explanations"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    probabilities = explainer.probabilities(study_id, role)
    if role in CAM_ROLES:
        method = explainer.cam_method
        cams = explainer.cams(study_id, role=role, method=method)
        figure = cam_figure(explainer.image(study_id), cams,
                            {label: float(probabilities[label_index(label)]) for label in cams},
                            title=f"study {study_id}: {CAM_METHODS.get(method, 'CAM by finding extent')} of {name}")
        path = out_dir / f"study_{study_id}_{name}_{label_slug(method)}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    if role in SHAP_ROLES and explainer.text(study_id).strip():
        explanations = explainer.shap_values(study_id, role=role)
        note = ("Top-3 labels by predicted probability. Red words push the model towards the label, blue words away; "
                "values on the logit scale (base value + word values = the model's logit for this report).")
        path = out_dir / f"study_{study_id}_{name}_shap.html"
        write_text(path, shap_html_page(list(explanations.values()), f"study {study_id}: SHAP values of {name}", note))
        paths.append(path)
    return paths
