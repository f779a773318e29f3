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
# # 01 · Data preparation: chest X-rays and their reports in one table
#
# We turn the MIMIC-CXR-JPG images and MIMIC-CXR reports (or the phantom that mimics them) into
# one cohort table, an image cache and a summary, which every later notebook reads.
#
# **Learning objectives**
# - Know where MIMIC-CXR comes from, how its files are laid out, and what its use agreement forbids.
# - Extract report sections (indication, findings, impression) and clean text the way the paper did.
# - Read CheXpert labels coded 1 / 0 / -1 / -2 and see why their source (the report) matters.
# - Build the paper's cohort: frontal views, one image per study, a seeded 70/20/10 split by patient,
#   and write that split yourself with scikit-learn's group splitter.
# - Check the cohort honestly: label prevalence, missing sections, report lengths, skipped inputs.
#
# **Reads / writes**
# - Reads: the raw layout in `settings.data_dir` (images + CSVs) and `settings.reports_dir` (reports).
# - Writes (into `settings.artifacts_dir`): `cohort.csv`, `images_<S>.npy` + `images_<S>.json`,
#   `cohort_summary.json`, `skipped.csv`. Notebooks 02-05 read these.

# %% [markdown]
# ## Setup
#
# The first cell imports the workbook's helpers, prints the package versions and the settings this
# run uses, and seeds every random generator. Settings come from environment variables over the
# profile's defaults (`CXR_PROFILE=phantom` by default, `CXR_FAST=1` for a tiny run): never edit them here.

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
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from cxr_helpers import plots
from cxr_helpers.cohort_browser import cohort_browser
from cxr_helpers.exercises import check_split_by_patient
from cxr_helpers.labeler import agreement_table, evidence_html, label_frame, label_report
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.mimic import layout_tree, read_layout, read_report
from cxr_helpers.notebook import setup_notebook
from cxr_helpers.prepare import ensure_phantom, format_summary, label_table, open_image_cache, prepare_cohort
from cxr_helpers.reports import clean_text, extract_sections, text_for_setting

settings = setup_notebook("01 · Data preparation")

# %% [markdown]
# ## 1. Where the data comes from
#
# **MIMIC-CXR-JPG** (v2.x, about 377,000 JPEG chest radiographs of 65,000 patients from the Beth Israel
# Deaconess Medical Center, with CheXpert labels) and **MIMIC-CXR** (the free-text radiology reports) are
# published on [PhysioNet](https://physionet.org/content/mimic-cxr-jpg/). Access is *credentialed*: you
# complete human-subjects training, apply, and sign the **PhysioNet Credentialed Health Data Use Agreement**.
# It forbids sharing the data: never upload MIMIC images or reports to third-party services (that includes
# online chatbots and public notebooks) and never commit outputs that contain them (executed notebooks,
# the artifacts folder).
#
# So the workbook's default is the **phantom**: a synthetic dataset written in exactly the same layout,
# with procedurally drawn radiographs and MIMIC-style reports. The same code reads both. With the phantom
# profile, the next cell builds the phantom if it is not there yet; with `CXR_PROFILE=mimic` it uses your copy.

# %%
if settings.profile == "phantom":
    ensure_phantom(settings)
print("images + CSVs:", settings.data_dir)
print("reports:      ", settings.reports_dir)

# %% [markdown]
# ## 2. The raw layout
#
# Images live under `files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg` (XX = the first two digits of the subject id);
# a study is one visit and can hold several images (frontal PA or AP, lateral). Three tables sit beside
# `files/`: the CheXpert labels per study, the metadata per image (view position, size, date) and the
# official split per image. Reports are a second tree with one text file per study.

# %%
print(layout_tree(settings.data_dir, settings.reports_dir, n=2))

# %% [markdown]
# `read_layout` joins the three tables into one row per image, builds each image's and report's path, and
# codes the labels 1 / 0 / -1 / -2. Rows it cannot join (for example a study in the metadata but not in
# the label table) are not dropped silently: they are listed in `layout.skipped` with a reason.

# %%
layout = read_layout(settings.data_dir, settings.reports_dir)
print(len(layout.images), "images;", layout.images["study_id"].nunique(), "studies;",
      len(layout.skipped), "rows skipped while joining")
print("views in the metadata:", layout.view_counts)
layout.images.head(3)

# %% [markdown]
# Here is one raw report as it sits on disk: a `FINAL REPORT` line, then sections with upper-case headers.
# Header names vary between radiologists (`INDICATION`, `HISTORY`, `REASON FOR EXAM`; `IMPRESSION`,
# `CONCLUSION`, `FINDINGS AND IMPRESSION`), and `___` marks text removed for de-identification.

# %%
example = layout.images.iloc[0]
raw_report = read_report(example["report_path"])
print(raw_report)

# %% [markdown]
# `extract_sections` maps every header variant to one lower-case name. `HISTORY` and `REASON FOR EXAM` count
# as `indication` (and `history` is kept too), `CONCLUSION` and `FINDINGS AND IMPRESSION` as `impression`.
# A report with neither findings nor impression gets a `last_paragraph` entry: what the labeler read then.

# %%
sections = extract_sections(raw_report)
for name, text in sections.items():
    print(f"{name:>14}: {text}")

# %% [markdown]
# ## 3. Cleaning text the paper's way, and an indication-only alternative
#
# The paper fed its text model the **findings + impression** sections, lower-cased, with punctuation and
# special characters removed. We do the same (and drop the `___` placeholders). We also prepare a second
# setting, **indication only**: what the clinician asked when ordering the study, written *before* anyone
# read the image. On the phantom the indication never names a finding; on real data it often does (the
# paper's own Figure 2 example: "woman with pleural effusion, s/p chest tube placement").

# %%
print("paper (findings + impression):", text_for_setting(sections, "findings_impression"))
print("indication only:             ", text_for_setting(sections, "indication"))
print("clean_text example:           ", clean_text("Comparison to ___.  No focal consolidation; s/p CABG."))

# %% [markdown]
# ## 4. Why the labels live in the report
#
# The CheXpert labels of MIMIC-CXR were not drawn by radiologists looking at images: a rule-based program
# read each report's **impression** (else findings, else the last paragraph) and turned phrases into codes:
# 1 positive ("small effusion"), 0 negative ("no effusion"), -1 uncertain ("cannot exclude effusion"),
# blank (-2) when the label is not mentioned. So a text model fed findings + impression reads the very
# sentences the labels were made from: its high score is partly **leakage**, not diagnosis. The indication
# does not contain those sentences, which is why notebook 03 trains on both and compares. It is not free of
# the answer either: a real indication often names the suspected finding ("eval for effusion"). That is
# information a model may use (it exists before the image is read), but a text score on it is not a score
# for reading the image.

# %%
labels = example[list(CHEXPERT_LABELS)]
print("labels of this study:", {name: int(code) for name, code in labels.items() if code != -2})
print("impression:", sections.get("impression") or sections.get("findings") or sections.get("last_paragraph"))

# %% [markdown]
# **Think:** find the phrase behind each label above. Which labels are -2 although the image might show
# the finding? What would a model trained on these labels learn about findings that radiologists often
# leave unmentioned?

# %% [markdown]
# ## 5. Where the labels come from: a labeler you can read
#
# The workbook has its own CheXpert-style labeler, `cxr_helpers.labeler` (plain Python rules, see
# `docs/labeler.md`): it finds each finding's mentions in the section it reads, and decides from the
# words around a mention whether it is negated ("no effusion"), uncertain ("cannot exclude") or
# positive. Like CheXpert it reads the impression, else the findings, else the last paragraph; on
# Open-i it reads findings + impression, as Open-i's expert coders did. Every label comes with its
# evidence: the coloured phrases below (hover over one for the label and the rule that decided it).

# %%
read = "findings_impression" if settings.profile == "openi" else "impression"
labelled = label_report(raw_report, read)
display(HTML(evidence_html(labelled.text, labelled.mentions)))
coded = {name: int(code) for name, code in example[list(CHEXPERT_LABELS)].items()}
pd.DataFrame({"labeler": {name: -2 if code is None else int(code) for name, code in labelled.labels.items()},
              "label CSV": coded}).rename_axis("code (-2 = blank)")

# %% [markdown]
# One report proves little. The labeler on every report of this dataset, against a reference: on the
# phantom and on MIMIC-CXR the label CSV (the phantom's writer; on MIMIC, the CheXpert labeler); on
# Open-i, whose label CSV this labeler itself wrote, the expert MeSH coding the import keeps beside it
# (8 of the 14 labels). F1 is for the positive code; agreement counts blank = blank too.

# %%
studies = layout.images.drop_duplicates("study_id")
reports = pd.DataFrame({"study_id": studies["study_id"], "text": [read_report(p) for p in studies["report_path"]]})
ours = label_frame(reports, read)
mesh_file = settings.data_dir.parent / "openi-labels-mesh.csv.gz"
if settings.profile == "openi" and mesh_file.exists():
    reference = pd.read_csv(mesh_file).drop(columns=["uid", "subject_id"], errors="ignore")
else:
    reference = studies[["study_id", *CHEXPERT_LABELS]].replace(-2, np.nan)
agreement = agreement_table(ours, reference, on="study_id")
scored = agreement[agreement["reference"] > 0]
print(f"{len(reports)} reports; macro F1 over the {len(scored)} labels with positives in the reference: "
      f"{scored['f1'].mean():.3f}")
agreement[["n", "agreement", "precision", "recall", "f1", "reference"]].round(3)

# %% [markdown]
# On the phantom expect agreement near 1: its reports are written from a phrase bank the labeler was
# built to read, so this only shows that the rules cover those phrases. Real reports are harder. On
# 622 Open-i reports the labeler's macro F1 against the MeSH coding is 0.85 (95% bootstrap interval
# 0.76 to 0.91; `benchmarks/bench_labeler.py`, details in `docs/labeler.md`). Most of the gap is a
# different convention, not a misreading: the coders coded hedged findings ("scarring or
# atelectasis"), which CheXpert calls uncertain, and their "normal" is stricter than CheXpert's No
# Finding (a report with only degenerative change or a device is No Finding for CheXpert). Whatever
# model notebooks 02 to 04 train, it learns these labels, conventions and mistakes included.

# %% [markdown]
# ## 6. Building the cohort
#
# `prepare_cohort` does the whole job with the settings printed at the top: keep frontal images (PA or AP),
# one per study (PA preferred), sample `n_studies` studies with the seed (the paper: 10,850; the phantom
# keeps all), split 70/20/10 **by patient** (section 7) so no patient is in two splits, extract and clean the
# text, and decode every image once into a `uint8` cache (in parallel, resumable if interrupted).
# The labels stay coded 1/0/-1/-2; how to treat -1 (the uncertainty policy) is decided when training.

# %%
result = prepare_cohort(settings)
cohort = result.cohort
print(format_summary(result.summary))

# %% [markdown]
# Nothing is dropped silently. Every input row left out because of a problem (a missing or empty report, a
# missing or unreadable image, ids that do not match across the tables) is in `skipped.csv` with its file
# and reason; rows left out by design (other views, extra images, studies beyond the sample) are counted
# in the summary above. On the phantom this table is usually empty; on real data, look at it.

# %%
print(len(result.skipped), "input rows skipped; by reason:")
result.skipped["reason"].value_counts()

# %% [markdown]
# ## 7. The split by patient, by hand
#
# A patient's studies share an anatomy (and on real data often the same devices and chronic findings). If one
# study of a patient is in training and another in test, a model can recognise the patient instead of reading
# the finding, and the test score flatters it. The rule: the sets of patients in train, validation and test are
# pairwise disjoint. A plain random split of *studies* (scikit-learn's `train_test_split`) breaks it:

# %%
studies = cohort.drop_duplicates("study_id")[["subject_id", "study_id"]].reset_index(drop=True)
train_ids, _ = train_test_split(studies["study_id"], train_size=0.7, random_state=settings.seed)
by_study = np.where(studies["study_id"].isin(train_ids), "train", "held out")
two_sides = pd.Series(by_study).groupby(studies["subject_id"]).nunique().gt(1).sum()
print(f"{len(studies)} studies of {studies['subject_id'].nunique()} patients; "
      f"split by study: {two_sides} patients have studies in train and in held out")

# %% [markdown]
# ### Your turn: a 70/20/10 split by patient
#
# scikit-learn's **group** splitters never put one group on both sides. `GroupShuffleSplit(n_splits=1,
# train_size=0.7, random_state=seed).split(rows, groups=subject_ids)` yields one (train rows, other rows) pair,
# drawn by patient with the seed. Cut twice: train against the rest, then the rest into validate and test
# (`train_size=0.2 / 0.3` of the remaining patients). Its sizes count *patients*, not studies, so the shares of
# studies land close to 70/20/10, not on it. (`GroupKFold` is the other choice: equal folds, made for
# cross-validation; 10 folds taken 7/2/1 work too. We use GroupShuffleSplit because, like the paper's split,
# it is one seeded random draw.) Return a split name per row of `studies`; the check runs your function on
# 2,000 hand-made patients (two sets of fractions, two seeds) and on this cohort.

# %%
def split_by_patient(studies, fractions=(0.7, 0.2, 0.1), seed=0):
    """"train", "validate" or "test" per row of ``studies`` (subject_id, study_id), drawn by patient."""
    # YOUR CODE HERE: rows = np.arange(len(studies)); groups = studies["subject_id"].to_numpy();
    # one GroupShuffleSplit for train vs the rest, a second one on the rest for validate vs test.
    return None


check_split_by_patient(split_by_patient, studies);

# %% [markdown]
# `prepare_cohort` split the cohort with the workbook's own `random_split_by_patient` (for `split="random"`):
# it shuffles the patients with NumPy's seeded generator and cuts the list where the running count of
# *studies* crosses 70% and 90%. Both splits have the rule; compare their sizes and how often they agree.

# %%
splits = {"workbook (cohort.csv)": studies["study_id"].map(cohort.drop_duplicates("study_id").set_index("study_id")["split"])}
mine = split_by_patient(studies, settings.split_fractions, settings.seed)
if mine is not None:
    splits["yours (GroupShuffleSplit)"] = pd.Series(np.asarray(mine, dtype=object))
for name, split in splits.items():
    in_two = split.groupby(studies["subject_id"]).nunique().gt(1).sum()
    print(f"{name:>26}: {split.value_counts(normalize=True).round(3).to_dict()} | patients in two splits: {in_two}")
if mine is not None:
    print(f"studies in the same split in both: {(splits['yours (GroupShuffleSplit)'] == splits['workbook (cohort.csv)']).mean():.0%}")

# %% [markdown]
# Same rule, different assignment: the two draws use different random generators (NumPy's `default_rng` against
# scikit-learn's `RandomState`), and one cuts by studies, the other by patients. Two independent 70/20/10
# draws put a study in the same split about 0.7² + 0.2² + 0.1² = 54% of the time. (With `CXR_PROFILE=mimic`
# and `split="official"`, cohort.csv holds MIMIC's own split, also by patient.)

# %% [markdown]
# ## 8. The cohort at a glance
#
# First the sizes: studies, images and patients per split. With a split by patient the shares are close to
# 70/20/10 in studies but not exact, because a patient's studies move together.

# %%
pd.DataFrame(result.summary["splits"]).T.assign(patients_in_several_splits=result.summary["patients_in_several_splits"])

# %% [markdown]
# Next the labels of the training split: how many studies are positive, negative, uncertain (-1) or not
# mentioned (-2) per label. Most labels are rare and mostly *not mentioned*, which is why notebook 02 reports
# AUROC beside the paper's accuracy.

# %%
label_table(cohort, "train")

# %%
plots.plot_label_codes(cohort, split="train");

# %% [markdown]
# **Think:** under the paper's U-Zeros policy every study coded -1 in this table becomes a *negative* when
# training. Is that a fair target for a hedge like "cannot exclude pleural effusion"?

# %% [markdown]
# Which sections do the reports have? In MIMIC-CXR about 83% of reports have an impression, 12% only
# findings and 5% neither (the `last_paragraph` fallback). The red bars are what the labeler read.

# %%
print(result.summary["sections"]["missing"], "| last-paragraph fallback:",
      result.summary["sections"]["last_paragraph_fallback"], "| no headers at all:", result.summary["sections"]["no_headers"])
plots.plot_section_availability(result.summary);

# %% [markdown]
# Report lengths matter for the text model (CXR-BERT reads at most 512 tokens; the workbook truncates at
# `settings.max_text_length`). The indication is much shorter than findings + impression. The views
# that made it into the cohort are counted below the plot.

# %%
plots.plot_report_lengths(cohort);
print("views in the cohort:", result.summary["views"]["cohort"])

# %% [markdown]
# ## 9. A few images with their labels
#
# The cache `images_<S>.npy` is a memory-mapped `uint8` array (N, S, S): opening it reads nothing until a
# row is used, so even the paper's 10,850 images at 224 px (about 0.5 GB) open instantly. Row `cache_index`
# of the cache is the image of that cohort row.

# %%
images = open_image_cache(settings.artifacts_dir, settings.image_size)
print("cache:", images.shape, images.dtype)
plots.plot_image_grid(cohort, images, n=8, seed=settings.seed);

# %% [markdown]
# ## 10. Browse the cohort study by study
#
# Move the slider: the image, its report (headers in bold, the sections the labeler read highlighted)
# and its 14 labels change together. The filters keep only the rows with a label coded 1, 0, -1 or blank
# (in one split), and the study-id box jumps to a study (type its id, press Enter). Find a label coded
# -1 and the hedge in the report behind it.

# %%
cohort_browser(cohort, images)

# %% [markdown]
# ## 11. What this notebook wrote
#
# Notebooks 02 to 05 read only these files, so you can close this notebook now and reopen any later one cold.

# %%
for name, path in result.paths.items():
    print(f"{name:<14} {path}")

# %% [markdown]
# ## Summary
#
# - MIMIC-CXR-JPG + MIMIC-CXR need credentialed PhysioNet access; the phantom mirrors their layout exactly.
# - Reports were split into sections, cleaned the paper's way, and kept in two settings: findings +
#   impression (the paper, leaks the labels) and indication only (what the clinician asked: available before
#   the image is read; on the phantom it never names a finding, on real data it often does).
# - The cohort keeps one frontal image per study, a seeded 70/20/10 split by patient, labels coded 1/0/-1/-2.
#   A group splitter (GroupShuffleSplit) gives the same guarantee, no patient in two splits, with another draw.
# - Images were decoded once into a memory-mapped uint8 cache; every skipped input is listed with its reason.
#
# ## Questions
#
# 1. Why split by patient rather than by image or study? What would go wrong otherwise? Why do the shares
#    of studies of a patient-level split miss 70/20/10 slightly, and which way would a few patients with many
#    studies push them?
# 2. The paper resized every image straight to 224 x 224. What does that do to a 2544 x 3056 radiograph?
# 3. Which labels are most often *not mentioned* (-2)? Why does that make plain accuracy misleading?
# 4. Why does a text model on findings + impression say little about how well reports support diagnosis?
#
# ## Next
#
# Notebook **02_image_baseline** trains the image-only ResNet-18 on this cohort and image cache.
