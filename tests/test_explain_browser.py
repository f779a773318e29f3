"""The explanation browser, driven headless: setting a control's value must change what is shown."""

from __future__ import annotations

import pytest

from cxr_helpers.explain.browser import TOP_K, ExplanationBrowser, explanation_browser
from cxr_helpers.explain.faithfulness.truth import load_ground_truth, phantom_root
from cxr_helpers.explain.study import StudyExplainer


@pytest.fixture(scope="module")
def explainer(explain_settings):
    return StudyExplainer.from_settings(explain_settings, cache=False)  # in-memory cache shared by the tests


@pytest.fixture()
def browser(explain_settings, explainer):
    return ExplanationBrowser(explainer, truth=load_ground_truth(phantom_root(explain_settings)))


def shown(browser) -> tuple[bytes, str, str]:
    return browser.image.value, browser.report_html.value, browser.predictions_html.value


def test_first_study_is_shown_with_its_top_labels(browser):
    image, report, predictions = shown(browser)
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    top = browser.explainer.top_labels(browser.study_id, "fusion")
    assert browser.label_dropdown.value == TOP_K
    assert all(label in report for label in top)  # one SHAP plot per top label
    assert "cardiomegaly" in report and "truly present" in predictions
    assert "Modality reliance" in browser.reliance_html.value
    assert "cxr-explanation-browser" in browser.widget._dom_classes
    assert "cxr-study-slider" in browser.slider._dom_classes
    assert "cxr-label-dropdown" in browser.label_dropdown._dom_classes


def test_slider_changes_image_report_and_title(browser):
    before, title = shown(browser), browser.title.value
    browser.slider.value = 1
    after = shown(browser)
    assert after[0] != before[0] and after[1] != before[1] and browser.title.value != title
    assert str(browser.studies[1]) in browser.title.value


def test_label_method_opacity_and_model_controls_change_the_view(browser):
    before = shown(browser)
    browser.label_dropdown.value = "Edema"
    edema = shown(browser)
    assert edema[0] != before[0] and edema[1] != before[1]
    assert "Edema" in edema[1] and "Cardiomegaly p=" not in edema[1]
    browser.opacity.value = 0.9
    assert browser.image.value != edema[0] and browser.report_html.value == edema[1]  # only the overlay moves
    browser.method_dropdown.value = "eigencam"
    assert browser.image.value != edema[0]
    browser.model_toggle.value = "unimodal"
    assert browser.roles() == ("image", "text")
    assert browser.report_html.value != edema[1] and "<b>text</b> model" in browser.report_html.value


def test_revisiting_a_study_uses_the_cache(browser):
    browser.slider.value = 1
    browser.slider.value = 0
    computed = dict(browser.explainer.cache.computed)
    browser.slider.value = 1
    browser.slider.value = 0
    assert browser.explainer.cache.computed == computed
    assert browser.status.value.startswith("<span style='color:#666'>shown in")


def test_busy_state_while_computing(browser, monkeypatch):
    seen = []
    real = browser.explainer.cams

    def watching(*args, **kwargs):
        seen.append(("cxr-busy" in browser.status._dom_classes, browser.slider.disabled, browser.status.value))
        return real(*args, **kwargs)

    monkeypatch.setattr(browser.explainer, "cams", watching)
    browser.slider.value = 2
    assert seen and all(busy and disabled and "computing" in text for busy, disabled, text in seen)
    assert "cxr-busy" not in browser.status._dom_classes and not browser.slider.disabled


def test_an_error_is_shown_in_the_status_and_controls_come_back(browser, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no heatmap today")

    monkeypatch.setattr(browser.explainer, "cams", broken)
    with pytest.raises(RuntimeError):
        browser.update()
    assert "no heatmap today" in browser.status.value and not browser.label_dropdown.disabled


def test_explanation_browser_from_settings(explain_settings):
    browser = explanation_browser(settings=explain_settings)
    assert browser.studies == browser.explainer.study_ids("test") and browser.truth is not None
    assert browser.image.value
