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
# CheXpert labels), and learn what its loss and "accuracy" figures do and do not tell you.
#
# **Learning objectives**
# - Adapt an ImageNet CNN to grayscale input and a 14-label multi-label head, and freeze its early layers.
# - Compute the paper's *masked* loss and accuracy, where "not mentioned" (-2) labels are ignored and
#   "uncertain" (-1) labels count as negative (U-Zeros).
# - Train with one reusable loop (AdamW, best checkpoint, resumable) and read its curves.
# - Compare against trivial baselines and per-label AUROC, and see why masked accuracy flatters.
#
# **Reads / writes** (in the artifacts folder, `CXR_ARTIFACTS_DIR`)
# - reads `cohort.csv` and `images_<S>.npy` (made by notebook 01);
# - writes `checkpoints/image.pt` (+ `image_last.pt`, `image_history.json`), `metrics/image.json`,
#   `predictions/image_test.csv` and `figures/image_*.png`.
#
# The same work runs without Jupyter: `python -m cxr_helpers train image --artifacts DIR`.

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

from cxr_helpers import exercises, image_model, metrics, plots_training
from cxr_helpers.config import pick_device
from cxr_helpers.datasets import load_split_datasets
from cxr_helpers.evaluation import record_results
from cxr_helpers.image_training import image_loaders
from cxr_helpers.notebook import setup_notebook
from cxr_helpers.training import fit

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

# %% [markdown]
# ## 2. The model: ResNet-18, one input channel, 14 outputs
#
# The paper changes two ends of torchvision's ResNet-18: `conv1` takes 1 channel instead of 3
# (`Conv2d(1, 64, kernel_size=7, stride=2, padding=3)`), and the 1000-class ImageNet head becomes
# dropout + `Linear(512, 14)`. Layers up to and including `layer2` are frozen: only `layer3`,
# `layer4` and the head learn.

# %%
model = image_model.build_image_model(settings)
print("conv1:", model.backbone.conv1)
print("head: ", model.backbone.fc)
image_model.parameter_table(model)

# %% [markdown]
# Freezing sets `requires_grad=False`, and we also keep the frozen layers' BatchNorm in eval mode
# while training, so their running statistics do not drift: "frozen" then means the layer computes
# exactly what it did before. The model returns **logits**; the sigmoid is applied inside the loss
# (`binary_cross_entropy_with_logits`), which is the paper's sigmoid + BCE in one numerically safe step.

# %%
counts = image_model.parameter_counts(model)
print(f"trainable {counts['trainable']:,} | frozen {counts['frozen']:,} | total {counts['total']:,}")
with torch.no_grad():
    print("logits for the batch:", tuple(model.eval()(batch["image"]).shape))

# %% [markdown]
# **Think.** With `freeze_through="layer2"`, about 6% of the weights are frozen but they sit where
# the image is largest: what does freezing save in compute, and what does it save in *data*?

# %% [markdown]
# ## 3. Which starting weights?
#
# - **mimic profile**: ImageNet weights (`CXR_IMAGE_WEIGHTS=imagenet`, downloaded once by
#   torchvision; offline, set a local `.pth` path or `none`). The paper replaced `conv1` by a fresh
#   random layer, and since it froze everything through `layer2`, that random `conv1` never learned.
#   We offer `conv1_init="rgb_sum"` (the default): the gray kernel is the sum of the three RGB kernels.
# - **phantom profile**: no download and no ImageNet (`image_weights=None`): the synthetic images
#   are simple, and training from scratch keeps the workbook offline.
#
# Why summing is exact: a gray image copied into R, G and B gives `w_R*x + w_G*x + w_B*x = (w_R+w_G+w_B)*x`.

# %%
rgb = torch.nn.Conv2d(3, 8, 7, 2, 3, bias=False)
gray = torch.nn.Conv2d(1, 8, 7, 2, 3, bias=False)
gray.weight.data = rgb.weight.data.sum(dim=1, keepdim=True)  # (8, 1, 7, 7)
x = torch.rand(1, 1, 32, 32)
print("largest difference:", (rgb(x.repeat(1, 3, 1, 1)) - gray(x)).abs().max().item())
print("this run:", settings.image_weights or "no pretrained weights", "| conv1_init:", settings.conv1_init)

# %% [markdown]
# ## 4. The paper's masked loss and accuracy, on a tiny example
#
# Two studies, three labels. -2 ("not mentioned") entries are left out of both the loss and the
# accuracy; -1 ("uncertain") becomes 0 under U-Zeros, the paper's choice. The loss is
# `sum(loss * mask) / sum(mask)`; the accuracy is the mean over labels of each label's accuracy on
# its valid entries (labels with fewer than 2 valid entries are skipped), with "positive" meaning
# probability > 0.5.

# %%
targets = np.array([[1, -2, 0], [-1, 0, -2], [0, 1, -2]])
logits = np.array([[2.0, 5.0, -1.0], [0.5, -3.0, 9.0], [-2.0, 1.0, 0.0]])
print("probabilities:\n", metrics.sigmoid(logits).round(2))
for policy in ("zeros", "ones", "ignore"):
    loss = metrics.masked_bce(logits, targets, policy)
    accuracy = metrics.masked_accuracy(metrics.sigmoid(logits), targets, uncertainty_policy=policy)
    print(f"U-{policy:<6} loss {loss:.4f}  accuracy {accuracy:.4f}")

# %% [markdown]
# Check U-Zeros by hand: label 0 has three valid entries (1, -1 -> 0, 0) predicted (1, 1, 0): 2/3
# right; label 1 has two (0, 1) predicted (0, 1): 2/2; label 2 has one valid entry and is skipped.
# Accuracy = (2/3 + 1) / 2 = 0.8333. **Think:** the entry `[1, 2]` is marked -2 and gets logit 9.0.
# Which figures change if it got -9.0 instead, and why?

# %% [markdown]
# ## 5. Training with the shared loop
#
# `fit` is the one loop that notebooks 03 and 04 use too: AdamW over the trainable
# parameters, masked BCE, and after each epoch the validation loss, masked accuracy and macro
# AUROC. It keeps the best epoch (lowest validation loss) in `checkpoints/image.pt` and the last
# epoch, with optimizer and random states, in `image_last.pt`.
#
# **Skipping training:** if a finished run with the same settings is already saved, `fit` loads it
# instead of training (an interrupted run continues where it stopped, to the very same result).
# Pass `resume=False` to train again.

# %%
checkpoint_dir = settings.artifacts_dir / "checkpoints"
history = fit(model, loaders["fit"], loaders["validate"], settings, checkpoint_dir, "image", device=device)
history.to_frame().round(4)

# %% [markdown]
# ## 6. Learning curves (the paper's Figure 6)
#
# The train figures are measured during each epoch, with dropout on and weights still moving, so
# early on they can look worse than validation. The dotted lines are the paper's final values on
# MIMIC-CXR; on the phantom, expect other numbers (different data, image size and epochs).

# %%
fig = plots_training.plot_history(history, "Image-only ResNet-18", paper="paper: image-only ResNet-18")
print("saved", plots_training.save_figure(fig, settings.artifacts_dir, "image_curves"))

# %% [markdown]
# **Think.** Where does the validation loss stop falling? The paper stopped at 10 epochs because
# it "began to overfit" after that: what in the curves would show overfitting?

# %% [markdown]
# ## 7. Results against the paper, with trivial baselines
#
# We score the best checkpoint on all three splits and store the figures in `metrics/image.json`,
# together with three models that never look at an image: always "absent" (all negative), always
# "present" (all positive), and each label's training prevalence. Test predictions go to
# `predictions/image_test.csv` for notebooks 04 and 05.

# %%
evaluation = {split: loaders[split] for split in ("train", "validate", "test")}
results = record_results(model, evaluation, settings, "image", "image", device=device)
table = plots_training.results_vs_paper(settings.metrics_dir / "image.json")
table.round(4)

# %% [markdown]
# Read the accuracy column against the baselines. Because "not mentioned" entries are dropped, the
# labels that remain are mostly the ones a radiologist bothered to write down, and a constant answer
# already scores high. Macro AUROC asks a different question (does the model rank positive images
# above negative ones?) and is 0.5 for every constant predictor.
# The paper's 0.7047 validation accuracy has to be read with that in mind.

# %% [markdown]
# ## 8. Which labels does the image model see?
#
# AUROC per label on the validation and test splits. "n/a" means that split has only one class for
# that label among its valid entries (AUROC is undefined), common for rare labels on small splits.

# %%
aurocs = {split: results[split]["auroc"] for split in ("validate", "test")}
fig = plots_training.plot_label_auroc(aurocs, "Image model: AUROC per label")
print("saved", plots_training.save_figure(fig, settings.artifacts_dir, "image_label_auroc"))

# %% [markdown]
# **Think.** Which labels are easiest for the image model, and is that what you would expect from
# what each finding looks like (a large heart versus a subtle rib fracture)?

# %% [markdown]
# ## Your turn: the accuracy of a model that always says "absent"
#
# Complete `all_negative_accuracy(targets)`: the paper's masked accuracy of a model that predicts
# 0 for every label, computed by hand with NumPy (no `cxr_helpers.metrics`). Per label: drop the
# -2 entries, count -1 as 0, skip labels with fewer than 2 entries left, and take the share of
# zeros; then average over labels. The check prints feedback (the solution is in
# `cxr_helpers/solutions.py`).

# %%
def all_negative_accuracy(targets: np.ndarray) -> float:
    """Masked accuracy of an all-negative model, by hand."""
    # TODO: loop over the label columns of targets (N, 14) as described above.
    return None


exercises.check_all_negative_accuracy(all_negative_accuracy)

# %% [markdown]
# Then apply it to this cohort's validation targets and compare with the table above, and with
# the paper's 0.7047.

# %%
validation_targets = splits["validate"].targets
if all_negative_accuracy(validation_targets) is not None:
    print(f"all-negative validation accuracy: {all_negative_accuracy(validation_targets):.4f}")

# %% [markdown]
# ## Summary
#
# - The paper's image model is a ResNet-18 with a 1-channel `conv1`, a dropout + linear head for 14
#   labels, and frozen layers through `layer2`; it outputs logits and the loss applies the sigmoid.
# - Loss and accuracy are *masked*: "not mentioned" labels do not count, uncertain ones count as
#   negative (U-Zeros). One loop, `fit`, trains every model of the workbook and resumes exactly.
# - Masked accuracy is high even for constant predictors; per-label and macro AUROC show what the
#   model actually learned from the pixels.
#
# ## Questions
#
# 1. Why does the model return logits rather than probabilities, if the paper's head ends in a sigmoid?
# 2. What does freezing `layer2` do to BatchNorm, and why keep frozen BatchNorm in eval mode?
# 3. Under U-Ignore instead of U-Zeros, which labels' accuracy would you expect to move most?
# 4. A label has AUROC "n/a" on the test split. What does that say about the split, not the model?
# 5. Further research: try `freeze_through="none"` (set it with `load_settings(freeze_through=...)`)
#    or `CXR_UNCERTAINTY_POLICY=ones` and compare the results table.
#
# ## Next
#
# Notebook **03_text_baseline** reads the reports: a frozen BERT encoder's [CLS] embeddings with a
# small classifier head, trained with this same `fit` loop, and a look at why the report text
# "knows" the labels.
