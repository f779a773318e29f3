"""The faithfulness checks: scores on hand-made heatmaps, masks and word values, their random
baselines, the span-to-word mapping, the randomisation test, and the whole run on a tiny phantom."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from explain_factory import REPORT, split_head_image_model, tiny_fusion, tiny_text_tools, xray

from cxr_helpers.explain.faithfulness.checks import cam_checks, shap_checks
from cxr_helpers.explain.faithfulness.randomisation import cascading_stages, head_stages, randomise_modules
from cxr_helpers.explain.faithfulness.report import (
    negation_table,
    plot_checks,
    plot_randomisation,
    run_faithfulness,
    summary_table,
)
from cxr_helpers.explain.faithfulness.scores import (
    energy_inside_mask,
    mask_area_share,
    mask_auroc,
    pointing_game_hit,
    random_top_k_hit,
    rank_correlation,
    top_k_hit,
)
from cxr_helpers.explain.faithfulness.spans import cleaned_word_offsets, span_word_indices
from cxr_helpers.explain.faithfulness.truth import load_ground_truth, phantom_root
from cxr_helpers.explain.gradcam import cams_for_labels
from cxr_helpers.explain.models import text_head_logit_fn
from cxr_helpers.explain.shap_text import TextExplanation, explain_text
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.reports import extract_sections, text_for_setting


def square_mask(size: int = 32, start: int = 8, stop: int = 16) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[start:stop, start:stop] = True
    return mask


# ----------------------------------------------------------------------------- heatmap scores
def test_pointing_game_hit_and_miss():
    mask = square_mask()
    cam = np.zeros((32, 32))
    cam[10, 12] = 1.0
    assert pointing_game_hit(cam, mask)
    cam[30, 1] = 2.0
    assert not pointing_game_hit(cam, mask)
    with pytest.raises(ValueError, match="shape"):
        pointing_game_hit(np.zeros((16, 16)), mask)


def test_random_maps_hit_about_as_often_as_the_mask_area_share():
    mask = square_mask()  # 64 of 1024 pixels
    assert mask_area_share(mask) == pytest.approx(64 / 1024)
    rng = np.random.default_rng(0)
    hits = [pointing_game_hit(rng.random((32, 32)), mask) for _ in range(3000)]
    assert np.mean(hits) == pytest.approx(64 / 1024, abs=0.015)
    energies = [energy_inside_mask(rng.random((32, 32)), mask) for _ in range(200)]
    assert np.mean(energies) == pytest.approx(64 / 1024, abs=0.005)


def test_energy_and_auroc_of_perfect_inverse_and_flat_maps():
    mask = square_mask()
    assert energy_inside_mask(mask.astype(float), mask) == pytest.approx(1.0)
    assert energy_inside_mask(np.ones((32, 32)), mask) == pytest.approx(mask_area_share(mask))
    assert np.isnan(energy_inside_mask(np.zeros((32, 32)), mask))
    assert mask_auroc(mask.astype(float), mask) == pytest.approx(1.0)
    assert mask_auroc(1.0 - mask, mask) == pytest.approx(0.0)
    assert mask_auroc(np.random.default_rng(1).random((32, 32)), mask) == pytest.approx(0.5, abs=0.08)
    assert np.isnan(mask_auroc(np.ones((32, 32)), np.ones((32, 32), bool)))


# ----------------------------------------------------------------------------- words
def test_random_top_k_probability_matches_simulation():
    rng = np.random.default_rng(0)
    relevant = {3, 7}
    simulated = np.mean([top_k_hit(rng.random(20), relevant, k=3) for _ in range(4000)])
    assert random_top_k_hit(20, 2, 3) == pytest.approx(simulated, abs=0.02)
    assert random_top_k_hit(20, 2, 3) == pytest.approx(1 - (18 * 17 * 16) / (20 * 19 * 18))
    assert random_top_k_hit(5, 0, 3) == 0.0 and random_top_k_hit(2, 1, 3) == 1.0
    values = np.array([0.1, 0.9, -0.5, 0.3])
    assert top_k_hit(values, {1}, k=1) and not top_k_hit(values, {2}, k=3)


def test_spans_map_to_the_cleaned_words_that_state_them():
    report = REPORT.format(n=1, severity="mild")
    cleaned = text_for_setting(extract_sections(report), "findings_impression")
    words = cleaned.split()
    assert words[:4] == ["there", "is", "mild", "cardiomegaly"]
    spans = []
    for label, word, code in (("Cardiomegaly", "cardiomegaly", 1), ("Pneumothorax", "pneumothorax", 0),
                              ("Pleural Effusion", "pleural effusion", 1)):
        start = report.index(word)
        spans.append({"label": label, "start": start, "end": start + len(word), "code": code,
                      "section": "impression" if label == "Pleural Effusion" else "findings"})
    offsets = cleaned_word_offsets(report, cleaned)
    assert [report[a:b].lower() for a, b in offsets] == words
    assert span_word_indices(report, cleaned, spans, "Cardiomegaly") == {3}
    assert {words[i] for i in span_word_indices(report, cleaned, spans, "Pleural Effusion")} == {"pleural", "effusion"}
    assert span_word_indices(report, cleaned, spans, "Pneumothorax") == set()  # code 0 is not a positive statement
    negated = span_word_indices(report, cleaned, spans, "Pneumothorax", codes=(0,), with_negation_cue=True)
    assert [words[i] for i in sorted(negated)] == ["no", "pneumothorax"]
    listed = "FINDINGS:  There is no focal consolidation or pneumothorax."
    start = listed.index("pneumothorax")
    span = [{"label": "Pneumothorax", "start": start, "end": start + 12, "code": 0, "section": "findings"}]
    cleaned_list = "there is no focal consolidation or pneumothorax"
    cue = span_word_indices(listed, cleaned_list, span, "Pneumothorax", (0,), with_negation_cue=True)
    assert [cleaned_list.split()[i] for i in sorted(cue)] == ["no", "pneumothorax"]  # consolidation stays out
    assert span_word_indices(report, cleaned, spans, "Cardiomegaly", sections=("indication",)) == set()
    assert cleaned_word_offsets(report, "words never written in it") is None


# ----------------------------------------------------------------------------- randomisation
def test_rank_correlation():
    a = np.arange(10.0)
    assert rank_correlation(a, a * 3 + 1) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation(a, np.ones(10)))


def test_randomise_modules_changes_only_the_named_stages_of_a_copy():
    model = split_head_image_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stages = cascading_stages(model)
    assert [name for name, _ in stages] == ["head", "layer4", "layer3", "layer2", "layer1", "conv1"]
    assert stages[0][1] == ["backbone.fc"] and stages[-1][1] == ["backbone.conv1"]
    randomised = randomise_modules(model, ["backbone.fc", "backbone.layer4"], seed=0)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])  # the original is untouched
    after = randomised.state_dict()
    assert not torch.equal(after["backbone.fc.1.weight"], before["backbone.fc.1.weight"])
    assert not torch.equal(after["backbone.layer4.0.conv1.weight"], before["backbone.layer4.0.conv1.weight"])
    assert torch.equal(after["backbone.layer3.0.conv1.weight"], before["backbone.layer3.0.conv1.weight"])
    with pytest.raises(KeyError, match="no submodule"):
        randomise_modules(model, ["backbone.layer9"])


def test_fusion_heads_are_randomised_first():
    concat, film = tiny_fusion("concat"), tiny_fusion("film")
    assert cascading_stages(concat)[0] == ("head", ["head"])
    assert head_stages(film) == ["film4", "film3", "image_model.backbone.fc"]
    assert cascading_stages(film)[1] == ("layer4", ["image_model.backbone.layer4"])
    randomised = randomise_modules(film, head_stages(film))
    assert randomised._text_tools[1] is film._text_tools[1]
    assert not torch.equal(randomised.film4.project.weight, film.film4.project.weight)


def test_randomisation_changes_grad_cam_and_shap():
    model = split_head_image_model()
    image = xray(128, seed=5)
    original = cams_for_labels(model, model.cam_layer(), image, ["Cardiomegaly"])["Cardiomegaly"]
    again = cams_for_labels(model, model.cam_layer(), image, ["Cardiomegaly"])["Cardiomegaly"]
    assert rank_correlation(original, again) == pytest.approx(1.0)
    randomised = randomise_modules(model, ["backbone.fc", "backbone.layer4"], seed=0)
    changed = cams_for_labels(randomised, randomised.cam_layer(), image, ["Cardiomegaly"])["Cardiomegaly"]
    assert not np.allclose(changed, original, atol=1e-3)
    assert rank_correlation(original, changed) < 0.9

    from cxr_helpers.text.heads import TextHead

    tokenizer, encoder = tiny_text_tools()
    torch.manual_seed(3)
    head = TextHead(32, hidden=16).eval()
    assert head_stages(head) == ["mlp.3", "mlp.0"]
    text = "there is mild cardiomegaly there is no pneumothorax small left pleural effusion"
    values = explain_text(text_head_logit_fn(head, tokenizer, encoder, 64), text, ["Edema"], 30)["Edema"].values
    shuffled = randomise_modules(head, head_stages(head), seed=1)
    new = explain_text(text_head_logit_fn(shuffled, tokenizer, encoder, 64), text, ["Edema"], 30)["Edema"].values
    assert rank_correlation(values, new) < 0.9


# ----------------------------------------------------------------------------- the drivers, on hand-made explanations
class OracleExplainer:
    """Just enough of a StudyExplainer: one study whose Grad-CAM is the finding's mask itself."""

    text_setting = "findings_impression"

    def __init__(self, truth, study_id: int, dicom_id: str, size: int, report_path: str, cleaned: str):
        self.truth, self.study_id, self.dicom_id, self.size = truth, study_id, dicom_id, size
        self.images = np.zeros((1, size, size), np.uint8)
        self.report_path, self.cleaned = report_path, cleaned

    def row(self, study_id):
        return pd.Series({"dicom_id": self.dicom_id, "report_path": self.report_path})

    def probabilities(self, study_id, role="fusion"):
        return np.full(14, 0.9)

    def cams(self, study_id, labels, role="fusion", method="gradcam"):
        if method == "randomcam":
            rng = np.random.default_rng(0)
            return {label: rng.random((self.size, self.size)).astype(np.float32) for label in labels}
        return {label: self.truth.mask(self.dicom_id, label, self.size).astype(np.float32) for label in labels}

    def text(self, study_id):
        return self.cleaned

    def shap_values(self, study_id, labels, role="fusion"):
        words = self.cleaned.split()
        out = {}
        for label in labels:
            values = np.zeros(len(words))
            if label == "Cardiomegaly":
                values[words.index("cardiomegaly")] = 1.0
            if label == "Pneumothorax":
                values[words.index("no")] = -1.0
            out[label] = TextExplanation(label, [w + " " for w in words], values, 0.0, float(values.sum()))
        return out


@pytest.fixture(scope="module")
def truth(explain_settings):
    return load_ground_truth(phantom_root(explain_settings))


def test_ground_truth_masks_in_cache_geometry(explain_settings, truth):
    cohort = pd.read_csv(explain_settings.artifacts_dir / "cohort.csv", dtype={"dicom_id": str})
    dicom_id, study_id = cohort.loc[0, "dicom_id"], int(cohort.loc[0, "study_id"])
    raw = truth.raw_mask(dicom_id, "Cardiomegaly")
    assert raw.shape == (96, 80)
    mask = truth.mask(dicom_id, "Cardiomegaly", 64)
    assert mask.shape == (64, 64) and mask.dtype == bool
    assert mask.mean() == pytest.approx(raw.mean(), abs=0.02)
    assert truth.mask(dicom_id, "Edema", 64) is None
    assert truth.present(study_id, "Cardiomegaly") and not truth.present(study_id, "Edema")
    assert truth.image_visibility(dicom_id, "Pleural Effusion") == "clear"
    with pytest.raises(FileNotFoundError, match="Only the phantom"):
        load_ground_truth(explain_settings.artifacts_dir)


def test_checks_score_an_oracle_explanation_as_right(explain_settings, truth):
    cohort = pd.read_csv(explain_settings.artifacts_dir / "cohort.csv", dtype={"dicom_id": str})
    row = cohort.iloc[0]
    oracle = OracleExplainer(truth, int(row["study_id"]), row["dicom_id"], 64, row["report_path"],
                             row["text_findings_impression"])
    records = cam_checks(oracle, truth, [oracle.study_id], road_percentiles=None)
    assert sorted(records["label"]) == ["Cardiomegaly", "Pleural Effusion"]
    assert (records["pointing"] == 1).all() and (records["energy"] > 0.99).all() and (records["auroc"] > 0.99).all()
    assert (records["energy_random_cam"] < 0.5).all()
    assert records["area_share"].tolist() == pytest.approx(
        [truth.mask(row["dicom_id"], label, 64).mean() for label in records["label"]])

    top_k, mentions = shap_checks(oracle, truth, [oracle.study_id], k=1)
    cardio = top_k[top_k["label"] == "Cardiomegaly"].iloc[0]
    assert cardio["hit"] == 1.0 and cardio["hit_random"] == pytest.approx(1 / cardio["n_words"])
    effusion = top_k[top_k["label"] == "Pleural Effusion"].iloc[0]
    assert effusion["hit"] == 0.0  # all-zero values: the first word, "there", is no effusion word
    negation = mentions[(mentions["label"] == "Pneumothorax") & (mentions["code"] == 0)].iloc[0]
    assert negation["mention"] == "no pneumothorax"
    assert negation["mention_value"] == -1.0 and negation["sign_agrees"] == 1.0


def test_run_faithfulness_writes_every_check_with_its_baseline(explain_settings):
    explainer = StudyExplainer.from_settings(explain_settings, cache=False)
    result = run_faithfulness(explain_settings, explainer, road_percentiles=(50,), randomisation_studies=1, progress=False)
    saved = json.loads((explain_settings.artifacts_dir / "metrics" / "faithfulness.json").read_text())
    assert saved == json.loads(json.dumps(result.summary))
    assert saved["n_studies"] == 4 and saved["cam_method"] == "gradcam"
    for name in ("pointing_game", "energy_inside_mask", "mask_auroc", "road", "shap_top_k", "negation"):
        check = saved["checks_all_present"][name]
        assert check["baseline"] and set(check["models"]) >= {"fusion"}
        for model, figures in check["models"].items():
            # the untrained fusion model's Grad-CAM may be all zero (no energy); the others always score
            assert figures["overall"]["n"] > 0 or (model, name) == ("fusion", "energy_inside_mask"), (name, model)
            assert figures["overall"]["n"] == 0 or check["baseline"] in figures["overall"]
    cams = result.cam["image"]
    assert len(cams) == 8  # 4 test studies x (Cardiomegaly, Pleural Effusion), both visible
    assert set(cams["label"]) == {"Cardiomegaly", "Pleural Effusion"}
    assert cams["correct"].all()  # the split-head image model says yes to both
    assert saved["checks"]["pointing_game"]["models"]["image"]["overall"]["n"] == 8
    assert set(result.top_k["text"]["label"]) == {"Cardiomegaly", "Pleural Effusion"}
    assert set(result.mentions["fusion"]["code"]) == {0, 1}
    steps = saved["checks"]["randomisation"]["models"]["Grad-CAM image"]
    assert [s["randomised_through"] for s in steps] == [name for name, _ in cascading_stages(explainer.models.image)]
    assert "SHAP text" in saved["checks"]["randomisation"]["models"]
    table = summary_table(saved)
    assert {"check", "model", "score", "random baseline", "n"} <= set(table.columns)
    assert set(CHEXPERT_LABELS) >= set(saved["checks"]["mask_auroc"]["models"]["image"]["per_label"])
    negation = negation_table(saved)
    pneumothorax = negation[(negation["label"] == "Pneumothorax") & (negation["model"] == "fusion")].iloc[0]
    assert pneumothorax["n negated"] == 4 and pneumothorax["n positive"] == 0  # "there is no pneumothorax" x 4
    plot_checks(saved)
    plot_randomisation(result.randomisation)
