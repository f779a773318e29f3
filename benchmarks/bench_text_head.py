"""Text head: epoch time on cached embeddings vs re-encoding the reports every epoch, and [CLS] vs mean pooling.

Reads the artifacts folder that notebook 03 (or `python -m cxr_helpers train text`) filled: cohort.csv
and the text encoder (the phantom's tiny BERT is built if missing). Trains throw-away heads in a
temporary folder; nothing in the artifacts folder changes except the embedding cache.

    python benchmarks/bench_text_head.py --artifacts artifacts/phantom [--epochs 3] [--device cpu]

Table 1, seconds per training epoch (validation included) of the same TextHead:
- cached:    the head reads cached frozen-encoder embeddings (what notebook 03 does);
- re-encode: the frozen encoder runs on every batch, every epoch (TextClassifier, encoder frozen);
- fine-tune: encoder and head trained together (TextClassifier, nothing frozen).
Table 2, quality of the frozen embeddings: validation / test macro AUROC of a head trained on
[CLS] vs mean-pooled embeddings, for both text settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cxr_helpers.config import TEXT_SETTINGS, load_settings, pick_device, seed_everything
from cxr_helpers.datasets import cohort_targets, make_loader
from cxr_helpers.metrics import evaluate
from cxr_helpers.prepare import load_cohort
from cxr_helpers.reports import text_column
from cxr_helpers.text.embeddings import load_text_encoder
from cxr_helpers.text.encoder import POOLINGS, compute_embeddings, quiet_transformers, text_pooling
from cxr_helpers.text.heads import TextClassifier, TextHead
from cxr_helpers.text.train import head_settings, text_loaders
from cxr_helpers.training import fit, predict


class TokenDataset(torch.utils.data.Dataset):
    """Pre-tokenized reports of one split: batches {"input_ids", "attention_mask", "targets", "index"}."""

    def __init__(self, cohort, tokens: dict[str, np.ndarray], split: str):
        self.rows = np.flatnonzero(cohort["split"].to_numpy() == split)
        self.targets = cohort_targets(cohort)[self.rows]
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, positions):
        positions = np.asarray(positions)
        rows = self.rows[positions]
        batch = {key: torch.from_numpy(array[rows]) for key, array in self.tokens.items()}  # (B, L)
        longest = int(batch["attention_mask"].sum(1).max())  # trim the padding this batch does not need
        batch = {key: value[:, :longest] for key, value in batch.items()}
        return {**batch, "targets": torch.from_numpy(self.targets[positions]), "index": torch.from_numpy(rows)}


def machine() -> str:
    """One line describing where the figures come from."""
    device = pick_device()
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or platform.machine()
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), best device {device} ({name})")


def epoch_seconds(model, loaders, settings, device, folder: Path, name: str) -> float:
    """Median seconds per epoch of ``fit`` (train + validation) over ``settings.epochs`` epochs."""
    history = fit(model, loaders["fit"], loaders["validate"], settings, folder, name, resume=False, progress=False,
                  device=device)
    return statistics.median(history.seconds)


def timing_table(settings, cohort, encoder_pair, epochs: int, device, folder: Path) -> list[tuple[str, float, str]]:
    """Rows (what, seconds, note) for cached / re-encode / fine-tune on the findings+impression text."""
    tokenizer, encoder = encoder_pair
    setting, pooling = "findings_impression", text_pooling(settings)
    texts = cohort[text_column(setting)].tolist()
    trained_with = dataclasses.replace(head_settings(settings), epochs=epochs)
    began = time.perf_counter()
    features = compute_embeddings(texts, tokenizer, encoder, settings.batch_size, settings.max_text_length,
                                  device, progress=False, pooling=pooling)
    cache_seconds = time.perf_counter() - began
    rows = [("build the cache (once)", cache_seconds, f"{len(texts)} reports encoded")]

    seed_everything(settings.seed)
    loaders = text_loaders(settings, cohort, features)
    head = TextHead(features.shape[1]).set_feature_stats(features[loaders["fit"].dataset.rows])
    rows.append(("cached embeddings", epoch_seconds(head, loaders, trained_with, "cpu", folder, "cached"), "head on CPU"))

    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=settings.max_text_length,
                        return_tensors="np")
    tokens = {key: encoded[key].astype(np.int64) for key in ("input_ids", "attention_mask")}
    token_loaders = {"fit": make_loader(TokenDataset(cohort, tokens, "train"), settings.batch_size, True, settings.seed),
                     "validate": make_loader(TokenDataset(cohort, tokens, "validate"), settings.batch_size, False)}
    for label, freeze, lr in (("re-encode every epoch", True, trained_with.lr), ("fine-tune encoder + head", False, 5e-5)):
        seed_everything(settings.seed)
        _, fresh_encoder = load_text_encoder(settings.text_model, settings, progress=False)
        head = TextHead(features.shape[1]).set_feature_stats(features[loaders["fit"].dataset.rows])
        model = TextClassifier(fresh_encoder, head, tokenizer, pooling, settings.max_text_length, freeze)
        run_settings = dataclasses.replace(trained_with, lr=lr)
        seconds = epoch_seconds(model, token_loaders, run_settings, device, folder, label.split()[0])
        rows.append((label, seconds, f"on {device}"))
    return rows


def pooling_table(settings, cohort, encoder_pair, device, folder: Path) -> list[tuple[str, str, float, float]]:
    """Rows (setting, pooling, validation macro AUROC, test macro AUROC) of heads on frozen embeddings."""
    tokenizer, encoder = encoder_pair
    rows = []
    for setting in TEXT_SETTINGS:
        texts = cohort[text_column(setting)].tolist()
        for pooling in POOLINGS:
            features = compute_embeddings(texts, tokenizer, encoder, settings.batch_size,
                                                     settings.max_text_length, device, progress=False, pooling=pooling)
            seed_everything(settings.seed)
            loaders = text_loaders(settings, cohort, features)
            head = TextHead(features.shape[1], dropout=settings.dropout)
            head.set_feature_stats(features[loaders["fit"].dataset.rows])
            fit(head, loaders["fit"], loaders["validate"], head_settings(settings), folder,
                f"{setting}_{pooling}", resume=False, progress=False, device="cpu")
            scores = {split: evaluate(*predict(head, loaders[split], "cpu")[:2], settings.uncertainty_policy)["macro_auroc"]
                      for split in ("validate", "test")}
            rows.append((setting, pooling, scores["validate"], scores["test"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", help="artifacts folder (default: CXR_ARTIFACTS_DIR or artifacts/<profile>)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per variant (median reported)")
    parser.add_argument("--device", default=None, help="device for the encoder (default: the best available)")
    parser.add_argument("--skip-pooling", action="store_true", help="only the timing table")
    args = parser.parse_args()
    overrides = {"artifacts_dir": Path(args.artifacts).resolve()} if args.artifacts else {}
    settings = load_settings(**overrides)
    quiet_transformers()
    device = pick_device(args.device)
    cohort = load_cohort(settings.artifacts_dir)
    encoder_pair = load_text_encoder(settings.text_model, settings, progress=True)
    print(f"machine: {machine()}")
    print(f"encoder: {settings.text_model} (hidden {encoder_pair[1].config.hidden_size}), pooling "
          f"{text_pooling(settings)}, max_length {settings.max_text_length}, batch {settings.batch_size}, "
          f"{len(cohort)} cohort rows ({int((cohort['split'] == 'train').sum())} train)")
    with tempfile.TemporaryDirectory() as folder:
        rows = timing_table(settings, cohort, encoder_pair, args.epochs, device, Path(folder))
        cached = rows[1][1]
        print(f"\n{'text head training':<28} {'s / epoch':>10} {'x cached':>9}  note")
        for what, seconds, note in rows:
            ratio = "" if what.startswith("build") else f"{seconds / cached:8.1f}x"
            print(f"{what:<28} {seconds:>10.3f} {ratio:>9}  {note}")
        if not args.skip_pooling:
            print(f"\n{'text setting':<22} {'pooling':<8} {'val AUROC':>10} {'test AUROC':>11}")
            for setting, pooling, validate, test in pooling_table(settings, cohort, encoder_pair, device, Path(folder)):
                print(f"{setting:<22} {pooling:<8} {validate:>10.3f} {test:>11.3f}")


if __name__ == "__main__":
    main()
