"""The study browser of notebook 05: Grad-CAM, SHAP, predictions and modality reliance, study by study.

Plain ipywidgets 8 (one ``Image`` with the grid as JPEG, ``HTML`` for the tables and reports), so it
renders in JupyterLab and in Colab and needs no Output widget. ``ExplanationBrowser`` is an object
with methods, so tests drive it without a browser: set ``browser.slider.value`` (or any control)
and read ``browser.image.value`` / ``browser.report_html.value``.

Find a study with the slider, the study-id box (Enter) or a filter (``study_finder``); for each
label shown (default: the fusion model's top 3) a row with the X-ray and each model's Grad-CAM
(``browser_panels``; with ``CXR_IMAGE_ENSEMBLE`` the image ensemble's map too, the mean of its
models' maps); on the phantom the truth overlay outlines the finding's mask and underlines
the words that state it; "image map minus its baseline" shows what the image adds to the
label's normal chest (``StudyExplainer.baseline_map``). Explanations come from a ``StudyExplainer``
and its cache: a study seen before shows at once; new work runs while the status says
"computing..." (CSS class ``cxr-busy``) and the controls are disabled. An error is shown in the
status and leaves the browser usable.
"""

from __future__ import annotations

import contextlib
import html
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from cxr_helpers.cohort_browser import report_text
from cxr_helpers.config import load_settings
from cxr_helpers.explain import browser_panels as panels
from cxr_helpers.explain.browser_widgets import BrowserWidgets
from cxr_helpers.explain.figures import grid_jpeg
from cxr_helpers.explain.gradcam import CAM_METHODS, cam_layer_for, cam_method_for, minus_baseline
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.explain.study_finder import (
    ANY_LABEL,
    CONDITIONS,
    RECORDS_FILE,
    FilterUnavailable,
    StudyFinder,
)
from cxr_helpers.explain.study_views import StudyViews
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.phantom.truth import load_ground_truth, phantom_root

CAM_ROLES, SHAP_ROLES = ("fusion", "image"), ("fusion", "text")


class ExplanationBrowser(BrowserWidgets):
    """Find a study; see its labels' Grad-CAMs (fusion beside image-only), predictions, reports and SHAP words."""

    def __init__(self, explainer, studies: Sequence[int] | None = None, truth=None, tile: int = 200,
                 records_path: Path | None = None, data_dir: Path | None = None):
        self.explainer = explainer
        self.studies = [int(s) for s in (studies if studies is not None else explainer.study_ids("test"))]
        if not self.studies:
            raise ValueError("no studies to browse (the cohort's test split is empty?)")
        self.cam_roles = [r for r in CAM_ROLES if explainer.has(r)]
        shap_roles = [r for r in SHAP_ROLES if explainer.has(r)]
        if not self.cam_roles or not shap_roles:
            raise ValueError("the browser needs an image model (fusion or image-only) and a text model (fusion or text-only)")
        self.truth, self.tile = truth, tile
        self.finder = StudyFinder(explainer, self.studies, records_path)
        self.views = StudyViews(explainer, data_dir)
        self.column_views = {role: (self.views, role) for role in self.cam_roles}  # grid column -> (views, explainer role)
        ensemble = explainer.models.image_ensemble
        if ensemble is not None:  # a column of its own: an explainer with the ensemble as its image model
            self.column_views[panels.ENSEMBLE_ROLE] = (StudyViews(explainer.with_image_model(ensemble), data_dir), "image")
        self.shown = list(self.studies)  # the studies the slider runs over (after the filter)
        self.last_update_seconds, self.last_error = 0.0, None
        self.grid_captions: list[str] = []  # the grid's row titles and tile captions, as text
        self._busy = self._quiet = False
        self._filter = ("all", ANY_LABEL)
        self._reports: dict[int, str] = {}
        self._reliance: dict[int, object] = {}
        super().__init__(explainer, len(self.shown), self.cam_roles, shap_roles, truth is not None, ensemble is not None)
        for control in (self.slider, self.method_dropdown, self.layer_dropdown, self.opacity, self.truth_toggle,
                        self.view_picker, self.shap_toggle, self.follow_top, self.baseline_toggle):
            control.observe(self._on_change, names="value")
        self.label_select.observe(self._on_labels, names="value")
        self.study_box.observe(self._on_study_box, names="value")
        self.filter_condition.observe(self._on_filter, names="value")
        self.filter_label.observe(self._on_filter, names="value")
        self.update()

    # -- what is shown
    @property
    def study_id(self) -> int:
        """The study on screen."""
        return self.shown[self.slider.value]

    def default_labels(self) -> list[str]:
        """The first CAM model's top-k labels for the study, plus the filter's label if one is chosen."""
        labels = self.explainer.top_labels(self.study_id, self.cam_roles[0])
        chosen = self.filter_label.value
        return labels + [chosen] if chosen != ANY_LABEL and chosen not in labels else labels

    def labels(self) -> list[str]:
        """The labels shown, in the table's order."""
        chosen = set(self.label_select.value)
        return [name for name in CHEXPERT_LABELS if name in chosen]

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        """Change widget values without triggering an update."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    # -- events
    def _on_change(self, change) -> None:
        if not (self._busy or self._quiet):
            self.update()

    def _on_labels(self, change) -> None:
        if self._busy or self._quiet:
            return
        with self._quietly():
            self.follow_top.value = False  # the user chose: stop following each study's top labels
        self.update()

    def _on_study_box(self, change) -> None:
        text = str(change["new"]).strip()
        if not text or self._quiet:
            return
        with self._quietly():
            self.study_box.value = ""  # so the same id can be entered again
        self.go_to(text)

    def _on_filter(self, change) -> None:
        if not (self._busy or self._quiet):
            self.apply_filter(self.filter_condition.value, self.filter_label.value)

    # -- finding studies
    def _say(self, message: str, ok: bool = True) -> None:
        colour = "#555" if ok else "#c0392b"
        self.find_message.value = f"<span style='font-size:12px;color:{colour}'>{message}</span>"

    def go_to(self, study_id) -> bool:
        """Show ``study_id`` if it is among the studies browsed (after the filter); else say why not."""
        try:
            wanted = int(str(study_id).strip())
        except ValueError:
            self._say(f"'{html.escape(str(study_id))}' is not a study id (a number such as {self.shown[0]})", False)
            return False
        if wanted in self.shown:
            self._say(f"study {wanted}")
            self.slider.value = self.shown.index(wanted)  # updates (unless it is already on screen)
            return True
        if wanted in self.studies:
            self._say(f"study {wanted} does not match the filter '{CONDITIONS[self._filter[0]][0]}'"
                      f" ({html.escape(self._filter[1])}): set the filter to 'all studies' to see it", False)
        elif int(wanted) in self.explainer.cohort["study_id"].values:
            split = self.explainer.row(wanted)["split"]
            self._say(f"study {wanted} is in the {html.escape(str(split))} split; this browser shows "
                      f"{len(self.studies)} studies of the test split", False)
        else:
            self._say(f"no study {wanted} in the cohort (cohort.csv); for example {self.shown[0]}", False)
        return False

    def apply_filter(self, condition: str, label: str = ANY_LABEL) -> bool:
        """Browse only the studies matching (``study_finder.CONDITIONS``); put the filter back if none does."""
        before = self.status.value
        self._set_busy(True, "finding studies...")
        found, problem = [], ""
        try:
            found = self.finder.matching(condition, label)
        except FilterUnavailable as error:
            problem = str(error)
        except Exception as error:  # shown, never raised out of a widget callback
            self.last_error, problem = error, f"error: {error}"
        name = CONDITIONS[condition][0] + ("" if label == ANY_LABEL else f", {label}")
        if not found:  # (when found, update() below ends the busy state: no flicker in between)
            self._set_busy(False, before)
            with self._quietly():
                self.filter_condition.value, self.filter_label.value = self._filter
            self._say(html.escape(problem or f"no study matches '{name}'") + ": filter left as it was", False)
            return False
        current = self.study_id
        self._filter, self.shown = (condition, label), found
        with self._quietly():
            self.slider.value = 0
            self.slider.max = len(found) - 1
            self.slider.value = found.index(current) if current in found else 0
        self._say(f"{len(found)} of {len(self.studies)} studies: {html.escape(name)} "
                  f"<span style='color:#888'>({html.escape(CONDITIONS[condition][1])})</span>")
        self.update()
        return True

    # -- updating
    def _set_busy(self, busy: bool, message: str = "") -> None:
        self._busy = busy
        for control in self.controls:
            control.disabled = busy
        self.truth_toggle.disabled = busy or self.truth is None
        if busy:
            self.status.add_class("cxr-busy")
            self.status.value = f"<span style='color:#b9770e'><b>{message or 'computing...'}</b></span>"
        else:
            self.status.remove_class("cxr-busy")
            self.status.value = message

    def update(self) -> None:
        """Show the current study with the current choices (computing what the caches lack).

        An error is shown in the status (and kept in ``last_error``); the controls come back either way.
        """
        began = time.perf_counter()
        self._set_busy(True)
        try:
            self._render()
            message = f"<span style='color:#666'>shown in {time.perf_counter() - began:.2f} s</span>"
            self.last_error = None
        except Exception as error:  # a callback's exception would vanish: show it
            self.last_error = error
            message = f"<span class='cxr-error' style='color:#c0392b'>error: {html.escape(str(error))}</span>"
        finally:
            self.last_update_seconds = time.perf_counter() - began
        self._set_busy(False, message)

    def _render(self) -> None:
        study_id, explainer = self.study_id, self.explainer
        row = explainer.row(study_id)
        with self._quietly():
            if self.follow_top.value or not self.label_select.value:
                self.label_select.value = tuple(self.default_labels())
            images = self.views.images(study_id)
            options = [(image.name, image.dicom_id) for image in images]
            if list(self.view_picker.options) != options:
                self.view_picker.options = options
                self.view_picker.value = images[0].dicom_id
        labels, dicom_id, truth_on = self.labels(), self.view_picker.value, self.truth_on
        view = self.views.image(study_id, dicom_id)
        condition = CONDITIONS[self._filter[0]][0] + ("" if self._filter[1] == ANY_LABEL else f", {self._filter[1]}")
        self.title.value = panels.title_html(self.slider.value, len(self.shown), len(self.studies), row, condition)
        method, layer = self.method_dropdown.value, self.layer_dropdown.value
        cams = {r: views.cams(study_id, dicom_id, labels, role, method, layer)
                for r, (views, role) in self.column_views.items()}
        used = {name: f"{CAM_METHODS[cam_method_for(name, method)]} on {cam_layer_for(name, layer)}" for name in labels}
        if self.baseline_toggle.value and "image" in cams:
            self._subtract_baselines(cams, used, method, layer, view.model_input)
        p_view = {r: views.probabilities(study_id, dicom_id, role) for r, (views, role) in self.column_views.items()}
        coded = explainer.coded_labels(study_id)
        masks = notes = None
        if truth_on:
            masks = {name: self.truth.mask(dicom_id, name, self.views.size) for name in labels}
            notes = {name: panels.truth_words(name, self.truth.present(study_id, name), masks[name],
                                              self.truth.image_visibility(dicom_id, name)) for name in labels}
        rows = panels.grid_rows(self.views.pixels(study_id, dicom_id), view.view_position, labels, coded, cams,
                                p_view, used, self.opacity.value, masks, notes)
        self.image.value = grid_jpeg(rows, self.tile)
        self.grid_captions = [" | ".join([title, *(t.caption for t in tiles)]) for title, tiles in rows]  # in words
        width = len(rows[0][1]) * (self.tile + 4) - 4  # the picture's own width: shown 1:1, never stretched
        self.image.width, self.image.layout.width, self.image.layout.min_width = str(width), f"{width}px", f"{width}px"
        probabilities = {r: explainer.probabilities(study_id, r) for r in ("fusion", "image", "text") if explainer.has(r)}
        if panels.ENSEMBLE_ROLE in self.column_views:
            views, role = self.column_views[panels.ENSEMBLE_ROLE]
            probabilities[panels.ENSEMBLE_ROLE] = views.explainer.probabilities(study_id, role)
        present = {name: self.truth.present(study_id, name) for name in CHEXPERT_LABELS} if truth_on else None
        self.predictions_html.value = panels.predictions_html(coded, probabilities, present, labels)
        if not view.model_input:
            self.predictions_html.value = ("<div style='font-size:11px;color:#b9770e'>The models were trained on one "
                                           "frontal image per study: on this view their maps and p (in the grid) are "
                                           "outside what they learnt. The table is the models' input.</div>"
                                           + self.predictions_html.value)
        self.reliance_html.value = self._reliance_html(study_id, labels)
        self._render_reports(study_id, row, labels, truth_on)

    def _subtract_baselines(self, cams: dict, used: dict, method: str, layer: str, model_input: bool) -> None:
        """Replace the image model's (and the ensemble's) maps by what each adds to its label's baseline, each
        model its own; say so in ``used``."""
        if not model_input:  # the baselines are the models' frontal input: no baseline for another view
            for name in used:
                used[name] += " · no baseline for this view"
            return
        for column in (c for c in ("image", panels.ENSEMBLE_ROLE) if c in cams):
            explainer, maps = self.column_views[column][0].explainer, dict(cams[column])
            for name in maps:
                baseline = explainer.baseline_map(name, method, layer)  # None: no training image lacks the label
                maps[name] = maps[name] if baseline is None else minus_baseline(maps[name], baseline)
            cams[column] = maps
        for name in used:  # the negatives come from the cohort, the same for every image model
            missing = self.explainer.baseline_map(name, method, layer) is None
            used[name] += " · image: " + ("no baseline (no training image lacks it)" if missing else "minus its baseline")

    @property
    def truth_on(self) -> bool:
        """Whether the truth overlay is on (never without ground truth)."""
        return self.truth is not None and self.truth_toggle.value

    def _reliance_html(self, study_id: int, labels: list[str]) -> str:
        if not self.explainer.has("fusion"):
            return ""
        if study_id not in self._reliance:  # three forward passes: once per study, all labels
            self._reliance[study_id] = self.explainer.modality_reliance(study_id, list(CHEXPERT_LABELS))
        return panels.reliance_html(self._reliance[study_id], labels)

    def _render_reports(self, study_id: int, row, labels: list[str], truth_on: bool) -> None:
        if study_id not in self._reports:
            self._reports[study_id] = report_text(row)
        report, setting = self._reports[study_id], self.explainer.text_setting
        spans = self.truth.study_spans(study_id) if truth_on else None
        underline = panels.stated_spans(spans, labels) if spans is not None else ()
        self.raw_report.value = panels.raw_report_html(report, setting, underline)
        cleaned = self.explainer.text(study_id)
        if not cleaned.strip():
            self.report_html.value = "<p><i>This report has no text in the sections the model reads.</i></p>"
            return
        role = self.shap_toggle.value
        explanations = self.explainer.shap_values(study_id, labels, role)
        self.report_html.value = panels.shap_panel_html([explanations[n] for n in labels], role, setting, report,
                                                        cleaned, spans)

    def _repr_mimebundle_(self, **kwargs):
        """Display the browser's widget when the object is the cell's result."""
        return self.widget._repr_mimebundle_(**kwargs)


def explanation_browser(explainer=None, settings=None, studies: Sequence[int] | None = None,
                        truth=None) -> ExplanationBrowser:
    """The study browser over the test studies (``settings`` from the environment if not given).

    On the phantom the truth overlay (masks, stating words, truly present findings) is offered.
    """
    if explainer is None:
        settings = settings or load_settings()
        explainer = StudyExplainer.from_settings(settings)
    if truth is None and settings is not None and settings.profile == "phantom":
        try:
            truth = load_ground_truth(phantom_root(settings))
        except FileNotFoundError:
            truth = None
    records = Path(settings.artifacts_dir) / "explanations" / RECORDS_FILE if settings is not None else None
    if records is None and explainer.cache.root is not None:
        records = explainer.cache.root / RECORDS_FILE
    return ExplanationBrowser(explainer, studies, truth, records_path=records,
                              data_dir=settings.data_dir if settings is not None else None)
