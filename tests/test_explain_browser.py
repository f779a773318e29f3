"""The explanation browser, driven headless: every control must change what is shown, and the finders find.

The tiny artifacts (``explain_factory``): 8 studies, 50000004-50000007 in test, each coded
Cardiomegaly 1, Pleural Effusion 1, Pneumothorax 0 (the rest blank); the hand-made truth draws a
heart and an effusion mask on every frontal image; 50000004 and 50000006 also have a lateral
view with an effusion mask.
"""

from __future__ import annotations

import dataclasses
import io
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cxr_helpers.explain import browser_panels as panels
from cxr_helpers.explain.browser import ExplanationBrowser, explanation_browser
from cxr_helpers.explain.figures import CAPTION_BAND, TITLE_BAND, Tile, grid_jpeg, mask_boundary
from cxr_helpers.explain.gradcam import cam_for_label, label_baseline_map, minus_baseline
from cxr_helpers.explain.shap_text import shap_labels_html, shared_scale
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.explain.study_finder import ANY_LABEL, RECORDS_FILE, FilterUnavailable, StudyFinder
from cxr_helpers.labels import CHEXPERT_LABELS, label_index
from cxr_helpers.phantom.truth import load_ground_truth, phantom_root

TILE = 96
CARDIO, EFFUSION = "Cardiomegaly", "Pleural Effusion"


@pytest.fixture(scope="module")
def explainer(explain_settings):
    return StudyExplainer.from_settings(explain_settings, cache=False)  # in-memory cache shared by the tests


@pytest.fixture(scope="module")
def truth(explain_settings):
    return load_ground_truth(phantom_root(explain_settings))


@pytest.fixture()
def browser(explain_settings, explainer, truth, tmp_path):
    return ExplanationBrowser(explainer, truth=truth, tile=TILE, records_path=tmp_path / RECORDS_FILE,
                              data_dir=explain_settings.data_dir)


def picture(browser) -> np.ndarray:
    """The grid as an RGB array (H, W, 3)."""
    return np.asarray(Image.open(io.BytesIO(browser.image.value)).convert("RGB"))


def tile_pixels(grid: np.ndarray, row: int, column: int) -> np.ndarray:
    top = row * (TITLE_BAND + CAPTION_BAND + TILE) + TITLE_BAND + CAPTION_BAND
    return grid[top:top + TILE, column * (TILE + 4):column * (TILE + 4) + TILE]


def magenta(pixels: np.ndarray) -> int:
    """How many pixels are near the truth colour (255, 0, 255)."""
    p = pixels.astype(int)
    return int(((p[..., 0] > 170) & (p[..., 1] < 100) & (p[..., 2] > 170)).sum())


def shown(browser) -> tuple:
    return browser.image.value, browser.report_html.value, browser.raw_report.value, browser.predictions_html.value


# ----------------------------------------------------------------------------- pieces
def test_mask_boundary_is_the_rim_of_the_mask():
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    rim = mask_boundary(mask)
    assert rim.sum() == 16 and not rim[3, 3] and rim[1, 1] and not rim[0, 0]
    assert mask_boundary(mask, width=2).sum() == 24


def test_grid_has_one_row_per_entry_and_draws_outline_and_peak():
    gray = np.full((32, 32, 3), 128, np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    plain = [("A", [Tile(gray, "X-ray"), Tile(gray, "map")]), ("B", [Tile(gray, "X-ray"), Tile(gray, "map")])]
    grid = np.asarray(Image.open(io.BytesIO(grid_jpeg(plain, tile=TILE))))
    assert grid.shape == (2 * (TITLE_BAND + CAPTION_BAND + TILE), 2 * TILE + 4, 3)
    outlined = np.asarray(Image.open(io.BytesIO(grid_jpeg([("A", [Tile(gray, "X-ray", outline=mask)])], tile=TILE))))
    assert magenta(tile_pixels(grid, 0, 0)) == 0 and magenta(tile_pixels(outlined, 0, 0)) > 4 * 40
    marked = np.asarray(Image.open(io.BytesIO(grid_jpeg([("A", [Tile(gray, "map", peak=(16, 16))])], tile=TILE))))
    centre = tile_pixels(marked, 0, 0)[TILE // 2 - 3:TILE // 2 + 4, TILE // 2 - 3:TILE // 2 + 4].mean(axis=-1)
    assert centre.max() > 200 and centre.min() < 60  # a white cross edged in black at the peak


def test_shap_colours_share_one_scale_across_labels(explainer):
    study = explainer.study_ids("test")[0]
    explanations = list(explainer.shap_values(study, [CARDIO, EFFUSION]).values())
    scale = shared_scale(explanations)
    assert scale == pytest.approx(max(np.abs(e.values).max() for e in explanations))
    page = shap_labels_html(explanations, {CARDIO: {3}})
    assert f"{scale:+.3g}" in page and page.count("rgba(") >= sum(len(e.values) for e in explanations)
    assert "1.00)" in page  # the largest word of all has full colour; the other label's words are lighter
    assert page.count("text-decoration:underline") == 1


# ----------------------------------------------------------------------------- the browser
def test_first_view_shows_the_top_labels_one_row_each(browser):
    top = browser.explainer.top_labels(browser.study_id, "fusion")
    assert browser.labels() == [name for name in CHEXPERT_LABELS if name in top] and browser.follow_top.value
    grid = picture(browser)
    assert grid.shape[:2] == (3 * (TITLE_BAND + CAPTION_BAND + TILE), 3 * TILE + 8)  # X-ray, fusion, image-only
    assert all(f"<b>{name}</b>: p = " in browser.report_html.value for name in top)
    assert "FINAL REPORT" in browser.raw_report.value and "<b> FINDINGS:</b>" in browser.raw_report.value
    assert "there is moderate cardiomegaly" in re.sub("<[^>]+>", "", browser.report_html.value)
    assert "truly present" not in browser.predictions_html.value  # the truth waits for its toggle
    assert "Modality reliance" in browser.reliance_html.value and browser.last_error is None
    for name in ("cxr-explanation-browser", "cxr-study-slider", "cxr-label-select", "cxr-truth-toggle", "cxr-filter"):
        assert any(name in w._dom_classes for w in [browser.widget, *browser.controls])


def test_multi_select_shows_one_row_per_label(browser):
    browser.label_select.value = (CARDIO, EFFUSION)
    assert not browser.follow_top.value  # the user's choice now holds from study to study
    assert picture(browser).shape[0] == 2 * (TITLE_BAND + CAPTION_BAND + TILE)
    report = browser.report_html.value
    assert "<b>Cardiomegaly</b>: p = " in report and "<b>Pleural Effusion</b>: p = " in report
    assert report.count("</b>: p = ") == 2
    browser.slider.value = 1
    assert browser.labels() == [CARDIO, EFFUSION]
    browser.label_select.value = (EFFUSION,)
    assert picture(browser).shape[0] == TITLE_BAND + CAPTION_BAND + TILE
    browser.follow_top.value = True
    assert len(browser.labels()) == 3


def test_truth_overlay_outlines_masks_and_underlines_stating_words(browser):
    browser.label_select.value = (CARDIO, EFFUSION)
    before, grid = shown(browser), picture(browser)
    assert magenta(tile_pixels(grid, 0, 0)) == 0
    browser.truth_toggle.value = True
    after, grid = shown(browser), picture(browser)
    assert after[0] != before[0] and after[1] != before[1] and after[2] != before[2]
    assert magenta(tile_pixels(grid, 0, 0)) > 40 and magenta(tile_pixels(grid, 1, 0)) > 40  # heart, effusion
    assert 0 < magenta(tile_pixels(grid, 0, 1)) < magenta(tile_pixels(grid, 0, 0))  # lighter on the heatmap
    raw = after[2]
    assert raw.count("text-decoration:underline") == 2  # "cardiomegaly" and "pleural effusion" (not "no pneumothorax")
    assert "cardiomegaly</span>" in raw.split("text-decoration:underline")[1]
    shap_blocks = after[1].split("</b>: p = ")
    assert "cardiomegaly" in shap_blocks[1].split("text-decoration:underline")[1].split("</span>")[0]
    assert shap_blocks[2].count("text-decoration:underline") == 2  # pleural, effusion
    assert "truly present" in after[3]
    assert browser.grid_captions[0].startswith("Cardiomegaly · CSV: positive · truth: present, outlined · LayerCAM on layer3")
    assert browser.grid_captions[1].startswith("Pleural Effusion · CSV: positive · truth: present, outlined · GradCAM on layer2")
    assert all("mask" in caption or "flat map" in caption for caption in browser.grid_captions)
    browser.truth_toggle.value = False
    assert shown(browser) == before


def test_cam_method_layer_opacity_and_shap_model_change_the_view(browser):
    browser.label_select.value = (CARDIO,)
    base = shown(browser)
    browser.opacity.value = 0.9
    assert browser.image.value != base[0] and browser.report_html.value == base[1]  # only the overlay moves
    browser.method_dropdown.value = "eigencam"
    eigen = browser.image.value
    assert eigen not in (base[0],)
    browser.layer_dropdown.value = "layer2"
    assert browser.image.value != eigen and browser.last_error is None
    assert "EigenCAM on layer2" in browser.grid_captions[0] and "X-ray PA | fusion p=" in browser.grid_captions[0]
    browser.shap_toggle.value = "text"
    assert browser.report_html.value != base[1] and "<b>text-only</b> model" in browser.report_html.value


def test_the_image_map_minus_its_label_s_baseline(browser, explainer, monkeypatch):
    browser.go_to(50000004)
    browser.label_select.value = (CARDIO, EFFUSION)
    plain, cams = browser.image.value, explainer.cams(50000004, [CARDIO, EFFUSION], "image")
    monkeypatch.setattr(explainer, "_baselines", {})
    browser.baseline_toggle.value = True  # every fixture study has both findings: no normal chest to compare with
    assert all("image: no baseline (no training image lacks it)" in c for c in browser.grid_captions)
    assert browser.image.value == plain and browser.last_error is None
    normal = [explainer.image(s) for s in explainer.study_ids("train")[:2]]  # pretend these lack the findings
    monkeypatch.setattr(explainer, "label_negatives", lambda label, n: normal[:n])
    monkeypatch.setattr(explainer, "_baselines", {})
    shown_maps = {}
    real_rows = panels.grid_rows

    def keep_maps(*args, **kwargs):
        shown_maps.update(args[4]["image"])  # grid_rows(pixels, view, labels, coded, cams, ...)
        return real_rows(*args, **kwargs)

    monkeypatch.setattr(panels, "grid_rows", keep_maps)
    browser.baseline_toggle.value = False
    browser.baseline_toggle.value = True
    assert browser.last_error is None, browser.last_error
    assert all("image: minus its baseline" in c for c in browser.grid_captions) and browser.image.value != plain
    for label in (CARDIO, EFFUSION):
        expected = minus_baseline(cams[label], label_baseline_map(explainer.models.image, normal, label))
        np.testing.assert_allclose(shown_maps[label], expected, atol=1e-5)
    browser.view_picker.value = browser.view_picker.options[1][1]  # the lateral: not what the baselines averaged
    assert all("no baseline for this view" in c for c in browser.grid_captions)


@pytest.fixture()
def ensemble_explainer(explain_settings, tmp_path):
    """The tiny artifacts with CXR_IMAGE_ENSEMBLE=2: the image model and a member whose layer1 is perturbed."""
    shutil.copytree(explain_settings.artifacts_dir, tmp_path / "artifacts")
    settings = dataclasses.replace(explain_settings, artifacts_dir=tmp_path / "artifacts", image_ensemble=2)
    checkpoints = settings.artifacts_dir / "checkpoints"
    saved = torch.load(checkpoints / "image.pt", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for key, value in saved["state_dict"].items():
        if key.startswith("backbone.layer1") and value.is_floating_point() and value.ndim == 4:
            value.add_(0.5 * value.std() * torch.randn(value.shape, generator=generator))
    torch.save(saved, checkpoints / "image_member1.pt")
    return StudyExplainer.from_settings(settings, cache=False)


def test_with_an_image_ensemble_its_map_and_p_stand_beside_the_image_model_s(ensemble_explainer, explainer, truth,
                                                                             tmp_path, monkeypatch):
    plain = ExplanationBrowser(explainer, truth=truth, tile=TILE)
    assert panels.ENSEMBLE_ROLE not in plain.column_views and "p(ensemble)" not in plain.predictions_html.value
    assert "ensemble_cam_misses" not in [value for _, value in plain.filter_condition.options]
    shown_maps = {}
    real_rows = panels.grid_rows

    def keep_maps(*args, **kwargs):
        shown_maps.update({column: dict(maps) for column, maps in args[4].items()})  # grid_rows(..., cams, ...)
        return real_rows(*args, **kwargs)

    monkeypatch.setattr(panels, "grid_rows", keep_maps)
    browser = ExplanationBrowser(ensemble_explainer, truth=truth, tile=TILE, records_path=tmp_path / RECORDS_FILE)
    browser.go_to(50000004)
    browser.label_select.value = (CARDIO, EFFUSION)
    assert browser.last_error is None, browser.last_error
    grid, ensemble = picture(browser), ensemble_explainer.models.image_ensemble
    assert grid.shape[1] == 4 * TILE + 12  # X-ray, fusion, image-only, image ensemble
    image = ensemble_explainer.image(50000004)
    with torch.no_grad():
        logits = torch.stack([m.eval()(torch.from_numpy(image)[None, None]) for m in ensemble.members]).mean(0)[0]
    p = torch.sigmoid(logits).numpy()
    for row, label in enumerate((CARDIO, EFFUSION)):
        assert f" | ensemble p={p[label_index(label)]:.2f}" in browser.grid_captions[row]
        expected = cam_for_label(ensemble, image, label)  # the mean of the members' maps
        np.testing.assert_allclose(shown_maps[panels.ENSEMBLE_ROLE][label], expected, atol=1e-5)
        assert np.abs(shown_maps["image"][label] - expected).max() > 1e-3  # not the single model's map
    assert "p(ensemble)" in browser.predictions_html.value
    normal = [explainer.image(s) for s in explainer.study_ids("train")[:2]]  # pretend these lack the findings
    for each in (ensemble_explainer, browser.column_views[panels.ENSEMBLE_ROLE][0].explainer):
        monkeypatch.setattr(each, "label_negatives", lambda label, n: normal[:n])
    browser.baseline_toggle.value = True  # each model minus its own baseline
    assert browser.last_error is None and all("image: minus its baseline" in c for c in browser.grid_captions)
    for label in (CARDIO, EFFUSION):
        for column, model in (("image", ensemble_explainer.models.image), (panels.ENSEMBLE_ROLE, ensemble)):
            plain_map = cam_for_label(model, image, label)
            np.testing.assert_allclose(shown_maps[column][label],
                                       minus_baseline(plain_map, label_baseline_map(model, normal, label)), atol=1e-5)
    browser.view_picker.value = browser.view_picker.options[1][1]  # the lateral: the ensemble's map of that view
    lateral = browser.views.pixels(50000004, browser.view_picker.value)
    assert browser.last_error is None and all("no baseline for this view" in c for c in browser.grid_captions)
    np.testing.assert_allclose(shown_maps[panels.ENSEMBLE_ROLE][CARDIO], cam_for_label(ensemble, lateral, CARDIO),
                               atol=1e-5)
    assert "ensemble_cam_misses" in [value for _, value in browser.filter_condition.options]
    records = pd.DataFrame({"study_id": [50000005, 50000006, np.nan], "label": CARDIO, "detected": 1, "hit": 0,
                            "model": ["image", "image", "image ensemble"]})  # the last: a probe (no study)
    records.to_csv(tmp_path / RECORDS_FILE, index=False)
    browser.filter_condition.value = "ensemble_cam_misses"  # no test-study record of the ensemble: refused, says why
    assert browser.filter_condition.value == "all" and "CXR_IMAGE_ENSEMBLE" in browser.find_message.value
    records.assign(model=["image ensemble", "image", "image ensemble"]).to_csv(tmp_path / RECORDS_FILE, index=False)
    browser.filter_condition.value = "ensemble_cam_misses"
    assert browser.shown == [50000005] and browser.last_error is None


def test_view_picker_lists_the_studys_images(browser, explainer, truth):
    browser.go_to(50000005)
    assert [name for name, _ in browser.view_picker.options] == ["PA (models' input)"]
    browser.go_to(50000004)
    assert [name for name, _ in browser.view_picker.options] == ["PA (models' input)", "LATERAL"]
    browser.label_select.value = (CARDIO, EFFUSION)
    browser.truth_toggle.value = True
    frontal, computed = browser.image.value, browser.views.computed
    browser.view_picker.value = browser.view_picker.options[1][1]
    assert browser.image.value != frontal and browser.views.computed == computed + 4  # 2 labels x 2 models
    grid = picture(browser)
    assert magenta(tile_pixels(grid, 0, 0)) == 0 and magenta(tile_pixels(grid, 1, 0)) > 40  # effusion only
    assert "truth: present, not on this image" in browser.grid_captions[0] and "X-ray LATERAL" in browser.grid_captions[1]
    assert "outside what they learnt" in browser.predictions_html.value
    browser.slider.value = 1  # another study: back to its models' input
    assert browser.view_picker.index == 0


def test_study_id_box_jumps_and_rejects_with_a_message(browser):
    browser.study_box.value = "50000006"
    assert browser.study_id == 50000006 and "study <b>50000006</b>" in browser.title.value
    assert browser.study_box.value == ""  # ready for the next id
    for typed, said in (("123", "no study 123 in the cohort"), ("50000001", "in the train split"),
                        ("x1", "not a study id")):
        browser.study_box.value = typed
        assert said in browser.find_message.value and browser.study_id == 50000006


def test_revisiting_a_study_computes_nothing(browser):
    browser.slider.value = 1
    browser.slider.value = 0
    computed, views = dict(browser.explainer.cache.computed), browser.views.computed
    for _ in range(2):
        browser.slider.value = 1
        browser.slider.value = 0
    assert browser.explainer.cache.computed == computed and browser.views.computed == views
    assert browser.last_update_seconds < 1.0  # a wide bound: benchmarks/bench_explain.py measures it
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


def test_an_error_is_shown_and_the_browser_still_works(browser, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no heatmap today")

    with monkeypatch.context() as patch:
        patch.setattr(browser.explainer, "cams", broken)
        browser.slider.value = 1  # raised inside a widget callback: shown, not raised
        assert "no heatmap today" in browser.status.value and isinstance(browser.last_error, RuntimeError)
        assert not browser.label_select.disabled and not browser.slider.disabled
    browser.slider.value = 0
    assert browser.last_error is None and "shown in" in browser.status.value


# ----------------------------------------------------------------------------- finding studies
@pytest.fixture(scope="module")
def varied(explainer):
    """The same artifacts with hand-set labels: 50000005 Edema positive, 50000006 Cardiomegaly negative."""
    cohort = explainer.cohort.copy()
    cohort.loc[cohort["study_id"] == 50000005, "Edema"] = 1
    cohort.loc[cohort["study_id"] == 50000006, CARDIO] = 0
    return StudyExplainer(cohort, explainer.images, explainer.models, explainer.text_setting, explainer.cache,
                          max_length=explainer.max_length, pooling=explainer.pooling, shap_max_evals=explainer.shap_max_evals)


def expected_wrong(explainer, studies, label) -> list[int]:
    """'fusion wrong' worked out study by study (the finder computes it in one batch)."""
    found = []
    for study in studies:
        p, codes = explainer.probabilities(study, "fusion"), explainer.coded_labels(study)
        names = CHEXPERT_LABELS if label == ANY_LABEL else [label]
        if any((codes[n] == 1 and p[label_index(n)] < 0.5) or (codes[n] == 0 and p[label_index(n)] >= 0.5)
               for n in names):
            found.append(study)
    return found


def test_finder_selects_the_right_studies(varied, tmp_path):
    studies = varied.study_ids("test")
    finder = StudyFinder(varied, studies, tmp_path / RECORDS_FILE)
    assert finder.matching("positive", "Edema") == [50000005]
    assert finder.matching("positive", CARDIO) == [50000004, 50000005, 50000007]
    assert finder.matching("positive") == studies and finder.matching("all") == studies
    batch = finder.probabilities("fusion")
    one_by_one = np.stack([varied.probabilities(s, "fusion") for s in studies])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-5)
    fresh = StudyExplainer(varied.cohort, varied.images, varied.models, varied.text_setting, batch_size=3,
                           max_length=varied.max_length, pooling=varied.pooling)
    for role in ("image", "text"):  # in batches of 3 (one full, one partial), then memoised for single studies
        np.testing.assert_allclose(fresh.logits_many(studies, role), np.stack([varied.logits(s, role) for s in studies]),
                                   atol=1e-5)
    for label in (ANY_LABEL, CARDIO, "Pneumothorax"):
        assert finder.matching("fusion_wrong", label) == expected_wrong(varied, studies, label)
    fusion, image = batch >= 0.5, finder.probabilities("image") >= 0.5
    assert finder.matching("disagree", CARDIO) == [s for s, f, i in zip(studies, fusion[:, 1], image[:, 1],
                                                                        strict=True) if f != i]
    with pytest.raises(FilterUnavailable, match="notebook 05's section 7"):
        finder.matching("fusion_cam_misses")
    pd.DataFrame({"study_id": [50000004, 50000005, 50000006, 50000007, np.nan], "source": ["test"] * 4 + ["probe"],
                  "label": [CARDIO, CARDIO, EFFUSION, CARDIO, CARDIO], "model": ["fusion", "fusion", "fusion", "image", "image"],
                  "layer": "layer4", "detected": [1, 0, 1, 1, 1], "hit": [0, 0, 1, 0, 0],
                  "hit_exact": 0}).to_csv(tmp_path / RECORDS_FILE, index=False)  # the last row: a probe, no study
    assert finder.matching("fusion_cam_misses") == [50000004]  # 50000005 not detected, 50000006 hit
    assert finder.matching("image_cam_misses", CARDIO) == [50000007]
    assert finder.matching("fusion_cam_misses", EFFUSION) == []
    with pytest.raises(FilterUnavailable, match="no test-study records of the image ensemble model"):
        finder.matching("ensemble_cam_misses")


def test_filter_narrows_the_slider_and_says_what_it_did(varied, truth, tmp_path):
    browser = ExplanationBrowser(varied, truth=truth, tile=TILE, records_path=tmp_path / RECORDS_FILE)
    browser.go_to(50000006)
    before = shown(browser)
    browser.filter_label.value = "Edema"  # condition "all": any study still matches, nothing moves
    browser.filter_condition.value = "positive"
    assert browser.shown == [50000005] and browser.study_id == 50000005 and browser.slider.max == 0
    assert shown(browser)[0] != before[0] and shown(browser)[2] != before[2]
    assert "Edema" in browser.labels()  # the filter's label gets a row
    assert "1 of 4 studies" in browser.find_message.value and "(label positive in the CSV, Edema; 4 in all)" in browser.title.value
    browser.study_box.value = "50000004"
    assert "does not match the filter" in browser.find_message.value and browser.study_id == 50000005
    browser.filter_condition.value = "fusion_cam_misses"  # no records yet: refused, filter put back
    assert browser.filter_condition.value == "positive" and "section 7" in browser.find_message.value
    assert browser.shown == [50000005] and browser.last_error is None
    browser.filter_condition.value = "all"
    assert browser.shown == varied.study_ids("test") and browser.study_id == 50000005


def test_without_truth_the_overlay_is_off_and_disabled(explainer):
    browser = ExplanationBrowser(explainer, tile=TILE)
    assert browser.truth_toggle.disabled and browser.truth_toggle not in browser.controls
    browser.truth_toggle.value = True  # even if forced, nothing of the truth appears
    assert not browser.truth_on and "text-decoration:underline" not in browser.raw_report.value
    # no metadata CSV given: the study folder's other JPEG is still found, its view unknown
    assert [name for name, _ in browser.view_picker.options] == ["PA (models' input)", "other view"]


def test_explanation_browser_from_settings(explain_settings):
    browser = explanation_browser(settings=explain_settings)
    assert browser.studies == browser.explainer.study_ids("test") and browser.truth is not None
    assert browser.finder.records_path == explain_settings.artifacts_dir / "explanations" / RECORDS_FILE
    assert len(browser.views.images(50000004)) == 2 and browser.image.value
