"""The explanation browser's widgets: its controls, outputs and their layout (no behaviour; see ``browser``).

The controls a test or the real-browser test needs carry a CSS class (``cxr-study-slider``,
``cxr-study-id``, ``cxr-filter``, ``cxr-filter-label``, ``cxr-label-select``, ``cxr-truth-toggle``,
``cxr-view-picker``, ``cxr-baseline-toggle``, ``cxr-grid``, ``cxr-raw-report``, ``cxr-shap-report``; the whole box
``cxr-explanation-browser``). Rows wrap, so the browser fits beside JupyterLab's sidebar and in Colab.
"""

from __future__ import annotations

import ipywidgets as widgets

from cxr_helpers.config import CAM_LAYER_NAMES
from cxr_helpers.explain.browser_panels import ROLE_NAMES
from cxr_helpers.explain.gradcam import CAM_METHODS
from cxr_helpers.explain.study_finder import ANY_LABEL, CONDITIONS
from cxr_helpers.labels import CHEXPERT_LABELS

WIDE = {"description_width": "initial"}


def _classed(widget, name: str):
    """``widget`` with a CSS class (the end-to-end test finds it by this class)."""
    widget.add_class(name)
    return widget


def _width(width: str) -> widgets.Layout:
    return widgets.Layout(width=width)


class BrowserWidgets:
    """The explanation browser's widgets, built and laid out in ``widget``; ``controls`` are disabled while busy."""

    def __init__(self, explainer, n_studies: int, cam_roles: list[str], shap_roles: list[str], has_truth: bool,
                 ensemble: bool = False):
        self._find_controls(n_studies, ensemble)
        self._view_controls(explainer, cam_roles, shap_roles, has_truth)
        self._outputs()
        self.controls = [self.slider, self.study_box, self.filter_condition, self.filter_label, self.label_select,
                         self.follow_top, self.method_dropdown, self.layer_dropdown, self.opacity, self.view_picker,
                         self.shap_toggle] + ([self.baseline_toggle] if "image" in cam_roles else []) \
            + ([self.truth_toggle] if has_truth else [])
        self.widget = self._layout()

    def _find_controls(self, n_studies: int, ensemble: bool) -> None:
        """The slider, the study-id box and the filter (condition, label; the ensemble's misses only with an
        ensemble), with the line they report on."""
        self.slider = _classed(widgets.IntSlider(value=0, min=0, max=n_studies - 1, description="study",
                                                 continuous_update=False, readout=False,  # the title says "3 / 17"
                                                 layout=_width("340px")), "cxr-study-slider")
        self.study_box = _classed(widgets.Text(placeholder="study id, then Enter", continuous_update=False,
                                               description="go to", style=WIDE, layout=_width("210px")),
                                  "cxr-study-id")
        conditions = [(v[0], k) for k, v in CONDITIONS.items() if k != "ensemble_cam_misses" or ensemble]
        self.filter_condition = _classed(widgets.Dropdown(options=conditions,
                                                          value="all", description="show", style=WIDE,
                                                          layout=_width("330px")), "cxr-filter")
        self.filter_label = _classed(widgets.Dropdown(options=[ANY_LABEL, *CHEXPERT_LABELS], value=ANY_LABEL,
                                                      description="for", style=WIDE, layout=_width("250px")),
                                     "cxr-filter-label")
        self.find_message = _classed(widgets.HTML(), "cxr-find-message")

    def _view_controls(self, explainer, cam_roles: list[str], shap_roles: list[str], has_truth: bool) -> None:
        """Which labels, CAM method and layer, opacity, view, SHAP model and truth overlay."""
        self.label_select = _classed(widgets.SelectMultiple(options=list(CHEXPERT_LABELS), rows=7, description="labels",
                                                            style=WIDE, layout=_width("260px")), "cxr-label-select")
        self.follow_top = widgets.Checkbox(value=True, indent=False, layout=_width("260px"),
                                           description=f"each study's top {explainer.top_k} ({ROLE_NAMES[cam_roles[0]]})")
        methods = [("auto (by finding extent)", "auto"), *[(name, name) for name in CAM_METHODS]]
        method = explainer.cam_method if explainer.cam_method in ("auto", *CAM_METHODS) else "auto"
        self.method_dropdown = widgets.Dropdown(options=methods, value=method, description="CAM", style=WIDE,
                                                layout=_width("250px"))
        layers = [("auto (by finding extent)", "auto"), *[(name, name) for name in CAM_LAYER_NAMES]]
        self.layer_dropdown = widgets.Dropdown(options=layers, value=explainer.cam_layer or "auto", description="layer",
                                               style=WIDE, layout=_width("250px"))
        self.opacity = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity",
                                           continuous_update=False, style=WIDE, layout=_width("250px"))
        self.baseline_toggle = _classed(widgets.Checkbox(
            value=False, indent=False, description="image map minus its baseline", layout=_width("260px"),
            disabled="image" not in cam_roles,
            tooltip=f"subtract the label's mean map over {explainer.baseline_negatives} training images the labels "
                    "call negative: what this image adds to the label's normal chest (notebook 05, section 7)"),
            "cxr-baseline-toggle")
        self.truth_toggle = _classed(widgets.ToggleButton(
            value=False, description="truth overlay", icon="eye", disabled=not has_truth,
            tooltip="outline each finding's true mask and underline the words that state it (phantom only)"),
            "cxr-truth-toggle")
        self.view_picker = _classed(widgets.ToggleButtons(options=[("", "")], description="view", style=WIDE),
                                    "cxr-view-picker")
        self.shap_toggle = widgets.ToggleButtons(options=[(ROLE_NAMES[r], r) for r in shap_roles], value=shap_roles[0],
                                                 description="SHAP of", style=WIDE)

    def _outputs(self) -> None:
        """The title, status, grid, tables and the two reports."""
        self.status = widgets.HTML("ready")
        self.title = widgets.HTML()
        self.image = _classed(widgets.Image(format="jpeg", layout=widgets.Layout(height="auto", object_fit="contain")),
                              "cxr-grid")
        self.predictions_html = widgets.HTML(layout=widgets.Layout(min_width="380px"))
        self.reliance_html = widgets.HTML()
        self.raw_report = _classed(widgets.HTML(layout=widgets.Layout(width="420px", max_height="520px",
                                                                      overflow="auto")), "cxr-raw-report")
        self.report_html = _classed(widgets.HTML(layout=widgets.Layout(width="480px", max_height="520px",
                                                                       overflow="auto")), "cxr-shap-report")

    def _layout(self) -> widgets.VBox:
        """Title and status; finding; what is shown; the grid beside the tables; the two reports side by side."""
        wrap = widgets.Layout(flex_flow="row wrap", align_items="flex-start", grid_gap="4px 12px")
        find = widgets.VBox([widgets.HBox([self.slider, self.study_box], layout=wrap),
                             widgets.HBox([self.filter_condition, self.filter_label], layout=wrap)])
        show = widgets.HBox([
            widgets.VBox([self.label_select, self.follow_top]),
            widgets.VBox([self.method_dropdown, self.layer_dropdown, self.opacity, self.baseline_toggle]),
            widgets.VBox([self.view_picker, self.shap_toggle, self.truth_toggle]),
        ], layout=wrap)
        box = widgets.VBox([
            widgets.HBox([self.title, self.status], layout=widgets.Layout(grid_gap="16px")), find, self.find_message,
            show, widgets.HBox([self.image, widgets.VBox([self.predictions_html, self.reliance_html])], layout=wrap),
            widgets.HBox([self.raw_report, self.report_html], layout=wrap),
        ])
        return _classed(box, "cxr-explanation-browser")  # the end-to-end browser test finds it by this class
