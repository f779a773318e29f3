# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · The text-only baseline: a BERT encoder reads the report
#
# Turn each radiology report into one vector with a pretrained BERT encoder, train a small head
# on those vectors to score the 14 CheXpert labels, compare with a bag-of-words baseline, and
# measure how much of the text model's skill is the labels leaking through the report.
#
# **Learning objectives**
# - Tokenize a report into WordPiece tokens and read BERT's `[CLS]` and mean-pooled embeddings.
# - Load any encoder through one `from_pretrained` call: CXR-BERT from the hub, or a local folder.
# - Train a classifier head on *cached* frozen-encoder embeddings with the shared `fit` loop.
# - Build a TF-IDF + logistic regression baseline and read its strongest words.
# - Show with numbers why findings+impression text is a leaky input, and what an indication-only
#   text model tells you instead, each figure with its 95% bootstrap interval over the test studies.
#
# **Reads / writes** (in the artifacts folder, `CXR_ARTIFACTS_DIR`)
# - reads `cohort.csv` (made by notebook 01);
# - writes `text/tiny-bert/` (phantom only), `text/embeddings_<setting>.npy` (+ `.json` sidecar),
#   `checkpoints/text_head_<setting>.pt`, `metrics/text.json` (with bootstrap intervals and the
#   findings+impression minus indication differences), `predictions/<model>_test.csv` for every text model
#   and `figures/text_*.png`.
#
# The same work runs without Jupyter: `python -m cxr_helpers train text --artifacts DIR`.

# %% [markdown]
# ## Setup
#
# The first cell loads the settings (profile `phantom` by default, `mimic` for real data; environment
# variables override them), seeds every random generator and prints the package versions.
# `CXR_FAST=1` shrinks everything for a quick test run.

# %%
# Colab only: install the workbook first (Colab keeps its own torch). Elsewhere `make demo` did it.
import importlib.util
import os
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("cxr_helpers") is None:
    # Installing from a fork? `%env CXR_WORKBOOK_URL=git+https://github.com/YOU/REPO.git` first.
    WORKBOOK_URL = os.environ.get("CXR_WORKBOOK_URL", "git+https://github.com/cxr-workbook/cxr-fusion-workbook.git")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", WORKBOOK_URL], check=True)
    importlib.invalidate_caches()

import time

import pandas as pd
import torch
from IPython.display import display

from cxr_helpers import exercises, metrics, plots_training
from cxr_helpers.config import seed_everything
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.notebook import setup_notebook
from cxr_helpers.prepare import load_cohort
from cxr_helpers.results import comparisons_table
from cxr_helpers.text.embeddings import cached_embeddings, load_text_encoder, resolve_text_model
from cxr_helpers.text.encoder import pool_hidden, text_pooling
from cxr_helpers.text.heads import TextHead, text_probabilities
from cxr_helpers.text.tiny_bert import TINY_BERT, tiny_bert_dir
from cxr_helpers.text.train import head_settings, leakage_table, model_names, text_loaders, train_text
from cxr_helpers.training import fit, predict

settings = setup_notebook("03 · Text baseline")

# %% [markdown]
# ## 1. The report text, in two settings
#
# Notebook 01 cut every report into sections and cleaned them the paper's way (lower case, no
# punctuation). Two text columns come out of it: **findings_impression**, the paper's input, and
# **indication**, only why the study was ordered. If this cell fails, run notebook 01 first.

# %%
cohort = load_cohort(settings.artifacts_dir)
print(f"{len(cohort)} images, {cohort['study_id'].nunique()} studies;", cohort["split"].value_counts().to_dict())
example = cohort[cohort["split"] == "train"].iloc[0]
print("INDICATION          :", example["text_indication"] or "(none)")
print("FINDINGS+IMPRESSION :", example["text_findings_impression"][:400])
print("labels              :", {label: int(example[label]) for label in CHEXPERT_LABELS if example[label] != -2})

# %% [markdown]
# ## 2. The encoder and its tokenizer, loaded one way
#
# `load_text_encoder(name_or_path, settings)` always calls `AutoTokenizer.from_pretrained` and
# `AutoModel.from_pretrained`. In the **mimic** profile the name is
# `microsoft/BiomedVLP-CXR-BERT-general`, the BERT the paper used (pretrained on PubMed and
# MIMIC-CXR reports). In the **phantom** profile it is `tiny-bert`: a 2-layer BERT whose WordPiece
# vocabulary and weights are built offline from the phantom's *training* reports, with a short
# masked-language-model pretraining, just as CXR-BERT was pretrained on radiology text. The first
# call builds it (about a minute on a laptop CPU), later calls load the saved folder.

# %%
tokenizer, encoder = load_text_encoder(settings.text_model, settings)
print("encoder:", settings.text_model, "->", resolve_text_model(settings.text_model, settings))
print(f"{type(encoder).__name__}: {encoder.config.num_hidden_layers} layers, hidden size {encoder.config.hidden_size}, "
      f"{sum(p.numel() for p in encoder.parameters()):,} weights; vocabulary {len(tokenizer):,} tokens")
pretraining = tiny_bert_dir(settings) / "pretraining.json"
if settings.text_model == TINY_BERT and pretraining.exists():
    print("tiny BERT pretraining:", pretraining.read_text())

# %% [markdown]
# Offline with the mimic profile? Download CXR-BERT once on a connected machine
# (`AutoTokenizer.from_pretrained(id).save_pretrained("cxr-bert")`, the same for `AutoModel`) and
# set `CXR_TEXT_MODEL=/path/to/cxr-bert`: a folder goes through exactly the same call.

# %% [markdown]
# ## 3. Tokenization: from words to ids
#
# The tokenizer lower-cases, splits on spaces and punctuation, and cuts words it does not know
# into known pieces (`##` marks a piece that continues a word). It adds `[CLS]` at the start and
# `[SEP]` at the end; `[PAD]` fills short texts in a batch, and the attention mask says which
# positions are real.

# %%
encoded = tokenizer(example["text_findings_impression"], truncation=True, max_length=settings.max_text_length)
tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
print(" ".join(tokens[:40]), "..." if len(tokens) > 40 else "")
print("ids:", encoded["input_ids"][:12], "...")
print("round trip:", tokenizer.decode(encoded["input_ids"][:12], skip_special_tokens=True))

# %% [markdown]
# Reports longer than `max_text_length` tokens are truncated (the end is lost). How many are?

# %%
lengths = pd.Series([len(ids) for ids in tokenizer(cohort["text_findings_impression"].tolist())["input_ids"]])
print(lengths.describe(percentiles=[0.5, 0.9, 0.99]).round(1).to_dict())
print(f"longer than max_text_length={settings.max_text_length}: {(lengths > settings.max_text_length).mean():.1%}")

# %% [markdown]
# ## 4. One vector per report: [CLS] or the mean
#
# The encoder returns one vector per token, `last_hidden_state` of shape (1, L, H). The paper
# passes on the vector at position 0, the `[CLS]` token, as "a summary of the entire text".
# That holds when pretraining taught `[CLS]` to summarise (BERT's next-sentence task). CXR-BERT-general
# and our tiny BERT learned by masked-word prediction only, which never trains `[CLS]`; the
# average over the real tokens (mean pooling) is the common alternative.

# %%
with torch.no_grad():
    batch = tokenizer([example["text_findings_impression"]], truncation=True,
                      max_length=settings.max_text_length, return_tensors="pt")
    hidden = encoder(**batch).last_hidden_state  # (1, L, H)
cls_vector = pool_hidden(hidden, batch["attention_mask"], "cls")  # (1, H)
mean_vector = pool_hidden(hidden, batch["attention_mask"], "mean")  # (1, H)
print("last_hidden_state", tuple(hidden.shape), "| [CLS]", tuple(cls_vector.shape), "| mean", tuple(mean_vector.shape))
print("this run pools with:", text_pooling(settings))

# %% [markdown]
# We measured both on the default phantom (1,000 studies, seed 42; a head trained on frozen tiny-BERT
# embeddings of findings+impression, as in section 6): macro AUROC 0.65 on validation (199 studies) and
# 0.74 on test (101 studies; 95% bootstrap interval 0.64-0.82) with `[CLS]`, 0.77 and 0.80 (0.71-0.87) with
# the mean. The test intervals overlap, but both splits point the same way, so the phantom profile pools
# with the mean; the mimic profile keeps the paper's `[CLS]`. `benchmarks/bench_text_head.py` repeats the
# measurement on your data.

# %% [markdown]
# ## 5. Frozen encoder, cached embeddings
#
# The paper used CXR-BERT "as is": the encoder is never trained. Then every report's vector is
# the same in every epoch, so we compute it **once** and save it (`text/embeddings_<setting>.npy`,
# one row per cohort row). A JSON sidecar records the model, setting, `max_length`, pooling and a
# hash of the texts: the next call reads the file, and a change in any of them recomputes it.

# %%
embeddings = {}
for setting in ("findings_impression", "indication"):
    began = time.perf_counter()
    embeddings[setting] = cached_embeddings(settings, cohort, setting, encoder=(tokenizer, encoder))
    print(f"{setting:>20}: {embeddings[setting].shape} in {time.perf_counter() - began:.1f} s")
began = time.perf_counter()
cached_embeddings(settings, cohort, "findings_impression")
print(f"second call (cache): {time.perf_counter() - began:.2f} s")

# %% [markdown]
# ## 6. An untrained head predicts nothing, so we train one
#
# The encoder gives vectors, not label scores: something has to map H numbers to 14 logits.
# The paper's text model is "the encoder as is + an MLP", and an MLP that was never trained is
# a random function. Look at its validation AUROC.

# %%
loaders = text_loaders(settings, cohort, embeddings["findings_impression"])
torch.manual_seed(settings.seed)
untrained = TextHead(embeddings["findings_impression"].shape[1], dropout=settings.dropout)
logits, targets, _ = predict(untrained, loaders["validate"], "cpu")
print("untrained head, validation macro AUROC:", round(metrics.evaluate(logits, targets)["macro_auroc"], 3))

# %% [markdown]
# So we train the head, `TextHead` (H -> 256 -> 14, ReLU, dropout 0.5), with the same `fit` loop
# as the image model. Its inputs are standardised with the training embeddings' mean and
# standard deviation. The head starts from random weights, so it gets a larger learning rate than
# the paper's 1e-5 (`settings.text_head_lr`, 1e-3). On cached embeddings an epoch takes a fraction of a
# second. A finished run with the same settings is loaded instead of retrained.

# %%
seed_everything(settings.seed)  # the same start as `train_text` below, so both give the same head
head = TextHead(embeddings["findings_impression"].shape[1], dropout=settings.dropout)
head.set_feature_stats(embeddings["findings_impression"][loaders["fit"].dataset.rows])
checkpoint_dir = settings.artifacts_dir / "checkpoints"
history = fit(head, loaders["fit"], loaders["validate"], head_settings(settings),
                       checkpoint_dir, "text_head_findings_impression", device="cpu")
fig = plots_training.plot_history(history, "Text head on frozen embeddings (findings+impression)")
print("saved", plots_training.save_figure(fig, settings.artifacts_dir, "text_curves"))

# %% [markdown]
# **Fine-tuning is an option.** `TextClassifier(encoder, head)` puts encoder and head in
# one module (`input_keys = ("input_ids", "attention_mask")`) that `fit` can train end to end.
# It usually reads better, at a price: every epoch runs the whole encoder forwards *and* backwards,
# and a 110M-weight CXR-BERT wants a GPU. On the phantom with a 2-core CPU, an epoch of the head
# took 0.1 s on cached embeddings, 2.5 s when re-encoding the reports every epoch, and 7.2 s when
# fine-tuning the tiny encoder too (`benchmarks/bench_text_head.py`). Notebook 04 trains the
# paper's fusion model end to end.
#
# On the phantom `train_text` (next section) also fine-tunes the tiny encoder with its head on
# findings+impression (`settings.text_finetune_epochs`, 0 in the mimic profile): notebook 05 explains
# that model's words with SHAP, and an explanation of a model that reads poorly would only show
# noise. Blank labels count as "not mentioned" for every text model (left out of the loss): a text
# model should learn what the report says, not guess what it leaves out.
#
# Two choices make that model read well (`settings.text_finetune_head`, `text_finetune_schedule`):
# - **Label-wise attention** (`LabelAttentionHead`, the classic head for labelling clinical text:
#   CAML, Mullenbach et al. 2018). A pooled vector must carry all 14 labels at once, and a mean
#   over 100 tokens dilutes the three that say "no pleural effusion". Here each label has its own
#   query vector: it scores every token, takes the softmax-weighted sum of the token states, and
#   reads its logit from that summary. Section 10 shows where each label looked.
# - **Warmup, then linear decay** of the learning rate (`lr_factor`, how BERTs are fine-tuned):
#   the rate climbs over the first 10% of the steps and falls to zero at the last one.
#
# On the default phantom, over three seeds each, the mean-pooled MLP head reached validation macro
# AUROC 0.85-0.94, and label attention with this schedule 0.95-0.97 (README, "How the phantom's
# defaults were chosen"; `benchmarks/bench_text_finetune.py`).

# %%
print("fine-tuned head:", settings.text_finetune_head, "| schedule:", settings.text_finetune_schedule,
      "| epochs:", settings.text_finetune_epochs, "| peak learning rate:", settings.text_finetune_lr)

# %% [markdown]
# ## 7. Both settings, two text models each
#
# `train_text` does this notebook's whole job for both text settings: the TF-IDF baseline and the
# frozen encoder + head (the run above is reused), plus, where the settings ask for it, the fine-tuned
# encoder on `settings.text_setting`; scored on every split with the same masked metrics, written to
# `metrics/text.json` with the trivial baselines, and test predictions to `predictions/`. Every test
# figure also gets a 95% bootstrap interval over the test studies (next section).

# %%
outcome = train_text(settings)
plots_training.results_vs_paper(settings.metrics_dir / "text.json", paper=None).round(3)

# %% [markdown]
# The **TF-IDF baseline** counts words (and word pairs), weights them by rarity, and fits one
# logistic regression per label. A label with one class only in the training split gets its
# training prevalence as a constant.

# %% [markdown]
# ## 8. Leakage, in numbers
#
# The same two text models, once on findings+impression and once on the indication alone. The test split is
# small (about 100 studies on the default phantom, 1,085 in the paper's MIMIC sample), so each macro AUROC
# comes with a 95% **bootstrap interval**: draw the test studies with replacement 2,000 times, score each draw,
# keep the middle 95% of the scores (`cxr_helpers.bootstrap`).

# %%
leakage_table(settings, "test").round(3)

# %% [markdown]
# Is findings+impression really better than the indication for the same model? The difference is computed on
# the *same* bootstrap draws for both settings (a **paired** bootstrap: a hard draw is hard for both), so its
# interval is narrower than the two intervals above suggest. If the interval includes 0, this test split
# cannot tell the two settings apart.

# %%
comparisons_table(settings.metrics_dir, ("text",)).drop(columns=["stage", "question"]).round(3)

# %% [markdown]
# Why is findings+impression near perfect? MIMIC-CXR's labels were not made by doctors looking
# at the images: a **rule-based labeler** (CheXpert) read the impression section (else the findings,
# else the last paragraph) and looked for phrases like "no pleural effusion" or "possible
# pneumonia". A text model given those same sections only has to learn the labeler's rules; the
# phantom writes its labels exactly that way. The indication ("why was this X-ray ordered?") is
# written *before* anyone read the image. On the phantom it never names a finding, so it carries
# context only. On real data it often does ("eval for pneumonia", or the paper's own Figure 2:
# "woman with pleural effusion, s/p chest tube placement"): an indication-only model can then beat
# chance by reading the clinician's question. That is honest information at prediction time, but it
# is not evidence that anything reads the image.
#
# For the paper's fusion claim this matters: a fusion model fed findings+impression can score
# high by reading the labels out of the report, whatever it sees in the image. A fair test of
# "image + text beats image alone" uses text that exists before the image is read, such as the
# indication, and compares fusion with the best model that sees the same inputs. Notebook 04 measures both.

# %% [markdown]
# **Think.** The frozen tiny-BERT head scores clearly below TF-IDF on findings+impression, though
# both read the same text. What does a bag of words keep that a single mean-pooled 128-number
# vector loses? Would you expect the gap with a 768-dimensional CXR-BERT on real reports?

# %% [markdown]
# ## 9. Which labels does each text model read?
#
# Test AUROC per label. "n/a" means the test split holds one class only for that label.

# %%
text_metrics = metrics.read_metrics(settings.metrics_dir / "text.json")["models"]
aurocs = {name: text_metrics[name]["test"]["auroc"]
          for setting in ("findings_impression", "indication") for name in model_names(settings, setting).values()}
fig = plots_training.plot_label_auroc(aurocs, "Text models: test AUROC per label")
print("saved", plots_training.save_figure(fig, settings.artifacts_dir, "text_label_auroc"))

# %% [markdown]
# ## 10. Asking the models about a sentence
#
# `text_probabilities(head, encoder, tokenizer, texts, settings)` runs raw text through the frozen
# encoder and the trained head; notebook 05 hands this same function to SHAP. Try negation and
# hedging, and compare with the TF-IDF model on the same sentences.

# %%
sentences = ["small left pleural effusion", "no pleural effusion or pneumothorax",
             "possible right lower lobe pneumonia", "heart size is normal lungs are clear"]
shown = ["Pleural Effusion", "Pneumonia", "No Finding"]
columns = [CHEXPERT_LABELS.index(label) for label in shown]
by_head = text_probabilities(outcome["findings_impression"]["head"]["model"], encoder, tokenizer,
                                        sentences, settings)
by_tfidf = outcome["findings_impression"]["tfidf_model"].probabilities(sentences)
pd.concat({"frozen BERT + head": pd.DataFrame(by_head[:, columns], index=sentences, columns=shown),
           "TF-IDF": pd.DataFrame(by_tfidf[:, columns], index=sentences, columns=shown)}, axis=1).round(2)

# %% [markdown]
# One short sentence is not what either model was trained on (whole reports, mostly listing
# what is *absent*), so expect misses. A frozen encoder squeezes the report into one vector
# before the head sees it; whatever that vector blurs (which finding, negated or not) the head
# cannot recover.
#
# The fine-tuned model (where the settings train one) on the same sentences, and, with label
# attention, where each label looked: its weights over the tokens of the second sentence (each
# row sums to 1; `[CLS]` and `[SEP]` are tokens too).

# %%
tuned = outcome["findings_impression"].get("finetuned", {}).get("model")
if tuned is None:
    print("no fine-tuned text model in these settings (text_finetune_epochs = 0)")
else:
    tuned.eval()
    display(pd.DataFrame(tuned.predict_texts(sentences)[:, columns], index=sentences, columns=shown).round(2))
    if hasattr(tuned.head, "attention"):
        tokens = tuned.tokenizer([sentences[1]], return_tensors="pt")
        with torch.no_grad():
            states = tuned.token_states(tokens["input_ids"], tokens["attention_mask"])  # (1, L, H)
            weights = tuned.head.attention(states, tokens["attention_mask"])[0]  # (14, L)
        pieces = tuned.tokenizer.convert_ids_to_tokens(tokens["input_ids"][0])
        display(pd.DataFrame(weights[columns].numpy(), index=shown, columns=pieces).round(2))
#
# **Think.** Write a sentence of your own where the label word appears but is negated in an
# unusual way ("the effusion has resolved"). Which model gets it right, and why?

# %% [markdown]
# ## Your turn: the words that decide "Pleural Effusion"
#
# A logistic regression is easy to read: each TF-IDF column (a word or word pair) has one
# coefficient per label, and a large positive one pushes towards "present". Complete
# `top_words(tfidf_model, label, k)`: the k features with the largest coefficients, largest
# first. You need `tfidf_model.vectorizer.get_feature_names_out()` (column -> word) and
# `tfidf_model.classifiers[j].coef_` (shape (1, n_features)) for label index
# `j = CHEXPERT_LABELS.index(label)`. The check prints feedback; the solution is in
# `cxr_helpers/solutions.py`.

# %%
def top_words(tfidf_model, label: str, k: int = 10) -> list[str]:
    """The k words with the largest logistic-regression coefficients for ``label``."""
    # TODO: find the classifier of the label, sort its coefficients, map columns to words.
    return None


exercises.check_top_words(top_words, outcome["findings_impression"]["tfidf_model"])

# %% [markdown]
# Then compare the two settings: what decides "Pleural Effusion" when the model only sees the
# indication?

# %%
for setting in ("findings_impression", "indication"):
    words = top_words(outcome[setting]["tfidf_model"], "Pleural Effusion", 8)
    if words is not None:
        print(f"{setting:>20}:", ", ".join(words))

# %% [markdown]
# ## Summary
#
# - One loading path, `from_pretrained`, serves a hub id (CXR-BERT) and a local folder (the
#   phantom's offline tiny BERT, pretrained on the training reports with masked-word prediction).
# - The paper's text model is a frozen encoder + an MLP head. The head must be trained; with a
#   frozen encoder the embeddings are computed once and cached, so training takes seconds.
# - `[CLS]` is only a summary if pretraining made it one; for masked-LM-only encoders mean pooling
#   read better on the phantom (the mimic profile keeps the paper's `[CLS]`).
# - Fine-tuned end to end with one attention per label, even the tiny BERT reads the report about
#   as well as TF-IDF: each label finds its own words instead of sharing one pooled vector.
# - On findings+impression, text models are near perfect because the labels were extracted from
#   that very text; the indication-only setting shows what the text knows before the image is read.
#
# ## Questions
#
# 1. Why can the head be trained on cached embeddings, but the paper's end-to-end fusion model not?
# 2. What would change in the cache sidecar, and why recompute, if you switched `max_text_length`?
# 3. The tiny BERT was built from the training reports only. What could go wrong if the test
#    reports were included in its pretraining?
# 4. TF-IDF beats the frozen BERT head here. Name two things that could reverse that on real reports.
# 5. Further research: set `CXR_TEXT_SETTING=indication` before notebook 04 and compare the fusion
#    model's gain over the image-only model with the paper's 10%.
#
# ## Next
#
# Notebook **04_fusion_training** joins the image features of notebook 02 and these report
# embeddings in one late-fusion model, and measures how much of its score comes from each side.
