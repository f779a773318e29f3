"""Fusion strategies: shapes, gradient flow to both encoders, FiLM's identity start, checkpoint
initialisation, cached-image equivalence, modality ablation, and train_fusion end to end on a tiny
synthetic artifacts folder (frozen text never calls the encoder on the reports)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from cohort_factory import toy_cohort_frame
from transformers import BertConfig, BertModel

import cxr_helpers.fusion.build as fusion_build
import cxr_helpers.fusion.train as fusion_train
from cxr_helpers.config import load_settings
from cxr_helpers.datasets import CohortImageDataset, make_loader
from cxr_helpers.fusion.ablation import ABLATION_CONDITIONS, empty_text_embedding, modality_ablation
from cxr_helpers.fusion.build import META_KEYS, build_fusion_model, load_fusion_model
from cxr_helpers.fusion.model import STRATEGIES, FusionModel, fusion_name
from cxr_helpers.fusion.tables import (
    comparison_table,
    label_aurocs,
    leakage_table,
    per_label_table,
    reliance_table,
)
from cxr_helpers.fusion.train import train_fusion
from cxr_helpers.fusion.trunk_cache import CachedImageDataset, cache_image_trunks
from cxr_helpers.image_model import ImageClassifier
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.metrics import masked_bce
from cxr_helpers.text.encoder import compute_embeddings
from cxr_helpers.text.tiny_bert import wordpiece_vocabulary, wrap_tokenizer

SIZE = 64
TEXT_DIM = 24
BERT_HIDDEN = 32
REPORTS = ["no pleural effusion", "mild cardiomegaly", "right lower lobe opacity", "no pneumothorax",
           "small left effusion", "lungs are clear", "stable support devices", "no acute process"] * 3


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=BERT_HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    return BertModel(config)


@pytest.fixture(scope="module")
def tokenizer():
    return wrap_tokenizer(wordpiece_vocabulary(REPORTS, vocab_size=120))


def make_model(strategy, text_encoder=None, freeze_image=False, dropout=0.0, seed=0, text_dim=None):
    torch.manual_seed(seed)
    dim = text_dim or (BERT_HIDDEN if text_encoder is not None else TEXT_DIM)
    return FusionModel(ImageClassifier(dropout=dropout, freeze_through="none"), dim, strategy, hidden=16,
                       dropout=dropout, text_encoder=text_encoder, freeze_image=freeze_image, image_size=SIZE)


def random_batch(n=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 1, SIZE, SIZE, generator=generator)
    text = torch.randn(n, TEXT_DIM, generator=generator)
    targets = torch.randint(-2, 2, (n, 14), generator=generator).float()
    return image, text, targets


def nonzero_grad(parameter) -> bool:
    return parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shapes_and_input_keys(strategy, tokenizer):
    image, text, _ = random_batch()
    model = make_model(strategy).eval()
    assert model.input_keys == ("image", "text_features")
    assert model(image=image, text_features=text).shape == (4, 14)
    assert model.forward_features(image, text).shape == (4, 14)
    assert model.encode_text(text_features=text) is text  # cached features pass through untouched
    assert model.cam_layer() is model.image_model.backbone.layer4
    e2e = make_model(strategy, text_encoder=tiny_bert()).eval()
    assert e2e.input_keys == ("image", "input_ids", "attention_mask")
    tokens = tokenizer(REPORTS[:4], padding=True, return_tensors="pt")
    assert e2e.encode_text(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).shape == (4, BERT_HIDDEN)
    logits = e2e(image=image, input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    assert logits.shape == (4, 14)


def test_unknown_strategy_and_wrong_text_width_are_refused():
    with pytest.raises(ValueError, match="strategy"):
        make_model("early")
    image, _, _ = random_batch()
    with pytest.raises(ValueError, match="dimensions"):
        make_model("concat")(image=image, text_features=torch.zeros(4, TEXT_DIM + 1))


def _one_step(model):
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    model.zero_grad()


def text_side_parameter(model):
    """The first parameter that reads the report embedding, per strategy."""
    if model.strategy == "concat":
        return model.head[0].weight
    return model.text_head[0].weight if model.strategy == "decision" else model.film3.project.weight


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gradients_reach_the_image_encoder_and_the_text_side(strategy):
    image, text, targets = random_batch()
    model = make_model(strategy).train()
    text = text.clone().requires_grad_()
    masked_bce(model(image=image, text_features=text), targets).backward()
    assert nonzero_grad(model.image_model.backbone.layer4[1].conv2.weight)
    assert nonzero_grad(text_side_parameter(model))
    if strategy == "film":  # FiLM starts at zero: the report's gradient appears after the first step
        assert not nonzero_grad(text)
        _one_step(model)
        text.grad = None
        masked_bce(model(image=image, text_features=text), targets).backward()
    assert text.grad is not None and text.grad.abs().sum() > 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_end_to_end_gradients_reach_the_text_encoder(strategy, tokenizer):
    image, _, targets = random_batch()
    model = make_model(strategy, text_encoder=tiny_bert()).train()
    tokens = tokenizer(REPORTS[:4], padding=True, return_tensors="pt")
    inputs = {"image": image, "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    encoder_weights = [model.text_encoder.embeddings.word_embeddings.weight,
                       model.text_encoder.encoder.layer[0].attention.self.query.weight]
    masked_bce(model(**inputs), targets).backward()
    if strategy == "film":
        _one_step(model)
        masked_bce(model(**inputs), targets).backward()
    assert all(nonzero_grad(w) for w in encoder_weights)
    assert nonzero_grad(model.image_model.backbone.layer4[1].conv2.weight)


def test_film_starts_as_the_unconditioned_image_model():
    image, text, _ = random_batch()
    model = make_model("film", dropout=0.5).eval()
    image_only = model.image_model(image)  # the image model's own forward: no report at all
    assert torch.allclose(model(image=image, text_features=text), image_only, atol=1e-6)
    with torch.no_grad():
        model.film4.project.weight.normal_(std=0.1)
    assert not torch.allclose(model(image=image, text_features=text), image_only, atol=1e-4)


def test_frozen_image_encoder_gets_no_gradients_and_keeps_batchnorm_statistics():
    image, text, targets = random_batch()
    model = make_model("concat", freeze_image=True).train()
    bn = model.image_model.backbone.bn1
    before = bn.running_mean.clone()
    masked_bce(model(image=image, text_features=text), targets).backward()
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert model.image_model.backbone.layer4[1].conv2.weight.grad is None
    assert nonzero_grad(model.head[0].weight)
    with pytest.raises(ValueError, match="frozen"):
        make_model("concat").use_cached_image(True)


def settings_for(tmp_path, **overrides):
    values = dict(profile="phantom", fast=True, artifacts_dir=tmp_path, image_size=SIZE, epochs=1, batch_size=8,
                  fusion_hidden=16, lr=1e-3)
    values.update(overrides)
    return load_settings(**values)


def save_image_checkpoint(path, seed=3, image_size=SIZE):
    torch.manual_seed(seed)
    model = ImageClassifier(freeze_through="layer2")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "meta": {"fingerprint": {"image_size": image_size}}}, path)
    return model


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_built_from_the_image_checkpoint(tmp_path, strategy):
    saved = save_image_checkpoint(tmp_path / "checkpoints" / "image.pt")
    model = build_fusion_model(settings_for(tmp_path), strategy, TEXT_DIM)
    for name, tensor in saved.state_dict().items():
        assert torch.equal(model.image_model.state_dict()[name], tensor), name
    # The paper: no layer of the encoder frozen. Only concat's unused fc head (512 -> 14) is.
    for name, parameter in model.image_model.named_parameters():
        assert parameter.requires_grad == (strategy != "concat" or not name.startswith("backbone.fc")), name
    with pytest.raises(ValueError, match="px"):
        build_fusion_model(settings_for(tmp_path, image_size=SIZE * 2), strategy, TEXT_DIM)
    with pytest.raises(FileNotFoundError, match="notebook 02"):
        build_fusion_model(settings_for(tmp_path / "elsewhere"), strategy, TEXT_DIM)


def toy_cohort(n=24, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, SIZE, SIZE)).astype(np.uint8)
    cohort = toy_cohort_frame(n)
    cohort["text_findings_impression"] = [REPORTS[i % len(REPORTS)] for i in range(n)]
    cohort["text_indication"] = ["cough" if i % 2 else "fever" for i in range(n)]
    for name in CHEXPERT_LABELS:
        cohort[name] = rng.choice([1, 0, -1, -2], size=n)
    cohort["Atelectasis"] = np.arange(n) % 2  # both classes in every split
    return cohort, images


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cached_image_features_give_the_same_logits_as_images(strategy):
    cohort, images = toy_cohort()
    model = make_model(strategy, freeze_image=True, dropout=0.5).eval()
    with torch.no_grad():
        model.film3.project.weight.normal_(std=0.1) if strategy == "film" else None
    trunks = cache_image_trunks(model.image_model, cohort, images, [model.trunk_kind], batch_size=8,
                                       device="cpu", progress=False)
    text = np.random.default_rng(1).normal(size=(len(cohort), TEXT_DIM)).astype(np.float32)
    base = CohortImageDataset(cohort, images, "test", text_features=text)
    batch = base.__getitems__(list(range(len(base))))
    cached = CachedImageDataset(base, trunks[model.trunk_kind]).__getitems__(list(range(len(base))))
    assert "image" not in cached and torch.equal(cached["index"], batch["index"])
    with torch.no_grad():
        from_images = model(image=batch["image"], text_features=batch["text_features"])
        model.use_cached_image(True)
        assert model.input_keys == ("image_features", "text_features")
        from_cache = model(image_features=cached["image_features"], text_features=cached["text_features"])
    assert torch.allclose(from_images, from_cache, atol=1e-5)


def test_modality_ablation_changes_outputs_and_uses_the_empty_report(tokenizer):
    cohort, images = toy_cohort()
    encoder = tiny_bert()
    features = compute_embeddings(cohort["text_findings_impression"], tokenizer, encoder, device="cpu",
                                             progress=False)
    loader = make_loader(CohortImageDataset(cohort, images, "test", text_features=features), 8, False)
    model = make_model("concat", dropout=0.5, text_dim=BERT_HIDDEN)
    model.attach_text_tools(tokenizer, encoder, max_length=32)
    result = modality_ablation(model, loader)
    assert set(ABLATION_CONDITIONS) <= set(result)
    losses = {c: result[c]["loss"] for c in ABLATION_CONDITIONS}
    assert len({round(v, 9) for v in losses.values()}) == 3, losses  # each ablation changes the outputs
    expected = compute_embeddings([""], tokenizer, encoder, device="cpu", progress=False)[0]
    assert np.allclose(empty_text_embedding(model).numpy(), expected, atol=1e-6)
    zeros = modality_ablation(model, loader, text_removal="zeros")
    assert zeros["text_removed"]["loss"] != result["text_removed"]["loss"]
    assert result["full"] == zeros["full"]
    full_auroc = result["full"]["macro_auroc"]
    assert result["reliance"]["text"] == pytest.approx(full_auroc - result["text_removed"]["macro_auroc"])


class CountingEncoder(torch.nn.Module):
    """Wraps a BertModel and records the batch size of every call."""

    def __init__(self, encoder):
        super().__init__()
        self.inner, self.config, self.calls = encoder, encoder.config, []

    def forward(self, **kwargs):
        self.calls.append(int(kwargs["input_ids"].shape[0]))
        return self.inner(**kwargs)


def write_artifacts(root, n=24):
    """cohort.csv, images_<S>.npy (+ marker), checkpoints/image.pt and embedding files for both settings."""
    cohort, images = toy_cohort(n)
    root.mkdir(parents=True, exist_ok=True)
    cohort.to_csv(root / "cohort.csv", index=False)
    np.save(root / f"images_{SIZE}.npy", images)
    (root / f"images_{SIZE}.json").write_text(json.dumps({"size": SIZE, "count": n, "complete": True, "done": []}))
    save_image_checkpoint(root / "checkpoints" / "image.pt")
    rng = np.random.default_rng(5)
    embeddings = {s: rng.normal(size=(n, BERT_HIDDEN)).astype(np.float32) for s in ("findings_impression", "indication")}
    (root / "text").mkdir(exist_ok=True)
    for setting, array in embeddings.items():
        np.save(root / "text" / f"embeddings_{setting}.npy", array)
    return cohort, embeddings


@pytest.fixture
def fake_text_side(monkeypatch, tokenizer):
    """load_text_encoder -> (tokenizer, CountingEncoder); cached_embeddings -> the files written above."""
    made = []

    def load(name_or_path, settings, progress=True):
        encoder = CountingEncoder(tiny_bert())
        made.append(encoder)
        return tokenizer, encoder

    def cached(settings, cohort, setting, progress=True, encoder=None):
        return np.load(settings.artifacts_dir / "text" / f"embeddings_{setting}.npy")

    monkeypatch.setattr(fusion_train, "load_text_encoder", load)
    monkeypatch.setattr(fusion_build, "load_text_encoder", load)
    monkeypatch.setattr(fusion_train, "cached_embeddings", cached)
    return made


def test_train_fusion_frozen_text_reads_cached_embeddings_only(tmp_path, fake_text_side):
    cohort, embeddings = write_artifacts(tmp_path)
    settings = settings_for(tmp_path)
    out = train_fusion(settings, progress=False, end_to_end=False)
    names = [fusion_name(s, t) for t in ("findings_impression", "indication") for s in STRATEGIES]
    assert sorted(out["models"]) == sorted(names)
    # The frozen encoder met only the empty report (one text per model, for the ablation), never the reports.
    assert fake_text_side and all(set(e.calls) <= {1} for e in fake_text_side)
    assert sum(len(e.calls) for e in fake_text_side) == len(names)
    data = json.loads((tmp_path / "metrics" / "fusion.json").read_text())
    assert set(data["models"]) == set(names) and set(data["ablation"]) == set(names)
    for name in names:
        assert set(data["models"][name]) == {"train", "validate", "test"}
        assert data["runs"][name]["freeze_image"] and not data["runs"][name]["end_to_end"]
        meta = torch.load(tmp_path / "checkpoints" / f"{name}.pt", weights_only=True)["meta"]
        assert all(key in meta for key in META_KEYS) and meta["text_dim"] == BERT_HIDDEN
    # Rebuilt from its checkpoint, a model reproduces its saved test predictions from images + cached text.
    name = "fusion_film_indication"
    model = load_fusion_model(tmp_path, name, device="cpu")
    test = CohortImageDataset(cohort, np.load(tmp_path / f"images_{SIZE}.npy"), "test",
                              text_features=embeddings["indication"])
    batch = test.__getitems__(list(range(len(test))))
    with torch.no_grad():
        probabilities = torch.sigmoid(model(image=batch["image"], text_features=batch["text_features"])).numpy()
    saved = pd.read_csv(tmp_path / "predictions" / f"{name}_test.csv")
    order = np.argsort(batch["index"].numpy())
    assert np.allclose(saved[[f"prob_{label}" for label in CHEXPERT_LABELS]].to_numpy(), probabilities[order], atol=1e-4)
    assert model.embed_texts(["no pleural effusion"]).shape == (1, BERT_HIDDEN)
    tables = comparison_table(tmp_path / "metrics"), leakage_table(tmp_path / "metrics")
    assert len(tables[0]) == len(names) and list(tables[1].index) == list(STRATEGIES)
    assert (tables[0]["ci_low"] <= tables[0]["ci_high"]).all()
    # per strategy, findings+impression minus indication with its paired interval (no image.json: no unimodal pairs)
    comparisons = json.loads((tmp_path / "metrics" / "fusion.json").read_text())["comparisons"]
    assert set(comparisons) == {f"{fusion_name(s, 'findings_impression')} - {fusion_name(s, 'indication')}"
                                for s in STRATEGIES}
    assert all(len(c["ci"]) == 2 and c["resamples"] > 0 for c in comparisons.values())
    assert set(reliance_table(tmp_path / "metrics").index) == set(names)
    aurocs = label_aurocs(tmp_path / "metrics", ["image", name, "no such model"])
    assert list(aurocs) == [name] and set(aurocs[name]) == set(CHEXPERT_LABELS)
    assert list(per_label_table(tmp_path / "metrics").columns) == names


def test_train_fusion_end_to_end_trains_the_text_encoder(tmp_path, fake_text_side):
    cohort, _ = write_artifacts(tmp_path)
    settings = settings_for(tmp_path, batch_size=6)
    out = train_fusion(settings, strategies=("film",), text_settings=("findings_impression",), progress=False,
                              end_to_end=True, end_to_end_epochs=1, train_text_encoder=True)
    name = "fusion_concat_findings_impression_end_to_end"
    assert name in out["models"] and out["models"][name]["run"]["end_to_end"]
    # The table option: a text encoder trained inside the model, the image encoder frozen and cached.
    film = out["models"]["fusion_film_findings_impression"]["run"]
    assert film["end_to_end"] and film["freeze_image"] and film["cached_image"]
    table = comparison_table(tmp_path / "metrics").set_index("model")["training"]
    assert table["fusion_film_findings_impression"] == "text encoder trained, image frozen"
    assert table[name] == "end to end"
    checkpoint = torch.load(tmp_path / "checkpoints" / f"{name}.pt", weights_only=True)
    assert checkpoint["meta"]["end_to_end"] and not checkpoint["meta"]["freeze_image"]
    encoder_keys = [k for k in checkpoint["state_dict"] if k.startswith("text_encoder.")]
    assert encoder_keys
    model = load_fusion_model(tmp_path, name, device="cpu")
    assert model.end_to_end and model.input_keys == ("image", "input_ids", "attention_mask")
    trained = checkpoint["state_dict"]["text_encoder.inner.embeddings.word_embeddings.weight"]
    initial = tiny_bert().embeddings.word_embeddings.weight
    assert not torch.allclose(trained, initial)  # the text encoder was trained, not frozen
    assert model.embed_texts(["mild cardiomegaly", ""]).shape == (2, BERT_HIDDEN)


def test_missing_inputs_name_the_notebook_that_makes_them(tmp_path, fake_text_side):
    write_artifacts(tmp_path)
    (tmp_path / "text" / "embeddings_indication.npy").unlink()
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        train_fusion(settings_for(tmp_path), progress=False)
    (tmp_path / "checkpoints" / "image.pt").unlink()
    with pytest.raises(FileNotFoundError, match="notebook 02"):
        train_fusion(settings_for(tmp_path), progress=False)


def test_a_finished_run_is_reused_until_its_inputs_change(tmp_path, fake_text_side):
    write_artifacts(tmp_path)
    last = tmp_path / "checkpoints" / "fusion_concat_indication_last.pt"

    def run(**overrides):
        train_fusion(settings_for(tmp_path, **overrides), strategies=("concat",), text_settings=("indication",),
                            progress=False, end_to_end=False)
        return last.stat().st_mtime_ns

    first = run(text_pooling="cls")
    assert run(text_pooling="cls") == first  # finished and unchanged: loaded, not retrained (file untouched)
    before = last.stat().st_mtime_ns
    run(text_pooling="mean")  # embeddings made another way: the saved run is stale
    assert last.stat().st_mtime_ns != before
    inputs = json.loads((tmp_path / "checkpoints" / "fusion_concat_indication_inputs.json").read_text())
    assert inputs["text"]["pooling"] == "mean" and inputs["image_checkpoint_sha256"]
    save_image_checkpoint(tmp_path / "checkpoints" / "image.pt", seed=7)  # a retrained image model
    before = last.stat().st_mtime_ns
    run(text_pooling="mean")
    assert last.stat().st_mtime_ns != before


def test_fusion_is_compared_with_the_best_unimodal_model_chosen_on_validation(tmp_path):
    settings = load_settings(profile="phantom", fast=True, artifacts_dir=tmp_path)
    (tmp_path / "metrics").mkdir()
    validation = {"image": 0.70, "tfidf_indication": 0.60, "tiny_bert_head_indication": 0.65,
                  "tfidf_findings_impression": 0.99, "tiny_bert_head_findings_impression": 0.80}
    test = {"image": 0.60, "tfidf_indication": 0.75}  # on test another model would win: it must not matter
    models = {name: {"validate": {"macro_auroc": score}, "test": {"macro_auroc": test.get(name, 0.5)}}
              for name, score in validation.items()}
    (tmp_path / "metrics" / "image.json").write_text(json.dumps({"models": {"image": models.pop("image")}}))
    (tmp_path / "metrics" / "text.json").write_text(json.dumps({"models": models}))
    names = [fusion_name("concat", "indication"), fusion_name("concat", "findings_impression"),
             fusion_name("concat", "findings_impression", end_to_end=True), fusion_name("film", "indication")]
    pairs = {(model, baseline) for model, baseline, _ in fusion_train.fusion_differences(settings, names)}
    assert pairs == {(names[0], "image"), (names[1], "tfidf_findings_impression"),
                     (names[2], "tfidf_findings_impression"), (names[3], "image"), (names[1], names[0])}
