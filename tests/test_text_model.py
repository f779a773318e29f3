"""Text side: the tiny offline BERT (built, saved, loaded back through the one from_pretrained path),
tokenizer round trip, embeddings and their cache (reuse, recompute, resume), heads, text_probabilities,
the TF-IDF baseline, the offline error for a hub id, and train_text end to end on a toy cohort."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from benchmark_scripts import load_bench
from transformers import BertModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

import cxr_helpers.text.embeddings as text_embeddings
import cxr_helpers.text.tiny_bert as tiny_bert
from cxr_helpers.config import load_settings
from cxr_helpers.explain.faithfulness.randomisation import cascading_stages
from cxr_helpers.labels import CHEXPERT_LABELS, NOT_MENTIONED, label_index
from cxr_helpers.metrics import macro_auroc, per_label_auroc
from cxr_helpers.prepare import COHORT_COLUMNS
from cxr_helpers.text.embeddings import cached_embeddings, embeddings_paths, load_text_encoder
from cxr_helpers.text.encoder import compute_embeddings, pool_hidden, text_pooling
from cxr_helpers.text.finetune import build_text_classifier, load_text_classifier
from cxr_helpers.text.heads import (
    LabelAttentionHead,
    TextClassifier,
    TextHead,
    fit_tfidf,
    text_probabilities,
    tfidf_baseline,
)
from cxr_helpers.text.tiny_bert import (
    SPECIAL_TOKENS,
    build_tiny_bert,
    tiny_bert_dir,
    training_reports,
    wordpiece_vocabulary,
    wrap_tokenizer,
)
from cxr_helpers.text.train import leakage_table, train_text

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

FINDINGS = {  # label -> (positive phrase, negative phrase)
    "Pleural Effusion": ("small left pleural effusion", "no pleural effusion"),
    "Cardiomegaly": ("the heart is enlarged", "heart size is normal"),
    "Edema": ("mild pulmonary edema", "no pulmonary edema"),
}
INDICATIONS = ("cough", "fever", "chest pain", "shortness of breath", "evaluate for pneumonia")
SMALL_BERT = dict(hidden_size=32, num_layers=1, num_heads=2, mlm_steps=30, vocab_size=200)


def toy_cohort(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """A cohort table whose findings text determines three labels and whose indication is noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        labels = {name: NOT_MENTIONED for name in CHEXPERT_LABELS}
        phrases = []
        for label, (positive, negative) in FINDINGS.items():
            present = bool(rng.random() < 0.4)
            labels[label] = int(present)
            phrases.append(positive if present else negative)
        findings = " ".join(phrases)
        row = {
            "subject_id": 10000000 + i, "study_id": 50000000 + i, "dicom_id": f"{i:044x}", "view_position": "PA",
            "split": ("train", "train", "train", "validate", "test")[i % 5], "image_path": "", "report_path": "",
            "cache_index": i, "indication": "", "findings": findings, "impression": "",
            "text_findings_impression": findings, "text_indication": str(rng.choice(INDICATIONS)),
        }
        rows.append({**row, **labels})
    return pd.DataFrame(rows)[list(COHORT_COLUMNS)]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny BERT built from the toy cohort's training reports, in an artifacts folder's text/tiny-bert."""
    artifacts = tmp_path_factory.mktemp("artifacts")
    cohort = toy_cohort()
    folder = build_tiny_bert(training_reports(cohort), tiny_bert_dir(
        load_settings(artifacts_dir=artifacts)), seed=0, progress=False, **SMALL_BERT)
    return folder


@pytest.fixture
def settings(tiny_folder, tmp_path):
    """Settings whose artifacts folder holds a copy of the tiny BERT (text_model "tiny-bert")."""
    import shutil

    shutil.copytree(tiny_folder, tmp_path / "text" / "tiny-bert")
    return load_settings(profile="phantom", artifacts_dir=tmp_path, fast=True, text_model="tiny-bert", epochs=2,
                         batch_size=8, max_text_length=32)


# ----------------------------------------------------------------------------- tiny BERT and loading
def test_tiny_bert_saves_tokenizer_and_encoder_and_pretraining_lowers_the_mlm_loss(tiny_folder):
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "pretraining.json"):
        assert (tiny_folder / name).exists(), name
    record = json.loads((tiny_folder / "pretraining.json").read_text())
    assert record["mlm_steps"] == SMALL_BERT["mlm_steps"]
    assert record["mlm_loss_last"] < record["mlm_loss_first"] - 0.5  # the encoder learned something
    config = json.loads((tiny_folder / "config.json").read_text())
    assert config["hidden_size"] == 32 and config["num_hidden_layers"] == 1 and config["model_type"] == "bert"


def test_local_folder_and_tiny_bert_name_load_through_the_same_path(tiny_folder, settings):
    tokenizer, model = load_text_encoder(str(tiny_folder), settings)
    assert isinstance(tokenizer, PreTrainedTokenizerBase) and isinstance(model, BertModel)
    assert not model.training and model.config.hidden_size == 32
    by_name_tokenizer, by_name_model = load_text_encoder("tiny-bert", settings)  # <artifacts>/text/tiny-bert
    assert by_name_tokenizer.get_vocab() == tokenizer.get_vocab()
    for (key, a), (_, b) in zip(model.state_dict().items(), by_name_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), key


def test_tokenizer_round_trip_and_special_tokens(settings):
    tokenizer, _ = load_text_encoder("tiny-bert", settings)
    encoded = tokenizer("No Pleural EFFUSION")  # lower-cased by the tokenizer
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert tokenizer.decode(encoded["input_ids"], skip_special_tokens=True) == "no pleural effusion"
    assert [tokenizer.pad_token, tokenizer.unk_token, tokenizer.mask_token] == ["[PAD]", "[UNK]", "[MASK]"]


def test_wordpiece_vocabulary_is_frequent_words_over_characters_and_spells_unseen_words():
    reports = ["No pleural effusion.", "Small pleural effusion.", "Pleural effusion, no pneumothorax."]
    vocabulary = wordpiece_vocabulary(reports)
    assert vocabulary[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert vocabulary.index("effusion") < vocabulary.index("pleural") < vocabulary.index("no")  # seen 3, 3, 2 times
    assert "pneumothorax" not in vocabulary and "small" not in vocabulary  # seen once only
    assert vocabulary == wordpiece_vocabulary(list(reversed(reports)))  # order-free, the same every run
    tokenizer = wrap_tokenizer(vocabulary)
    assert tokenizer.tokenize("Pleural effusions") == ["pleural", "effusion", "##s"]  # longest known pieces
    assert "[UNK]" not in tokenizer.tokenize("pneumothorax")  # spelled from characters


def test_offline_hub_id_gives_a_clear_error(settings, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="save_pretrained") as error:
        load_text_encoder("no-such-org/no-such-cxr-model", settings)
    assert "CXR_TEXT_MODEL" in str(error.value)


def test_missing_local_folder_is_named(settings, tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_text_encoder(str(tmp_path / "does-not-exist"), settings)


# ----------------------------------------------------------------------------- embeddings
def test_compute_embeddings_matches_one_text_at_a_time(settings):
    tokenizer, model = load_text_encoder("tiny-bert", settings)
    texts = ["no pleural effusion", "the heart is enlarged mild pulmonary edema and a small left pleural effusion",
             "cough", "heart size is normal"]
    for pooling in ("cls", "mean"):
        batched = compute_embeddings(texts, tokenizer, model, batch_size=3, device="cpu", progress=False,
                                     pooling=pooling)
        assert batched.shape == (4, 32) and batched.dtype == np.float32
        for i, text in enumerate(texts):  # sorting by length and padding must not change a row
            single = compute_embeddings([text], tokenizer, model, device="cpu", progress=False, pooling=pooling)
            np.testing.assert_allclose(batched[i], single[0], atol=1e-5)


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])  # (1, 3, 2), last token is padding
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(pool_hidden(hidden, mask, "mean"), torch.tensor([[2.0, 2.0]]))
    assert torch.equal(pool_hidden(hidden, mask, "cls"), torch.tensor([[1.0, 1.0]]))


@pytest.fixture
def counted(monkeypatch):
    """Count the texts cached_embeddings sends to the encoder."""
    calls = []
    original = compute_embeddings

    def counting(texts, *args, **kwargs):
        calls.append(len(texts))
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(text_embeddings, "compute_embeddings", counting)
    return calls


def test_cached_embeddings_reuse_and_recompute(settings, counted):
    cohort = toy_cohort()
    features = cached_embeddings(settings, cohort, "findings_impression", progress=False)
    assert features.shape == (len(cohort), 32)
    unique = cohort["text_findings_impression"].nunique()
    assert sum(counted) == unique  # identical reports are encoded once
    array_path, sidecar_path = embeddings_paths(settings, "findings_impression")
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["complete"] and sidecar["key"]["setting"] == "findings_impression"
    assert sidecar["key"]["n_rows"] == len(cohort) and sidecar["key"]["max_length"] == 32
    # rows follow the cohort: equal texts, equal rows
    same = cohort.index[cohort["text_findings_impression"] == cohort["text_findings_impression"].iloc[0]]
    np.testing.assert_array_equal(features[same[0]], features[same[-1]])

    counted.clear()
    again = cached_embeddings(settings, cohort, "findings_impression", progress=False)
    assert counted == [] and np.array_equal(again, features)  # read from the cache

    cached_embeddings(settings, cohort, "indication", progress=False)
    assert sum(counted) == cohort["text_indication"].nunique()  # another setting: computed, own file
    assert embeddings_paths(settings, "indication")[0].exists()

    counted.clear()
    changed = cohort.copy()
    changed.loc[0, "text_findings_impression"] = "a brand new report"
    new = cached_embeddings(settings, changed, "findings_impression", progress=False)
    assert sum(counted) > 0 and not np.array_equal(new[0], features[0])  # changed cohort: recomputed

    counted.clear()
    longer = dataclasses.replace(settings, max_text_length=16)
    cached_embeddings(longer, changed, "findings_impression", progress=False)
    assert sum(counted) > 0  # changed max_length: recomputed


def test_an_interrupted_embedding_run_resumes(settings, monkeypatch):
    cohort = toy_cohort(20)
    cohort["text_findings_impression"] += [f" seen on day {i}" for i in range(len(cohort))]  # 20 distinct texts
    unique = cohort["text_findings_impression"].nunique()
    monkeypatch.setattr(text_embeddings, "EMBEDDING_CHUNK", 4)
    original = compute_embeddings
    calls = []

    def interrupted_after_two_chunks(texts, *args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(texts))
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(text_embeddings, "compute_embeddings", interrupted_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        cached_embeddings(settings, cohort, "findings_impression", progress=False)
    assert calls == [4, 4]
    sidecar = json.loads(embeddings_paths(settings, "findings_impression")[1].read_text())
    assert sidecar["done"] == 8 and not sidecar["complete"]

    resumed_calls = []
    monkeypatch.setattr(text_embeddings, "compute_embeddings",
                        lambda texts, *a, **k: resumed_calls.append(len(texts)) or original(texts, *a, **k))
    resumed = cached_embeddings(settings, cohort, "findings_impression", progress=False)
    assert sum(resumed_calls) == unique - 8  # only what was left
    tokenizer, model = load_text_encoder("tiny-bert", settings)
    fresh = original(cohort["text_findings_impression"].tolist(), tokenizer, model, max_length=32, progress=False,
                     pooling=text_pooling(settings), device="cpu")
    np.testing.assert_allclose(resumed, fresh, atol=1e-5)


# ----------------------------------------------------------------------------- heads
def test_text_head_shapes_and_standardisation():
    head = TextHead(12, hidden=8, dropout=0.5).eval()
    assert head.input_keys == ("text_features",)
    features = torch.randn(5, 12) * 3 + 7
    assert head(text_features=features).shape == (5, 14)
    head.set_feature_stats(features.numpy())
    standardised_zero = head(text_features=features.mean(0, keepdim=True))
    np.testing.assert_allclose(standardised_zero.detach(), head.mlp(torch.zeros(1, 12)).detach(), atol=1e-5)
    assert "feature_mean" in head.state_dict()  # saved with the checkpoint
    with pytest.raises(ValueError, match="12"):
        head.set_feature_stats(np.zeros((3, 5)))


def test_classifier_and_head_give_the_same_probabilities(settings):
    tokenizer, encoder = load_text_encoder("tiny-bert", settings)
    torch.manual_seed(0)
    head = TextHead(32, hidden=8).eval()
    texts = ["no pleural effusion", "mild pulmonary edema", "the heart is enlarged"]
    from_head = text_probabilities(head, encoder, tokenizer, texts, settings)
    classifier = TextClassifier(encoder, head, tokenizer, pooling=text_pooling(settings), max_length=32)
    assert classifier.input_keys == ("input_ids", "attention_mask")
    from_tokens = text_probabilities(classifier, None, tokenizer, np.array(texts), settings)
    assert from_head.shape == (3, 14) and ((from_head > 0) & (from_head < 1)).all()
    np.testing.assert_allclose(from_head, from_tokens, atol=1e-5)
    np.testing.assert_allclose(classifier.predict_texts(texts), from_head, atol=1e-5)
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    assert classifier(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).shape == (3, 14)


def test_label_attention_reads_each_labels_summary_of_the_real_tokens():
    torch.manual_seed(0)
    head = LabelAttentionHead(8, dropout=0.0).eval()
    hidden = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    weights = head.attention(hidden, mask)
    assert weights.shape == (2, 14, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 14))
    assert (weights[1, :, 3:] == 0).all()  # padding gets no attention
    logits = head(hidden, mask)
    label = 4  # by hand: softmax of the label's token scores, weighted sum of the tokens, read-out
    scores = hidden[0] @ head.query.weight[label]
    summary = torch.softmax(scores, 0) @ hidden[0]
    torch.testing.assert_close(logits[0, label], summary @ head.weight[label] + head.bias[label])
    changed = hidden.clone()
    changed[1, 3:] = 100.0  # what lies under the padding does not matter
    torch.testing.assert_close(head(changed, mask)[1], logits[1])
    before = head.query.weight.clone()
    head.reset_parameters()  # what the model-randomisation test calls
    assert not torch.equal(before, head.query.weight) and (head.bias == 0).all()


def test_classifier_with_label_attention_passes_it_the_token_states(settings):
    tokenizer, encoder = load_text_encoder("tiny-bert", settings)
    torch.manual_seed(0)
    classifier = TextClassifier(encoder, LabelAttentionHead(32), tokenizer, max_length=32).eval()
    tokens = tokenizer(["no pleural effusion", "mild pulmonary edema and a small right effusion"], padding=True,
                       return_tensors="pt")
    with torch.no_grad():
        logits = classifier(tokens["input_ids"], tokens["attention_mask"])
        states = encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        torch.testing.assert_close(logits, classifier.head(states, tokens["attention_mask"]))
    assert logits.shape == (2, 14)
    stages = dict(cascading_stages(classifier))
    assert stages == {"head": ["head"], "encoder": ["encoder"]}


def test_classifier_can_freeze_the_encoder(settings):
    _, encoder = load_text_encoder("tiny-bert", settings)
    frozen = TextClassifier(encoder, TextHead(32), freeze_encoder=True).train()
    assert not any(p.requires_grad for p in frozen.encoder.parameters())
    assert all(p.requires_grad for p in frozen.head.parameters())
    assert frozen.head.training and not frozen.encoder.training  # used "as is": no encoder dropout


# ----------------------------------------------------------------------------- TF-IDF
def test_tfidf_learns_a_word_that_decides_the_label():
    cohort = toy_cohort(200, seed=1)
    train, test = cohort[cohort["split"] != "test"], cohort[cohort["split"] == "test"]
    targets = train[list(CHEXPERT_LABELS)].to_numpy()
    logits = tfidf_baseline(train["text_findings_impression"], targets, test["text_findings_impression"], "zeros")
    assert logits.shape == (len(test), 14)
    test_targets = test[list(CHEXPERT_LABELS)].to_numpy()
    auroc = per_label_auroc(logits, test_targets)
    for label in FINDINGS:
        assert auroc[label] > 0.95, (label, auroc[label])
    noise = tfidf_baseline(train["text_indication"], targets, test["text_indication"], "zeros")
    assert macro_auroc(noise, test_targets) < 0.8  # the indication says nothing about these labels


def test_tfidf_one_class_label_predicts_the_prevalence_and_top_words():
    cohort = toy_cohort(100, seed=2)
    targets = cohort[list(CHEXPERT_LABELS)].to_numpy().copy()
    targets[:, label_index("Fracture")] = 0  # only negatives in train
    model = fit_tfidf(cohort["text_findings_impression"], targets, "zeros")
    probabilities = model.probabilities(["anything at all", "small left pleural effusion"])
    fracture = probabilities[:, label_index("Fracture")]
    assert fracture[0] == fracture[1] and fracture[0] < 0.01  # a constant, the (clipped) prevalence of 0
    assert model.top_words("Fracture") == []
    words = [word for word, _ in model.top_words("Pleural Effusion", k=5)]
    # "small left pleural effusion" vs "no pleural effusion": the words only the positive phrase has win
    assert words[0] in {"small", "left", "small left", "left pleural"}, words
    assert not any(w.startswith("no") for w in words), words
    with pytest.raises(ValueError, match="shape"):
        fit_tfidf(["a", "b"], np.zeros((3, 14)))


# ----------------------------------------------------------------------------- notebook 03's job
def test_train_text_writes_metrics_checkpoints_and_predictions(settings):
    cohort = toy_cohort(60)
    cohort.to_csv(settings.artifacts_dir / "cohort.csv", index=False)
    outcome = train_text(settings, progress=False)
    metrics = json.loads((settings.artifacts_dir / "metrics" / "text.json").read_text())["models"]
    for setting in ("findings_impression", "indication"):
        for name in (f"tfidf_{setting}", f"tiny_bert_head_{setting}"):
            assert set(metrics[name]) == {"train", "validate", "test"}
            assert metrics[name]["test"]["n"] == int((cohort["split"] == "test").sum())
        assert (settings.artifacts_dir / "checkpoints" / f"text_head_{setting}.pt").exists()
        for name in (f"tfidf_{setting}", f"tiny_bert_head_{setting}"):  # predictions/<model>_test.csv
            predictions = pd.read_csv(settings.artifacts_dir / "predictions" / f"{name}_test.csv")
            assert len(predictions) == int((cohort["split"] == "test").sum())
            assert {f"prob_{label}" for label in CHEXPERT_LABELS} <= set(predictions.columns)
            low, high = metrics[name]["test"]["macro_auroc_ci"]
            assert low <= high and metrics[name]["test"]["ci_resamples"] > 0
    assert "baseline: train prevalence" in metrics
    comparisons = json.loads((settings.artifacts_dir / "metrics" / "text.json").read_text())["comparisons"]
    tfidf = comparisons["tfidf_findings_impression - tfidf_indication"]
    assert set(comparisons) == {f"{kind}_findings_impression - {kind}_indication" for kind in ("tfidf", "tiny_bert_head")}
    assert tfidf["estimate"] == pytest.approx(metrics["tfidf_findings_impression"]["test"]["macro_auroc"]
                                              - metrics["tfidf_indication"]["test"]["macro_auroc"], abs=1e-4)
    # the leak: the labels are written in the findings, not in the indication
    leaky = metrics["tfidf_findings_impression"]["test"]["macro_auroc"]
    indication_only = metrics["tfidf_indication"]["test"]["macro_auroc"]
    assert leaky > 0.95 and leaky > indication_only + 0.2
    assert outcome["indication"]["head"]["history"].epoch == [1, 2]
    table = leakage_table(settings)
    assert table.loc["tfidf", ("macro AUROC", "findings_impression")] == leaky
    # the encoder + head trained end to end (settings.text_finetune_epochs, 1 with CXR_FAST)
    tuned = outcome["findings_impression"]["finetuned"]
    assert tuned["history"].epoch == [1] and isinstance(tuned["model"], TextClassifier)
    assert set(metrics["tiny_bert_finetuned_findings_impression"]) == {"train", "validate", "test"}
    assert (settings.artifacts_dir / "checkpoints" / "text_classifier_findings_impression.pt").exists()
    assert "finetuned" not in outcome["indication"] and "tiny_bert_finetuned_indication" not in metrics  # one setting
    fresh = build_text_classifier(settings)
    changed = [name for name, value in tuned["model"].encoder.state_dict().items()
               if not torch.equal(value, fresh.encoder.state_dict()[name])]
    assert changed, "fine-tuning must change the encoder's weights, not only the head's"
    loaded = load_text_classifier(settings, "findings_impression", "cpu")
    texts = ["small left pleural effusion", "no pneumothorax"]
    np.testing.assert_allclose(loaded.predict_texts(texts), tuned["model"].eval().predict_texts(texts), atol=1e-5)
    assert isinstance(loaded.head, LabelAttentionHead) and settings.text_finetune_head == "label_attention"
    # a checkpoint saved with the other head still loads as it was trained
    other = dataclasses.replace(settings, text_finetune_head="mlp")
    assert isinstance(load_text_classifier(other, "findings_impression", "cpu").head, LabelAttentionHead)


def test_tiny_bert_is_built_from_the_training_reports_only(tmp_path, monkeypatch):
    cohort = toy_cohort(40)
    train, test = cohort["split"] == "train", cohort["split"] == "test"
    cohort.loc[train, "text_findings_impression"] += " xylophone"  # a word only training reports have
    cohort.loc[test, "text_findings_impression"] += " zebrafinch"  # and one only test reports have
    cohort.to_csv(tmp_path / "cohort.csv", index=False)
    monkeypatch.setattr(tiny_bert, "MLM_STEPS_FAST", 3)
    settings = load_settings(profile="phantom", artifacts_dir=tmp_path, fast=True, text_model="tiny-bert")
    tokenizer, model = load_text_encoder("tiny-bert", settings, progress=False)  # builds it: the folder is missing
    assert (tmp_path / "text" / "tiny-bert" / "config.json").exists()
    vocabulary = tokenizer.get_vocab()
    assert "xylophone" in vocabulary and "zebrafinch" not in vocabulary
    assert json.loads((tmp_path / "text" / "tiny-bert" / "pretraining.json").read_text())["reports"] <= int(train.sum())


def test_missing_cohort_names_notebook_01(tmp_path):
    settings = load_settings(profile="phantom", artifacts_dir=tmp_path, fast=True, text_model="tiny-bert")
    with pytest.raises(FileNotFoundError, match="notebook 01"):
        train_text(settings, progress=False)


def test_exercise_check_accepts_the_solution_and_not_the_stub(capsys):
    from cxr_helpers import exercises, solutions

    cohort = toy_cohort(100, seed=3)
    model = fit_tfidf(cohort["text_findings_impression"], cohort[list(CHEXPERT_LABELS)].to_numpy())
    assert not exercises.check_top_words(lambda m, label, k=10: None, model)
    assert "Not done yet" in capsys.readouterr().out
    assert not exercises.check_top_words(lambda m, label, k=10: solutions.top_words(m, label, k)[::-1], model)
    assert "wrong order" in capsys.readouterr().out
    assert exercises.check_top_words(solutions.top_words, model)
    assert solutions.top_words(model, "Pleural Effusion", 3) == [w for w, _ in model.top_words("Pleural Effusion", 3)]


def test_bench_text_finetune_reads_its_configs():
    parse = load_bench("bench_text_finetune").parse_config
    assert parse("label_attention:warmup_linear:15") == {
        "text_finetune_head": "label_attention", "text_finetune_schedule": "warmup_linear", "text_finetune_epochs": 15}
    assert parse("mlp:constant:10:5e-4")["text_finetune_lr"] == 5e-4
    with pytest.raises(ValueError, match="head:schedule:epochs"):
        parse("mlp:constant:10:5e-4:extra")
    settings = dataclasses.replace(load_settings(profile="phantom", fast=True), **parse("mlp:constant:3:1e-4"))
    assert (settings.text_finetune_head, settings.text_finetune_epochs, settings.text_finetune_lr) == ("mlp", 3, 1e-4)
