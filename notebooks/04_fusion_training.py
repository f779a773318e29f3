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
# # 04 · Fusion: one model that reads the X-ray and the report
#
# Build the paper's late-fusion model (ResNet-18 features + the report's [CLS] embedding -> MLP),
# compare it with two fusion strategies the paper left for future work, and find out how much of
# the gain comes from the image, how much from the report, and how much from labels leaking
# through the report.
#
# **Learning objectives**
# - Assemble a multimodal model from two trained unimodal encoders, and say what "late",
#   "decision-level" and "intermediate" (FiLM) fusion each combine; write the concat head's forward pass
#   and one training step in plain torch.
# - Weigh the paper's end-to-end training against frozen, cached encoders (speed against fidelity).
# - Read the results against the paper and against the image-only and text-only models.
# - Measure *leakage* (findings+impression vs indication-only reports) and *modality reliance*
#   (remove one modality and watch the score).
# - Read every comparison with its 95% bootstrap interval, and the paper with a critical eye.
#
# **Reads / writes** (in the artifacts folder, `CXR_ARTIFACTS_DIR`)
# - reads `cohort.csv` + `images_<S>.npy` (notebook 01), `checkpoints/image.pt` (notebook 02),
#   `text/` (the text encoder and its cached embeddings) and `metrics/text.json` (notebook 03);
# - writes `checkpoints/fusion_<strategy>_<setting>.pt` (+ `_last.pt`, `_history.json`), the paper's
#   model `checkpoints/fusion_concat_findings_impression_end_to_end.pt`, `predictions/fusion_*_test.csv`,
#   `metrics/fusion.json` (with the modality ablation, bootstrap intervals and the discussed differences)
#   and `figures/fusion_*.png`.
#
# The same work runs without Jupyter: `python -m cxr_helpers train fusion --artifacts DIR`.

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

import numpy as np
import torch
from IPython.display import display

from cxr_helpers import exercises, plots_training
from cxr_helpers.datasets import CohortImageDataset
from cxr_helpers.fusion.build import build_fusion_model
from cxr_helpers.fusion.model import STRATEGIES, fusion_name
from cxr_helpers.fusion.tables import (
    comparison_table,
    epoch_seconds_table,
    label_aurocs,
    leakage_table,
    paper_comparison,
    plot_reliance,
    reliance_table,
)
from cxr_helpers.fusion.train import train_fusion
from cxr_helpers.artifacts import require
from cxr_helpers.metrics import masked_bce
from cxr_helpers.notebook import setup_notebook
from cxr_helpers.prepare import load_cohort, open_image_cache
from cxr_helpers.results import comparisons_table
from cxr_helpers.text.embeddings import embeddings_paths
from cxr_helpers.training import load_history

settings = setup_notebook("04 · Fusion training")

# %% [markdown]
# ## 1. What the earlier notebooks left us
#
# Fusion reuses both unimodal models: the image encoder trained in notebook 02 and the report
# embeddings that notebook 03 computed with the frozen text encoder (one vector per report, for
# each text setting). If a file is missing, the error names the notebook that makes it.

# %%
require(settings.artifacts_dir / "checkpoints" / "image.pt", "image")
cohort = load_cohort(settings.artifacts_dir)
embeddings = {}
for text_setting in ("findings_impression", "indication"):
    path = require(embeddings_paths(settings, text_setting)[0], "text")
    embeddings[text_setting] = np.load(path, mmap_mode="r")
    print(f"{text_setting:>20}: embeddings {embeddings[text_setting].shape} (rows = cohort rows)")
text_dim = embeddings["findings_impression"].shape[1]
print("cohort:", cohort["split"].value_counts().to_dict(), "| text encoder:", settings.text_model, f"(H = {text_dim})")

# %% [markdown]
# ## 2. The paper's model: late fusion by concatenation
#
# Each modality goes through its own encoder; the two vectors are concatenated and a 2-layer
# feed-forward head gives 14 logits. On MIMIC-CXR the text encoder is CXR-BERT (H = 768, so the
# fused vector has 1280 numbers); the phantom's tiny BERT has a smaller H, read from its config.
#
# ```
#  X-ray (1 x S x S) ──> ResNet-18 (notebook 02's weights) ──> pooled features (512) ──┐
#                                                                                     ├─ concat (512 + H)
#  report text ──> tokenizer ──> BERT encoder ──> [CLS] embedding (H) ─────────────────┘        │
#                                                                  Linear(512 + H, hidden) -> ReLU -> Dropout
#                                                                  -> Linear(hidden, 14) -> 14 logits (sigmoid in the loss)
# ```
#
# The paper trained this *with nothing frozen*: both encoders keep learning (AdamW, masked BCE,
# the same lr, batch size and epochs as the image model).

# %%
model = build_fusion_model(settings, "concat", text_dim)
parts = {"image encoder (ResNet-18)": model.image_model, "fusion head (MLP)": model.head}
for part, module in parts.items():
    print(f"{part:<28} {sum(p.numel() for p in module.parameters()):>12,} parameters")
print("input keys:", model.input_keys)
print(model.head)

# %% [markdown]
# `input_keys` tells the shared `fit` loop which batch entries the model reads. With a
# frozen text encoder those are the cached embeddings (`text_features`); end to end they are the
# tokens (`input_ids`, `attention_mask`) and the encoder is part of the model.

# %% [markdown]
# Now a real batch: eight training studies, their X-rays from notebook 01's cache and their report
# embeddings from notebook 03. The image encoder turns each X-ray into 512 pooled features; the model's
# `fuse` runs the concat head on features and embedding. This is what the head computes, batch row by row.

# %%
train_set = CohortImageDataset(cohort, open_image_cache(settings.artifacts_dir, settings.image_size), "train",
                               text_features=embeddings["findings_impression"])
batch = train_set.__getitems__(list(range(min(8, len(train_set)))))
model.eval()
with torch.no_grad():
    image_features = model.image_model.features(batch["image"])  # (B, 512) pooled ResNet-18 features
    text_embedding = batch["text_features"]  # (B, H) report embeddings
    head_logits = model.fuse(image_features, text_embedding)  # (B, 14): the model's own concat head
print("image features", tuple(image_features.shape), "| report embedding", tuple(text_embedding.shape),
      "| logits", tuple(head_logits.shape))

# %% [markdown]
# ### Your turn: the concat head's forward pass by hand
#
# Write the head in plain torch with its own weights: `head` is `model.head`, an `nn.Sequential` of
# `Linear(512 + H, hidden)`, `ReLU`, `Dropout(0.5)`, `Linear(hidden, 14)`. Concatenate `[image_features,
# text_embedding]` along dimension 1 (image first), apply the first layer as `x @ W.T + b`, the ReLU, skip
# dropout (in eval mode it is the identity; in training it zeroes each unit with probability 0.5 and scales
# the rest by 2), and the last layer. Return logits, not probabilities. The check compares your function with
# the head itself on a hand-made head and on this model's head; the next cell on the real batch.

# %%
def concat_head_forward(head, image_features, text_embedding):
    """Logits (B, 14) of the concat fusion head, computed from its weights."""
    first, _, _, last = head  # Linear, ReLU, Dropout, Linear
    # TODO: concatenate, first layer, ReLU, last layer.
    raise NotImplementedError


exercises.check_concat_head(concat_head_forward, model.head);

# %% [markdown]
# And on the real batch above: your function against `model.fuse`. The head is freshly initialised here;
# the equality holds for any weights, the trained ones of section 5 included.

# %%
try:
    by_hand = concat_head_forward(model.head, image_features, text_embedding)
    print("largest difference from model.fuse on the real batch:", f"{(by_hand - head_logits).abs().max():.2e}",
          "| allclose:", torch.allclose(by_hand, head_logits, atol=1e-5))
except NotImplementedError:
    print("Fill in concat_head_forward above to compare it with the model on the real batch.")

# %% [markdown]
# ## 3. Three ways to fuse
#
# The paper's conclusion proposes "different fusion strategies" as future work. All three below
# sit behind the same interface (`FusionModel`), so they train, evaluate and explain alike:
#
# ```
#  concat    image feats (512) ─┐
#  (paper)   report emb  (H)  ──┴─ concat ─> MLP ─> 14 logits          fusion of *features*
#
#  decision  image feats ─> image head ─> 14 logits ─┐
#            report emb  ─> text MLP   ─> 14 logits ─┴─ average         fusion of *decisions*
#
#  film      X-ray ─> conv1..layer3 ─> FiLM(report) ─> layer4 ─> FiLM(report) ─> pool ─> image head
#                                      x*(1+gamma)+beta, per channel     fusion *inside* the CNN
# ```
#
# FiLM (feature-wise linear modulation) lets the report rescale and shift each feature map
# channel. Its projection starts at zero, so before training the FiLM model *is* the image model:
# the check below compares their logits.

# %%
models = {strategy: build_fusion_model(settings, strategy, text_dim, freeze_image=True) for strategy in STRATEGIES}
for strategy, candidate in models.items():
    trainable = sum(p.numel() for p in candidate.parameters() if p.requires_grad)
    print(f"{strategy:>8}: {trainable:>9,} trainable parameters with both encoders frozen")
images = torch.rand(2, 1, settings.image_size, settings.image_size)
reports = torch.tensor(np.array(embeddings["findings_impression"][:2]))
with torch.no_grad():
    gap = (models["film"].eval()(image=images, text_features=reports) - models["film"].image_model(images)).abs().max()
print(f"FiLM at initialisation vs the image model: largest logit difference {gap:.2e}")

# %% [markdown]
# **Think.** Decision-level fusion averages two sets of logits. Can it ever learn that a finding is
# present only when *both* the image and the report hint at it? Which of the three can?

# %% [markdown]
# ### Your turn: a gated fusion head
#
# A *gated multimodal unit* learns, per example and per hidden unit, how much to trust each
# modality: `h_image = tanh(W_i x)`, `h_text = tanh(W_t t)`, `g = sigmoid(W_g [x; t])`, and
# `h = g * h_image + (1 - g) * h_text`, then dropout and a linear layer to 14 logits. Fill in
# `gate()` and `forward()`; the check feeds random features, looks at shapes, at the gate's range,
# at gradients into both inputs, and forces the gate to 1 to see that the report then stops mattering.

# %%
class GatedFusionHead(torch.nn.Module):
    """Gated fusion of image features (B, image_dim) and a report embedding (B, text_dim) -> (B, 14)."""

    def __init__(self, image_dim: int, text_dim: int, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.image_proj = torch.nn.Linear(image_dim, hidden)
        self.text_proj = torch.nn.Linear(text_dim, hidden)
        self.gate_proj = torch.nn.Linear(image_dim + text_dim, hidden)
        self.out = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(hidden, 14))

    def gate(self, image_features, text_embedding):
        # TODO: sigmoid of gate_proj applied to the concatenated inputs, (B, hidden).
        raise NotImplementedError

    def forward(self, image_features, text_embedding):
        # TODO: tanh projections, mix them with g = self.gate(...), then self.out.
        raise NotImplementedError


exercises.check_gated_fusion(GatedFusionHead);

# %% [markdown]
# Stretch: add `"gated"` as a fourth strategy to a copy of `FusionModel.fuse` (it takes the pooled
# image features and the report embedding, like `concat`) and train it on the cached features after
# section 5. Does the learned gate lean towards the report more with findings+impression than with the
# indication?

# %% [markdown]
# ## 4. Frozen, cached encoders or end to end?
#
# Training end to end (the paper) runs the BERT encoder forward and backward for every report in
# every epoch, and the whole ResNet too. That is the most faithful and the most flexible, and by far
# the slowest. Freezing both encoders lets us compute their outputs **once** (the report embeddings
# come from notebook 03; the image features are cached in memory at the start), and then each epoch
# only trains the fusion layers: seconds instead of minutes on a laptop. The price: the encoders
# cannot adapt to each other or to the task any more than notebooks 02 and 03 taught them, and the
# fusion can only use what the frozen report embedding already encodes. CXR-BERT was pretrained on
# hundreds of thousands of MIMIC reports; the phantom's tiny BERT saw a few hundred, and its frozen
# [CLS] vector says much less about the findings (compare its text-only head with TF-IDF in section 8).
#
# `train_fusion` therefore trains the strategy table (3 strategies x 2 text settings) with frozen,
# cached encoders, all under the same budget (same data, epochs, loss and learning rate), and the
# paper's model once, end to end, on the findings+impression reports. Section 9 shows the time per epoch of both.

# %% [markdown]
# ## 5. One training step by hand, then every fusion model
#
# Every model here learns by minimising the paper's **masked binary cross-entropy**. With
# $\hat y_{n,i} = \sigma(z_{n,i})$ the predicted probability of label $i$ for study $n$, $y_{n,i} \in \{0, 1\}$
# its target (-1 becomes 0 under U-Zeros) and $m_{n,i} = 0$ where the label is blank and ignored, 1 elsewhere:
#
# $$L = -\frac{1}{\sum_{n,i} m_{n,i}} \sum_{n} \sum_{i=1}^{14} m_{n,i} \left[ y_{n,i} \log \hat y_{n,i} + (1 - y_{n,i}) \log (1 - \hat y_{n,i}) \right]$$
#
# Mind the minus sign: both logarithms are negative, so without it (as printed in the paper's Figure 3) the
# "loss" is at most 0 and minimising it would push every prediction *away* from its target. The paper's code
# has it right (`F.binary_cross_entropy`), and divides by the number of valid entries, not by 14 as the
# figure does. `metrics.masked_bce` computes this formula (from the logits, which is the same number but
# stays finite for confident predictions); `settings.blank_policy` decides which blanks are masked (the
# phantom profile counts them as negatives).
#
# One step of training is four lines: forward, loss, backward, step. Here on the batch of section 2, with
# the image encoder frozen so that only the head learns, as in the strategy table:

# %%
step_model = build_fusion_model(settings, "concat", text_dim, freeze_image=True)
optimizer = torch.optim.AdamW([p for p in step_model.parameters() if p.requires_grad], lr=1e-3)
inputs = {"image": batch["image"], "text_features": batch["text_features"]}
for step in range(3):
    step_model.train()
    logits = step_model(**inputs)  # forward: (B, 14) logits
    loss = masked_bce(logits, batch["targets"], settings.uncertainty_policy, settings.blank_policy)
    optimizer.zero_grad()
    loss.backward()  # gradients for the head only: the encoder is frozen
    optimizer.step()  # AdamW moves the head's weights against the gradient
    print(f"step {step + 1}: masked BCE on this batch before the step {loss.item():.4f}")

# %% [markdown]
# The loss on the batch goes down step by step: the head is fitting these eight studies. `training.fit`
# does exactly this for every batch of every epoch, with the batches shuffled by seed and epoch, and adds
# what a real run needs: validation loss, accuracy and AUROC after each epoch, the best epoch kept by
# validation loss, checkpoints to resume from, and optional mixed precision and torchrun.
#
# **Train every fusion model.**
# One call does notebook 04's whole job: for each model it trains with `fit` (best epoch by
# validation loss, resumable), scores train / validation / test into `metrics/fusion.json`, writes
# the test predictions, and scores the test split again with one modality removed. A finished run
# is loaded instead of retrained (pass `resume=False` to train again).

# %%
outcome = train_fusion(settings)
print(f"\n{len(outcome['models'])} fusion models ready in {outcome['seconds']:.0f} s")

# %% [markdown]
# ## 6. Learning curves (the paper's Figure 7)
#
# The paper's model (end to end) first, then the frozen-encoder concat model. The dotted lines are
# the paper's final train and validation figures for its late-fusion model on MIMIC-CXR.

# %%
checkpoints = settings.artifacts_dir / "checkpoints"
paper_model = fusion_name("concat", "findings_impression", end_to_end=True)
for name in [paper_model, "fusion_concat_findings_impression"]:
    if (checkpoints / f"{name}_history.json").exists():
        fig = plots_training.plot_history(load_history(checkpoints, name), name, paper="paper: late fusion")
        plots_training.save_figure(fig, settings.artifacts_dir, f"{name}_curves")

# %% [markdown]
# **Think.** With frozen encoders the fusion head starts from features that already separate the
# labels well. What does that do to the first epoch's loss compared with the end-to-end run?

# %% [markdown]
# ## 7. Against the paper
#
# Loss and masked accuracy per split next to the paper's late fusion (train 0.1302 / 0.8296,
# validation 0.2707 / 0.7916, test 0.2592 / 0.7950). The paper's image-only model reached 0.7047
# validation accuracy: it read the roughly 9-point gain as the value of adding the report. Macro
# AUROC is ours: the paper did not report it.

# %%
for name in [paper_model, "fusion_concat_findings_impression"]:
    if (checkpoints / f"{name}.pt").exists():
        print(name)
        display(paper_comparison(settings.metrics_dir, name).round(4))

# %% [markdown]
# **Reading the paper critically.** Reproducing a paper means checking its reasoning too:
# - *Epochs chosen on the test set.* "10 is the number where we maximize the validation and test accuracy":
#   the test split helped choose the model, so its 0.7950 is optimistic. Here the epoch is chosen on
#   validation loss only, and the test split is read once at the end.
# - *Different splits compared.* The "10% better" sets the fusion model's test accuracy (0.7950) against the
#   image model's *validation* accuracy (0.7047): 9 points, on two different splits, without an interval,
#   with a metric that a model predicting the training prevalence already scores well on (notebook 02).
# - *Figures 8 and 9-11 disagree.* Grad-CAM is shown for the top-3 labels No Finding, Cardiomegaly and
#   Atelectasis, SHAP for No Finding, Pleural Effusion and Fracture: if both explain one model's top-3 for one
#   study, the lists must be the same. They explain different predictions (other models or other studies),
#   and the paper does not say which.
# - *The loss formula.* Figure 3 lacks the minus sign and averages over 14 labels, while the code masks blanks
#   and averages over the valid entries (the equation above).
# - *No Finding.* Coded only 1 or blank in MIMIC-CXR, so under the paper's masking it never has a negative:
#   always answering "No Finding" is free accuracy (notebook 02), and a model that learns it puts No Finding
#   at the top of every top-3 list, as in Figures 8 and 9.

# %% [markdown]
# ## 8. Every model in one table
#
# Image-only (notebook 02), text-only (notebook 03: TF-IDF and the frozen encoder's head) and every
# fusion model, on the test split. `training` says how each fusion model was trained; `ci_low` and
# `ci_high` bound the macro AUROC's 95% bootstrap interval over the test studies.

# %%
table = comparison_table(settings.metrics_dir)
table.round(4)

# %% [markdown]
# **Does fusion beat the best single modality?** Beating the image model alone is not the question: a fusion
# model fed findings+impression should be held against the best model that sees the same inputs, which may
# well be a text model. For each fusion model `train_fusion` picked the best unimodal model on the same inputs
# *on the validation split* (so the test split plays no part in the choice) and stored the difference in test
# macro AUROC with a paired bootstrap interval in `metrics/fusion.json` ("comparisons").

# %%
differences = comparisons_table(settings.metrics_dir, ("fusion",))
best_unimodal = differences[differences["question"].str.contains("best unimodal")].drop(columns=["stage", "question"])
print("not significant at 95% (no interval that excludes 0):",
      ", ".join(best_unimodal.loc[~best_unimodal["CI excludes 0"], "model"]) or "none")
best_unimodal.round(3)

# %% [markdown]
# AUROC per label for the image-only model, the text-only head and the paper's fusion model on the
# findings+impression reports: where does each modality help?

# %%
text_head = next((m for m in table["model"] if m.endswith("_head_findings_impression")), None)
aurocs = label_aurocs(settings.metrics_dir, ["image", text_head, paper_model])
fig = plots_training.plot_label_auroc(aurocs, "Test AUROC per label")
plots_training.save_figure(fig, settings.artifacts_dir, "fusion_label_auroc");

# %% [markdown]
# ## 9. Speed: frozen and cached against end to end
#
# Seconds per training epoch as measured by `fit` (on this machine). Concat and decision fusion on
# cached features only run a small MLP; FiLM must still run `layer4` every step (the report
# modulates it), and the end-to-end model runs the whole ResNet and the BERT encoder, forward and
# backward. `benchmarks/bench_fusion.py` also times a middle way (image encoder fine-tuned, text
# cached): with the phantom's tiny BERT almost all of the end-to-end cost is the ResNet; with
# CXR-BERT (110 million parameters) the text encoder weighs in too.

# %%
epoch_seconds_table(settings.metrics_dir).round(2)

# %% [markdown]
# ## 10. How much of the gain is leakage?
#
# The CheXpert labels were extracted *from the report's impression (else findings)* by a rule-based
# labeler. A model fed those sections can read the answer. The indication ("why was this X-ray
# ordered?") is written before the image is read: on the phantom it never names a finding; on real data it
# often names the suspected one, which is fair information at prediction time but not the labeler's text.
# For each strategy: the test macro AUROC with each text setting, the gain over the image-only model, and the
# share of the findings+impression gain that the indication alone does not give.

# %%
leakage = leakage_table(settings.metrics_dir)
leakage.round(3)

# %% [markdown]
# The same question with its uncertainty: findings+impression minus indication, per strategy, on paired
# bootstrap draws of the test studies.

# %%
by_setting = differences[differences["question"].str.contains("minus indication")].drop(columns=["stage", "question"])
print("not significant at 95% (no interval that excludes 0):",
      ", ".join(by_setting.loc[~by_setting["CI excludes 0"], "model"]) or "none")
by_setting.round(3)

# %% [markdown]
# Read this table together with the text-only rows of section 8: a frozen encoder whose embedding
# hardly encodes the findings leaks little, whatever the section. With a text encoder that learns to
# read (TF-IDF in notebook 03, the end-to-end model here, or `train_fusion(settings,
# train_text_encoder=True)`, which fine-tunes a copy of the text encoder inside every table model)
# the findings+impression setting pulls far ahead of the indication. The test split is small on the
# phantom (about 100 studies), so a difference whose interval includes 0 is not evidence of anything.
#
# **Think.** If nearly all of the gain disappears with indication-only reports, what did the paper's
# "10% better" really measure? What would a deployed model have at prediction time: the final
# report, or only the indication?

# %% [markdown]
# ## 11. Which modality does each model lean on?
#
# We score each fusion model on the test split three times: with both inputs, with the report
# removed, and with the image blanked (all zeros). "Removed" report means the encoder's embedding of
# an **empty report** `""`: what the model would meet if a study had no report, and a point the
# encoder can really produce. (A vector of zeros, the other option in `modality_ablation`, is a point
# no encoder ever outputs, so the head's answer there says little.) A big drop means heavy reliance;
# a *negative* drop means the model scores better without that input: what it learned from it does
# not carry over from the training studies to new ones.

# %%
reliance = reliance_table(settings.metrics_dir)
fig = plot_reliance(reliance)
plots_training.save_figure(fig, settings.artifacts_dir, "fusion_modality_reliance")
reliance.round(3)

# %% [markdown]
# **Think.** A fusion model whose score hardly moves without the image is a text model with an
# expensive camera attached. Which strategy keeps the most use of the image with the leaking
# reports, and which with the indication only? Why might FiLM behave differently from concat?

# %% [markdown]
# ## Summary
#
# - The paper's late fusion concatenates ResNet-18's 512 pooled features with the report's [CLS]
#   embedding and trains a 2-layer MLP on top, end to end: a concatenation and two matrix products, which
#   you wrote by hand; one training step is forward, masked BCE (with its minus sign), backward, step. Decision-level fusion averages two
#   heads' logits; FiLM lets the report modulate the CNN's feature maps from the inside.
# - Freezing and caching the encoders makes each strategy train in seconds; the paper's end-to-end
#   training is much slower per epoch (section 9).
# - Reports with findings and impression carry the labels (the labeler read them): most of the
#   fusion gain on those reports is leakage, which the indication-only setting exposes. Fusion is held
#   against the best unimodal model on the same inputs (chosen on validation), with a paired bootstrap
#   interval: on about 100 test studies, several differences are not significant.
# - Removing one modality at test time shows what a fusion model really uses.
#
# ## Questions
#
# 1. Why does FiLM start from the identity, and what would a random initialisation do to the image
#    model's trained features in the first epochs?
# 2. The paper calls concatenation "late fusion" and "fusion at the decision level". Which of our
#    three strategies is decision-level fusion in the strict sense, and why does the distinction matter?
# 3. Why is an empty report a better stand-in for "no report" than a zero vector? When would the
#    mean training embedding be better still?
# 4. Which fusion figure would you quote for a system that only sees the indication at prediction time?
#    Give it with its interval.
# 5. Why is the paired interval of a difference narrower than the two models' own intervals would suggest?
#    When would it not be?
# 6. Further research: fine-tune the image encoder (`train_fusion(settings, freeze_encoders=False)`)
#    or the text encoder (`train_text_encoder=True`) in the strategy table and compare the tables;
#    try a zero-vector report in `modality_ablation(..., text_removal="zeros")`.
#
# ## Next
#
# Notebook **05_interpretation** opens the fusion models again (`load_fusion_model`) and asks
# *why* they decide: Grad-CAM on the X-ray with the report held fixed, SHAP on the report's words
# with the image held fixed, checked against the phantom's ground truth.
