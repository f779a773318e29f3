"""The text encoder and its head trained end to end: a text model good enough for its explanations to mean something.

The paper used its text encoder frozen ("as is") with a head on top. An encoder never taught the
labels reads a report only as well as its pretraining lets it: on the phantom the frozen tiny
BERT's head stays far below TF-IDF (notebook 03). SHAP's words can only be right for a model that
reads the report right, so the phantom profile also trains encoder + head together
(``TextClassifier``) for ``settings.text_finetune_epochs`` epochs; notebook 05 explains that model.
With 0 epochs (the mimic profile: the paper's frozen encoder) this stage is skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cxr_helpers.checkpoints import load_checkpoint
from cxr_helpers.config import Settings, pick_device, seed_everything
from cxr_helpers.datasets import cohort_targets, make_loader
from cxr_helpers.reports import text_column
from cxr_helpers.text.embeddings import load_text_encoder
from cxr_helpers.text.encoder import text_pooling
from cxr_helpers.text.heads import TEXT_BLANK_POLICY, LabelAttentionHead, TextClassifier, TextHead
from cxr_helpers.training import fit

SPLITS = ("train", "validate", "test")
TOKEN_KEYS = ("input_ids", "attention_mask")


def tokenize_texts(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
    """input_ids / attention_mask (N, L) int64 for every text, padded to the longest (at most max_length)."""
    encoded = tokenizer([str(t) for t in texts], padding=True, truncation=True, max_length=max_length,
                        return_tensors="np")
    return {key: encoded[key].astype(np.int64) for key in TOKEN_KEYS}


class TokenDataset(Dataset):
    """The tokenised reports of one split: batches {"input_ids", "attention_mask" (B, L), "targets" (B, 14), "index"}."""

    def __init__(self, cohort, tokens: Mapping[str, np.ndarray], split: str):
        self.cohort = cohort  # the whole table: ``index`` values are its row positions
        self.rows = np.flatnonzero(cohort["split"].to_numpy() == split).astype(np.int64)
        if len(self.rows) == 0:
            raise ValueError(f"no cohort rows in split {split!r}")
        self.targets = cohort_targets(cohort)[self.rows]  # (n, 14) coded
        self.tokens = {key: np.asarray(tokens[key]) for key in TOKEN_KEYS}  # (N_cohort, L) each

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        """One whole batch as a dict of tensors."""
        positions = np.asarray(positions, dtype=np.int64)
        rows = self.rows[positions]
        batch = {key: torch.from_numpy(array[rows]) for key, array in self.tokens.items()}
        return {**batch, "targets": torch.from_numpy(self.targets[positions]), "index": torch.from_numpy(rows)}

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([int(position)]).items()}


def classifier_name(setting: str) -> str:
    """The checkpoint name of the end-to-end text model of a text setting."""
    return f"text_classifier_{setting}"


def finetune_settings(settings: Settings) -> Settings:
    """The settings the end-to-end text model trains with: its own learning rate, schedule and epochs,
    and ``heads.TEXT_BLANK_POLICY`` (a blank label may contradict the findings the model reads)."""
    return dataclasses.replace(settings, lr=settings.text_finetune_lr, epochs=settings.text_finetune_epochs,
                               lr_schedule=settings.text_finetune_schedule, blank_policy=TEXT_BLANK_POLICY)


def build_text_classifier(settings: Settings, train_features: np.ndarray | None = None) -> TextClassifier:
    """A fresh copy of the settings' encoder with the head ``settings.text_finetune_head`` names.

    "mlp": a TextHead on the pooled embedding, standardised on the frozen training embeddings;
    "label_attention": a LabelAttentionHead on the token states (``train_features`` unused).
    """
    tokenizer, encoder = load_text_encoder(settings.text_model, settings, progress=False)
    if settings.text_finetune_head == "label_attention":
        head = LabelAttentionHead(encoder.config.hidden_size)
    else:
        head = TextHead(encoder.config.hidden_size, dropout=settings.dropout)
        if train_features is not None:
            head.set_feature_stats(train_features)
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler.requires_grad_(False)  # reports are pooled from last_hidden_state: the pooler is unused
    return TextClassifier(encoder.train(), head, tokenizer, text_pooling(settings), settings.max_text_length)


def run_text_finetune(settings: Settings, cohort, setting: str, train_features: np.ndarray | None = None,
                      progress: bool = True, resume: bool = True) -> dict:
    """Train encoder + head end to end on one text setting with ``training.fit``; returns the model and its run."""
    seed_everything(settings.seed)
    model = build_text_classifier(settings, train_features)
    tokens = tokenize_texts(model.tokenizer, cohort[text_column(setting)].fillna("").tolist(), settings.max_text_length)
    datasets = {split: TokenDataset(cohort, tokens, split) for split in SPLITS}
    loaders = {split: make_loader(ds, settings.batch_size, False, settings.seed) for split, ds in datasets.items()}
    fit_loader = make_loader(datasets["train"], settings.batch_size, True, settings.seed)
    checkpoint_dir = Path(settings.artifacts_dir) / "checkpoints"
    history = fit(model, fit_loader, loaders["validate"], finetune_settings(settings), checkpoint_dir,
                  classifier_name(setting), resume=resume, progress=progress)
    return {"model": model, "history": history, "loaders": loaders,
            "checkpoint": checkpoint_dir / f"{classifier_name(setting)}.pt"}


def saved_head(path: Path) -> str:
    """Which head a saved text classifier has ("mlp" or "label_attention"), read from its weights' names."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return "mlp" if any(name.startswith("head.mlp.") for name in state) else "label_attention"


def load_text_classifier(settings: Settings, setting: str, device=None) -> TextClassifier:
    """The trained end-to-end text model of a text setting, in eval mode (FileNotFoundError if it was never trained).

    The head is the one the checkpoint holds, whatever ``settings.text_finetune_head`` says now: a
    model trained before that setting changed still loads and explains as it was trained.
    """
    path = Path(settings.artifacts_dir) / "checkpoints" / f"{classifier_name(setting)}.pt"
    if path.exists():
        settings = dataclasses.replace(settings, text_finetune_head=saved_head(path))
    model = build_text_classifier(settings)
    load_checkpoint(path, model)
    device = device if isinstance(device, torch.device) else pick_device(device)
    return model.to(device).eval()
