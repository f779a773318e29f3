"""Scoring against the phantom's truth: what is really in the image, not what the report says."""

import numpy as np
import pandas as pd

from cxr_helpers.config import load_settings
from cxr_helpers.evaluation import truth_figures, truth_table
from cxr_helpers.labels import CHEXPERT_LABELS, label_index


def test_truth_auroc_ranks_the_studies_that_really_have_the_finding():
    truth = pd.DataFrame(0, index=[11, 12, 13, 14], columns=list(CHEXPERT_LABELS))
    truth.index.name = "study_id"
    truth.loc[[12, 14], "Cardiomegaly"] = 1
    scores = np.zeros((5, 14))
    scores[:, label_index("Cardiomegaly")] = [0.1, 0.9, 0.2, 0.8, 0.95]  # the last study is not in the truth
    figures = truth_figures(scores, np.array([11, 12, 13, 14, 99]), truth)
    assert figures["n"] == 4 and figures["auroc"]["Cardiomegaly"] == 1.0
    assert figures["auroc"]["Edema"] is None  # no study has it: undefined, left out of the mean
    assert figures["macro_auroc"] == 1.0
    scores[:, label_index("Cardiomegaly")] = [0.9, 0.1, 0.8, 0.2, 0.0]  # ranks them the wrong way round
    assert truth_figures(scores, np.array([11, 12, 13, 14, 99]), truth)["macro_auroc"] == 0.0


def test_only_the_phantom_has_a_truth_table(tmp_path):
    settings = load_settings(data_dir=tmp_path / "mimic-cxr-jpg")
    assert truth_table(settings) is None
    (tmp_path / "ground_truth").mkdir()
    pd.DataFrame({"study_id": [1], **{name: [0] for name in CHEXPERT_LABELS}}).to_csv(
        tmp_path / "ground_truth" / "truth.csv", index=False)
    assert list(truth_table(settings).index) == [1]


def test_notebook_times_read_from_the_executed_notebooks_timing(tmp_path):
    import json

    from cxr_helpers.results import notebook_times

    cells = [{"cell_type": "code", "metadata": {"execution": {"iopub.execute_input": start, "shell.execute_reply": end}}}
             for start, end in (("2026-11-30T10:00:00.000Z", "2026-11-30T10:00:05.000Z"),
                                ("2026-11-30T10:00:05.100Z", "2026-11-30T10:01:40.000Z"))]
    (tmp_path / "02_image_baseline.ipynb").write_text(json.dumps({"cells": cells + [{"cell_type": "markdown"}]}))
    assert notebook_times(tmp_path) == {"02_image_baseline": 100.0}
    assert notebook_times(tmp_path / "missing") == {}
