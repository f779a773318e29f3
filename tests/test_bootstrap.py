"""Paired bootstrap intervals over test studies: vectorised AUROC, intervals, differences, the JSON they land in."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxr_helpers import bootstrap
from cxr_helpers.cli import main
from cxr_helpers.evaluation import save_predictions
from cxr_helpers.metrics import macro_auroc, masked_accuracy
from cxr_helpers.results import best_model, class_figures, comparisons_table, readme_table


def synthetic_test_split(n: int = 100, skill: float = 1.0, seed: int = 0):
    """Coded targets (n, 14) and probabilities that follow the positives with ``skill`` (0 = noise)."""
    rng = np.random.default_rng(seed)
    targets = rng.choice([1, 0, -1, -2], size=(n, 14), p=[0.25, 0.35, 0.1, 0.3])
    noise = rng.normal(size=(n, 14))
    probabilities = 1 / (1 + np.exp(-(skill * (targets == 1) * 2 + noise)))
    return targets, probabilities


def test_weighted_auroc_equals_sklearn_with_ties_and_repeated_rows():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, size=80) / 5  # many ties
    positive = rng.random(80) < 0.3
    assert bootstrap.weighted_auroc(scores, positive, np.ones((1, 80)))[0] == pytest.approx(roc_auc_score(positive, scores))
    counts = rng.integers(0, 4, size=80)  # a resample: each row drawn 0-3 times
    repeated = roc_auc_score(np.repeat(positive, counts), np.repeat(scores, counts))
    assert bootstrap.weighted_auroc(scores, positive, counts[None, :])[0] == pytest.approx(repeated)


def test_a_resample_with_one_class_leaves_that_label_out():
    scores = np.array([0.1, 0.9, 0.4, 0.6])
    positive = np.array([False, True, False, True])
    weights = np.array([[1, 1, 1, 1], [2, 0, 2, 0]])  # the second resample drew negatives only
    result = bootstrap.weighted_auroc(scores, positive, weights)
    assert result[0] == 1.0 and np.isnan(result[1])
    targets = np.full((4, 14), -2)
    targets[:, 0] = positive.astype(int)  # label 0: one class in the second resample
    targets[:, 1] = [1, 1, 0, 0]  # label 1: both classes in both resamples
    per_resample = bootstrap.macro_auroc_resamples(np.tile(scores[:, None], (1, 14)), targets, weights)
    assert per_resample[0] == pytest.approx((1.0 + 0.5) / 2)  # label 1: 0.1 and 0.9 against 0.4 and 0.6
    assert per_resample[1] == pytest.approx(0.0)  # label 1 alone: 0.1 (positive) below 0.4 (negative)


def test_unit_weights_give_the_metrics_modules_figures():
    targets, probabilities = synthetic_test_split(60, skill=0.5)
    ones = np.ones((1, 60))
    assert bootstrap.macro_auroc_resamples(probabilities, targets, ones)[0] == pytest.approx(macro_auroc(probabilities, targets))
    assert bootstrap.accuracy_resamples(probabilities, targets, ones)[0] == pytest.approx(masked_accuracy(probabilities, targets))
    for policy in ("ones", "ignore"):
        assert bootstrap.macro_auroc_resamples(probabilities, targets, ones, policy)[0] == pytest.approx(
            macro_auroc(probabilities, targets, policy))


def test_resampling_draws_studies_so_images_of_a_study_move_together():
    study_ids = np.array([7, 7, 3, 9, 9, 9, 4])
    weights = bootstrap.study_weights(study_ids, resamples=50, seed=0)
    assert weights.shape == (50, 7)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()
    # each resample draws as many studies as there are (4): count each study once
    assert (weights[:, [0, 2, 3, 6]].sum(axis=1) == 4).all()


def test_the_interval_covers_the_estimate_and_is_deterministic_by_seed():
    targets, probabilities = synthetic_test_split(100, skill=0.7)
    study_ids = np.arange(100) * 3
    interval = bootstrap.model_interval(probabilities, targets, study_ids, seed=5)
    low, high = interval["macro_auroc_ci"]
    assert low < macro_auroc(probabilities, targets) < high
    low, high = interval["accuracy_ci"]
    assert low < masked_accuracy(probabilities, targets) < high
    assert interval["ci_resamples"] == bootstrap.DEFAULT_RESAMPLES
    assert bootstrap.model_interval(probabilities, targets, study_ids, seed=5) == interval
    assert bootstrap.model_interval(probabilities, targets, study_ids, seed=6) != interval


def test_identical_models_differ_by_exactly_zero_and_a_better_model_significantly():
    targets, weak = synthetic_test_split(100, skill=0.0, seed=2)
    _, strong = synthetic_test_split(100, skill=1.5, seed=2)
    study_ids = np.arange(100)
    same = bootstrap.paired_difference(weak, weak, targets, study_ids)
    assert same["estimate"] == 0.0 and same["ci"] == [0.0, 0.0] and not same["excludes_zero"]
    better = bootstrap.paired_difference(strong, weak, targets, study_ids)
    assert better["estimate"] == pytest.approx(macro_auroc(strong, targets) - macro_auroc(weak, targets))
    assert better["ci"][0] > 0 and better["excludes_zero"]
    # pairing: the difference's interval is narrower than the two models' intervals side by side
    strong_ci = bootstrap.model_interval(strong, targets, study_ids)["macro_auroc_ci"]
    weak_ci = bootstrap.model_interval(weak, targets, study_ids)["macro_auroc_ci"]
    assert better["ci"][1] - better["ci"][0] < (strong_ci[1] - strong_ci[0]) + (weak_ci[1] - weak_ci[0])


def test_two_thousand_resamples_of_a_hundred_studies_take_well_under_a_second():
    targets, probabilities = synthetic_test_split(100)
    began = time.perf_counter()
    bootstrap.model_interval(probabilities, targets, np.arange(100), resamples=2000)
    assert time.perf_counter() - began < 1.0  # about 0.05 s measured; sklearn per resample and label takes ~15 s


def write_predictions(folder, name, probabilities, targets, order=None):
    order = np.arange(len(targets)) if order is None else order
    rows = pd.DataFrame({"study_id": 1000 + np.arange(len(targets)), "dicom_id": [f"d{i}" for i in range(len(targets))]})
    return save_predictions(folder / f"{name}_test.csv", rows.iloc[order], probabilities[order], targets[order])


def test_saved_predictions_are_compared_row_by_row_whatever_their_order(tmp_path):
    targets, weak = synthetic_test_split(80, skill=0.2, seed=3)
    _, strong = synthetic_test_split(80, skill=1.0, seed=3)
    write_predictions(tmp_path, "strong", strong, targets, order=np.random.default_rng(0).permutation(80))
    write_predictions(tmp_path, "weak", weak, targets)
    saved = bootstrap.compare_saved(tmp_path, "strong", "weak")
    direct = bootstrap.paired_difference(strong, weak, targets, 1000 + np.arange(80))
    assert saved["estimate"] == pytest.approx(direct["estimate"], abs=1e-5)
    assert saved["ci"] == pytest.approx(direct["ci"], abs=1e-5)
    other = targets.copy()
    other[0, 0] = 1 - abs(other[0, 0])
    write_predictions(tmp_path, "other", weak, other)
    with pytest.raises(ValueError, match="different targets"):
        bootstrap.compare_saved(tmp_path, "strong", "other")


def write_metrics_dir(folder):
    """image.json and text.json with two models each, their predictions, and the comparisons of text.json."""
    targets, weak = synthetic_test_split(60, skill=0.1, seed=4)
    _, strong = synthetic_test_split(60, skill=1.2, seed=4)
    (folder / "metrics").mkdir(parents=True)
    figures = {name: {"validate": {"macro_auroc": score}, "test": {"accuracy": 0.8, "macro_auroc": score, "n": 60,
                                                                   "macro_auroc_ci": [score - 0.05, score + 0.05]}}
               for name, score in (("image", 0.6), ("tfidf_indication", 0.7))}
    (folder / "metrics" / "image.json").write_text(json.dumps({"models": {"image": figures["image"]}}))
    text = {"models": {"tfidf_indication": figures["tfidf_indication"], "baseline: all negative": {"test": {}}}}
    (folder / "metrics" / "text.json").write_text(json.dumps(text))
    write_predictions(folder / "predictions", "tfidf_indication", strong, targets)
    write_predictions(folder / "predictions", "image", weak, targets)
    return bootstrap.record_comparisons(folder / "metrics" / "text.json",
                                        [("tfidf_indication", "image", "text minus image"), ("absent", "image", "-")],
                                        folder / "predictions")


def test_comparisons_land_in_the_metrics_json_and_the_tables(tmp_path):
    comparisons = write_metrics_dir(tmp_path)
    assert list(comparisons) == ["tfidf_indication - image"]  # the pair without predictions is left out
    stored = json.loads((tmp_path / "metrics" / "text.json").read_text())
    assert stored["comparisons"] == json.loads(json.dumps(comparisons))
    assert "tfidf_indication" in stored["models"]  # the models are kept
    table = comparisons_table(tmp_path / "metrics")
    assert table.loc[0, "minus"] == "image" and table.loc[0, "CI excludes 0"]
    assert table.loc[0, "ci_low"] < table.loc[0, "difference"] < table.loc[0, "ci_high"]
    readme = readme_table(tmp_path / "metrics").set_index("model")
    assert readme.loc["image", "AUROC 95% CI"] == "[0.550, 0.650]"
    assert "baseline: all negative" not in readme.index and "paper: late fusion (test)" in readme.index
    assert best_model(tmp_path / "metrics", ["image", "tfidf_indication", "absent"]) == "tfidf_indication"
    assert best_model(tmp_path / "metrics", ["absent"]) is None


def test_the_class_figures_are_read_from_the_artifacts_folder(tmp_path, capsys):
    assert "run the notebooks" in class_figures(tmp_path)
    write_metrics_dir(tmp_path)
    figures = class_figures(tmp_path)
    assert "== 02 image baseline" in figures and "[0.550, 0.650]" in figures  # image's interval, from image.json
    assert "== 03 text baseline" in figures and "differences (paired bootstrap)" in figures
    assert "== 04 fusion" not in figures  # no fusion.json yet
    assert main(["figures", "--artifacts", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == figures


def test_an_all_one_class_split_has_no_interval():
    targets = np.zeros((10, 14), dtype=int)
    interval = bootstrap.model_interval(np.random.default_rng(0).random((10, 14)), targets, np.arange(10), resamples=20)
    assert interval["macro_auroc_ci"] == [None, None]
