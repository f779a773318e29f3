"""Fusion: the table of all models and strategies, and the epoch time of frozen/cached vs end-to-end training.

Usage (on the default phantom, after notebooks 01-03 or the CLI equivalents):
    python benchmarks/bench_fusion.py [--artifacts DIR] [--batches N] [--skip-train]

Part 1 runs ``train_fusion`` (a finished run is loaded, not retrained) and prints macro AUROC
and the paper's masked accuracy for image-only, text-only and every fusion model, the leakage table
and the modality reliance. Part 2 times one training epoch of the concat model (and FiLM) with
frozen, cached encoders, with the image encoder fine-tuned on cached text, and end to end (the
paper), side by side in one run. ``--batches N`` times N batches and scales to a full epoch.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxr_helpers.config import load_settings, pick_device, seed_everything
from cxr_helpers.datasets import load_split_datasets, make_loader
from cxr_helpers.fusion.build import build_fusion_model
from cxr_helpers.fusion.tables import comparison_table, epoch_seconds_table, leakage_table, reliance_table
from cxr_helpers.fusion.train import FROZEN_ENCODERS_LR, train_fusion
from cxr_helpers.fusion.trunk_cache import CachedImageDataset, cache_image_trunks
from cxr_helpers.image_model import load_image_encoder
from cxr_helpers.metrics import masked_bce
from cxr_helpers.text.finetune import tokenize_texts


def machine() -> str:
    """One line about where the figures were measured."""
    device = pick_device()
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "no GPU"
    return (f"{platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | torch {torch.__version__} "
            f"({torch.get_num_threads()} threads) | device {device} ({gpu}) | load average {os.getloadavg()[0]:.1f}")


def time_epoch(model: torch.nn.Module, dataset, settings, lr: float, batches: int | None) -> tuple[float, int]:
    """Seconds for one training epoch (forward, masked BCE, backward, AdamW step) and the batches timed."""
    device = pick_device()
    model.to(device).train()
    loader = make_loader(dataset, settings.batch_size, True, settings.seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    total = len(loader)
    timed = 0
    began = time.perf_counter()
    for batch in loader:
        inputs = {k: batch[k].to(device) for k in model.input_keys}
        loss = masked_bce(model(**inputs), batch["targets"].to(device), settings.uncertainty_policy)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timed += 1
        if batches and timed >= batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    return seconds * total / timed, timed


def speed_table(settings, batches: int | None) -> pd.DataFrame:
    """Epoch time of four ways to train fusion on the findings+impression reports, measured now."""
    from cxr_helpers.prepare import load_cohort, open_image_cache
    from cxr_helpers.reports import text_column
    from cxr_helpers.text.embeddings import cached_embeddings, load_text_encoder

    cohort = load_cohort(settings.artifacts_dir)
    images = open_image_cache(settings.artifacts_dir, settings.image_size)
    tokenizer, encoder = load_text_encoder(settings.text_model, settings, progress=False)
    features = cached_embeddings(settings, cohort, "findings_impression", progress=False, encoder=(tokenizer, encoder))
    splits = load_split_datasets(settings, ("train",), text_features=features)
    tokens = tokenize_texts(tokenizer, cohort[text_column("findings_impression")].tolist(), settings.max_text_length)
    token_splits = load_split_datasets(settings, ("train",), tokens=tokens)
    began = time.perf_counter()
    trunks = cache_image_trunks(load_image_encoder(settings), cohort, images, ["pooled", "layer3"],
                                       settings.batch_size, progress=False)
    cache_seconds = time.perf_counter() - began
    head_lr = max(settings.lr, FROZEN_ENCODERS_LR)
    rows = []
    for label, strategy, how in (
        ("concat: both encoders frozen, outputs cached", "concat", "cached"),
        ("film: both encoders frozen, layer3 maps cached", "film", "cached"),
        ("concat: image encoder fine-tuned, text cached", "concat", "image"),
        ("concat end to end (the paper)", "concat", "end_to_end"),
    ):
        seed_everything(settings.seed)
        if how == "end_to_end":
            _, fresh = load_text_encoder(settings.text_model, settings, progress=False)
            model = build_fusion_model(settings, strategy, fresh.config.hidden_size, text_encoder=fresh)
            dataset, lr = token_splits["train"], settings.lr
        else:
            model = build_fusion_model(settings, strategy, features.shape[1], freeze_image=how == "cached")
            dataset, lr = splits["train"], settings.lr
            if how == "cached":
                model.use_cached_image(True)
                dataset, lr = CachedImageDataset(dataset, trunks[model.trunk_kind]), head_lr
        seconds, timed = time_epoch(model, dataset, settings, lr, batches)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rows.append({"training": label, "trainable parameters": trainable, "seconds per epoch": seconds,
                     "batches timed": timed})
    table = pd.DataFrame(rows).set_index("training")
    table["vs frozen concat"] = table["seconds per epoch"] / table["seconds per epoch"].iloc[0]
    print(f"one-off image-feature cache for all {len(cohort)} cohort rows: {cache_seconds:.1f} s")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", help="artifacts folder (default: CXR_ARTIFACTS_DIR or artifacts/<profile>)")
    parser.add_argument("--batches", type=int, default=0, help="time this many batches per mode (0 = a full epoch)")
    parser.add_argument("--skip-train", action="store_true", help="only read metrics/fusion.json for part 1")
    args = parser.parse_args()
    overrides = {"artifacts_dir": Path(args.artifacts).resolve()} if args.artifacts else {}
    settings = load_settings(**overrides)
    print("machine:", machine())
    print(f"profile {settings.profile} (fast={settings.fast}) | {settings.image_size} px | {settings.epochs} epochs | "
          f"batch {settings.batch_size} | lr {settings.lr} | text model {settings.text_model}\n")

    if not args.skip_train:
        outcome = train_fusion(settings, progress=False)
        print(f"train_fusion: {outcome['seconds']:.1f} s for {len(outcome['models'])} models "
              "(a finished run is loaded, not retrained)\n")
    metrics_dir = settings.metrics_dir
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        table = comparison_table(metrics_dir).drop(columns=["test_loss"])
        validation = comparison_table(metrics_dir, "validate").set_index("model")
        table["validate_accuracy"] = table["model"].map(validation["validate_accuracy"])
        table["validate_macro_auroc"] = table["model"].map(validation["validate_macro_auroc"])
        print("All models (test split; paper: fusion test accuracy 0.7950, image-only val accuracy 0.7047)")
        print(table.to_string(index=False), "\n")
        print("Leakage: test macro AUROC per text setting")
        print(leakage_table(metrics_dir).to_string(), "\n")
        print("Modality reliance: test macro AUROC with one modality removed")
        print(reliance_table(metrics_dir).to_string(), "\n")
        print("Epoch seconds recorded by train_fusion")
        print(epoch_seconds_table(metrics_dir).to_string(), "\n")
        print(f"Epoch time side by side, measured now ({'full epoch' if not args.batches else f'{args.batches} batches, scaled'})")
        print(speed_table(settings, args.batches or None).to_string())
    print("\nmachine:", machine())


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
