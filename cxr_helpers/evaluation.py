"""After training: every split scored into metrics/<stage>.json, and the test predictions as a CSV.

The test figures also carry bootstrap 95% intervals over test studies (``bootstrap.model_interval``):
``macro_auroc_ci`` and ``accuracy_ci`` as [low, high], with ``ci_resamples``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader

from cxr_helpers.bootstrap import model_interval
from cxr_helpers.distributed import is_main_process
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.metrics import evaluate, sigmoid, write_baselines, write_metrics
from cxr_helpers.phantom.truth import TRUTH_DIR, phantom_root
from cxr_helpers.training import predict


def save_predictions(path: str | Path, cohort_rows: pd.DataFrame, probabilities: np.ndarray, targets: np.ndarray) -> Path:
    """Write predictions/<name>_test.csv: study_id, dicom_id, prob_<label> x14, the 14 coded targets."""
    probabilities, targets = np.asarray(probabilities), np.asarray(targets)
    if not (len(cohort_rows) == len(probabilities) == len(targets)):
        raise ValueError(
            f"cohort_rows ({len(cohort_rows)}), probabilities ({len(probabilities)}) and targets ({len(targets)}) "
            "must have one row per image"
        )
    table = pd.DataFrame({"study_id": cohort_rows["study_id"].to_numpy(), "dicom_id": cohort_rows["dicom_id"].to_numpy()})
    for column, name in enumerate(CHEXPERT_LABELS):
        table[f"prob_{name}"] = probabilities[:, column].astype(np.float64)
    for column, name in enumerate(CHEXPERT_LABELS):
        table[name] = targets[:, column].astype(np.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, float_format="%.6f")
    return path


def truth_table(settings) -> pd.DataFrame | None:
    """The phantom's truth (study_id -> 14 columns, 1 = the finding is really there), None elsewhere."""
    path = phantom_root(settings) / TRUTH_DIR / "truth.csv"
    return pd.read_csv(path).set_index("study_id") if path.is_file() else None


def truth_figures(scores: np.ndarray, study_ids: np.ndarray, truth: pd.DataFrame) -> dict:
    """AUROC against the truth per label (None where the split holds one class) and their mean, with n.

    The report labels say what a radiologist wrote; the phantom's truth says what was drawn. A
    model can match the first without seeing the second (a base rate, a co-occurring finding).
    """
    known = np.isin(study_ids, truth.index.to_numpy())
    present = truth.loc[study_ids[known], list(CHEXPERT_LABELS)].to_numpy()  # (n, 14) 1/0
    scores = np.asarray(scores)[known]
    auroc = {name: (float(roc_auc_score(present[:, j], scores[:, j])) if 0 < present[:, j].sum() < len(present)
                    else None) for j, name in enumerate(CHEXPERT_LABELS)}
    defined = [value for value in auroc.values() if value is not None]
    return {"macro_auroc": float(np.mean(defined)) if defined else None, "auroc": auroc, "n": int(known.sum())}


def record_results(
    model: nn.Module,
    loaders: Mapping[str, DataLoader],
    settings,
    stage: str,
    model_name: str,
    device=None,
    baselines: bool = True,
) -> dict[str, dict]:
    """Evaluate ``model`` on each split, write metrics/<stage>.json and predictions/<model_name>_test.csv.

    ``loaders`` maps split names to unshuffled loaders over CohortImageDataset-like datasets
    (with a ``cohort`` and ``targets``). With ``baselines``, the trivial baselines (fit on the train
    split's targets) are stored beside the model. The test figures get their bootstrap intervals
    (seeded by ``settings.seed``, so every model of a run shares the resamples). Returns {split: figures}.
    """
    results, test = {}, None
    truth = truth_table(settings)
    for split, loader in loaders.items():
        logits, targets, indices = predict(model, loader, device)
        results[split] = evaluate(logits, targets, settings.uncertainty_policy)
        if truth is not None:  # the phantom: also scored against what is really in the image
            study_ids = loader.dataset.cohort["study_id"].to_numpy()[indices]
            results[split]["truth"] = truth_figures(logits, study_ids, truth)
        if split == "test":
            test = (logits, targets, indices, loader.dataset)
            study_ids = loader.dataset.cohort["study_id"].to_numpy()[indices]
            results[split].update(model_interval(sigmoid(logits), targets, study_ids, settings.uncertainty_policy,
                                                 seed=settings.seed))
    if is_main_process():
        metrics_path = Path(settings.artifacts_dir) / "metrics" / f"{stage}.json"
        write_metrics(metrics_path, model_name, results)
        if baselines and "train" in loaders:
            split_targets = {split: loader.dataset.targets for split, loader in loaders.items()}
            write_baselines(metrics_path, split_targets["train"], split_targets, settings.uncertainty_policy)
        if test is not None:
            logits, targets, indices, dataset = test
            path = Path(settings.artifacts_dir) / "predictions" / f"{model_name}_test.csv"
            save_predictions(path, dataset.cohort.iloc[indices], sigmoid(logits), targets)
    return results
