"""Notebook 03's job: TF-IDF and a head on frozen encoder embeddings, for both text settings.

``train_text`` reads cohort.csv and writes text/ (the tiny BERT in the phantom, the embedding
caches), checkpoints/text_head_<setting>.pt, metrics/text.json and predictions/. Each head trains
with the workbook's one loop (``training.fit``) on cached embeddings. text.json also holds each
model's bootstrap intervals and, under "comparisons", findings+impression minus indication per model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxr_helpers.bootstrap import model_interval, record_comparisons
from cxr_helpers.config import TEXT_SETTINGS, Settings, seed_everything
from cxr_helpers.datasets import cohort_targets, make_loader
from cxr_helpers.distributed import is_initialized, is_main_process, main_process_first
from cxr_helpers.evaluation import record_results, save_predictions
from cxr_helpers.metrics import evaluate, read_metrics, sigmoid, write_baselines, write_metrics
from cxr_helpers.prepare import load_cohort
from cxr_helpers.reports import text_column
from cxr_helpers.results import format_interval
from cxr_helpers.text.embeddings import (
    cached_embeddings,
    embeddings_ready,
    encoder_short_name,
    load_text_encoder,
)
from cxr_helpers.text.finetune import run_text_finetune
from cxr_helpers.text.heads import TEXT_BLANK_POLICY, TextHead, TfidfBaseline, fit_tfidf
from cxr_helpers.training import fit, predict

SPLITS = ("train", "validate", "test")


class TextFeatureDataset(torch.utils.data.Dataset):
    """Cached text embeddings of one split: batches {"text_features" (B, H), "targets" (B, 14), "index" (B,)}.

    Needs no image cache, so the text stage runs from cohort.csv alone.
    """

    def __init__(self, cohort, text_features: np.ndarray, split: str | None = None):
        if len(text_features) != len(cohort):
            raise ValueError(f"text_features has {len(text_features)} rows but the cohort has {len(cohort)}")
        rows = np.arange(len(cohort)) if split is None else np.flatnonzero(cohort["split"].to_numpy() == split)
        if len(rows) == 0:
            raise ValueError(f"no cohort rows in split {split!r}; the cohort has {cohort['split'].value_counts().to_dict()}")
        self.cohort = cohort  # the whole table: ``index`` values are its row positions
        self.split = split
        self.rows = rows.astype(np.int64)
        self.targets = cohort_targets(cohort)[rows]  # (n, 14) coded
        self.text_features = np.asarray(text_features, dtype=np.float32)  # (N_cohort, H)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        """One whole batch as a dict of tensors."""
        positions = np.asarray(positions, dtype=np.int64)
        rows = self.rows[positions]
        return {
            "text_features": torch.from_numpy(self.text_features[rows]),  # (B, H)
            "targets": torch.from_numpy(self.targets[positions]),  # (B, 14)
            "index": torch.from_numpy(rows),  # (B,)
        }

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([int(position)]).items()}


def text_settings(settings: Settings) -> Settings:
    """The settings every text model trains with: the blank policy of ``TEXT_BLANK_POLICY``."""
    return dataclasses.replace(settings, blank_policy=TEXT_BLANK_POLICY)


def head_settings(settings: Settings) -> Settings:
    """The settings a text head trains with: its own learning rate (``settings.text_head_lr``: it starts
    from random weights, so it needs more than 1e-5)."""
    return dataclasses.replace(text_settings(settings), lr=settings.text_head_lr)


def text_loaders(settings: Settings, cohort, text_features: np.ndarray) -> dict:
    """"fit" (shuffled by seed and epoch) and one unshuffled loader per split over cached embeddings."""
    datasets = {split: TextFeatureDataset(cohort, text_features, split) for split in SPLITS}
    loaders = {"fit": make_loader(datasets["train"], settings.batch_size, True, settings.seed)}
    loaders.update({split: make_loader(d, settings.batch_size, False, settings.seed) for split, d in datasets.items()})
    return loaders


def model_names(settings: Settings, setting: str) -> dict[str, str]:
    """Names in metrics/text.json, e.g. {"tfidf": "tfidf_indication", "head": "tiny_bert_head_indication"}.

    "finetuned" (the whole encoder trained with a classifier) is there only when the settings fine-tune,
    and only for ``settings.text_setting`` (the text notebook 05 explains).
    """
    encoder = encoder_short_name(settings.text_model)
    names = {"tfidf": f"tfidf_{setting}", "head": f"{encoder}_head_{setting}"}
    if settings.text_finetune_epochs > 0 and setting == settings.text_setting:
        names["finetuned"] = f"{encoder}_finetuned_{setting}"
    return names


def split_rows(cohort) -> dict[str, np.ndarray]:
    """Cohort row positions per split."""
    return {split: np.flatnonzero(cohort["split"].to_numpy() == split) for split in SPLITS}


def run_tfidf(settings: Settings, cohort, setting: str) -> tuple[TfidfBaseline, dict[str, dict], np.ndarray]:
    """Fit the TF-IDF baseline on the training split; (model, figures per split, test logits)."""
    texts = cohort[text_column(setting)].fillna("").astype(str).to_numpy()
    targets = cohort_targets(cohort)
    rows = split_rows(cohort)
    model = fit_tfidf(texts[rows["train"]], targets[rows["train"]], settings.uncertainty_policy, settings.seed,
                      blank_policy=TEXT_BLANK_POLICY)
    logits = {split: model.logits(texts[r]) for split, r in rows.items()}
    results = {split: evaluate(logits[split], targets[r], settings.uncertainty_policy) for split, r in rows.items()}
    results["test"].update(interval_on_test(settings, cohort, rows["test"], logits["test"]))
    return model, results, logits["test"]


def interval_on_test(settings: Settings, cohort, test_rows: np.ndarray, test_logits: np.ndarray) -> dict:
    """Bootstrap intervals over the test studies for one text model (``bootstrap.model_interval``)."""
    return model_interval(sigmoid(test_logits), cohort_targets(cohort)[test_rows],
                          cohort["study_id"].to_numpy()[test_rows], settings.uncertainty_policy, seed=settings.seed)


def run_text_head(settings: Settings, cohort, setting: str, text_features: np.ndarray, progress: bool = True,
                  resume: bool = True) -> dict:
    """Train a ``TextHead`` on cached embeddings with ``training.fit``; evaluate it on every split."""
    loaders = text_loaders(settings, cohort, text_features)
    seed_everything(settings.seed)
    head = TextHead(text_features.shape[1], dropout=settings.dropout)
    head.set_feature_stats(text_features[loaders["fit"].dataset.rows])
    checkpoint_dir = Path(settings.artifacts_dir) / "checkpoints"
    name = f"text_head_{setting}"
    # A small MLP: the CPU is fastest. Under torchrun it trains where the process group lives
    # (each rank's GPU with NCCL), as DistributedDataParallel requires.
    device = None if is_initialized() else "cpu"
    history = fit(head, loaders["fit"], loaders["validate"], head_settings(settings), checkpoint_dir, name,
                  resume=resume, progress=progress, device=device)
    results, test = {}, None
    for split in SPLITS:
        logits, targets, rows = predict(head, loaders[split])
        results[split] = evaluate(logits, targets, settings.uncertainty_policy)
        if split == "test":
            test = (logits, targets, rows)
            results[split].update(interval_on_test(settings, cohort, rows, logits))
    return {"model": head, "history": history, "metrics": results, "test": test,
            "checkpoint": checkpoint_dir / f"{name}.pt"}


def train_text(settings: Settings, progress: bool = True, resume: bool = True) -> dict:
    """Notebook 03's whole job for both text settings: TF-IDF and frozen encoder + TextHead.

    Reads cohort.csv; writes text/ (tiny BERT in the phantom, embeddings), checkpoints/text_head_<setting>.pt,
    metrics/text.json (TF-IDF, heads, trivial baselines, comparisons) and predictions/<model>_test.csv
    for every model (``model_names``). Returns {setting: {"tfidf": figures per split, "tfidf_model": TfidfBaseline,
    "head": run_text_head(...)}}.
    """
    cohort = load_cohort(settings.artifacts_dir)
    metrics_path = Path(settings.artifacts_dir) / "metrics" / "text.json"
    predictions = Path(settings.artifacts_dir) / "predictions"
    targets, rows = cohort_targets(cohort), split_rows(cohort)
    main = is_main_process()  # under torchrun only rank 0 writes files
    if main:
        write_baselines(metrics_path, targets[rows["train"]], {s: targets[r] for s, r in rows.items()},
                        settings.uncertainty_policy)
    encoder = None
    outcome = {}
    for setting in TEXT_SETTINGS:
        names = model_names(settings, setting)
        tfidf_model, tfidf_results, tfidf_test = run_tfidf(settings, cohort, setting)
        if main:
            write_metrics(metrics_path, names["tfidf"], tfidf_results)
            save_predictions(predictions / f"{names['tfidf']}_test.csv", cohort.iloc[rows["test"]],
                             sigmoid(tfidf_test), targets[rows["test"]])
        with main_process_first():  # rank 0 builds the tiny BERT and the cache; the others then read them
            if encoder is None and not embeddings_ready(settings, cohort, setting):
                encoder = load_text_encoder(settings.text_model, settings, progress)
            features = cached_embeddings(settings, cohort, setting, progress, encoder)
        head = run_text_head(settings, cohort, setting, features, progress, resume)
        if main:
            write_metrics(metrics_path, names["head"], head["metrics"])
            logits, test_targets, test_rows = head["test"]
            save_predictions(predictions / f"{names['head']}_test.csv", cohort.iloc[test_rows], sigmoid(logits),
                             test_targets)
        outcome[setting] = {"tfidf": tfidf_results, "tfidf_model": tfidf_model, "head": head}
        if "finetuned" in names:
            train_rows = rows["train"]
            tuned = run_text_finetune(settings, cohort, setting, features[train_rows], progress, resume)
            tuned["metrics"] = record_results(tuned["model"], tuned["loaders"], settings, "text", names["finetuned"],
                                              baselines=False)
            outcome[setting]["finetuned"] = tuned
    if main:
        record_comparisons(metrics_path, setting_differences(settings), predictions, settings.uncertainty_policy,
                           seed=settings.seed)
    return outcome


def setting_differences(settings: Settings) -> list[tuple[str, str, str]]:
    """(model, baseline, question) per text model: findings+impression minus indication on the same model."""
    first, second = model_names(settings, "findings_impression"), model_names(settings, "indication")
    return [(first[kind], second[kind], f"{kind}: findings+impression minus indication only")
            for kind in first if kind in second]


def leakage_table(settings: Settings, split: str = "test"):
    """Macro AUROC (with its 95% bootstrap interval on test) and masked accuracy of each text model (rows) on
    each text setting (columns), from text.json."""
    models = read_metrics(Path(settings.artifacts_dir) / "metrics" / "text.json")["models"]
    rows = []
    for setting in TEXT_SETTINGS:
        for name in model_names(settings, setting).values():
            if name in models and split in models[name]:
                figures = models[name][split]
                rows.append({"model": name.removesuffix(f"_{setting}"), "setting": setting,
                             "macro AUROC": figures["macro_auroc"],
                             "95% CI": format_interval(figures.get("macro_auroc_ci")), "accuracy": figures["accuracy"]})
    if not rows:
        raise FileNotFoundError("metrics/text.json holds no text models yet; run train_text (notebook 03) first")
    return pd.DataFrame(rows).pivot(index="model", columns="setting")
