"""The study browser of notebook 05: Grad-CAM, SHAP, predictions and modality reliance, study by study.

Plain ipywidgets 8 (an ``Image`` with PNG bytes for the heatmaps, ``HTML`` for the tables and the
SHAP-coloured report), so it renders in JupyterLab and in Colab and needs no Output widget.
``ExplanationBrowser`` is an object with methods, so tests can drive it without a browser:
set ``browser.slider.value`` (or a dropdown) and read ``browser.image.value`` / ``browser.report_html.value``.

Explanations come from a ``StudyExplainer`` and its cache: a study seen before shows at once;
a new one is computed on demand while the status says "computing..." and the controls are
disabled (the status widget then carries the CSS class ``cxr-busy``).
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np

from cxr_helpers.config import load_settings
from cxr_helpers.explain.faithfulness.truth import load_ground_truth, phantom_root
from cxr_helpers.explain.figures import cam_panel_png
from cxr_helpers.explain.gradcam import CAM_METHODS
from cxr_helpers.explain.shap_text import shap_report_html
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.fusion.ablation import reliance_on_report
from cxr_helpers.labels import CHEXPERT_LABELS, label_index

TOP_K = "__top_k__"  # the label dropdown's "the study's top-3" choice
CODE_NAMES = {1: "positive", 0: "negative", -1: "uncertain", -2: "not mentioned"}
MODEL_CHOICES = {"fusion": ("fusion", "fusion"), "unimodal": ("image", "text")}  # choice -> (CAM role, SHAP role)


def probability_bar(p: float, colour: str = "#c0392b", width: int = 70) -> str:
    """An inline HTML bar for a probability, with its value."""
    filled = int(round(float(np.clip(p, 0, 1)) * width))
    return (f'<span style="display:inline-block;width:{width}px;height:9px;background:#eee;vertical-align:middle">'
            f'<span style="display:block;width:{filled}px;height:9px;background:{colour}"></span></span> {p:.2f}')


def predictions_html(explainer, study_id: int, truth=None, highlight: Sequence[str] = ()) -> str:
    """Predicted probabilities per model beside the cohort's coded labels (and the phantom's truth)."""
    roles = [r for r in ("fusion", "image", "text") if explainer.has(r)]
    coded = explainer.coded_labels(study_id)
    probabilities = {r: explainer.probabilities(study_id, r) for r in roles}
    head = "".join(f"<th style='padding:1px 6px'>p({r})</th>" for r in roles)
    truth_head = "<th style='padding:1px 6px'>truly present</th>" if truth is not None else ""
    rows = []
    for label in CHEXPERT_LABELS:
        j = label_index(label)
        weight = "font-weight:bold;" if label in highlight else ""
        cells = "".join(f"<td style='padding:1px 6px'>{probability_bar(probabilities[r][j])}</td>" for r in roles)
        present = ""
        if truth is not None:
            present = f"<td style='padding:1px 6px;text-align:center'>{'yes' if truth.present(study_id, label) else ''}</td>"
        rows.append(f"<tr style='{weight}'><td style='padding:1px 6px'>{html.escape(label)}</td>"
                    f"<td style='padding:1px 6px'>{CODE_NAMES.get(coded[label], coded[label])}</td>{present}{cells}</tr>")
    return (f"<table style='font-size:11px;border-collapse:collapse;white-space:nowrap'><tr><th style='padding:1px 6px'>label</th>"
            f"<th style='padding:1px 6px'>label in CSV</th>{truth_head}{head}</tr>{''.join(rows)}</table>")


def reliance_html(explainer, study_id: int, labels: Sequence[str]) -> str:
    """The fusion model's modality reliance for the shown labels, as a small HTML table."""
    if not explainer.has("fusion"):
        return ""
    table = explainer.modality_reliance(study_id, labels)
    rows = "".join(
        f"<tr><td style='padding:1px 6px'>{html.escape(r['label'])}</td>"
        + "".join(f"<td style='padding:1px 6px;text-align:right'>{r[c]:.2f}</td>"
                  for c in ("p(image + report)", "p(image only)", "p(report only)"))
        + "</tr>"
        for _, r in table.iterrows()
    )
    share = reliance_on_report(table)
    summary = f"share of the movement due to the report: <b>{share:.0%}</b>" if np.isfinite(share) else ""
    return (
        "<div style='font-size:11px;margin-left:16px'><b>Modality reliance (fusion model)</b>"
        "<table style='border-collapse:collapse;white-space:nowrap'><tr><th style='padding:1px 6px'>label</th><th>both</th>"
        f"<th>report removed</th><th>image blanked</th></tr>{rows}</table>{summary}</div>"
    )


class ExplanationBrowser:
    """Slider over studies; label, CAM method, opacity and model controls; heatmaps, predictions, SHAP report."""

    def __init__(self, explainer, studies: Sequence[int] | None = None, truth=None, tile: int = 200):

        self.explainer = explainer
        self.studies = [int(s) for s in (studies if studies is not None else explainer.study_ids("test"))]
        if not self.studies:
            raise ValueError("no studies to browse (the cohort's test split is empty?)")
        self.truth = truth
        self.tile = tile
        self.last_update_seconds = 0.0
        self._busy = False
        self._reports: dict[tuple, str] = {}  # rendered SHAP HTML (shap's HTML carries random ids: render once)
        self.slider = widgets.IntSlider(value=0, min=0, max=len(self.studies) - 1, description="study",
                                        continuous_update=False, layout=widgets.Layout(width="420px"))
        self.slider.add_class("cxr-study-slider")
        self.label_dropdown = widgets.Dropdown(
            options=[(f"top {explainer.top_k} of the study", TOP_K)] + [(name, name) for name in CHEXPERT_LABELS],
            value=TOP_K, description="label", layout=widgets.Layout(width="300px"))
        self.label_dropdown.add_class("cxr-label-dropdown")
        method = explainer.cam_method if explainer.cam_method in CAM_METHODS else "gradcam"
        self.method_dropdown = widgets.Dropdown(options=list(CAM_METHODS), value=method, description="CAM",
                                                layout=widgets.Layout(width="200px"))
        self.opacity = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity",
                                           continuous_update=False, layout=widgets.Layout(width="260px"))
        choices = [c for c, (cam_role, shap_role) in MODEL_CHOICES.items()
                   if explainer.has(cam_role) and explainer.has(shap_role)]
        if not choices:
            raise ValueError("the explainer has neither the fusion model nor both unimodal models loaded")
        self.model_toggle = widgets.ToggleButtons(options=choices, value=choices[0], description="model")
        self.status = widgets.HTML("ready")
        self.title = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(height="auto", object_fit="contain"))
        self.predictions_html = widgets.HTML(layout=widgets.Layout(min_width="380px"))
        self.reliance_html = widgets.HTML()
        self.report_html = widgets.HTML(layout=widgets.Layout(max_height="520px", overflow="auto"))
        self.controls = [self.slider, self.label_dropdown, self.method_dropdown, self.opacity, self.model_toggle]
        for control in self.controls:
            control.observe(self._on_change, names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self.slider, self.title]),
            widgets.HBox([self.label_dropdown, self.method_dropdown, self.opacity]),
            widgets.HBox([self.model_toggle, self.status]),
            self.image,
            widgets.HBox([self.predictions_html, self.reliance_html], layout=widgets.Layout(grid_gap="16px")),
            self.report_html,
        ])
        self.widget.add_class("cxr-explanation-browser")  # the end-to-end browser test finds it by this class
        self.update()

    # -- what is shown
    @property
    def study_id(self) -> int:
        """The study on screen."""
        return self.studies[self.slider.value]

    def roles(self) -> tuple[str, str]:
        """(model whose Grad-CAM is shown, model whose SHAP values colour the report)."""
        return MODEL_CHOICES[self.model_toggle.value]

    def labels(self, role: str) -> list[str]:
        """The labels explained: the chosen one, or the study's top-k for that model."""
        if self.label_dropdown.value == TOP_K:
            return self.explainer.top_labels(self.study_id, role)
        return [self.label_dropdown.value]

    # -- updating
    def _on_change(self, change) -> None:
        if not self._busy:
            self.update()

    def _set_busy(self, busy: bool, message: str = "") -> None:
        self._busy = busy
        for control in self.controls:
            control.disabled = busy
        if busy:
            self.status.add_class("cxr-busy")
            self.status.value = "<span style='color:#b9770e'><b>computing...</b></span>"
        else:
            self.status.remove_class("cxr-busy")
            self.status.value = message

    def update(self) -> None:
        """Show the current study with the current choices (computing what the cache lacks)."""
        began = time.perf_counter()
        self._set_busy(True)
        message = ""
        try:
            self._render()
            message = f"<span style='color:#666'>shown in {time.perf_counter() - began:.2f} s</span>"
        except Exception as error:  # show it in the widget: a callback's exception would vanish
            message = f"<span style='color:#c0392b'>error: {html.escape(str(error))}</span>"
            raise
        finally:
            self.last_update_seconds = time.perf_counter() - began
            self._set_busy(False, message)

    def _render(self) -> None:
        study_id, explainer = self.study_id, self.explainer
        cam_role, shap_role = self.roles()
        row = explainer.row(study_id)
        self.title.value = (f"<b>{self.slider.value + 1} / {len(self.studies)}</b> &nbsp; study {study_id} &nbsp; "
                            f"view {html.escape(str(row['view_position']))} &nbsp; split {html.escape(str(row['split']))}")
        cam_labels = self.labels(cam_role)
        cams = explainer.cams(study_id, cam_labels, cam_role, self.method_dropdown.value)
        p_cam = explainer.probabilities(study_id, cam_role)
        captions = [f"{name} p={p_cam[label_index(name)]:.2f}" for name in cam_labels]
        self.image.value = cam_panel_png(explainer.image(study_id), [cams[n] for n in cam_labels], captions,
                                         self.opacity.value, self.tile)
        width = self.tile * (1 + len(cam_labels))  # the PNG's own width: shown 1:1, never stretched
        self.image.width, self.image.layout.width, self.image.layout.min_width = str(width), f"{width}px", f"{width}px"
        shap_labels = self.labels(shap_role)
        self.predictions_html.value = predictions_html(explainer, study_id, self.truth, cam_labels)
        self.reliance_html.value = reliance_html(explainer, study_id, cam_labels)
        header = (f"<div style='font-size:12px;color:#444'>Report ({html.escape(explainer.text_setting)}, cleaned) "
                  f"coloured by SHAP for the <b>{shap_role}</b> model: red pushes towards the label, blue away "
                  "(values on the logit scale).</div>")
        if not explainer.text(study_id).strip():
            self.report_html.value = header + "<p><i>This report has no text in the sections the model reads.</i></p>"
            return
        key = (shap_role, study_id, tuple(shap_labels), explainer.models.fingerprints.get(shap_role, ""))
        if key not in self._reports:
            explanations = explainer.shap_values(study_id, shap_labels, shap_role)
            self._reports[key] = header + shap_report_html([explanations[n] for n in shap_labels])
        self.report_html.value = self._reports[key]

    def _repr_mimebundle_(self, **kwargs):
        """Display the browser's widget when the object is the cell's result."""
        return self.widget._repr_mimebundle_(**kwargs)


def explanation_browser(explainer=None, settings=None, studies: Sequence[int] | None = None,
                        truth=None) -> ExplanationBrowser:
    """The study browser over the test studies (``settings`` from the environment if not given).

    On the phantom the predictions table also shows which findings are truly present.
    """
    if explainer is None:
        settings = settings or load_settings()
        explainer = StudyExplainer.from_settings(settings)
    if truth is None and settings is not None and settings.profile == "phantom":
        try:
            truth = load_ground_truth(phantom_root(settings))
        except FileNotFoundError:
            truth = None
    return ExplanationBrowser(explainer, studies, truth)
