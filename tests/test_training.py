"""The shared fit loop: checkpoints, exact resume, skipping a finished run, prediction files, train_image."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from benchmark_scripts import load_bench
from cohort_factory import TinyConvModel, toy_cohort_frame

from cxr_helpers import training
from cxr_helpers.checkpoints import load_checkpoint
from cxr_helpers.config import load_settings, seed_everything
from cxr_helpers.datasets import CohortImageDataset, make_loader
from cxr_helpers.evaluation import save_predictions
from cxr_helpers.image_model import build_image_model
from cxr_helpers.image_training import forget_image_ensemble, train_image, train_image_ensemble
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.training import History, fit, load_history, lr_factor, predict

SIZE = 32


def toy_cohort(n: int = 48, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Cohort + cache where Atelectasis is positive exactly when the image is bright (learnable)."""
    rng = np.random.default_rng(seed)
    bright = rng.integers(0, 2, size=n)
    images = rng.integers(0, 100, size=(n, SIZE, SIZE)).astype(np.uint8) + (bright * 120).astype(np.uint8)[:, None, None]
    cohort = toy_cohort_frame(n)
    for name in CHEXPERT_LABELS:
        cohort[name] = rng.choice([1, 0, -1, -2], size=n)
    cohort["Atelectasis"] = bright
    return cohort, images


def settings_for(tmp_path, **overrides):
    values = dict(profile="phantom", fast=True, artifacts_dir=tmp_path, image_size=SIZE, epochs=2, batch_size=8, lr=1e-2,
                  lr_schedule="constant")  # a constant rate: more epochs continue a finished run
    values.update(overrides)
    return load_settings(**values)


def loaders(settings):
    cohort, images = toy_cohort()
    train = CohortImageDataset(cohort, images, "train")
    val = CohortImageDataset(cohort, images, "validate")
    return make_loader(train, settings.batch_size, True, settings.seed), make_loader(val, settings.batch_size, False)


def run(settings, folder, model=None, **kwargs):
    seed_everything(settings.seed)
    model = model or TinyConvModel()
    train_loader, val_loader = loaders(settings)
    history = fit(model, train_loader, val_loader, settings, folder, "tiny", progress=False, **kwargs)
    return model, history


def without_times(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "seconds"}


def test_fit_writes_checkpoints_loadable_with_weights_only(tmp_path):
    settings = settings_for(tmp_path)
    model, history = run(settings, tmp_path / "ckpt")
    assert len(history) == 2 and history.epoch == [1, 2]
    assert history.best_epoch == 1 + int(np.argmin(history.val_loss))
    best = torch.load(tmp_path / "ckpt" / "tiny.pt", weights_only=True)
    assert set(best) == {"state_dict", "meta"} and best["meta"]["epoch"] == history.best_epoch
    for key, tensor in model.state_dict().items():  # the model ends on the best epoch's weights
        torch.testing.assert_close(tensor, best["state_dict"][key])
    last = torch.load(tmp_path / "ckpt" / "tiny_last.pt", weights_only=True)
    assert last["epoch"] == 2 and "optimizer" in last and "rng" in last
    saved_history = json.loads((tmp_path / "ckpt" / "tiny_history.json").read_text())
    assert without_times(saved_history) == without_times(history.to_dict())
    assert load_history(tmp_path / "ckpt", "tiny").val_loss == history.val_loss
    fresh = TinyConvModel()
    meta = load_checkpoint(tmp_path / "ckpt" / "tiny.pt", fresh)
    assert meta["labels"] == list(CHEXPERT_LABELS) and meta["input_keys"] == ["image"]


@pytest.mark.parametrize("schedule", ["constant", "warmup_linear"])
def test_resumed_run_reaches_the_same_weights_and_history_as_an_uninterrupted_one(tmp_path, schedule):
    settings = settings_for(tmp_path, epochs=3, lr_schedule=schedule)
    straight, straight_history = run(settings, tmp_path / "straight")

    def crash(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt("simulated crash after epoch 1")

    with pytest.raises(KeyboardInterrupt):
        run(settings, tmp_path / "resumed", on_epoch_end=crash)
    torch.manual_seed(999)  # the resumed process starts from other random states
    np.random.seed(999)
    resumed, resumed_history = run(settings, tmp_path / "resumed")

    assert without_times(resumed_history.to_dict()) == without_times(straight_history.to_dict())
    a = torch.load(tmp_path / "straight" / "tiny_last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "tiny_last.pt", weights_only=True)
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for key, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[key]), key


def test_fit_gives_each_epoch_its_own_shuffle(tmp_path):
    settings = settings_for(tmp_path, epochs=3)
    train_loader, val_loader = loaders(settings)
    orders = []

    def record(epoch, history):
        orders.append(list(iter(train_loader.sampler)))  # the order the epoch just trained on

    fit(TinyConvModel(), train_loader, val_loader, settings, tmp_path, "tiny", progress=False, on_epoch_end=record)
    assert train_loader.sampler.epoch == 2
    assert orders[0] != orders[1] != orders[2]


def test_a_finished_run_is_loaded_not_retrained(tmp_path):
    settings = settings_for(tmp_path)
    first, history = run(settings, tmp_path / "ckpt")
    calls = []
    second, again = run(settings, tmp_path / "ckpt", on_epoch_end=lambda epoch, h: calls.append(epoch))
    assert calls == [] and again.val_loss == history.val_loss
    for key, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[key])
    _, extended = run(settings_for(tmp_path, epochs=3), tmp_path / "ckpt", on_epoch_end=lambda e, h: calls.append(e))
    assert calls == [3] and extended.val_loss[:2] == history.val_loss  # more epochs: trains on


def test_changed_settings_retrain_from_scratch_with_a_warning(tmp_path):
    run(settings_for(tmp_path), tmp_path / "ckpt")
    calls = []
    with pytest.warns(UserWarning, match="other settings"):
        run(settings_for(tmp_path, lr=5e-3), tmp_path / "ckpt", on_epoch_end=lambda e, h: calls.append(e))
    assert calls == [1, 2]


def test_lr_factor_warms_up_then_decays_linearly_to_zero():
    assert [lr_factor(step, 100, "constant") for step in (0, 50, 99)] == [1.0, 1.0, 1.0]
    factors = [lr_factor(step, 100, "warmup_linear") for step in range(100)]
    assert factors[:10] == pytest.approx([(step + 1) / 10 for step in range(10)])  # 10% of the steps warm up
    assert factors[9] == factors[10] == 1.0 and all(a > b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] == pytest.approx(1 / 90) and lr_factor(100, 100, "warmup_linear") == 0.0
    assert lr_factor(0, 3, "warmup_linear") == 1.0  # too few steps to warm up: at least one warmup step
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, "cosine")


def test_fit_moves_the_rate_of_every_step_along_the_schedule(tmp_path, monkeypatch):
    rates = []
    build = training._optimizer

    def recording_optimizer(model, settings):
        optimizer = build(model, settings)
        step = optimizer.step

        def recorded_step(*args, **kwargs):
            rates.append(optimizer.param_groups[0]["lr"])
            return step(*args, **kwargs)

        optimizer.step = recorded_step
        return optimizer

    monkeypatch.setattr(training, "_optimizer", recording_optimizer)
    for schedule in ("constant", "warmup_linear"):
        rates.clear()
        settings = settings_for(tmp_path, epochs=3, batch_size=2, lr_schedule=schedule)
        run(settings, tmp_path / schedule)
        steps = 3 * len(loaders(settings)[0])
        assert steps >= 30 and rates == pytest.approx([settings.lr * lr_factor(i, steps, schedule) for i in range(steps)])
    warmup = round(training.WARMUP_SHARE * steps)
    assert rates[0] == pytest.approx(settings.lr / warmup) and rates[warmup - 1] == pytest.approx(settings.lr)
    assert rates[-1] < rates[0]


def test_a_scheduled_run_with_more_epochs_retrains_from_scratch(tmp_path):
    run(settings_for(tmp_path, lr_schedule="warmup_linear"), tmp_path / "ckpt")
    calls = []
    with pytest.warns(UserWarning, match="other settings"):  # the rate's curve spans all the epochs
        run(settings_for(tmp_path, epochs=3, lr_schedule="warmup_linear"), tmp_path / "ckpt",
            on_epoch_end=lambda e, h: calls.append(e))
    assert calls == [1, 2, 3]


def test_fit_learns_a_learnable_toy_label(tmp_path):
    settings = settings_for(tmp_path, epochs=6, lr=3e-2)
    model, history = run(settings, tmp_path / "ckpt", resume=False)
    assert history.train_loss[-1] < history.train_loss[0]
    _, val_loader = loaders(settings)
    logits, targets, _ = predict(model, val_loader)
    from cxr_helpers.metrics import per_label_auroc

    assert per_label_auroc(logits, targets)["Atelectasis"] > 0.9


def test_predict_returns_rows_in_cohort_order_and_saves_the_design_csv(tmp_path):
    settings = settings_for(tmp_path)
    cohort, images = toy_cohort()
    test = CohortImageDataset(cohort, images, "test")
    model = TinyConvModel()
    logits, targets, indices = predict(model, make_loader(test, 5, shuffle=False))
    assert logits.shape == (12, 14) and targets.shape == (12, 14)
    np.testing.assert_array_equal(indices, np.sort(test.rows))
    np.testing.assert_array_equal(targets, cohort[list(CHEXPERT_LABELS)].to_numpy()[indices])
    path = save_predictions(settings.artifacts_dir / "predictions" / "tiny_test.csv", cohort.iloc[indices],
                                     1 / (1 + np.exp(-logits)), targets)
    table = pd.read_csv(path)
    expected = ["study_id", "dicom_id"] + [f"prob_{n}" for n in CHEXPERT_LABELS] + list(CHEXPERT_LABELS)
    assert list(table.columns) == expected
    np.testing.assert_array_equal(table["study_id"], cohort["study_id"].to_numpy()[indices])
    assert table[list(CHEXPERT_LABELS)].isin([1, 0, -1, -2]).all().all()
    with pytest.raises(ValueError, match="one row per image"):
        save_predictions(tmp_path / "x.csv", cohort.iloc[:3], np.zeros((2, 14)), np.zeros((2, 14)))


def write_artifacts(folder, size: int = SIZE):
    """cohort.csv + images_<S>.npy + images_<S>.json as notebook 01 writes them."""
    cohort, _ = toy_cohort()
    images = np.random.default_rng(3).integers(0, 256, size=(len(cohort), size, size), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    cohort.to_csv(folder / "cohort.csv", index=False)
    np.save(folder / f"images_{size}.npy", images)
    marker = {"size": size, "count": len(cohort), "complete": True, "done": [0]}
    (folder / f"images_{size}.json").write_text(json.dumps(marker))
    return cohort


def test_train_image_writes_metrics_baselines_and_test_predictions(tmp_path):
    cohort = write_artifacts(tmp_path)
    settings = load_settings(profile="phantom", fast=True, artifacts_dir=tmp_path, image_size=SIZE, epochs=1, batch_size=8,
                             blank_policy="ignore")  # then the history's loss is the paper's loss of metrics/image.json
    result = train_image(settings, progress=False)
    models = json.loads((tmp_path / "metrics" / "image.json").read_text())["models"]
    assert {"image", "baseline: all negative", "baseline: train prevalence"} <= set(models)
    assert set(models["image"]) == {"train", "validate", "test"}
    assert models["image"]["test"]["n"] == int((cohort["split"] == "test").sum())
    assert models["image"]["validate"]["loss"] == pytest.approx(result["history"].val_loss[0])
    assert models["image"]["test"]["ci_resamples"] == 2000 and len(models["image"]["test"]["macro_auroc_ci"]) == 2
    predictions = pd.read_csv(tmp_path / "predictions" / "image_test.csv")
    assert len(predictions) == models["image"]["test"]["n"]
    assert torch.load(tmp_path / "checkpoints" / "image.pt", weights_only=True)["meta"]["name"] == "image"


def test_the_image_ensemble_adds_models_of_the_next_seeds_and_scores_their_mean(tmp_path):
    write_artifacts(tmp_path)
    settings = load_settings(profile="phantom", fast=True, artifacts_dir=tmp_path, image_size=SIZE, epochs=1, batch_size=8,
                             image_ensemble=3)
    with pytest.raises(FileNotFoundError, match="image.pt"):
        train_image_ensemble(settings, progress=False)  # notebook 02's own model comes first
    train_image(settings, progress=False)
    outcome = train_image_ensemble(settings, progress=False)
    assert outcome["members"] == [tmp_path / "checkpoints" / f"image_member{i}.pt" for i in (1, 2)]
    members = outcome["model"].members
    assert len(members) == 3 and all(path.exists() for path in outcome["members"])
    second = build_image_model(settings)
    second.load_state_dict(torch.load(outcome["members"][0], weights_only=True)["state_dict"])
    assert all(torch.equal(a, b) for a, b in zip(second.state_dict().values(), members[1].state_dict().values(), strict=True))
    assert not torch.equal(members[0].backbone.conv1.weight, members[1].backbone.conv1.weight)  # other seeds
    assert not torch.equal(members[1].backbone.conv1.weight, members[2].backbone.conv1.weight)
    models = json.loads((tmp_path / "metrics" / "image.json").read_text())["models"]
    assert {"image", "image_ensemble"} <= set(models) and models["image_ensemble"]["test"]["n"] == models["image"]["test"]["n"]
    assert models["image_ensemble"]["test"]["macro_auroc"] != models["image"]["test"]["macro_auroc"]
    with pytest.raises(ValueError, match="CXR_IMAGE_ENSEMBLE"):
        train_image_ensemble(dataclasses.replace(settings, image_ensemble=1))
    predictions = tmp_path / "predictions" / "image_ensemble_test.csv"
    assert predictions.exists() and not forget_image_ensemble(settings)  # the setting is on: kept
    single = dataclasses.replace(settings, image_ensemble=1)  # a later run with one model: its figures go
    assert forget_image_ensemble(single) and not predictions.exists() and outcome["members"][0].exists()
    models = json.loads((tmp_path / "metrics" / "image.json").read_text())["models"]
    assert "image_ensemble" not in models and "image" in models and not forget_image_ensemble(single)


def test_results_table_orders_model_baselines_then_paper(tmp_path):
    from cxr_helpers.metrics import write_baselines, write_metrics
    from cxr_helpers.plots_training import results_vs_paper

    path = tmp_path / "image.json"
    write_metrics(path, "image", {"validate": {"loss": 0.5, "accuracy": 0.7, "macro_auroc": 0.8}})
    train = np.array([[1, 0], [0, 1], [0, 0]])
    write_baselines(path, train, {"validate": train})
    table = results_vs_paper(path)
    assert list(table.index) == ["image", "baseline: all negative", "baseline: all positive",
                                 "baseline: train prevalence", "paper: image-only ResNet-18"]
    assert table.loc["image", ("val", "macro_auroc")] == 0.8
    assert table.loc["paper: image-only ResNet-18", ("val", "accuracy")] == pytest.approx(0.7047)
    assert table.loc["paper: image-only ResNet-18", ("train", "loss")] == pytest.approx(0.2877)


def test_training_figures_draw_curves_and_mark_undefined_auroc():
    import matplotlib

    matplotlib.use("Agg")
    from cxr_helpers.plots_training import plot_history, plot_label_auroc

    history = History(epoch=[1, 2], train_loss=[0.7, 0.6], train_accuracy=[0.6, 0.7],
                               val_loss=[0.8, 0.7], val_accuracy=[0.5, 0.6], val_macro_auroc=[0.5, 0.6],
                               seconds=[1.0, 1.0], best_epoch=2)
    fig = plot_history(history, paper="paper: image-only ResNet-18")
    loss_axes = fig.axes[0]
    np.testing.assert_allclose(loss_axes.lines[1].get_ydata(), [0.8, 0.7])  # validation loss
    fig = plot_label_auroc({"image": {"Edema": 0.9, "Fracture": None}})
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["n/a"]
    assert [label.get_text() for label in fig.axes[0].get_yticklabels()] == ["Edema", "Fracture"]


class DtypeRecorder(TinyConvModel):
    """TinyConvModel that notes the dtype its convolution computes in while training."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def forward(self, image):
        if self.training:
            self.seen.add(self.conv(image).dtype)
        return super().forward(image)


@pytest.mark.parametrize("asked, has_bf16, expected", [(True, True, torch.bfloat16), (True, False, torch.float32),
                                                       (False, True, torch.float32)])
def test_mixed_precision_on_a_cpu_trains_in_bfloat16_only_where_the_cpu_computes_it(tmp_path, monkeypatch, asked,
                                                                                   has_bf16, expected):
    monkeypatch.setattr(training, "cpu_computes_bfloat16", lambda: has_bf16)
    model, settings = DtypeRecorder(), settings_for(tmp_path, mixed_precision=asked)
    _, history = run(settings, tmp_path / "ckpt", model=model)
    assert model.seen == {expected} and len(history) == 2 and np.isfinite(history.train_loss).all()
    assert training.training_precision(settings, torch.device("cpu")) == str(expected).removeprefix("torch.")  # printed


def test_the_phantom_profile_asks_for_mixed_precision_and_a_decaying_rate():
    settings = load_settings(profile="phantom", fast=False)
    assert settings.mixed_precision and settings.lr_schedule == "warmup_linear"
    assert not load_settings(profile="mimic", fast=False).mixed_precision  # the paper trained in float32
    assert isinstance(training.cpu_computes_bfloat16(), bool)


def test_the_recipe_benchmark_reads_its_runs():
    bench = load_bench("bench_image_recipe")
    assert bench.parse_run("8:warmup_linear:42") == {"epochs": 8, "lr_schedule": "warmup_linear", "seed": 42}
    assert bench.parse_run("6:constant:1:fp32") == {"epochs": 6, "lr_schedule": "constant", "seed": 1,
                                                    "mixed_precision": False}
    for bad in ("8:constant", "8:constant:x", "8:constant:1:fp16"):
        with pytest.raises(SystemExit, match="EPOCHS:SCHEDULE:SEED"):
            bench.parse_run(bad)
