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
# # 02 · The image-only baseline: ResNet-18 on chest X-rays
#
# Train the paper's image model (a ResNet-18 that reads one grayscale X-ray and scores the 14
# CheXpert labels), learn what its loss and "accuracy" do and do not tell you, and see what the
# labels it is trained on teach it.
#
# **Learning objectives**
# - Adapt an ImageNet CNN to grayscale input and a 14-label multi-label head; freeze early layers
#   only where they hold pretrained features.
# - Write the paper's *masked* loss from its equation, and check it against the workbook's.
# - Decide how "not mentioned" labels enter training, and measure what each choice does.
# - Train with one reusable loop (AdamW, best checkpoint, resumable) and read its curves.
# - Compare against trivial baselines, per-label AUROC and (on the phantom) the truth, and see why
#   masked accuracy flatters.
#
# **Reads / writes** (in the artifacts folder, `CXR_ARTIFACTS_DIR`)
# - reads `cohort.csv` and `images_<S>.npy` (made by notebook 01);
# - writes `checkpoints/image.pt` (+ `image_last.pt`, `image_history.json`), the same for the
#   comparison model `image_blank_ignore`, `metrics/image.json`, `predictions/image*_test.csv` and
#   `figures/image_*.png`.
#
# The same work runs without Jupyter: `python -m cxr_helpers train image --artifacts DIR`.

# %% [markdown]
# ## Setup
#
# The first cell loads the settings (profile `phantom` by default; `openi` or `mimic` for real data;
# environment variables override them), seeds every random generator and prints the package
# versions. `CXR_FAST=1` shrinks everything for a quick test run.

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

import dataclasses

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from cxr_helpers import exercises, image_model, metrics, plots_training
from cxr_helpers.config import pick_device
from cxr_helpers.datasets import load_split_datasets
from cxr_helpers.evaluation import record_results
from cxr_helpers.image_training import (
    forget_image_ensemble,
    image_loaders,
    label_policy_table,
    train_image,
    train_image_ensemble,
)
from cxr_helpers.labels import CHEXPERT_LABELS, binary_targets
from cxr_helpers.notebook import setup_notebook
from cxr_helpers.results import readme_table
from cxr_helpers.training import cpu_computes_bfloat16, fit, training_precision

settings = setup_notebook("02 · Image baseline")
device = pick_device()
print("device:", device)

# %% [markdown]
# ## 1. The cohort and the image cache
#
# Notebook 01 decoded every X-ray once into a memory-mapped `uint8` array (`images_<S>.npy`), so
# training never touches a JPEG again. A dataset per split reads rows of that array and the 14
# coded labels of the cohort table; the loader asks for whole batches, read in one go.
# If this cell fails, run notebook 01 first (it says so).

# %%
splits = load_split_datasets(settings)
loaders = image_loaders(settings, splits)
for split, dataset in splits.items():
    print(f"{split:>9}: {len(dataset):5d} images of {dataset.image_size} x {dataset.image_size} px")
batch = next(iter(loaders["fit"]))
print({key: (tuple(value.shape), str(value.dtype)) for key, value in batch.items()})

# %% [markdown]
# A batch is a dict: `image` (B, 1, S, S) in [0, 1], `targets` (B, 14) still coded 1 / 0 / -1 / -2
# (the loss decides what to do with -1 and -2), and `index`, the cohort row of each image, so any
# prediction can be traced back to its study.
#
# The training loader (`fit`) moves each image by a few pixels, a new draw every epoch
# (`settings.augment_shift`: up to 10% of the side on the phantom, none in the mimic profile). A
# finding is then never in exactly the same place, so the model has to recognise it rather than its
# position; on the phantom this raised the image model's AUROC against the truth and made its
# Grad-CAM maps point at the finding more often (notebook 05). Evaluation loaders see the images as
# they are.

# %% [markdown]
# ## 2. The model: ResNet-18, one input channel, 14 outputs
#
# The paper changes two ends of torchvision's ResNet-18: `conv1` takes 1 channel instead of 3
# (`Conv2d(1, 64, kernel_size=7, stride=2, padding=3)`), and the 1000-class ImageNet head becomes
# dropout + `Linear(512, 14)`. It froze the layers up to and including `layer2`, which keeps what
# ImageNet taught them. Freezing is only worth it for *pretrained* layers: layers that start from
# random weights hold nothing to keep, and frozen they would stay random noise the rest of the
# network must work around. So without pretrained weights (the phantom) nothing is frozen.

# %%
model = image_model.build_image_model(settings)
print("conv1:", model.backbone.conv1)
print("head: ", model.backbone.fc)
print("pretrained weights:", settings.image_weights or "none", "| frozen through:",
      settings.freeze_through if image_model.pretrained(settings.image_weights) else "nothing (random weights)")
image_model.parameter_table(model)

# %% [markdown]
# Frozen layers get `requires_grad=False`, and their BatchNorm stays in eval mode while training, so
# their running statistics do not drift either: "frozen" then means the layer computes exactly what
# it did before. The model returns **logits**; the sigmoid is applied inside the loss
# (`binary_cross_entropy_with_logits`), the paper's sigmoid + BCE in one numerically safe step.

# %% [markdown]
# ## 3. Which starting weights?
#
# - **mimic profile**: ImageNet weights (`CXR_IMAGE_WEIGHTS=imagenet`, downloaded once by
#   torchvision; offline, set a local `.pth` path or `none`). The paper replaced `conv1` by a fresh
#   random layer, and since it froze everything through `layer2`, that random `conv1` never learned.
#   We offer `conv1_init="rgb_sum"` (the default): the gray kernel is the sum of the three RGB kernels.
# - **phantom and openi profiles**: no download (`image_weights=None`), everything trains from scratch.
#
# Why summing is exact: a gray image copied into R, G and B gives `w_R*x + w_G*x + w_B*x = (w_R+w_G+w_B)*x`.

# %%
rgb = torch.nn.Conv2d(3, 8, 7, 2, 3, bias=False)
gray = torch.nn.Conv2d(1, 8, 7, 2, 3, bias=False)
gray.weight.data = rgb.weight.data.sum(dim=1, keepdim=True)  # (8, 1, 7, 7)
x = torch.rand(1, 1, 32, 32)
print("largest difference:", (rgb(x.repeat(1, 3, 1, 1)) - gray(x)).abs().max().item())

# %% [markdown]
# ## 4. The paper's masked loss, from its equation
#
# For one image with labels $y_i$ and predicted probabilities $\hat y_i = \sigma(z_i)$, binary
# cross-entropy over the 14 labels is
#
# $$L = -\frac{1}{14}\sum_{i=1}^{14}\Big[y_i \log \hat y_i + (1-y_i)\log(1-\hat y_i)\Big].$$
#
# Mind the minus sign: the logarithms are negative, and the paper's Figure 3 prints the formula
# without it (its code, `F.binary_cross_entropy`, has it). The paper then *masks* the loss: with
# $m_{ni} = 1$ where study $n$'s label $i$ counts and 0 where it does not (not mentioned, -2), and
# uncertain labels (-1) clamped to 0 (U-Zeros),
#
# $$L_{\text{masked}} = \frac{\sum_{n,i} m_{ni}\,\ell(y_{ni}, \hat y_{ni})}{\sum_{n,i} m_{ni}}.$$

# %% [markdown]
# ## Your turn 1: the masked loss by hand
#
# Complete `masked_bce_by_hand(probabilities, targets)` with torch operations only: the mask
# (targets not -2), the clamped targets (-1 -> 0), the elementwise BCE with its minus sign (clip the
# probabilities away from 0 and 1 so the logarithms stay finite), then the masked mean. The check
# compares it with `cxr_helpers.metrics.masked_bce` on random batches and says what differs.

# %%
def masked_bce_by_hand(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The paper's masked BCE (U-Zeros, -2 left out) from the equation above, as a scalar tensor."""
    # TODO: mask = ...; clamped = ...; per_entry = -(clamped * log(p) + (1 - clamped) * log(1 - p)); masked mean
    return None


exercises.check_masked_bce(masked_bce_by_hand)

# %% [markdown]
# The paper's masked accuracy: per label, the share of its valid entries where "probability > 0.5"
# matches the target; labels with fewer than 2 valid entries are skipped; then the mean over labels.
# Written out, next to the workbook's function, on a small batch. The paper's own code compares
# predictions with the *unclamped* targets: a -1 can never equal 0 or 1, so every uncertain entry
# counts as a miss, whatever the model says. The last line shows what that does.

# %%
targets = np.array([[1, -2, 0], [-1, 0, -2], [0, 1, -2], [1, -1, 0]])
probabilities = metrics.sigmoid(np.array([[2.0, 5.0, -1.0], [0.5, -3.0, 9.0], [-2.0, 1.0, 0.0], [1.0, -1.0, -2.0]]))
predicted = probabilities > 0.5
per_label = []
for label in range(targets.shape[1]):
    valid = targets[:, label] != -2
    if valid.sum() >= 2:
        truth = np.clip(targets[valid, label], 0, 1)  # U-Zeros: -1 counts as 0
        per_label.append(np.mean(predicted[valid, label] == truth))
print("by hand:", np.mean(per_label), "| cxr_helpers.metrics:", metrics.masked_accuracy(probabilities, targets))
unclamped = [np.mean(predicted[targets[:, j] != -2, j] == targets[targets[:, j] != -2, j]) for j in range(2)]
print("the paper's code (-1 never matches):", np.mean(unclamped))

# %% [markdown]
# ## 5. What "not mentioned" teaches the model
#
# A label is blank (-2) when the report does not mention the finding. The paper leaves blanks out of
# the loss (`blank_policy="ignore"`). Look at what that leaves for each label: the training split's
# positives and negatives that count, under the paper's choice and under the alternatives.

# %%
train_targets = splits["train"].targets
rows = {}
for policy in ("ignore", "negative", "no_finding_negative"):
    binary, mask = binary_targets(train_targets, settings.uncertainty_policy, policy)
    rows[(policy, "positives")] = (binary * mask).sum(axis=0).astype(int)
    rows[(policy, "negatives")] = ((1 - binary) * mask).sum(axis=0).astype(int)
pd.DataFrame(rows, index=list(CHEXPERT_LABELS))

# %% [markdown]
# Under the paper's choice some labels have almost no negatives: a finding is mostly written down
# when it is there, so the loss only ever sees "yes". **No Finding is never negative at all**: the
# CheXpert labeler codes it 1 or blank, never 0. A model then learns to say "No Finding" for every
# image; it gets that label's masked accuracy for free, its AUROC is undefined (one class), and
# "No Finding" crowds the top-3 lists, as in the paper's Figure 8. Two fixes are common: count blanks
# as negatives (`negative`: a finding the report does not mention is taken as absent, which is
# usually true, and gives every label negatives to learn from), or only No Finding's blanks
# (`no_finding_negative`). The phantom profile trains with `negative`; the mimic profile keeps the
# paper's `ignore`. Below we train both and compare.

# %% [markdown]
# ## 6. Training with the shared loop
#
# `fit` is the one loop that notebooks 03 and 04 use too: AdamW over the trainable parameters,
# masked BCE (with this run's uncertainty and blank policies), and after each epoch the validation
# loss, masked accuracy and macro AUROC (those two as the paper scores them). It keeps the best epoch
# (lowest validation loss) in `checkpoints/image.pt` and the last epoch, with optimizer and random
# states, in `image_last.pt`.
#
# **Skipping training:** if a finished run with the same settings is already saved, `fit` loads it
# instead of training (an interrupted run continues where it stopped, to the very same result).
# Pass `resume=False` to train again.
#
# **Rate and precision (phantom profile).** The learning rate warms up over the first 10% of the
# steps, then falls linearly to zero (`lr_schedule="warmup_linear"`): trained from scratch at 1e-3
# with the paper's constant rate, the validation loss swung from epoch to epoch and which epoch was
# kept was luck (test AUROC against the truth 0.79-0.85 over four runs; 0.85-0.87 over four seeds
# with the decay, each keeping its last epoch; README).
# With `mixed_precision`, `fit` computes in bfloat16 on a CPU that has bfloat16 instructions
# (AVX512-BF16 or AMX: recent server CPUs, AMD Zen 4 laptops); weights and optimizer stay float32.
# On the project's 2-core VM that made a training step 1.7x faster. Elsewhere bfloat16 would be
# emulated, and slower (16x slower on a 2-core AVX2 CPU), so the same settings train in float32: the
# same run, with figures that differ as another seed's would, and slower. On a 2-core CPU with AVX2
# only (most laptops) each of this notebook's two models took about 5.5 minutes instead of 1.5
# (README, Run time).

# %%
checkpoint_dir = settings.artifacts_dir / "checkpoints"
print("blank labels in the loss:", settings.blank_policy, "| uncertain labels:", settings.uncertainty_policy)
print("learning rate:", settings.lr, settings.lr_schedule, "| computed in:", training_precision(settings, device),
      "| bfloat16 instructions on this CPU:", cpu_computes_bfloat16())
history = fit(model, loaders["fit"], loaders["validate"], settings, checkpoint_dir, "image", device=device)
history.to_frame().round(4)

# %% [markdown]
# ## 7. Learning curves (the paper's Figure 6)
#
# The train figures are measured during each epoch, with dropout on and weights still moving, so
# early on they can look worse than validation. The dotted lines are the paper's final values on
# MIMIC-CXR; on the phantom, expect other numbers (different data, image size and epochs, and a
# loss that also counts blank labels when the blank policy is `negative`).

# %%
fig = plots_training.plot_history(history, "Image-only ResNet-18", paper="paper: image-only ResNet-18")
print("saved", plots_training.save_figure(fig, settings.artifacts_dir, "image_curves"))

# %% [markdown]
# **Think.** Where does the validation loss stop falling? The paper stopped at 10 epochs because
# it "began to overfit" after that: what in the curves would show overfitting?

# %% [markdown]
# ## 8. Results against the paper, with trivial baselines
#
# We score the best checkpoint on all three splits and store the figures in `metrics/image.json`,
# together with three models that never look at an image: always "absent" (all negative), always
# "present" (all positive), and each label's training prevalence. Accuracy and AUROC are scored as
# the paper does (on the labels the report mentions). Test predictions go to
# `predictions/image_test.csv` for notebooks 04 and 05.

# %%
evaluation = {split: loaders[split] for split in ("train", "validate", "test")}
results = record_results(model, evaluation, settings, "image", "image", device=device)
table = plots_training.results_vs_paper(settings.metrics_dir / "image.json")
table.round(4)

# %% [markdown]
# Read the accuracy column against the baselines. Because "not mentioned" entries are dropped, the
# labels that remain are mostly the ones a radiologist bothered to write down, and a constant answer
# already scores high. A model trained with blanks as negatives predicts "absent" more often, and the
# paper's accuracy, which only looks at mentioned (mostly present) findings, punishes exactly that.
# Macro AUROC asks a different question (does the model rank positive images above negative ones?)
# and is 0.5 for every constant predictor. The paper's 0.7047 validation accuracy has to be read
# with that in mind.

# %% [markdown]
# How sure are these test figures? The test split is small (about 100 studies on the default
# phantom), so each comes with a 95% bootstrap interval: the test studies drawn with replacement
# 2,000 times, each draw scored, the middle 95% of the scores kept (`cxr_helpers.bootstrap`).

# %%
readme_table(settings.metrics_dir, include_paper=False).query("stage == 'image'").drop(columns="stage").round(3)

# %% [markdown]
# ## 9. The paper's blank policy, side by side
#
# The same model trained the paper's way (blank labels left out of the loss), then compared label by
# label: the share of test images each model calls positive, its AUROC against the report labels,
# and, on the phantom, its AUROC against the truth (what was really drawn in the image, which the
# models never see).

# %%
paper_way = dataclasses.replace(settings, blank_policy="ignore")
paper_run = train_image(paper_way, name="image_blank_ignore")
label_policy_table(settings.artifacts_dir, {"blank as negative": "image", "blanks ignored (paper)": "image_blank_ignore"}).round(2)

# %% [markdown]
# With blanks ignored, the labels that are nearly always "yes" when mentioned (No Finding, Support
# Devices, and any finding reports rarely negate) are called positive on almost every image: the
# model learns the base rate of the *mention*, not the finding. Its AUROC against the report labels
# can still look fine, because those labels are mostly "yes" too; against the truth it falls. With
# blanks as negatives every label has negatives to learn from, and the model has to look for the
# finding. That is what notebook 05 needs: a heatmap can only point at a finding the model detects.

# %% [markdown]
# ## 10. Which labels does the image model see?
#
# AUROC per label on the test split, against the report labels and, on the phantom, against the
# truth. "n/a" means that split has only one class for that label among the labels it scores: for
# No Finding under the paper's masking that is always so (it is never 0), for the others it happens
# when a small split has no negative (or no positive) report.

# %%
aurocs = {"test, report labels": results["test"]["auroc"]}
if "truth" in results["test"]:
    aurocs["test, truth"] = results["test"]["truth"]["auroc"]
fig = plots_training.plot_label_auroc(aurocs, "Image model: AUROC per label")
print("saved", plots_training.save_figure(fig, settings.artifacts_dir, "image_label_auroc"))

# %% [markdown]
# **Think.** Which labels are easiest for the image model, and is that what you would expect from
# what each finding looks like (a large heart versus a rib fracture)?

# %% [markdown]
# ## 11. One model, or several of the same recipe (optional)
#
# Train the same recipe with another seed and you get another model: about as good (test macro
# AUROC against the truth 0.85-0.88 over seven seeds on the default phantom), but its Grad-CAM points
# elsewhere (notebook 05: pointing at the probes' small findings from 0.57 to 0.91 of the time, by seed).
# With `CXR_IMAGE_ENSEMBLE=K` this cell trains K-1 more image models with seeds `seed + 1`, ..., and
# scores the ensemble (the mean of their logits) as `image_ensemble`; notebook 05 then scores its map,
# the mean of the members' maps, beside this model's. Off by default: each extra model costs as much
# training as this notebook's first (about 90 s on a 2-core CPU with bfloat16, 5.5 min without). Take 4: with
# 2, the pair's map points about as well as its members (0.63 or 0.75 on the probes, by the seed
# added; README), while the ensembles of 3 and 4 measured all pointed 0.82-0.85.

# %%
if settings.image_ensemble > 1:
    train_image_ensemble(settings)
    display(readme_table(settings.metrics_dir, include_paper=False).query("stage == 'image'").drop(columns="stage").round(3))
else:
    print(f"CXR_IMAGE_ENSEMBLE is {settings.image_ensemble}: one image model. With 4, this cell trains three more "
          f"(seeds {settings.seed + 1}-{settings.seed + 3}).")
    if forget_image_ensemble(settings):  # an earlier run's ensemble figures: not what this run scores
        print("Dropped an earlier run's image_ensemble figures from metrics/image.json.")

# %% [markdown]
# ## Summary
#
# - The paper's image model is a ResNet-18 with a 1-channel `conv1` and a dropout + linear head for
#   14 labels; it outputs logits and the loss applies the sigmoid. Only pretrained layers are frozen.
# - The loss is *masked*: its equation has a minus sign the paper's figure lost; uncertain labels
#   count as negative (U-Zeros), and how blank labels count is a choice with consequences: left
#   out, No Finding has no negative and the model learns base rates of mentions.
# - One loop, `fit`, trains every model of the workbook and resumes exactly.
# - Masked accuracy is high even for constant predictors; AUROC (per label, against the report and,
#   on the phantom, the truth) shows what the model learned from the pixels.
#
# ## Questions
#
# 1. Why does the model return logits rather than probabilities, if the paper's head ends in a sigmoid?
# 2. Why freeze only pretrained layers? What would frozen random layers do to what the rest learns?
# 3. Under U-Ignore instead of U-Zeros, which labels' accuracy would you expect to move most?
# 4. No Finding's AUROC is "n/a" under the paper's masking on every split. Why, and what does a model
#    trained that way say for No Finding?
# 5. Further research: train with `CXR_BLANK_POLICY=no_finding_negative` and compare the table of
#    section 9; or `CXR_UNCERTAINTY_POLICY=ones`.
#
# ## Next
#
# Notebook **03_text_baseline** reads the reports: a frozen BERT encoder's embeddings with a small
# classifier head, the same encoder trained end to end, and a look at why the report text "knows"
# the labels.
