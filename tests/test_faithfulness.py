"""The faithfulness checks: scores on hand-made heatmaps, masks and word values, their random
baselines, the span-to-word mapping, the randomisation test, and the whole run on a tiny phantom."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from benchmark_scripts import load_bench
from explain_factory import REPORT, split_head_image_model, tiny_fusion, tiny_text_tools, xray

import cxr_helpers.explain.faithfulness.image_checks as image_checks
import cxr_helpers.explain.faithfulness.randomisation as randomisation
from cxr_helpers.explain.faithfulness.detection import DETECTION_DROP, logit_drops, study_drops
from cxr_helpers.explain.faithfulness.figures import plot_checks, plot_randomisation
from cxr_helpers.explain.faithfulness.randomisation import cascading_stages, head_stages, randomise_modules
from cxr_helpers.explain.faithfulness.report import (
    ENSEMBLE_MODEL,
    grad_cam_per_label,
    grad_cam_table,
    map_summary,
    resolution_table,
    run_faithfulness,
    shap_table,
    summary_table,
)
from cxr_helpers.explain.faithfulness.resolution import grid_cells, layer_resolution
from cxr_helpers.explain.faithfulness.scores import (
    distance_to_mask,
    energy_inside_mask,
    ideal_map,
    mask_area_share,
    mask_auroc,
    peak_on_other_finding,
    pointing_game_hit,
    proportion_interval,
    random_top_k_hit,
    rank_correlation,
    tolerance_pixels,
    top_k_hit,
)
from cxr_helpers.explain.faithfulness.spans import (
    cleaned_word_offsets,
    finding_words,
    sentence_spans,
    span_word_indices,
)
from cxr_helpers.explain.faithfulness.text_checks import shap_checks
from cxr_helpers.explain.gradcam import cams_for_labels, label_baseline_map, label_baselines
from cxr_helpers.explain.models import text_head_logit_fn
from cxr_helpers.explain.shap_text import TextExplanation, explain_text
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.phantom import write_phantom
from cxr_helpers.phantom.probes import load_probes, write_probes
from cxr_helpers.phantom.truth import load_ground_truth, phantom_root
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


def test_pointing_game_with_tolerance_forgives_a_peak_just_beside_the_mask():
    mask = square_mask()  # rows and columns 8-15
    cam = np.zeros((32, 32))
    cam[10, 19] = 1.0  # 4 px right of the mask's last column
    assert not pointing_game_hit(cam, mask) and not pointing_game_hit(cam, mask, tolerance=3.9)
    assert pointing_game_hit(cam, mask, tolerance=4.0)
    cam[20, 20] = 2.0  # now the peak is diagonal from the corner (15, 15): distance sqrt(50) = 7.07
    assert not pointing_game_hit(cam, mask, tolerance=7.0) and pointing_game_hit(cam, mask, tolerance=7.1)
    assert tolerance_pixels(128) == pytest.approx(6.4) and tolerance_pixels(224, 15 / 224) == pytest.approx(15)


def test_a_peak_on_another_finding_is_told_apart_from_a_peak_on_nothing():
    mask = square_mask()  # the finding explained: rows and columns 8-15
    other = np.zeros((32, 32), dtype=bool)
    other[24:28, 24:28] = True  # another finding on the same image
    cam = np.zeros((32, 32))
    cam[25, 26] = 1.0
    assert not pointing_game_hit(cam, mask, 1.6) and peak_on_other_finding(cam, [None, other], 0.0)
    cam[21, 25] = 2.0  # 3 px above the other finding
    assert not peak_on_other_finding(cam, [other], 2.9) and peak_on_other_finding(cam, [other], 3.0)
    cam[2, 30] = 3.0  # far from everything
    assert not peak_on_other_finding(cam, [other], 3.0)
    assert not peak_on_other_finding(cam, [], 3.0) and not peak_on_other_finding(cam, [None, other & False], 3.0)


def test_the_wilson_interval_of_a_hit_rate():
    z2 = 1.959964**2
    for hits, n in ((3, 13), (7, 30), (246, 300)):
        low, high = proportion_interval(hits, n)
        share = hits / n
        assert low < share < high
        for bound in (low, high):  # each bound solves (share - p)^2 = z^2 p (1 - p) / n
            assert (share - bound) ** 2 == pytest.approx(z2 * bound * (1 - bound) / n, rel=1e-6)
    assert proportion_interval(0, 10)[0] == 0.0 and proportion_interval(10, 10)[1] == pytest.approx(1.0)
    narrow, wide = proportion_interval(60, 100), proportion_interval(6, 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert proportion_interval(0, 0) is None
    with pytest.raises(ValueError, match="successes"):
        proportion_interval(11, 10)


def test_the_map_summary_counts_misses_that_peak_on_another_finding():
    records = pd.DataFrame({
        "label": ["Atelectasis"] * 4 + ["Fracture"] * 2, "extent": "localised", "drop": 2.0,
        "detected": [True, True, True, True, True, False], "hit": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        "peak_on_other": [1.0, 1.0, 0.0, 0.0, 0.0, 1.0], "hit_random": 0.1, "tolerance_share": 0.1})
    overall = map_summary(records)["overall"]["localised"]
    assert overall["detected"] == 5 and overall["hit"] == pytest.approx(0.4) and overall["misses"] == 3
    assert overall["misses_on_other_finding"] == pytest.approx(1 / 3)  # the undetected fracture is not counted
    assert overall["hit_interval"] == pytest.approx(proportion_interval(2, 5))
    probes = map_summary(records.drop(columns="peak_on_other"))["overall"]["localised"]
    assert probes["misses"] == 3 and probes["misses_on_other_finding"] is None


def test_the_map_minus_the_label_baseline_points_past_the_label_default_spot():
    mask = square_mask()  # the finding: rows and columns 8-15
    default = np.zeros((32, 32), np.float32)
    default[26:30, 26:30] = 1.0  # where this label's map peaks on every chest, finding or not
    cam = 0.6 * mask.astype(np.float32) + default  # the finding is seen, but the default spot is hotter
    random_cam = np.zeros((32, 32), np.float32)
    plain = image_checks.map_scores(cam, random_cam, mask, tolerance=1.0)
    assert plain["hit"] == 0.0 and np.isnan(plain["hit_baseline"]) and np.isnan(plain["hit_exact_baseline"])
    scores = image_checks.map_scores(cam, random_cam, mask, tolerance=1.0, baseline=default)
    assert scores["hit"] == 0.0 and scores["hit_baseline"] == 1.0 and scores["hit_exact_baseline"] == 1.0
    assert (scores["peak_y"], scores["peak_x"]) == (26, 26)  # the peak reported is the plain map's
    wrong = image_checks.map_scores(cam, random_cam, mask, tolerance=1.0, baseline=cam)  # nothing left: no hit
    assert wrong["hit_baseline"] == float(pointing_game_hit(np.zeros_like(cam), mask, 1.0))


def test_each_label_s_baseline_map_is_computed_once_from_its_own_negatives():
    model = split_head_image_model()
    asked = []

    def negatives(label):
        asked.append(label)
        return [xray(64, seed=len(asked)), xray(64, seed=10 + len(asked))]

    baselines = label_baselines(model, negatives)
    first = baselines("Pleural Effusion")
    assert baselines("Pleural Effusion") is first and asked == ["Pleural Effusion"]
    np.testing.assert_allclose(first, label_baseline_map(model, [xray(64, seed=1), xray(64, seed=11)],
                                                         "Pleural Effusion"), atol=1e-6)
    baselines("Cardiomegaly")
    assert asked == ["Pleural Effusion", "Cardiomegaly"]


def test_a_random_peak_hits_the_mask_grown_by_the_tolerance():
    mask = square_mask()
    assert mask_area_share(mask) == pytest.approx(64 / 1024)
    assert mask_area_share(mask, tolerance=1) == pytest.approx((100 - 4) / 1024)  # grown by 1 px, corners stay out
    assert mask_area_share(mask, tolerance=100) == 1.0


def test_an_ideal_map_points_better_on_a_finer_grid():
    mask = np.zeros((128, 128), dtype=bool)
    mask[70:79, 20:29] = True  # a 9 px lesion, off every 4 x 4 cell centre
    assert not pointing_game_hit(ideal_map(mask, 4), mask, tolerance_pixels(128))  # layer4's peak: a cell centre
    assert pointing_game_hit(ideal_map(mask, 16), mask, tolerance_pixels(128))  # layer2 can say where it is
    assert ideal_map(mask, 8).shape == mask.shape and ideal_map(mask, 8).max() <= 1.0
    assert [grid_cells(layer, 128) for layer in ("layer2", "layer3", "layer4")] == [16, 8, 4]


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
    sentences = sentence_spans(report, spans)  # each span widened to its sentence, nothing beyond it
    assert [words[i] for i in sorted(span_word_indices(report, cleaned, sentences, "Cardiomegaly"))] == [
        "there", "is", "mild", "cardiomegaly"]
    assert [words[i] for i in sorted(span_word_indices(report, cleaned, sentences, "Pleural Effusion"))] == [
        "small", "left", "pleural", "effusion"]
    decimal = "FINDINGS:  Normal heart.  There is a 4.6 cm right lung base mass.  No effusion."
    start = decimal.index("mass")
    mass = sentence_spans(decimal, [{"label": "Lung Lesion", "start": start, "end": start + 4, "code": 1}])[0]
    assert decimal[mass["start"]:mass["end"]].strip() == "There is a 4.6 cm right lung base mass"


def _stated(report: str, *mentions: tuple[str, str, int]) -> tuple[str, list[dict]]:
    """A report and its spans: each (label, words, code) mention found in the report."""
    spans = []
    for label, words, code in mentions:
        start = report.index(words)
        spans.append({"label": label, "start": start, "end": start + len(words), "code": code, "section": "findings"})
    return report, spans


def test_a_finding_s_own_words_come_only_with_it_in_enough_sentences():
    reports = [
        _stated("FINDINGS:  Plate-like atelectasis at the left base.  Small left pleural effusion.",
                ("Atelectasis", "atelectasis", 1), ("Pleural Effusion", "pleural effusion", 1)),
        _stated("FINDINGS:  Plate-like atelectasis at the right base.  No pleural effusion.",
                ("Atelectasis", "atelectasis", 1), ("Pleural Effusion", "pleural effusion", 0)),
        _stated("FINDINGS:  Possible plate-like atelectasis.  Small right pleural effusion.",
                ("Atelectasis", "atelectasis", -1), ("Pleural Effusion", "pleural effusion", 1)),
        _stated("FINDINGS:  Small left pneumothorax.  Tiny plate-like scar.", ("Pneumothorax", "pneumothorax", 1)),
    ]
    own = finding_words(reports[:3], min_sentences=3)
    # "plate" and "like" come three times, each with atelectasis (present or possible); "atelectasis" too
    assert own["Atelectasis"] == {"plate", "like", "atelectasis"}
    # "effusion" is also negated, "small"/"left"/"right" go with other findings or too rarely
    assert "Pleural Effusion" not in own
    assert finding_words(reports, min_sentences=3)["Atelectasis"] == {"atelectasis"}  # the scar shares "plate-like"
    assert finding_words(reports[:3], min_sentences=4) == {}  # seen three times: not enough
    assert finding_words(reports[:2], min_sentences=1)["Pleural Effusion"] == {"small"}  # once, with the effusion


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

    def cam_model(self, study_id, role="fusion", layer="layer4"):
        model = split_head_image_model()
        return model, model.cam_layer(layer)

    def image(self, study_id):
        return np.zeros((self.size, self.size), np.float32)

    def cams(self, study_id, labels, role="fusion", method="gradcam", layer=None):
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


def detected_everywhere(monkeypatch, drop: float = 2.0):
    """Stand in for the counterfactual re-render (the hand-made fixture has no phantom.json): every drop = ``drop``."""
    monkeypatch.setattr(image_checks, "study_drops", lambda model_for, phantom, cases, size: np.full(len(cases), drop))


def test_checks_score_an_oracle_explanation_as_right(explain_settings, truth, monkeypatch):
    cohort = pd.read_csv(explain_settings.artifacts_dir / "cohort.csv", dtype={"dicom_id": str})
    row = cohort.iloc[0]
    oracle = OracleExplainer(truth, int(row["study_id"]), row["dicom_id"], 64, row["report_path"],
                             row["text_findings_impression"])
    detected_everywhere(monkeypatch)
    records = image_checks.study_checks(oracle, truth, [oracle.study_id])
    assert sorted(records["label"]) == ["Cardiomegaly", "Pleural Effusion"] and records["detected"].all()
    assert (records["hit"] == 1).all() and (records["hit_exact"] == 1).all() and (records["energy"] > 0.99).all()
    assert (records["energy_random"] < 0.5).all()
    assert records["area_share"].tolist() == pytest.approx(
        [truth.mask(row["dicom_id"], label, 64).mean() for label in records["label"]])
    assert (records["tolerance_share"] > records["area_share"]).all()
    assert all(truth.mask(row["dicom_id"], r.label, 64)[r.peak_y, r.peak_x] for r in records.itertuples())  # peak on the mask
    for r in records.itertuples():  # is the peak within the tolerance of the image's other finding?
        other = truth.mask(row["dicom_id"], next(x for x in records["label"] if x != r.label), 64)
        assert r.peak_on_other == float(distance_to_mask(other)[r.peak_y, r.peak_x] <= tolerance_pixels(64))
    assert dict(zip(records["label"], records["layer"], strict=True)) == {"Cardiomegaly": "layer3",
                                                                          "Pleural Effusion": "layer2"}
    detected_everywhere(monkeypatch, drop=DETECTION_DROP / 2)  # a model the finding does not move: no claim
    assert not image_checks.study_checks(oracle, truth, [oracle.study_id])["detected"].any()

    top_k, mentions = shap_checks(oracle, truth, [oracle.study_id], k=1)
    cardio = top_k[top_k["label"] == "Cardiomegaly"].iloc[0]
    assert cardio["hit"] == 1.0 and cardio["hit_random"] == pytest.approx(1 / cardio["n_words"])
    assert cardio["hit_sentence"] == 1.0 and cardio["hit_sentence_random"] > cardio["hit_random"]
    effusion = top_k[top_k["label"] == "Pleural Effusion"].iloc[0]
    assert effusion["hit"] == 0.0  # all-zero values: the first word, "there", is no effusion word
    assert effusion["hit_sentence"] == 0.0  # nor in "small left pleural effusion"
    assert effusion["top_words"] == "there" and cardio["top_words"] == "cardiomegaly"
    assert "hit_own" not in top_k  # no own words given, no such check
    own, _ = shap_checks(oracle, truth, [oracle.study_id], k=1, own_words={"Pleural Effusion": frozenset({"there"})})
    own = own.set_index("label")
    assert own.loc["Pleural Effusion", "hit_own"] == 1.0 and own.loc["Cardiomegaly", "hit_own"] == 1.0  # span kept
    assert own.loc["Pleural Effusion", "hit_own_random"] > own.loc["Pleural Effusion", "hit_random"]
    negation = mentions[(mentions["label"] == "Pneumothorax") & (mentions["code"] == 0)].iloc[0]
    assert negation["mention"] == "no pneumothorax"
    assert negation["mention_value"] == -1.0 and negation["sign_agrees"] == 1.0


class Brightness(torch.nn.Module):
    """A "model" whose every logit is 50 x the mean brightness: it sees any bright finding."""

    def forward(self, image):
        return image.mean(dim=(1, 2, 3))[:, None].repeat(1, 14) * 50


@pytest.fixture(scope="module")
def tiny_phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_phantom(root, n_studies=16, image_size=64, seed=3, workers=1, progress=False)
    return root


def test_a_model_that_sees_the_finding_loses_logit_without_it(tiny_phantom):
    truth = load_ground_truth(tiny_phantom)
    effusions = truth.visibility[(truth.visibility["label"] == "Pleural Effusion")
                                 & (truth.visibility["visibility"] == "clear")]
    cases = effusions.assign(label="Pleural Effusion")[["study_id", "dicom_id", "label"]].head(3)
    assert len(cases), "the seed must give a clearly visible effusion"
    drops = study_drops(lambda study_id: Brightness(), tiny_phantom, cases.reset_index(drop=True), 64)
    assert (drops > 0).all()  # an effusion brightens the lung base: without it the image is darker
    same = np.zeros((64, 64), np.uint8)
    assert logit_drops(Brightness(), [same], [same], "Edema", 64)[0] == 0.0


def test_probe_checks_and_layer_resolution_on_a_real_probe_set(tmp_path):
    write_probes(tmp_path, per_label=2, image_size=64, seed=0, labels=("Lung Lesion", "Cardiomegaly"))
    probes = load_probes(tmp_path)
    records = image_checks.probe_checks(split_head_image_model(), probes, 64)
    assert list(records["label"]) == ["Lung Lesion"] * 2 + ["Cardiomegaly"] * 2 and set(records["source"]) == {"probe"}
    # batched per label (the default) or one probe at a time: the same detection and the same maps
    one_by_one = image_checks.probe_checks(split_head_image_model(), probes, 64, batch_size=1)
    same = ["probe_id", "label", "drop", "hit", "hit_exact", "energy", "peak_y", "peak_x"]
    pd.testing.assert_frame_equal(records[same], one_by_one[same], atol=1e-5)
    assert list(records["layer"]) == ["layer2"] * 2 + ["layer3"] * 2
    assert records[["hit", "hit_random", "tolerance_share", "area_share"]].notna().all().all()
    resolution = layer_resolution(probes, 64)
    assert resolution["layer2"]["grid"] == 8 and resolution["layer4"]["grid"] == 2
    lesion = [resolution[layer]["localised"]["hit"] for layer in ("layer2", "layer3", "layer4")]
    assert lesion[0] >= lesion[2]  # a finer grid can never resolve less


def test_randomisation_compares_each_map_with_its_own_method_and_layer(explain_settings, monkeypatch):
    # with a "randomisation" that changes nothing, every map must come back identical: the map after
    # is computed with the same method and on the same layer as the map before
    monkeypatch.setattr(randomisation, "randomise_modules", lambda model, names, seed=0: copy.deepcopy(model))
    explainer = StudyExplainer.from_settings(explain_settings, cache=False)
    records = randomisation.randomisation_checks(explainer, explainer.study_ids("test")[:2])
    maps = records[records["kind"] == "Grad-CAM"]
    assert set(maps["model"]) == {"fusion", "image"}
    assert (maps["spearman"] > 0.999).all(), maps[["model", "label", "step", "spearman"]]


def test_run_faithfulness_writes_every_check_with_its_baseline(explain_settings, monkeypatch):
    detected_everywhere(monkeypatch)
    explainer = StudyExplainer.from_settings(explain_settings, cache=False)
    train = explainer.study_ids("train")
    assert explainer.label_negatives("Pleural Effusion", 4) == []  # every fixture study has both findings, so
    normal_chests = {"Pleural Effusion": [explainer.image(s) for s in train[:3]], "Cardiomegaly": []}  # pretend
    monkeypatch.setattr(explainer, "label_negatives", lambda label, n: normal_chests[label][:n])
    result = run_faithfulness(explain_settings, explainer, probes=False, randomisation_studies=1, progress=False)
    saved = json.loads((explain_settings.artifacts_dir / "metrics" / "faithfulness.json").read_text())
    assert saved == json.loads(json.dumps(result.summary))
    assert saved["n_studies"] == 4 and saved["cam_method"] == {"global": "layercam", "localised": "gradcam"} and saved["tolerance_px"] == pytest.approx(3.2)
    assert saved["cam_layers"] == {"global": "layer3", "localised": "layer2"}
    for model in ("fusion", "image"):
        figures = saved["grad_cam"]["test"][model]
        assert figures["findings"] == 8 and figures["detected"] == 8  # 4 studies x (Cardiomegaly, Pleural Effusion)
        assert set(figures["overall"]) == {"global", "localised"}
        assert {"hit", "hit_random", "tolerance_share", "energy"} <= set(figures["overall"]["global"])
    assert saved["baseline_negatives"] == explain_settings.cam_baseline_negatives > 0
    image_maps = result.maps[result.maps["model"] == "image"].set_index("label")
    assert image_maps.loc["Pleural Effusion", "hit_baseline"].isin([0.0, 1.0]).all()  # map minus its baseline
    assert image_maps.loc["Cardiomegaly", "hit_baseline"].isna().all()  # no negative image: no baseline, no claim
    assert result.maps.loc[result.maps["model"] == "fusion", "hit_baseline"].isna().all()  # the fusion's have none
    image = saved["grad_cam"]["test"]["image"]["overall"]
    assert image["localised"]["baseline_scored"] == 4 and image["global"]["baseline_scored"] == 0
    assert image["localised"]["hit_baseline"] == pytest.approx(image_maps.loc["Pleural Effusion", "hit_baseline"].mean())
    assert image["localised"]["hit_baseline_interval"] == pytest.approx(proportion_interval(
        int(image_maps.loc["Pleural Effusion", "hit_baseline"].sum()), 4))
    assert image["global"]["hit_baseline"] is None and image["global"]["hit_baseline_interval"] is None
    assert saved["grad_cam"]["test"]["fusion"]["overall"]["localised"]["hit_baseline_interval"] is None
    records = pd.read_csv(explain_settings.artifacts_dir / "explanations" / "faithfulness_records.csv")
    assert {"study_id", "label", "model", "layer", "detected", "hit", "hit_exact"} <= set(records.columns)
    assert len(records) == 16 and records["road"].notna().sum() == 16  # ROAD on the first detected findings
    assert set(result.top_k["text"]["label"]) == {"Cardiomegaly", "Pleural Effusion"}
    assert set(result.mentions["fusion"]["code"]) == {0, 1}
    steps = saved["randomisation"]["Grad-CAM image"]
    assert [s["randomised_through"] for s in steps] == [name for name, _ in cascading_stages(explainer.models.image)]
    assert "SHAP text" in saved["randomisation"]
    table = grad_cam_table(saved)
    assert {"source", "model", "extent", "layer", "detected", "hit", "hit_random", "tolerance_share"} <= set(table)
    assert set(grad_cam_per_label(saved, "test", "image").index) == {"Cardiomegaly", "Pleural Effusion"}
    words = shap_table(saved)
    assert set(words["model"]) == {"fusion", "text"} and (words["n mentions"] > 0).all()
    assert (words["top-k in its sentence"] >= words["top-k in span"]).all()  # a sentence holds its span
    assert (words["random (sentence)"] >= words["random ranking"]).all()
    assert (words["top-k in span or own words"] >= words["top-k in span"]).all()  # own words widen the span
    assert (words["random (own words)"] >= words["random ranking"]).all()
    assert set(saved["finding_words"]) <= set(CHEXPERT_LABELS) and all(saved["finding_words"].values())
    for share, interval in [*zip(words["top-k in span"], words["95% interval"], strict=True),
                            *zip(words["negation sign"], words["95% interval (sign)"], strict=True)]:
        assert interval[0] <= share <= interval[1] and interval[1] - interval[0] > 0.1  # a handful of findings
    assert saved["negation"]["text"]["overall"]["sign_agrees_interval"] == pytest.approx(proportion_interval(
        int(result.mentions["text"]["sign_agrees"].sum()), len(result.mentions["text"])))
    assert resolution_table(saved).empty  # no probes in this run
    checks = summary_table(saved)  # what `python -m cxr_helpers figures` prints for notebook 05
    with_baseline = table["hit_baseline"].notna()
    assert table.loc[with_baseline, ["model", "extent"]].values.tolist() == [["image", "localised"]]
    assert len(checks) == len(table) + with_baseline.sum() + 4 * len(words) + len(saved["randomisation"])
    subtracted = checks[checks["check"].str.endswith("map minus the label's baseline")]
    assert len(subtracted) == with_baseline.sum() and subtracted["n"].tolist() == [4]  # the effusions: scored
    assert checks["score"].notna().all() and (checks["n"] > 0).all()
    plot_checks(saved)
    plot_randomisation(result.randomisation)


# ----------------------------------------------------------------------------- the test-study benchmark's tables
def test_the_test_study_breakdown_counts_co_findings_and_scores_only_the_detected():
    bench = load_bench("bench_test_studies")
    records = pd.DataFrame({
        "dicom_id": ["a", "b", "b", "c", "c", "c"], "label": ["Atelectasis", "Atelectasis", "Fracture",
                                                             "Atelectasis", "Fracture", "Pneumothorax"],
        "visibility": ["clear", "clear", "subtle", "clear", "clear", "subtle"], "drop": [3.0, 2.0, 0.2, 1.5, 0.1, 0.0],
        "detected": [True, True, False, True, False, False], "hit": [1.0, 0.0, 1.0, 1.0, 0.0, 0.0],
        "hit_baseline": [1.0, 1.0, np.nan, 0.0, np.nan, np.nan]})
    counted = bench.with_co_findings(records)
    assert counted["others on the image"].tolist() == ["0", "1", "1", "2+", "2+", "2+"]
    table = bench.breakdown(counted, "visibility")
    assert table.loc["clear", "findings"] == 4 and table.loc["subtle", "findings"] == 2
    assert table.loc["clear", "detected"].startswith("0.75 [") and table.loc["clear", "detected"].endswith("(n=4)")
    assert table.loc["clear", "map points (detected)"].startswith("0.67 [")  # 2 of the 3 detected; not the 4th
    assert table.loc["subtle", "map points (detected)"] == "-"  # nothing detected: no claim
    assert table.loc["clear", "map minus baseline points"].startswith("0.67 [")
    assert table.loc["clear", "median drop"] == 1.75


def test_the_summary_counts_the_baseline_row_over_the_findings_it_scored():
    figures = {"findings": 12, "detected": 10, "hit": 0.5, "tolerance_share": 0.1, "hit_baseline": 0.6,
               "baseline_scored": 7}  # 3 detected findings' labels had no training image without them
    summary = {"cam_method": "gradcam", "cam_layers": "layer2",
               "grad_cam": {"probe": {"image": {"overall": {"localised": figures}}}}}
    checks = summary_table(summary).set_index("check")
    assert checks.loc["GradCAM pointing game (localised, layer2)", "n"] == 10
    assert checks.loc["GradCAM pointing game (localised, layer2), map minus the label's baseline", "n"] == 7
    assert checks.loc["GradCAM pointing game (localised, layer2), map minus the label's baseline", "score"] == 0.6


def test_the_counterfactual_world_adds_a_twin_without_one_localised_finding(tmp_path):
    from cxr_helpers.config import load_settings
    from cxr_helpers.prepare import ensure_phantom, load_cohort, open_image_cache, prepare_cohort

    bench = load_bench("bench_counterfactual_training")
    settings = load_settings(profile="phantom", fast=True, data_dir=tmp_path / "data" / "mimic-cxr-jpg",
                             reports_dir=tmp_path / "data" / "mimic-cxr-reports", artifacts_dir=tmp_path / "demo",
                             prepare_workers=1, n_studies=24)
    ensure_phantom(settings, progress=False)
    prepare_cohort(settings, progress=False)
    world, count = bench.counterfactual_world(settings, tmp_path / "world")
    before, after = load_cohort(settings.artifacts_dir), load_cohort(world.artifacts_dir)
    assert count > 0 and len(after) == len(before) + count
    cached, twins = open_image_cache(world.artifacts_dir, 64), after.iloc[len(before):]
    assert set(twins["split"]) == {"train"} and twins["cache_index"].tolist() == list(range(len(before), len(after)))
    truth = load_ground_truth(phantom_root(settings))
    recoded = 0
    for _, twin in twins.iterrows():
        dicom_id = twin["dicom_id"].removesuffix("_without")
        original = before[before["dicom_id"] == dicom_id].iloc[0]
        removed = [name for name in CHEXPERT_LABELS if twin[name] != original[name]]
        assert len(removed) <= 1  # one label changed (none if the report had already called it negative)
        if removed:
            assert twin[removed[0]] == 0 and truth.image_visibility(dicom_id, removed[0]) not in (None, "invisible")
            recoded += 1
        differs = cached[twin["cache_index"]] != cached[int(original["cache_index"])]
        assert differs.any() and differs.mean() < 0.5  # the finding is gone from the twin, the rest stays
    assert recoded >= count / 2  # most removed findings were reported, so their twins are relabelled
    untouched = before[before["split"] != "train"]
    np.testing.assert_array_equal(cached[untouched["cache_index"].to_numpy()],
                                  open_image_cache(settings.artifacts_dir, 64)[untouched["cache_index"].to_numpy()])


def test_bench_cam_shifts_moves_the_image_and_brings_its_map_back():
    bench = load_bench("bench_cam_shifts")
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, 8, 5] = 1.0
    moved = bench.shifted(image, 2, -3)
    assert moved.shape == image.shape and moved[0, 0, 10, 2] == 1.0 and moved.sum() == 1.0  # down 2, left 3
    assert torch.equal(bench.shifted(image, 0, 0), image)
    back = bench.shifted_back(moved[:, 0].numpy(), 2, -3)  # a map of the moved image, in the original frame
    assert back[0, 8, 5] == 1.0 and back.sum() == 1.0


def test_bench_cam_ensemble_scores_each_model_then_the_ensembles_of_the_seeds_and_of_all():
    bench = load_bench("bench_cam_ensemble")
    demo, one, two = (torch.nn.Linear(1, 1) for _ in range(3))
    named = bench.candidates(demo, {1: one, 2: two})
    assert list(named) == ["demo model", "seed 1", "seed 2", "ensemble: seeds 1, 2", "ensemble: demo + seeds 1, 2"]
    assert list(named["ensemble: seeds 1, 2"].members) == [one, two]
    assert list(named["ensemble: demo + seeds 1, 2"].members) == [demo, one, two]
    assert list(bench.candidates(demo, {1: one})) == ["demo model", "seed 1", "ensemble: demo + seeds 1"]


# ----------------------------------------------------------------------------- the image ensemble (CXR_IMAGE_ENSEMBLE)
@pytest.fixture()
def ensemble_settings(explain_settings, tmp_path):
    """A copy of the tiny artifacts folder (the tests below write checkpoints and metrics into it)."""
    shutil.copytree(explain_settings.artifacts_dir, tmp_path / "artifacts")
    return dataclasses.replace(explain_settings, artifacts_dir=tmp_path / "artifacts", image_ensemble=2)


def ensemble_maps(settings) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The single image model's and the ensemble's test-study records from ``run_faithfulness`` (disk cache on)."""
    explainer = StudyExplainer.from_settings(settings)  # the single model's maps are cached on disk
    assert len(explainer.models.image_ensemble.members) == 2
    result = run_faithfulness(settings, explainer, probes=False, randomisation_studies=1, write=False, progress=False)
    single = result.maps[result.maps["model"] == "image"].reset_index(drop=True)
    return single, result.maps[result.maps["model"] == ENSEMBLE_MODEL].reset_index(drop=True), result.summary


def test_the_image_ensemble_is_scored_beside_the_image_model_from_its_own_maps(ensemble_settings, monkeypatch):
    checkpoints = ensemble_settings.artifacts_dir / "checkpoints"
    with pytest.warns(UserWarning, match="CXR_IMAGE_ENSEMBLE=2"):  # no member trained yet: says how, works without
        explainer = StudyExplainer.from_settings(ensemble_settings, cache=False)
    assert explainer.models.image_ensemble is None and explainer.has("image")
    detected_everywhere(monkeypatch)
    shutil.copy(checkpoints / "image.pt", checkpoints / "image_member1.pt")  # a second member equal to the first
    single, ensemble, summary = ensemble_maps(ensemble_settings)
    assert len(ensemble) == len(single) == 8
    same = ["study_id", "label", "detected", "hit", "hit_exact", "peak_y", "peak_x"]
    pd.testing.assert_frame_equal(ensemble[same], single[same])  # the mean of two equal maps is the map
    np.testing.assert_allclose(ensemble["energy"], single["energy"], atol=1e-5)
    assert set(summary["grad_cam"]["test"]) == {"image", "fusion", ENSEMBLE_MODEL}
    assert ENSEMBLE_MODEL in set(grad_cam_table(summary)["model"])
    saved = torch.load(checkpoints / "image.pt", weights_only=True)  # now a member that differs
    generator = torch.Generator().manual_seed(0)
    for key, value in saved["state_dict"].items():
        if key.startswith("backbone.layer1") and value.is_floating_point() and value.ndim == 4:
            value.add_(0.5 * value.std() * torch.randn(value.shape, generator=generator))
    torch.save(saved, checkpoints / "image_member1.pt")
    single_again, ensemble, _ = ensemble_maps(ensemble_settings)  # the single model's maps from the disk cache
    np.testing.assert_allclose(single_again["energy"], single["energy"], atol=1e-6)
    assert np.abs(ensemble["energy"].to_numpy() - single["energy"].to_numpy()).max() > 1e-3  # its own maps
