"""Grad-CAM and SHAP wrappers, the explanation cache, the study explainer and the per-study export.

Models are tiny and untrained (ResNet-18 at 64-128 px, a 1-layer BERT with hidden size 32), so
every test runs in seconds; ``explain_factory.build_artifacts`` writes a small artifacts folder (cohort, image
cache, checkpoints, tiny BERT) and a hand-made phantom ground truth, shared with
test_faithfulness.py and test_explain_browser.py.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from explain_factory import CARDIO, EFFUSION, SIZE, split_head_image_model, tiny_fusion, tiny_text_tools, xray

from cxr_helpers.explain.cache import ExplanationCache
from cxr_helpers.explain.export import explain_study_to_files
from cxr_helpers.explain.figures import cam_panel_png, gray_to_rgb, overlay_cam
from cxr_helpers.explain.gradcam import (
    FixedTextImageModel,
    cam_class,
    cam_for_label,
    cam_layer_for,
    cam_method_for,
    cams_for_labels,
    check_cam_method,
    compute_cams,
    label_baseline_map,
    minus_baseline,
)
from cxr_helpers.explain.models import (
    LoadedModels,
    fusion_text_logit_fn,
    load_models,
    text_head_logit_fn,
    text_logit_fn,
)
from cxr_helpers.explain.shap_text import explain_text, shap_report_html
from cxr_helpers.explain.study import StudyExplainer, UnknownStudyError
from cxr_helpers.image_model import ImageClassifier, ImageEnsemble
from cxr_helpers.labels import label_index
from cxr_helpers.text.finetune import build_text_classifier
from cxr_helpers.text.heads import TextClassifier, TextHead


@pytest.fixture(scope="module")
def explainer(explain_settings):
    return StudyExplainer.from_settings(explain_settings, cache=False)


# ----------------------------------------------------------------------------- Grad-CAM
def test_cam_methods_by_name_and_clear_error():
    import pytorch_grad_cam

    assert cam_class("gradcam") is pytorch_grad_cam.GradCAM
    assert cam_class("gradcam++") is pytorch_grad_cam.GradCAMPlusPlus
    assert cam_class("HiResCAM") is pytorch_grad_cam.HiResCAM
    assert cam_class("layercam") is pytorch_grad_cam.LayerCAM
    assert cam_class("randomcam") is pytorch_grad_cam.RandomCAM
    with pytest.raises(ValueError, match="gradcam"):
        cam_class("saliency")


def test_auto_picks_the_method_and_layer_by_the_findings_extent():
    assert [cam_method_for(name) for name in ("Cardiomegaly", "Edema", "Pneumothorax", "Lung Lesion")] == [
        "layercam", "layercam", "gradcam", "gradcam"]
    assert [cam_layer_for(name) for name in ("Cardiomegaly", "Pneumothorax")] == ["layer3", "layer2"]
    assert cam_method_for("Cardiomegaly", "GradCAM++") == "gradcam++" and cam_layer_for("Edema", "layer4") == "layer4"
    assert check_cam_method("auto") == "auto" and check_cam_method("HiResCAM") == "hirescam"
    with pytest.raises(ValueError, match="unknown CAM method"):
        check_cam_method("saliency")
    with pytest.raises(KeyError, match="Chest Pain"):
        cam_method_for("Chest Pain")


def test_cams_have_the_image_shape_and_differ_per_target():
    model = split_head_image_model()
    cams = cams_for_labels(model, model.cam_layer(), xray(128), ["Cardiomegaly", "Pleural Effusion"])
    assert set(cams) == {"Cardiomegaly", "Pleural Effusion"}
    for cam in cams.values():
        assert cam.shape == (128, 128) and cam.dtype == np.float32
        assert 0.0 <= cam.min() and cam.max() <= 1.0 + 1e-6 and cam.max() > 0.5
    assert not np.allclose(cams["Cardiomegaly"], cams["Pleural Effusion"], atol=1e-3)


def test_one_label_s_map_uses_the_method_and_layer_chosen_for_it():
    model, image = split_head_image_model(), xray(128)
    for label, method, layer in (("Cardiomegaly", "layercam", "layer3"), ("Pleural Effusion", "gradcam", "layer2")):
        expected = cams_for_labels(model, model.cam_layer(layer), image, [label], method)[label]
        np.testing.assert_array_equal(cam_for_label(model, image, label), expected)  # "auto": by its extent
    chosen = cams_for_labels(model, model.cam_layer("layer4"), image, ["Cardiomegaly"], "hirescam")["Cardiomegaly"]
    np.testing.assert_array_equal(cam_for_label(model, image, "Cardiomegaly", "hirescam", "layer4"), chosen)
    assert not np.allclose(cam_for_label(model, image, "Cardiomegaly"), chosen, atol=1e-3)


def test_a_labels_baseline_map_is_its_mean_map_over_the_given_images():
    model = split_head_image_model()
    images = [xray(64, seed=1), xray(64, seed=2), xray(64, seed=3)]
    baseline = label_baseline_map(model, images, "Pleural Effusion")
    maps = [cam_for_label(model, image, "Pleural Effusion") for image in images]
    assert baseline.shape == (64, 64) and baseline.dtype == np.float32
    # A batch of 3 may sum its convolutions in another order than one image at a time: on an AVX2-only
    # CPU the maps differed by up to 4e-4 (on [0, 1]); a wrong average differs by far more (next line).
    np.testing.assert_allclose(baseline, np.mean(maps, axis=0), atol=2e-3)
    assert not np.allclose(baseline, np.mean(maps[:2], axis=0), atol=1e-2)  # every image counts
    assert not np.allclose(baseline, label_baseline_map(model, images, "Cardiomegaly"), atol=1e-3)  # per label
    np.testing.assert_allclose(label_baseline_map(model, images[:1], "Pleural Effusion"), maps[0], atol=1e-6)
    with pytest.raises(ValueError, match="Pleural Effusion"):
        label_baseline_map(model, [], "Pleural Effusion")


def test_minus_baseline_keeps_what_rises_above_the_baseline_scaled_to_one():
    cam = np.array([[0.2, 0.9], [0.5, 0.1]], np.float32)
    baseline = np.array([[0.1, 0.9], [0.3, 0.4]], np.float32)
    np.testing.assert_allclose(minus_baseline(cam, baseline), [[0.5, 0.0], [1.0, 0.0]], atol=1e-6)
    assert not minus_baseline(cam, cam + 0.1).any()  # nothing above the baseline: an all-zero map


def test_one_target_per_image_in_a_batch():
    model = split_head_image_model()
    first, second = xray(96, seed=1), xray(96, seed=2)[::-1].copy()
    batch = torch.from_numpy(np.stack([first, second]))[:, None]  # (2, 1, 96, 96)
    maps = compute_cams(model, model.cam_layer(), batch, [CARDIO, EFFUSION])
    assert maps.shape == (2, 96, 96)
    alone_first = cams_for_labels(model, model.cam_layer(), first, ["Cardiomegaly"])["Cardiomegaly"]
    alone_second = cams_for_labels(model, model.cam_layer(), second, ["Pleural Effusion"])["Pleural Effusion"]
    np.testing.assert_allclose(maps[0], alone_first, atol=1e-4)
    np.testing.assert_allclose(maps[1], alone_second, atol=1e-4)
    with pytest.raises(ValueError, match="one label per image"):
        compute_cams(model, model.cam_layer(), batch, [CARDIO])


def test_an_ensemble_predicts_the_mean_logit_and_maps_the_mean_of_its_members_maps():
    first = split_head_image_model()
    torch.manual_seed(3)  # a random network whose Grad-CAM for the label is not all zero
    second = ImageClassifier(freeze_through="layer2").eval()
    ensemble = ImageEnsemble([first, second]).eval()
    image = xray(96)
    batch = torch.from_numpy(image)[None, None]
    with torch.no_grad():
        torch.testing.assert_close(ensemble(batch), (first(batch) + second(batch)) / 2)
    for method in ("gradcam", "layercam"):
        maps = [cams_for_labels(m, m.cam_layer("layer2"), image, ["Pleural Effusion"], method)["Pleural Effusion"]
                for m in (first, second)]
        mean = np.mean(maps, axis=0)
        expected = (mean - mean.min()) / (mean.max() - mean.min())
        got = cams_for_labels(ensemble, ensemble.cam_layer("layer2"), image, ["Pleural Effusion"], method)
        np.testing.assert_allclose(got["Pleural Effusion"], expected, atol=1e-5)
        assert not np.allclose(got["Pleural Effusion"], maps[0], atol=1e-3)  # the second member counts
    alone = ImageEnsemble([first])
    np.testing.assert_allclose(cam_for_label(alone, image, "Pleural Effusion"), cam_for_label(first, image, "Pleural Effusion"),
                               atol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        ImageEnsemble([])
    with pytest.raises(ValueError, match="one target layer per member"):
        compute_cams(ensemble, ensemble.cam_layer()[:1], batch, [EFFUSION])


def test_frozen_target_layer_still_gets_gradients_and_stays_frozen():
    model = split_head_image_model()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    cam = cams_for_labels(model, model.cam_layer(), xray(128), ["Cardiomegaly"])["Cardiomegaly"]
    assert cam.max() > 0.5
    assert not any(p.requires_grad for p in model.parameters())


def test_fusion_wrapper_holds_the_report_fixed():
    fusion = tiny_fusion()
    text = fusion.embed_texts(["mild cardiomegaly"])  # (1, H)
    wrapper = FixedTextImageModel(fusion, text)
    images = torch.from_numpy(np.stack([xray(64, 1), xray(64, 2), xray(64, 3)]))[:, None]
    with torch.no_grad():
        expected = fusion(image=images, text_features=text.expand(3, -1))
        torch.testing.assert_close(wrapper(images), expected)
    cams = cams_for_labels(wrapper, fusion.cam_layer(), xray(64), ["Cardiomegaly", "Edema"])
    assert all(cam.shape == (64, 64) for cam in cams.values())


def test_overlay_of_a_gray_image_is_rgb_uint8():
    image = xray(32)
    rgb = gray_to_rgb(image)
    assert rgb.shape == (32, 32, 3) and np.allclose(rgb[..., 0], rgb[..., 2])
    cam = np.zeros((32, 32), np.float32)
    cam[:8, :8] = 1.0
    overlay = overlay_cam(image, cam, opacity=0.6)
    assert overlay.shape == (32, 32, 3) and overlay.dtype == np.uint8
    assert not np.array_equal(overlay[2, 2], overlay[30, 30])  # hot corner vs cold corner
    png = cam_panel_png(image, [cam, cam], ["A p=0.9", "B p=0.1"], tile=64)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- SHAP
TEXT = "there is mild cardiomegaly there is no pneumothorax small left pleural effusion"


def test_shap_values_add_up_to_the_text_model_logit():
    from cxr_helpers.text.heads import TextHead

    tokenizer, encoder = tiny_text_tools()
    torch.manual_seed(3)
    head = TextHead(32, hidden=16).eval()
    logit_fn = text_head_logit_fn(head, tokenizer, encoder, max_length=64)
    explanations = explain_text(logit_fn, TEXT, ["Cardiomegaly", "Pneumothorax"], max_evals=30)
    logits = logit_fn([TEXT])[0]
    for label, explanation in explanations.items():
        assert explanation.words == TEXT.split()
        assert explanation.base_value + explanation.values.sum() == pytest.approx(float(logits[label_index(label)]), abs=1e-5)
        assert explanation.output == pytest.approx(float(logits[label_index(label)]), abs=1e-5)
        masked = logit_fn(["[MASK]"])[0][label_index(label)]
        assert explanation.base_value == pytest.approx(float(masked), abs=1e-5)  # all words masked
    assert not np.allclose(explanations["Cardiomegaly"].values, explanations["Pneumothorax"].values)


@pytest.mark.parametrize("strategy", ["concat", "decision", "film"])
def test_fusion_text_function_matches_the_model_and_adds_up(strategy):
    fusion = tiny_fusion(strategy)
    image = torch.from_numpy(xray(64))[None, None]
    logit_fn = fusion_text_logit_fn(fusion, image)
    texts = [TEXT, "no pneumothorax", "[MASK]"]
    with torch.no_grad():
        expected = fusion.forward_features(image.expand(3, -1, -1, -1), fusion.embed_texts(texts)).numpy()
    np.testing.assert_allclose(logit_fn(texts), expected, atol=1e-5)
    explanation = explain_text(logit_fn, TEXT, ["Edema"], max_evals=20)["Edema"]
    assert explanation.base_value + explanation.values.sum() == pytest.approx(float(expected[0, label_index("Edema")]), abs=1e-5)


def test_shap_explanations_repeat_and_render_as_html_without_scripts():
    tokenizer, encoder = tiny_text_tools()
    from cxr_helpers.text.heads import TextHead

    torch.manual_seed(4)
    logit_fn = text_head_logit_fn(TextHead(32, hidden=16).eval(), tokenizer, encoder, max_length=64)
    first = explain_text(logit_fn, TEXT, ["Edema"], max_evals=12)["Edema"]
    second = explain_text(logit_fn, TEXT, ["Edema", "Atelectasis"], max_evals=12)["Edema"]
    np.testing.assert_allclose(first.values, second.values)  # asked alone or with others: the same values
    page = shap_report_html([first])
    assert "<script" not in page and "Edema" in page and "cardiomegaly" in page
    with pytest.raises(ValueError, match="empty"):
        explain_text(logit_fn, "  ", ["Edema"])


# ----------------------------------------------------------------------------- the study explainer and cache
def test_explainer_loads_every_model_and_predicts(explainer):
    assert set(explainer.models.names) == {"fusion", "image", "text"}
    studies = explainer.study_ids("test")
    assert len(studies) == 4
    study = studies[0]
    assert explainer.image(study).shape == (SIZE, SIZE)
    assert "cardiomegaly" in explainer.text(study)
    for role in ("fusion", "image", "text"):
        p = explainer.probabilities(study, role)
        assert p.shape == (14,) and np.all((p > 0) & (p < 1))
        top = explainer.top_labels(study, role)
        assert len(top) == 3 and p[label_index(top[0])] == p.max()
    assert set(explainer.top_labels(study, "image", 2)) == {"Cardiomegaly", "Pleural Effusion"}  # the split head
    table = explainer.prediction_table(study)
    assert list(table.columns) == ["label", "coded label", "p(fusion)", "p(image)", "p(text)"]
    example = explainer.example_study()
    assert example in studies and explainer.coded_labels(example)["Cardiomegaly"] == 1


def test_a_label_s_negatives_are_training_images_its_labels_do_not_call_present(explainer, monkeypatch):
    train = explainer.study_ids("train")
    cohort = explainer.cohort.copy()  # every fixture study has cardiomegaly: code a few otherwise
    for study, code in zip(train[:4], (0, -2, -1, 0), strict=False):
        cohort.loc[cohort["study_id"] == study, "Cardiomegaly"] = code
    monkeypatch.setattr(explainer, "cohort", cohort)
    normal = [s for s in train if explainer.coded_labels(s)["Cardiomegaly"] not in (1, -1)]
    assert 0 < len(normal) < len(train) and normal == [s for s in train[:4] if s != train[2]]
    negatives = explainer.label_negatives("Cardiomegaly", 3)
    assert len(negatives) == min(3, len(normal))
    for image, study in zip(negatives, normal, strict=False):
        np.testing.assert_array_equal(image, explainer.image(study))  # the first ones, in cohort order
    assert len(explainer.label_negatives("Cardiomegaly", 10_000)) == len(normal)
    assert explainer.label_negatives("Cardiomegaly", 0) == []
    with pytest.raises(KeyError, match="Cardiomegally"):
        explainer.label_negatives("Cardiomegally", 3)


def test_the_image_model_s_baseline_map_is_cached_per_label_method_and_layer(explainer, monkeypatch):
    monkeypatch.setattr(explainer, "_baselines", {})
    assert explainer.baseline_map("Cardiomegaly") is None  # every fixture study has it: no normal chest
    normal = [explainer.image(s) for s in explainer.study_ids("train")[:3]]
    asked = []
    monkeypatch.setattr(explainer, "label_negatives", lambda label, n: asked.append((label, n)) or normal[:n])
    monkeypatch.setattr(explainer, "_baselines", {})
    first = explainer.baseline_map("Cardiomegaly", negatives=2)
    np.testing.assert_allclose(first, label_baseline_map(explainer.models.image, normal[:2], "Cardiomegaly"), atol=1e-6)
    assert explainer.baseline_map("Cardiomegaly", negatives=2) is first and asked == [("Cardiomegaly", 2)]
    on_layer4 = explainer.baseline_map("Cardiomegaly", "gradcam", "layer4", negatives=2)
    np.testing.assert_allclose(on_layer4, label_baseline_map(explainer.models.image, normal[:2], "Cardiomegaly",
                                                             "gradcam", "layer4"), atol=1e-6)
    explainer.baseline_map("Cardiomegaly")
    assert asked[-1] == ("Cardiomegaly", explainer.baseline_negatives)


def test_modality_reliance_matches_the_model(explainer):
    study = explainer.study_ids("test")[1]
    table = explainer.modality_reliance(study, ["Edema", "Cardiomegaly"])
    fusion = explainer.models.fusion
    image = explainer.image_tensor(study)
    with torch.no_grad():
        full = torch.sigmoid(fusion.forward_features(image, fusion.embed_texts([explainer.text(study)])))[0]
        blank = torch.sigmoid(fusion.forward_features(torch.zeros_like(image), fusion.embed_texts([explainer.text(study)])))[0]
    j = label_index("Edema")
    assert table.loc[0, "p(image + report)"] == pytest.approx(float(full[j]), abs=1e-5)
    assert table.loc[0, "p(report only)"] == pytest.approx(float(blank[j]), abs=1e-5)
    assert table.loc[0, "shift without image"] == pytest.approx(float(blank[j] - full[j]), abs=1e-5)


def test_unknown_study_says_where_to_find_valid_ids(explainer):
    with pytest.raises(UnknownStudyError, match="cohort.csv.*study_ids"):
        explainer.row(123)


def test_cache_answers_second_calls_from_memory_then_disk(explain_settings, tmp_path, monkeypatch):
    cache = ExplanationCache(tmp_path / "explanations")
    explainer = StudyExplainer.from_settings(explain_settings)
    explainer.cache = cache
    study = explainer.study_ids("test")[0]
    calls = {"cam": 0, "shap": 0}
    real_cams, real_text = cams_for_labels, explain_text
    import cxr_helpers.explain.study as explain_module

    def counting_cams(*args, **kwargs):
        calls["cam"] += 1
        return real_cams(*args, **kwargs)

    def counting_text(*args, **kwargs):
        calls["shap"] += 1
        return real_text(*args, **kwargs)

    monkeypatch.setattr(explain_module, "cams_for_labels", counting_cams)
    monkeypatch.setattr(explain_module, "explain_text", counting_text)
    if True:
        first = explainer.cams(study, ["Cardiomegaly", "Edema"])
        again = explainer.cams(study, ["Cardiomegaly", "Edema"])
        shap_first = explainer.shap_values(study, ["Edema"], role="text")
        shap_again = explainer.shap_values(study, ["Edema"], role="text")
        assert calls == {"cam": 1, "shap": 1}
        assert again["Edema"] is first["Edema"] and shap_again["Edema"] is shap_first["Edema"]
        explainer.cams(study, ["Cardiomegaly", "Fracture"])  # only Fracture is new
        assert calls["cam"] == 2 and cache.computed["cam"] == 3

        fresh = StudyExplainer.from_settings(explain_settings)  # a new session: the disk answers
        fresh.cache = ExplanationCache(tmp_path / "explanations")
        np.testing.assert_allclose(fresh.cams(study, ["Edema"])["Edema"], first["Edema"])
        np.testing.assert_allclose(fresh.shap_values(study, ["Edema"], role="text")["Edema"].values,
                                   shap_first["Edema"].values)
        assert calls == {"cam": 2, "shap": 1} and fresh.cache.computed == {"cam": 0, "shap": 0}

        fresh.models.fingerprints["fusion"] = "retrained"  # a new checkpoint: stale files are ignored
        fresh.cams(study, ["Edema"])
        assert calls["cam"] == 3
    files = sorted(p.name for p in (tmp_path / "explanations").rglob("*.*"))
    assert "cam_layercam_layer3_edema.npz" in files and any(name.startswith("shap_partition") for name in files)


def test_explanations_are_cached_per_method(explainer):
    study = explainer.study_ids("test")[2]
    grad = explainer.cams(study, ["Cardiomegaly"], role="image", method="gradcam")["Cardiomegaly"]
    plus = explainer.cams(study, ["Cardiomegaly"], role="image", method="gradcam++")["Cardiomegaly"]
    eigen = explainer.cams(study, ["Cardiomegaly"], role="image", method="eigencam")["Cardiomegaly"]
    assert grad.shape == plus.shape == eigen.shape == (SIZE, SIZE)
    by_extent = explainer.cams(study, ["Cardiomegaly", "Pneumothorax"], role="image", method="auto", layer="layer3")
    np.testing.assert_array_equal(by_extent["Cardiomegaly"],  # auto: LayerCAM for the global finding
                                  explainer.cams(study, ["Cardiomegaly"], "image", "layercam", "layer3")["Cardiomegaly"])
    np.testing.assert_array_equal(by_extent["Pneumothorax"],
                                  explainer.cams(study, ["Pneumothorax"], "image", "gradcam", "layer3")["Pneumothorax"])
    assert not np.array_equal(by_extent["Cardiomegaly"],
                              explainer.cams(study, ["Cardiomegaly"], "image", "gradcam", "layer3")["Cardiomegaly"])
    with pytest.raises(ValueError, match="role"):
        explainer.cams(study, ["Cardiomegaly"], role="text")
    with pytest.raises(ValueError, match="role"):
        explainer.shap_values(study, ["Cardiomegaly"], role="image")


def test_the_text_model_explained_is_the_end_to_end_one_where_it_was_trained(explain_settings, tmp_path):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(explain_settings.artifacts_dir, artifacts)
    settings = dataclasses.replace(explain_settings, artifacts_dir=artifacts)
    assert isinstance(load_models(settings, roles=("text",)).text, TextHead)  # only the frozen-encoder head
    classifier = build_text_classifier(settings)
    torch.save({"state_dict": classifier.state_dict(), "meta": {"name": "text_classifier_findings_impression"}},
               artifacts / "checkpoints" / "text_classifier_findings_impression.pt")
    models = load_models(settings, roles=("text",))
    assert isinstance(models.text, TextClassifier) and models.names["text"] == "text_classifier_findings_impression"
    logits = text_logit_fn(models)(["mild cardiomegaly", "no pneumothorax"])
    expected = torch.logit(torch.from_numpy(classifier.eval().predict_texts(["mild cardiomegaly", "no pneumothorax"])))
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4)


def test_missing_models_name_the_notebook_that_trains_them(explain_settings, tmp_path):
    empty = dataclasses.replace(explain_settings, artifacts_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="notebook 02"):
        load_models(empty, roles=("image",))
    with pytest.raises(FileNotFoundError, match="notebook 04"):
        load_models(empty, roles=("fusion",))
    assert isinstance(LoadedModels().names, dict)


# ----------------------------------------------------------------------------- one study to files
def test_explain_study_to_files_writes_png_and_html(explain_settings, tmp_path):
    study = StudyExplainer.from_settings(explain_settings, roles=("image",), cache=False).study_ids("test")[0]
    paths = explain_study_to_files(explain_settings, study, out_dir=tmp_path)
    assert [p.suffix for p in paths] == [".png", ".html"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG"
    page = paths[1].read_text()
    assert page.startswith("<!doctype html>") and f"study {study}" in page and "cardiomegaly" in page
    image_only = explain_study_to_files(explain_settings, study, out_dir=tmp_path, model_name="image")
    assert [p.suffix for p in image_only] == [".png"] and "image" in image_only[0].name
    with pytest.raises(UnknownStudyError, match="study_id"):
        explain_study_to_files(explain_settings, 42, out_dir=tmp_path)
    with pytest.raises(ValueError, match="model_name"):
        explain_study_to_files(explain_settings, study, out_dir=tmp_path, model_name="resnet")
