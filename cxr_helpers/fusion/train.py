"""Notebook 04's job: the strategy table on frozen, cached encoders, then the paper's model end to end.

For every text setting and strategy: a FusionModel on notebook 02's image encoder and notebook
03's cached report embeddings, trained with ``training.fit`` (same epochs, data and loss for all),
scored on train/validate/test (metrics/fusion.json, predictions/<name>_test.csv), checkpointed
with the meta ``load_fusion_model`` needs, and scored with each modality removed. A finished run
is reused only while its inputs (image checkpoint, cohort, report embeddings) are unchanged.
Last, the differences notebook 04 discusses go under "comparisons" in fusion.json with paired
bootstrap intervals (``fusion_differences``, ``bootstrap.record_comparisons``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cxr_helpers.artifacts import file_sha256, missing_message, write_json
from cxr_helpers.bootstrap import record_comparisons
from cxr_helpers.config import TEXT_SETTINGS, seed_everything
from cxr_helpers.datasets import CohortImageDataset, load_split_datasets, make_loader
from cxr_helpers.distributed import barrier, is_main_process, main_process_first
from cxr_helpers.evaluation import record_results
from cxr_helpers.fusion.ablation import modality_ablation
from cxr_helpers.fusion.build import add_checkpoint_meta, build_fusion_model, fusion_meta
from cxr_helpers.fusion.model import STRATEGIES, FusionModel, check_strategy, fusion_name, training_label
from cxr_helpers.fusion.trunk_cache import CachedImageDataset, cache_image_trunks, layer3_fits
from cxr_helpers.image_model import load_image_encoder
from cxr_helpers.metrics import read_metrics
from cxr_helpers.prepare import load_cohort, open_image_cache
from cxr_helpers.reports import text_column
from cxr_helpers.results import best_model
from cxr_helpers.text.embeddings import cached_embeddings, embedding_key, embeddings_paths, load_text_encoder
from cxr_helpers.text.finetune import tokenize_texts
from cxr_helpers.text.train import model_names
from cxr_helpers.training import fit

# With both encoders frozen only fresh fusion layers learn; like the text heads of notebook 03 they
# need a larger step than the paper's fine-tuning rate of 1e-5 (``settings.fusion_head_lr`` overrides).
FROZEN_ENCODERS_LR = 1e-3


def _setting(settings, name: str, default):
    """A fusion option from the settings, or the default here where the setting is None."""
    value = getattr(settings, name)
    return default if value is None else value


def _require_embeddings(settings, text_setting: str) -> None:
    path = embeddings_paths(settings, text_setting)[0]
    if not path.exists():
        raise FileNotFoundError(missing_message(path, "text") + " Use the same CXR_TEXT_MODEL as notebook 03.")


def _write_fusion_extras(path: Path, section: str, name: str, value: dict) -> None:
    """Store one model's extra figures (ablation, run facts) under a top-level section of fusion.json."""
    data = read_metrics(path)
    data.setdefault(section, {})[name] = value
    write_json(path, data)


def run_inputs(settings, model: FusionModel, text_setting: str, texts: Sequence[str], image_checkpoint_sha: str,
               cohort_sha: str) -> dict:
    """What a fusion run was trained from: if any of it changes, a saved run is stale and is retrained.

    ``training.fit`` resumes by its own fingerprint (model size, lr, batch, ...), which cannot see a
    retrained image model, a new cohort, or report embeddings recomputed with another pooling.
    """
    return {"image_checkpoint_sha256": image_checkpoint_sha, "cohort_sha256": cohort_sha,
            "text": embedding_key(settings, text_setting, texts), "strategy": model.strategy,
            "end_to_end": model.end_to_end, "freeze_image": model.image_frozen, "hidden": model.hidden}


def _resume_allowed(checkpoint_dir: Path, name: str, inputs: dict, progress: bool) -> bool:
    """True if a saved run of ``name`` was trained from the same inputs (then ``fit`` may resume it)."""
    path = checkpoint_dir / f"{name}_inputs.json"
    saved = json.loads(path.read_text()) if path.exists() else None
    if saved == inputs:
        return True
    if (checkpoint_dir / f"{name}_last.pt").exists() and progress:
        print(f"{name}: its inputs changed since it was trained (image model, cohort or report embeddings); retraining.")
    return False


def _run_one(model: FusionModel, name: str, text_setting: str, datasets: Mapping, settings, train_settings,
             progress: bool, resume: bool, inputs: dict) -> dict:
    """fit + metrics + predictions + ablation for one fusion model; returns its figures."""
    checkpoint_dir = Path(settings.artifacts_dir) / "checkpoints"
    main = is_main_process()  # under torchrun only rank 0 writes files
    resume = resume and _resume_allowed(checkpoint_dir, name, inputs, progress and main)
    barrier()  # every rank has decided from the old inputs file before rank 0 replaces it
    if main:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        write_json(checkpoint_dir / f"{name}_inputs.json", inputs)
    loaders = {split: make_loader(ds, settings.batch_size, False, settings.seed, num_workers=settings.num_workers)
               for split, ds in datasets.items()}
    fit_loader = make_loader(datasets["train"], settings.batch_size, True, settings.seed, num_workers=settings.num_workers)
    began = time.perf_counter()
    history = fit(model, fit_loader, loaders["validate"], train_settings, checkpoint_dir, name, resume, progress)
    if main:
        add_checkpoint_meta(checkpoint_dir / f"{name}.pt", fusion_meta(model, settings, text_setting))
    results = record_results(model, loaders, settings, "fusion", name, baselines=False)
    ablation = modality_ablation(model, loaders["test"], settings.uncertainty_policy)
    metrics_path = Path(settings.metrics_dir) / "fusion.json"
    run = {"strategy": model.strategy, "text_setting": text_setting, "end_to_end": model.end_to_end,
           "freeze_image": model.image_frozen, "cached_image": model.cached_image, "epochs": len(history),
           "lr": float(train_settings.lr), "epoch_seconds": float(np.mean(history.seconds)) if history.seconds else None,
           "best_epoch": history.best_epoch}
    if main:
        _write_fusion_extras(metrics_path, "ablation", name, {"split": "test", **ablation})
        _write_fusion_extras(metrics_path, "runs", name, run)
    barrier()  # the checkpoint meta and figures are on disk before any rank reads them
    return {"history": history, "metrics": results, "ablation": ablation, "run": run,
            "checkpoint": checkpoint_dir / f"{name}.pt", "seconds": time.perf_counter() - began}


def train_fusion(
    settings,
    strategies: Sequence[str] = STRATEGIES,
    text_settings: Sequence[str] = TEXT_SETTINGS,
    progress: bool = True,
    end_to_end: bool | None = None,
    end_to_end_epochs: int | None = None,
    freeze_encoders: bool | None = None,
    train_text_encoder: bool | None = None,
    resume: bool = True,
) -> dict:
    """Notebook 04's whole job: the strategy table (frozen, cached encoders) + the paper's model end to end.

    For every text setting and strategy: a FusionModel on notebook 02's image encoder and notebook
    03's cached report embeddings, trained with ``training.fit`` (same epochs, data and loss for all),
    scored on train/validate/test (metrics/fusion.json, predictions/<name>_test.csv), checkpointed
    with the meta ``load_fusion_model`` needs, and scored with each modality removed.

    Options (each also read from a ``settings.fusion_*`` field of the same name where the Settings
    has one): ``freeze_encoders`` (default True) freezes the image encoder in the table and caches
    its outputs, so a strategy trains in seconds (False fine-tunes it); ``train_text_encoder``
    (default False) trains a copy of the text encoder inside every table model instead of reading
    the cached embeddings; ``end_to_end`` (default True) then trains the paper's model, concat on
    the first text setting with nothing frozen, for ``end_to_end_epochs`` (default settings.epochs).
    Returns {"models": {name: figures}, "seconds": total}.
    """
    began = time.perf_counter()
    for strategy in strategies:
        check_strategy(strategy)
    end_to_end = bool(_setting(settings, "fusion_end_to_end", True) if end_to_end is None else end_to_end)
    freeze_encoders = bool(_setting(settings, "fusion_freeze_encoders", True) if freeze_encoders is None else freeze_encoders)
    train_text = bool(_setting(settings, "fusion_train_text_encoder", False) if train_text_encoder is None
                      else train_text_encoder)
    e2e_epochs = int(end_to_end_epochs or _setting(settings, "fusion_end_to_end_epochs", settings.epochs))
    head_lr = float(_setting(settings, "fusion_head_lr", max(settings.lr, FROZEN_ENCODERS_LR)))
    only_heads_learn = freeze_encoders and not train_text
    table_settings = dataclasses.replace(settings, lr=head_lr) if only_heads_learn else settings

    split_datasets = load_split_datasets(settings)  # clear error naming notebook 01 if missing
    load_image_encoder(settings)  # clear error naming notebook 02 if image.pt is missing
    for text_setting in text_settings:
        _require_embeddings(settings, text_setting)
    cohort = load_cohort(settings.artifacts_dir)
    images = open_image_cache(settings.artifacts_dir, settings.image_size)
    tokenizer, frozen_encoder = load_text_encoder(settings.text_model, settings, progress=progress)
    image_sha = file_sha256(Path(settings.artifacts_dir) / "checkpoints" / "image.pt")
    cohort_sha = file_sha256(Path(settings.artifacts_dir) / "cohort.csv")
    trunks: dict[str, np.ndarray] = {}
    if freeze_encoders and strategies:
        kinds = ["pooled"] + (["layer3"] if "film" in strategies and layer3_fits(len(cohort), settings.image_size) else [])
        trunks = cache_image_trunks(load_image_encoder(settings), cohort, images, kinds, settings.batch_size,
                                    progress=progress)

    outputs: dict[str, dict] = {}
    for text_setting in text_settings:
        texts = cohort[text_column(text_setting)].fillna("").astype(str).tolist()
        if train_text:
            tokens = tokenize_texts(tokenizer, cohort[text_column(text_setting)].tolist(), settings.max_text_length)
            datasets = {split: _with_tokens(ds, tokens) for split, ds in split_datasets.items()}
        else:
            with main_process_first():  # (N, H), reused from notebook 03 (rank 0 rebuilds it if stale)
                features = cached_embeddings(settings, cohort, text_setting, progress=progress,
                                             encoder=(tokenizer, frozen_encoder))
            datasets = {split: _with_text(ds, features) for split, ds in split_datasets.items()}
        for strategy in strategies:
            name = fusion_name(strategy, text_setting)
            seed_everything(settings.seed)
            encoder = load_text_encoder(settings.text_model, settings, progress=False)[1].train() if train_text else None
            text_dim = frozen_encoder.config.hidden_size
            model = build_fusion_model(settings, strategy, text_dim, text_encoder=encoder, freeze_image=freeze_encoders)
            model.attach_text_tools(tokenizer, frozen_encoder, settings.max_text_length)
            kind_datasets = datasets
            if freeze_encoders and model.trunk_kind in trunks:
                model.use_cached_image(True)
                kind_datasets = {split: CachedImageDataset(ds, trunks[model.trunk_kind]) for split, ds in datasets.items()}
            if progress and is_main_process():
                print(f"\n== {name} ({training_label(not freeze_encoders, train_text)}) ==")
            inputs = run_inputs(settings, model, text_setting, texts, image_sha, cohort_sha)
            outputs[name] = _run_one(model, name, text_setting, kind_datasets, settings, table_settings, progress,
                                     resume, inputs)

    if end_to_end:
        text_setting = text_settings[0] if text_settings else "findings_impression"
        name = fusion_name("concat", text_setting, end_to_end=True)
        tokens = tokenize_texts(tokenizer, cohort[text_column(text_setting)].tolist(), settings.max_text_length)
        datasets = {split: _with_tokens(ds, tokens) for split, ds in split_datasets.items()}
        seed_everything(settings.seed)
        _, encoder = load_text_encoder(settings.text_model, settings, progress=False)  # a fresh copy to fine-tune
        model = build_fusion_model(settings, "concat", encoder.config.hidden_size, text_encoder=encoder.train())
        model.attach_text_tools(tokenizer, None, settings.max_text_length)
        if progress and is_main_process():
            print(f"\n== {name} (the paper's model: {training_label(True, True)}) ==")
        e2e_settings = dataclasses.replace(settings, epochs=e2e_epochs)
        texts = cohort[text_column(text_setting)].fillna("").astype(str).tolist()
        inputs = run_inputs(settings, model, text_setting, texts, image_sha, cohort_sha)
        outputs[name] = _run_one(model, name, text_setting, datasets, settings, e2e_settings, progress, resume, inputs)
    if is_main_process():
        metrics_path = Path(settings.metrics_dir) / "fusion.json"
        record_comparisons(metrics_path, fusion_differences(settings, list(read_metrics(metrics_path)["models"])),
                           Path(settings.artifacts_dir) / "predictions", settings.uncertainty_policy, seed=settings.seed)
    return {"models": outputs, "seconds": time.perf_counter() - began}


def fusion_differences(settings, fusion_models: Sequence[str]) -> list[tuple[str, str, str]]:
    """(model, baseline, question) for notebook 04: each fusion model minus the best unimodal model on the
    same inputs, and per strategy findings+impression minus indication only.

    The best unimodal model (image-only, or a text model on the same report sections) is chosen on the
    validation split, as a user would choose it, so the test split stays out of the choice.
    """
    pairs = []
    for name in fusion_models:
        setting = next(s for s in TEXT_SETTINGS if s in name)
        baseline = best_model(settings.metrics_dir, ["image", *model_names(settings, setting).values()])
        if baseline is not None:
            pairs.append((name, baseline, f"fusion minus the best unimodal model on the same inputs ({baseline}, "
                                          "chosen on validation macro AUROC)"))
    for strategy in STRATEGIES:
        first, second = (fusion_name(strategy, s) for s in ("findings_impression", "indication"))
        if first in fusion_models and second in fusion_models:
            pairs.append((first, second, f"{strategy}: findings+impression minus indication only"))
    return pairs


def _with_text(dataset, features: np.ndarray):
    """The same split over the same cohort and images, now also carrying cached text features."""
    return CohortImageDataset(dataset.cohort, dataset.images, dataset.split, text_features=features)


def _with_tokens(dataset, tokens: Mapping[str, np.ndarray]):
    """The same split, carrying input_ids / attention_mask for an end-to-end text encoder."""
    return CohortImageDataset(dataset.cohort, dataset.images, dataset.split, tokens=tokens)
