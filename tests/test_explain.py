"""Grad-CAM and SHAP wrappers, the explanation cache, the study explainer and the per-study export.

Models are tiny and untrained (ResNet-18 at 64-128 px, a 1-layer BERT with hidden size 32), so
every test runs in seconds; ``build_artifacts`` writes a small artifacts folder (cohort, image
cache, checkpoints, tiny BERT) and a hand-made phantom ground truth, shared with
test_faithfulness.py and test_explain_browser.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cxr_helpers.config import load_settings
from cxr_helpers.explain import (
    ExplanationCache,
    FixedTextImageModel,
    LoadedModels,
    StudyExplainer,
    UnknownStudyError,
    cam_class,
    cam_panel_png,
    cams_for_labels,
    compute_cams,
    explain_study_to_files,
    explain_text,
    fusion_text_logit_fn,
    gray_to_rgb,
    overlay_cam,
    shap_report_html,
    text_head_logit_fn,
)
from cxr_helpers.labels import CHEXPERT_LABELS, label_index

SIZE = 64
CARDIO, EFFUSION = label_index("Cardiomegaly"), label_index("Pleural Effusion")
REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old with cough, study {n}.

 FINDINGS:
 There is {severity} cardiomegaly. There is no pneumothorax.

 IMPRESSION:
 Small left pleural effusion.
"""
SENTENCES = ["mild cardiomegaly", "no pneumothorax", "small left pleural effusion", "the lungs are clear",
             "moderate pulmonary edema", "there is no focal consolidation", "right picc line tip in the svc"]


# ----------------------------------------------------------------------------- tiny models
def tiny_text_tools(hidden: int = 32):
    """A whole-word BERT tokenizer (fixed vocabulary: the same ids every run) and a 1-layer BERT."""
    import tempfile

    from transformers import BertConfig, BertModel, BertTokenizerFast

    from cxr_helpers.reports import clean_text
    from cxr_helpers.text_model import SPECIAL_TOKENS

    corpus = [REPORT.format(n=i, severity=s) for i, s in enumerate(("mild", "moderate", "severe"))] + SENTENCES
    words = sorted({word for text in corpus for word in clean_text(text).split()})
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.txt").write_text("\n".join([*SPECIAL_TOKENS, *words]) + "\n")
        tokenizer = BertTokenizerFast.from_pretrained(folder, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    return tokenizer, BertModel(config).eval()


def split_head_image_model():
    """An ImageClassifier whose Cardiomegaly logit reads channels 0-255 and Pleural Effusion 256-511:
    their Grad-CAMs must differ, whatever the random convolutions are."""
    from cxr_helpers.image_model import ImageClassifier

    torch.manual_seed(0)
    model = ImageClassifier(freeze_through="layer2").eval()
    with torch.no_grad():
        linear = model.backbone.fc[1]
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[CARDIO, :256] = 1.0 / 256
        linear.weight[EFFUSION, 256:] = 1.0 / 256
    return model


def tiny_fusion(strategy: str = "concat", text_dim: int = 32, tools=None):
    """An untrained FusionModel with text tools attached (tokenizer + frozen tiny BERT)."""
    from cxr_helpers.fusion import FusionModel
    from cxr_helpers.image_model import ImageClassifier

    torch.manual_seed(1)
    model = FusionModel(ImageClassifier(freeze_through="none"), text_dim, strategy, hidden=16).eval()
    tokenizer, encoder = tools or tiny_text_tools(text_dim)
    model.attach_text_tools(tokenizer, encoder, max_length=64)
    if strategy == "film":  # FiLM starts as the identity; give it some effect of the report
        with torch.no_grad():
            for film in (model.film3, model.film4):
                film.project.weight.normal_(0, 0.5)
    return model


def xray(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """A noisy gray image with a bright disc (float32 (size, size) in [0, 1])."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size * 0.6) ** 2 + (xx - size * 0.45) ** 2) < (size * 0.18) ** 2
    return np.clip(0.3 + 0.1 * rng.standard_normal((size, size)) + 0.5 * disc, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- a tiny artifacts folder
def _masks(rows: int, cols: int) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[:rows, :cols]
    heart = ((yy - rows * 0.6) ** 2 / (rows * 0.15) ** 2 + (xx - cols * 0.45) ** 2 / (cols * 0.2) ** 2) < 1
    effusion = (yy > rows * 0.78) & (xx > cols * 0.55) & (xx < cols * 0.9)
    return {"Cardiomegaly": heart, "Pleural Effusion": effusion}


def build_artifacts(root: Path, n_studies: int = 8) -> object:
    """Write cohort.csv, images_64.npy, checkpoints, tiny BERT and a hand-made phantom ground truth; return settings."""
    from cxr_helpers.fusion import META_KEYS
    from cxr_helpers.reports import extract_sections, text_for_setting
    from cxr_helpers.text_model import TextHead

    artifacts, phantom = root / "artifacts", root / "phantom"
    truth_dir = phantom / "ground_truth"
    (truth_dir / "masks").mkdir(parents=True)
    (phantom / "mimic-cxr-jpg").mkdir(parents=True)
    reports_dir = phantom / "mimic-cxr-reports"
    reports_dir.mkdir(parents=True)
    rows, cache, spans, visibility, truth = [], [], [], [], []
    for i in range(n_studies):
        study_id, subject_id, dicom_id = 50000000 + i, 10000000 + i, f"{i:08x}-0000-0000-0000-000000000000"
        report = REPORT.format(n=i, severity=("mild", "moderate", "severe")[i % 3])
        report_path = reports_dir / f"s{study_id}.txt"
        report_path.write_text(report)
        sections = extract_sections(report)
        masks = _masks(96, 80)  # JPEG geometry: not square, not the cache size
        np.savez_compressed(truth_dir / "masks" / f"{dicom_id}.npz", **masks)
        image = xray(96, seed=i)[:, :80]
        image[masks["Cardiomegaly"]] += 0.3
        from PIL import Image

        cache.append(np.asarray(Image.fromarray(np.uint8(255 * np.clip(image, 0, 1))).resize((SIZE, SIZE))))
        study_spans = []
        for label, word, code, section in (("Cardiomegaly", "cardiomegaly", 1, "findings"),
                                           ("Pneumothorax", "pneumothorax", 0, "findings"),
                                           ("Pleural Effusion", "pleural effusion", 1, "impression")):
            start = report.index(word)
            study_spans.append({"label": label, "start": start, "end": start + len(word), "code": code,
                                "section": section})
        spans.append({"study_id": study_id, "spans": study_spans})
        visibility += [{"dicom_id": dicom_id, "study_id": study_id, "label": label, "visibility": "clear"}
                       for label in masks]
        truth.append({"study_id": study_id, **{label: int(label in masks) for label in CHEXPERT_LABELS}})
        labels = {label: -2 for label in CHEXPERT_LABELS}
        labels.update({"Cardiomegaly": 1, "Pleural Effusion": 1, "Pneumothorax": 0})
        rows.append({
            "subject_id": subject_id, "study_id": study_id, "dicom_id": dicom_id, "view_position": "PA",
            "split": "test" if i >= n_studies // 2 else "train", "image_path": f"/nowhere/{dicom_id}.jpg",
            "report_path": str(report_path), "cache_index": i, "indication": sections.get("indication", ""),
            "findings": sections.get("findings", ""), "impression": sections.get("impression", ""),
            "text_findings_impression": text_for_setting(sections, "findings_impression"),
            "text_indication": text_for_setting(sections, "indication"), **labels,
        })
    artifacts.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(artifacts / "cohort.csv", index=False)
    np.save(artifacts / f"images_{SIZE}.npy", np.stack(cache).astype(np.uint8))
    (artifacts / f"images_{SIZE}.json").write_text(json.dumps({"size": SIZE, "count": n_studies, "complete": True,
                                                               "done": [0], "failed": []}))
    pd.DataFrame(truth).to_csv(truth_dir / "truth.csv", index=False)
    pd.DataFrame(visibility).to_csv(truth_dir / "images.csv", index=False)
    (truth_dir / "report_spans.jsonl").write_text("".join(json.dumps(s) + "\n" for s in spans))

    tokenizer, encoder = tiny_text_tools()
    tokenizer.save_pretrained(artifacts / "text" / "tiny-bert")
    encoder.save_pretrained(artifacts / "text" / "tiny-bert")
    checkpoints = artifacts / "checkpoints"
    checkpoints.mkdir()
    torch.save({"state_dict": split_head_image_model().state_dict(), "meta": {"name": "image"}}, checkpoints / "image.pt")
    torch.manual_seed(2)
    torch.save({"state_dict": TextHead(32, hidden=16).state_dict(), "meta": {"name": "text_head"}},
               checkpoints / "text_head_findings_impression.pt")
    fusion = tiny_fusion(tools=(tokenizer, encoder))
    meta = {"strategy": "concat", "text_dim": 32, "hidden": 16, "dropout": 0.5, "text_setting": "findings_impression",
            "text_model": "tiny-bert", "image_size": SIZE, "end_to_end": False, "freeze_image": False,
            "pooling": "cls", "max_text_length": 64}
    assert set(META_KEYS) <= set(meta)
    torch.save({"state_dict": fusion.state_dict(), "meta": meta}, checkpoints / "fusion_concat_findings_impression.pt")
    return load_settings(artifacts_dir=artifacts, data_dir=phantom / "mimic-cxr-jpg", reports_dir=reports_dir,
                         image_size=SIZE, text_model="tiny-bert", max_text_length=64, shap_max_evals=20,
                         explain_studies=4, batch_size=16)


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return build_artifacts(tmp_path_factory.mktemp("explain"))


@pytest.fixture(scope="module")
def explainer(settings):
    return StudyExplainer.from_settings(settings, cache=False)


# ----------------------------------------------------------------------------- Grad-CAM
def test_cam_methods_by_name_and_clear_error():
    import pytorch_grad_cam

    assert cam_class("gradcam") is pytorch_grad_cam.GradCAM
    assert cam_class("gradcam++") is pytorch_grad_cam.GradCAMPlusPlus
    assert cam_class("HiResCAM") is pytorch_grad_cam.HiResCAM
    assert cam_class("randomcam") is pytorch_grad_cam.RandomCAM
    with pytest.raises(ValueError, match="gradcam"):
        cam_class("saliency")


def test_cams_have_the_image_shape_and_differ_per_target():
    model = split_head_image_model()
    cams = cams_for_labels(model, model.target_layer, xray(128), ["Cardiomegaly", "Pleural Effusion"])
    assert set(cams) == {"Cardiomegaly", "Pleural Effusion"}
    for cam in cams.values():
        assert cam.shape == (128, 128) and cam.dtype == np.float32
        assert 0.0 <= cam.min() and cam.max() <= 1.0 + 1e-6 and cam.max() > 0.5
    assert not np.allclose(cams["Cardiomegaly"], cams["Pleural Effusion"], atol=1e-3)


def test_one_target_per_image_in_a_batch():
    model = split_head_image_model()
    first, second = xray(96, seed=1), xray(96, seed=2)[::-1].copy()
    batch = torch.from_numpy(np.stack([first, second]))[:, None]  # (2, 1, 96, 96)
    maps = compute_cams(model, model.target_layer, batch, [CARDIO, EFFUSION])
    assert maps.shape == (2, 96, 96)
    alone_first = cams_for_labels(model, model.target_layer, first, ["Cardiomegaly"])["Cardiomegaly"]
    alone_second = cams_for_labels(model, model.target_layer, second, ["Pleural Effusion"])["Pleural Effusion"]
    np.testing.assert_allclose(maps[0], alone_first, atol=1e-4)
    np.testing.assert_allclose(maps[1], alone_second, atol=1e-4)
    with pytest.raises(ValueError, match="one label per image"):
        compute_cams(model, model.target_layer, batch, [CARDIO])


def test_frozen_target_layer_still_gets_gradients_and_stays_frozen():
    model = split_head_image_model()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    cam = cams_for_labels(model, model.target_layer, xray(128), ["Cardiomegaly"])["Cardiomegaly"]
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
    cams = cams_for_labels(wrapper, fusion.image_target_layer(), xray(64), ["Cardiomegaly", "Edema"])
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
    from cxr_helpers.text_model import TextHead

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
    from cxr_helpers.text_model import TextHead

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


def test_cache_answers_second_calls_from_memory_then_disk(settings, tmp_path, monkeypatch):
    cache = ExplanationCache(tmp_path / "explanations")
    explainer = StudyExplainer.from_settings(settings)
    explainer.cache = cache
    study = explainer.study_ids("test")[0]
    calls = {"cam": 0, "shap": 0}
    real_cams, real_text = cams_for_labels, explain_text
    import cxr_helpers.explain as explain_module

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

        fresh = StudyExplainer.from_settings(settings)  # a new session: the disk answers
        fresh.cache = ExplanationCache(tmp_path / "explanations")
        np.testing.assert_allclose(fresh.cams(study, ["Edema"])["Edema"], first["Edema"])
        np.testing.assert_allclose(fresh.shap_values(study, ["Edema"], role="text")["Edema"].values,
                                   shap_first["Edema"].values)
        assert calls == {"cam": 2, "shap": 1} and fresh.cache.computed == {"cam": 0, "shap": 0}

        fresh.models.fingerprints["fusion"] = "retrained"  # a new checkpoint: stale files are ignored
        fresh.cams(study, ["Edema"])
        assert calls["cam"] == 3
    files = sorted(p.name for p in (tmp_path / "explanations").rglob("*.*"))
    assert "cam_gradcam_edema.npz" in files and any(name.startswith("shap_partition") for name in files)


def test_explanations_are_cached_per_method(explainer):
    study = explainer.study_ids("test")[2]
    grad = explainer.cams(study, ["Cardiomegaly"], role="image", method="gradcam")["Cardiomegaly"]
    plus = explainer.cams(study, ["Cardiomegaly"], role="image", method="gradcam++")["Cardiomegaly"]
    eigen = explainer.cams(study, ["Cardiomegaly"], role="image", method="eigencam")["Cardiomegaly"]
    assert grad.shape == plus.shape == eigen.shape == (SIZE, SIZE)
    with pytest.raises(ValueError, match="role"):
        explainer.cams(study, ["Cardiomegaly"], role="text")
    with pytest.raises(ValueError, match="role"):
        explainer.shap_values(study, ["Cardiomegaly"], role="image")


def test_missing_models_name_the_notebook_that_trains_them(settings, tmp_path):
    import dataclasses

    empty = dataclasses.replace(settings, artifacts_dir=tmp_path)
    from cxr_helpers.explain import load_models

    with pytest.raises(FileNotFoundError, match="notebook 02"):
        load_models(empty, roles=("image",))
    with pytest.raises(FileNotFoundError, match="notebook 04"):
        load_models(empty, roles=("fusion",))
    assert isinstance(LoadedModels().names, dict)


# ----------------------------------------------------------------------------- one study to files
def test_explain_study_to_files_writes_png_and_html(settings, tmp_path):
    study = StudyExplainer.from_settings(settings, roles=("image",), cache=False).study_ids("test")[0]
    paths = explain_study_to_files(settings, study, out_dir=tmp_path)
    assert [p.suffix for p in paths] == [".png", ".html"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG"
    page = paths[1].read_text()
    assert page.startswith("<!doctype html>") and f"study {study}" in page and "cardiomegaly" in page
    image_only = explain_study_to_files(settings, study, out_dir=tmp_path, model_name="image")
    assert [p.suffix for p in image_only] == [".png"] and "image" in image_only[0].name
    with pytest.raises(UnknownStudyError, match="study_id"):
        explain_study_to_files(settings, 42, out_dir=tmp_path)
    with pytest.raises(ValueError, match="model_name"):
        explain_study_to_files(settings, study, out_dir=tmp_path, model_name="resnet")


# ----------------------------------------------------------------------------- exercises
def test_exercise_checks_accept_the_solutions_and_reject_stubs(capsys):
    from cxr_helpers.exercises import check_pointing_game_with_tolerance, check_words_pushing_away
    from cxr_helpers.solutions import pointing_game_with_tolerance, words_pushing_away

    assert check_pointing_game_with_tolerance(pointing_game_with_tolerance)
    assert check_words_pushing_away(words_pushing_away)
    assert not check_pointing_game_with_tolerance(lambda cam, mask, tolerance: None)
    assert not check_words_pushing_away(lambda explanation, k: None)
    assert "Not done yet" in capsys.readouterr().out
    strict = lambda cam, mask, tolerance: pointing_game_with_tolerance(cam, mask, 0)  # noqa: E731
    assert not check_pointing_game_with_tolerance(strict)
    assert not check_words_pushing_away(lambda explanation, k: [w for w, _ in explanation.top_words(k)])
