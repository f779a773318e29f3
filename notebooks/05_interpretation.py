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
# # 05 · Interpretation: where does the model look, which words does it read, and is that right?
#
# Explain the fusion model study by study, as the paper does (Grad-CAM heatmaps on the X-ray and
# SHAP values on the report's words for the top-3 labels), browse the explanations, and then do
# what the paper could not: check them against the phantom's ground truth.
#
# **Learning objectives**
# - Compute Grad-CAM (pytorch-grad-cam) for one label of a multimodal model with the report held
#   fixed, and SHAP values (shap) for the report's words with the image held fixed.
# - Read a heatmap and a red/blue word plot, and say which quantity each explains (here: the logit).
# - Measure how much a prediction leans on each modality for one study.
# - Test explanations against ground truth (pointing game, mask overlap, ROAD, word spans,
#   negation) and against random baselines, and run the model randomisation sanity check.
# - Say what of this can and cannot be checked on real MIMIC-CXR data.
#
# **Reads / writes** (in the artifacts folder, `CXR_ARTIFACTS_DIR`)
# - reads `cohort.csv` + `images_<S>.npy` (notebook 01), `checkpoints/image.pt` (notebook 02),
#   `text/` + `checkpoints/text_head_<setting>.pt` (notebook 03), `checkpoints/fusion_*.pt` (notebook 04),
#   and, for section 7 only, the phantom's `ground_truth/` (never read by the models);
# - writes `explanations/` (cached CAMs and SHAP values per model, study, label and method),
#   `metrics/faithfulness.json`, `figures/05_*.png` and one study's exported PNG + HTML.
#
# The same per-study export runs without Jupyter: `python -m cxr_helpers explain --artifacts DIR --study ID`.

# %% [markdown]
# ## Setup
#
# The first cell loads the settings (profile `phantom` by default, `mimic` for real data; environment
# variables override them), seeds every random generator and prints the package versions.
# `CXR_FAST=1` shrinks everything for a quick test run (4 studies in section 7, 40 SHAP evaluations).

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
import pandas as pd
from IPython.display import HTML, display

from cxr_helpers import exercises, plots_training
from cxr_helpers.explain.browser import explanation_browser
from cxr_helpers.explain.export import explain_study_to_files
from cxr_helpers.explain.faithfulness.report import (
    negation_table,
    per_label_table,
    plot_checks,
    plot_randomisation,
    run_faithfulness,
    summary_table,
)
from cxr_helpers.explain.figures import cam_figure
from cxr_helpers.explain.gradcam import CAM_METHODS
from cxr_helpers.explain.shap_text import shap_report_html
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.fusion.ablation import reliance_on_report
from cxr_helpers.labels import label_index
from cxr_helpers.notebook import setup_notebook

settings = setup_notebook("05 · Interpretation")

# %% [markdown]
# ## 1. The trained models
#
# One `StudyExplainer` loads the three models to explain: the fusion model of notebook 04 (by
# default the paper's: concatenation, trained end to end), the image-only ResNet-18 of notebook 02
# and the text-only head of notebook 03, plus the cohort and the image cache. If a checkpoint is
# missing, the error names the notebook that trains it.

# %%
explainer = StudyExplainer.from_settings(settings)
print("models:", explainer.models.names)
print("text the models read:", explainer.text_setting, "| CAM method:", explainer.cam_method,
      "| SHAP evaluations per label:", explainer.shap_max_evals)
study_id = explainer.example_study()
print(f"{len(explainer.study_ids('test'))} test studies; the example is study {study_id}")

# %% [markdown]
# ## 2. One study, three models
#
# The table puts each model's predicted probabilities beside the labels in the CSV (what the
# CheXpert labeler read in the report: positive, negative, uncertain or not mentioned, coded 1 / 0 /
# -1 / -2). The paper explains the three labels with the highest predicted probability; so do we.

# %%
print(explainer.text(study_id))
explainer.prediction_table(study_id).sort_values("p(fusion)", ascending=False).round(3)

# %% [markdown]
# **Think.** The text-only model reads exactly the sentences the labeler read. Where it is
# confident and the image-only model is not, whose knowledge is the fusion model passing on?

# %% [markdown]
# ## 3. Grad-CAM on the X-ray (the paper's Figure 8)
#
# Grad-CAM weights each channel of the last convolutional block (ResNet `layer4`) by the average
# gradient of one label's score, sums the weighted maps, keeps the positive part (ReLU) and
# upsamples the result to the image. Here the score is the label's **raw logit**, one target per
# image, and for the fusion model the study's report is held fixed, so the heatmap answers
# "given this report, which pixels raise this label?".

# %%
cams = explainer.cams(study_id)  # {label: (S, S) map in [0, 1]} for the fusion model's top-3 labels, cached
probabilities = explainer.probabilities(study_id)  # (14,)
p_top = {name: probabilities[label_index(name)] for name in cams}
figure = cam_figure(explainer.image(study_id), cams, p_top, title=f"study {study_id}: fusion model")
_ = plots_training.save_figure(figure, settings.artifacts_dir, "05_gradcam_fusion")

# %% [markdown]
# The image-only model, for its own top-3 labels. Both heatmaps are coarse: ResNet-18's `layer4`
# has a 32-pixel stride, so at 128 px (the phantom's default) the map is 4 x 4 cells upsampled,
# and at the paper's 224 px it is 7 x 7.

# %%
image_probabilities = explainer.probabilities(study_id, "image")
image_cams = explainer.cams(study_id, role="image")
figure = cam_figure(explainer.image(study_id), image_cams,
                    {name: image_probabilities[label_index(name)] for name in image_cams},
                    title=f"study {study_id}: image-only model")

# %% [markdown]
# Grad-CAM is one of several class activation maps. GradCAM++ weights positive gradients more
# finely, HiResCAM multiplies gradients and activations cell by cell (no averaging), EigenCAM
# ignores the label altogether (the main component of the activations), ScoreCAM replaces
# gradients by the score change when each channel masks the image (one forward pass per channel:
# slow on a CPU, so it is skipped in fast mode).

# %%
label = next(iter(cams))  # the fusion model's top label
methods = [m for m in CAM_METHODS if not (settings.fast and m == "scorecam")]
by_method = {m: explainer.cams(study_id, [label], method=m)[label] for m in methods}
figure = cam_figure(explainer.image(study_id), by_method, {m: p_top[label] for m in methods},
                    title=f"{label}: CAM methods compared")

# %% [markdown]
# **Think.** EigenCAM shows the same map whatever the label. Which of the figures above would
# you trust to tell Cardiomegaly from Pleural Effusion on the same image?

# %% [markdown]
# ## 4. SHAP on the report (the paper's Figures 9 to 11)
#
# SHAP gives each word a share of the label's score: words are masked (replaced by `[MASK]`) in
# many combinations, with the image held fixed, and the partition explainer averages each word's
# effect. Red words push towards the label, blue words away. The values are on the **logit**
# scale, so they add up exactly: base value (every word masked) + sum of word values = the logit.

# %%
explanations = explainer.shap_values(study_id)  # top-3 labels, fusion model, cached
display(HTML(shap_report_html(list(explanations.values()))))

# %% [markdown]
# The additivity check, label by label: the base value plus the word values must give the model's
# logit for the whole report (and, through the sigmoid, its probability).

# %%
logits = explainer.logits(study_id)  # (14,) the fusion model's logits
pd.DataFrame([{"label": e.label, "base value": e.base_value, "sum of word values": e.values.sum(),
               "base + sum": e.base_value + e.values.sum(), "model logit": logits[label_index(e.label)],
               "top words": [word for word, _ in e.top_words(3)]} for e in explanations.values()]).round(4)

# %% [markdown]
# **Think.** In the paper's Figure 9, "no" pushes towards *No Finding*. Is that a sign the model
# understood negation, or that "no" is simply frequent in normal reports?

# %% [markdown]
# ## 5. Modality reliance, for this study
#
# How far does each probability move when the report is replaced by an empty one, or the X-ray by
# a blank image (the same removals as notebook 04's ablation, here for one study)? A label whose
# probability collapses without the report is being read, not seen.

# %%
reliance = explainer.modality_reliance(study_id)
print(f"share of the movement due to the report: {reliance_on_report(reliance):.0%}")
reliance.round(3)

# %% [markdown]
# ## 6. The study browser
#
# Find a study with the slider, its id (type it, press Enter) or a filter: a label positive in the CSV,
# the fusion model wrong, fusion and image-only disagreeing, or a Grad-CAM missing the finding's mask
# (that one reads section 7's records). Each label shown (default: the fusion model's top 3; Ctrl/Cmd-click
# for several) gets a row: the X-ray (or the study's lateral, with **view**), then the fusion and the
# image-only model's Grad-CAM; below, the report as written beside the cleaned text the model read,
# coloured by SHAP on one scale for all labels. On the phantom, **truth overlay** outlines each finding's
# true mask in magenta and underlines the words that state it: is the map's peak (the cross) inside the
# outline, are the red words the underlined ones? Studies seen before show at once; new ones are
# computed while the status says "computing...".

# %%
browser = explanation_browser(explainer, settings=settings)
display(browser.widget)

# %% [markdown]
# ## 7. Are the explanations right?
#
# The paper judged its heatmaps by eye ("the attention is focused on the central thoracic cavity").
# The phantom lets us measure instead: it knows where each finding was drawn (a mask per finding)
# and which words state it (character spans). For the first `settings.explain_studies` test studies:
# - **pointing game**: is the heatmap's peak inside the finding's mask? **energy**: the heatmap's
#   share inside the mask; **mask AUROC**: do mask pixels score higher than the rest?
#   **ROAD**: does imputing the most relevant pixels away hurt the logit more than the least relevant?
#   All for truly present, visible findings the model predicts correctly (p >= 0.5), each beside a
#   **RandomCAM** map (random channel weights) and the mask's area share (a uniformly random peak).
# - **top-k words**: is one of the k highest-SHAP words inside the span stating the finding? Baseline:
#   a random ranking. **negation**: a positive mention should get a positive SHAP sum, a negated one
#   (the finding's words with their negation cue: "no pneumothorax") a negative sum. Baseline: a
#   random set of as many words.
# - **model randomisation**: randomise the trained weights from the top down; the explanation must change.

# %%
result = run_faithfulness(settings, explainer)
print("written to", result.path)
summary_table(result.summary).round(3)

# %%
figure = plot_checks(result.summary)
_ = plots_training.save_figure(figure, settings.artifacts_dir, "05_faithfulness")

# %% [markdown]
# The same checks per label (here the pointing game). Small `n` means wide uncertainty: with 30
# studies a label seen 3 times can swing from 0 to 1 by chance.

# %%
per_label_table(result.summary, "pointing_game").round(3)

# %% [markdown]
# Negation per label: the mean SHAP sum over positive mentions ("small apical pneumothorax": the
# finding's words) and over negated ones ("no pneumothorax": the words and their negation cue)
# should have opposite signs, positive then negative. Below the table, the fusion model's
# Pneumothorax mentions one by one.

# %%
negation = negation_table(result.summary)
display(negation.round(3))
mentions = result.mentions.get("fusion", pd.DataFrame())
mentions[mentions["label"] == "Pneumothorax"].head(6) if not mentions.empty else mentions

# %% [markdown]
# The sanity check (Adebayo et al., 2018): randomise the head, then layer4, then layer3 ... and
# compare each heatmap with the trained model's by Spearman rank correlation. An explanation that
# survives randomisation (stays near 1) shows the image's edges, not the model's reasoning. SHAP's
# point is the fusion (or text) head randomised at once.

# %%
figure = plot_randomisation(result.randomisation)
_ = plots_training.save_figure(figure, settings.artifacts_dir, "05_randomisation")

# %% [markdown]
# **What this means for clinical trust.** A heatmap that beats RandomCAM on the pointing game and
# on ROAD points at pixels the model *uses*, and, on the phantom, at the finding itself; a heatmap
# that does not is decoration, however plausible it looks. SHAP's top words landing in the stating
# span, with negations signed the right way, says the text branch reads what a radiologist would
# read; with findings+impression reports that is also how it "cheats" (the labels were extracted
# from those words). Heatmaps at 4 x 4 resolution can only say "lower left zone", never "this rib".
#
# **What cannot be checked on MIMIC-CXR.** Real data has no finding masks and no word spans: the
# pointing game, mask overlap, top-k words and negation checks need annotations (e.g. bounding
# boxes from a radiologist, as in some public datasets). What still works on real data: ROAD and
# other deletion scores (they need only the model), the randomisation test, the additivity check,
# and modality reliance. Sections 1 to 6 run unchanged on MIMIC-CXR.

# %% [markdown]
# ## 8. One study to files
#
# The export writes the study's Grad-CAM PNG (X-ray + top-3 overlays with probabilities) and its
# SHAP HTML page (opens in any web browser). The command line does the same:
# `python -m cxr_helpers explain --artifacts DIR --study ID`.

# %%
for path in explain_study_to_files(settings, study_id):
    print(path)

# %% [markdown]
# ## Your turn 1: a pointing game with tolerance
#
# Zhang et al.'s original pointing game counts a hit when the peak lies within 15 px of the
# object. Complete `pointing_game_with_tolerance(cam, mask, tolerance)`: find the peak of `cam`,
# then the smallest Euclidean distance from it to any pixel of the boolean `mask`, and return
# whether that distance is at most `tolerance` (0 = the strict game). The check prints feedback;
# the solution is in `cxr_helpers/solutions.py`.

# %%
def pointing_game_with_tolerance(cam: np.ndarray, mask: np.ndarray, tolerance: float = 0) -> bool:
    """True if the heatmap's peak lies within ``tolerance`` pixels of the mask."""
    # TODO: np.unravel_index(np.argmax(cam), cam.shape) gives the peak; np.argwhere(mask) the mask pixels.
    return None


exercises.check_pointing_game_with_tolerance(pointing_game_with_tolerance)

# %% [markdown]
# Stretch: recompute the pointing game of section 7 with a tolerance of one `layer4` cell
# (`settings.image_size // 32` px) from `result.cam["fusion"]` and the masks
# (`load_ground_truth(...)`). How much of the gap to RandomCAM is resolution?

# %% [markdown]
# ## Your turn 2: the words that argue against a label
#
# Complete `words_pushing_away(explanation, k)`: the k words with the most negative SHAP values
# (the blue ones), most negative first, from a `TextExplanation` (`.values`, `.words`).

# %%
def words_pushing_away(explanation, k: int = 3) -> list[str]:
    """The k words with the most negative SHAP values, most negative first."""
    # TODO: sort explanation.values, keep the k smallest, return their words.
    return None


if exercises.check_words_pushing_away(words_pushing_away):
    for name, explanation in explanations.items():
        print(f"{name}: {words_pushing_away(explanation, 3)}")

# %% [markdown]
# ## Summary
#
# - Grad-CAM explains one label's logit through the last convolutional block; for a fusion model it
#   needs the other modality held fixed, and its resolution is that of `layer4` (4 x 4 at 128 px).
# - SHAP gives each word a share of the logit that adds up exactly; red pushes towards the label,
#   blue away. The partition explainer with word masking costs `max_evals` model calls per label.
# - Explanations are cached per model, study, label and method, so the browser answers at once.
# - On the phantom, explanations can be scored against ground truth and random baselines; the
#   randomisation test shows whether they depend on the trained weights at all.
# - On MIMIC-CXR only the model-based checks (ROAD, randomisation, additivity, reliance) remain.
#
# ## Questions
#
# 1. Why explain the logit rather than the probability? What would SHAP's values mean for a label
#    predicted with p = 0.999?
# 2. Grad-CAM with the report held fixed: would the heatmap for Cardiomegaly change if the report
#    said "no cardiomegaly"? Try it with `FixedTextImageModel` and `explainer.text_embedding(text=...)`.
# 3. The pointing game's random baseline is the mask's area share. Why is that a fairer yardstick
#    than 0.5, and which findings are easy to "hit" by chance?
# 4. Masking words with `[MASK]` or deleting them: which is closer to "the radiologist did not
#    write this word", and which keeps the text inside what the encoder saw in training?
# 5. Further research: repeat section 7 for the indication-only fusion model
#    (`StudyExplainer.from_settings(settings, fusion_name="fusion_concat_indication")`), and for the
#    FiLM model, whose report reaches inside the CNN. Which explanations change most? Or compute
#    Grad-CAM on `layer3` (8 x 8 cells at 128 px) with `cams_for_labels(model, model.backbone.layer3,
#    image, labels)`: finer maps, but do they still beat RandomCAM?
#
# ## Next
#
# This is the last notebook. To run the workbook on real data, point `CXR_PROFILE=mimic`,
# `CXR_DATA_DIR` and `CXR_REPORTS_DIR` at your MIMIC-CXR-JPG and report copies (see the README)
# and run notebooks 01 to 05 again; sections 1 to 6 and the model-based checks of section 7 carry over.
