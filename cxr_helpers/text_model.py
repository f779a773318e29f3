"""The text side: encoder loading (hub id or folder), the tiny offline BERT, cached embeddings,
text heads, and the TF-IDF baseline.

One code path loads every encoder: ``load_text_encoder`` calls ``AutoTokenizer.from_pretrained``
and ``AutoModel.from_pretrained`` on a hub id (CXR-BERT in the mimic profile) or on a local folder
(the phantom's ``tiny-bert``, built here offline, or a CXR-BERT copy saved with ``save_pretrained``).
The paper used the encoder "as is": its [CLS] embedding (or the mean over tokens, see
``DEFAULT_POOLING``) is computed once per report, cached in the artifacts folder, and a small MLP
head (``TextHead``) is trained on it with ``training.fit``. ``TextClassifier`` wraps encoder + head
for end-to-end fine-tuning and for explaining raw text (``text_probabilities``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxr_helpers.config import CXR_BERT, TEXT_SETTINGS, Settings, pick_device
from cxr_helpers.distributed import is_initialized, is_main_process, main_process_first
from cxr_helpers.labels import NUM_LABELS, apply_uncertainty_policy, label_index

TINY_BERT = "tiny-bert"  # settings.text_model in the phantom profile: built into <artifacts>/text/tiny-bert
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
POOLINGS = ("cls", "mean")
# The paper passes the [CLS] embedding on (the mimic default). An encoder pretrained with masked
# language modelling only (CXR-BERT-general, our tiny BERT) never trains [CLS] to summarise: on the
# 1,000-study phantom (findings+impression), a head on frozen tiny-BERT embeddings reached macro AUROC
# 0.68 (validation) / 0.66 (test) with [CLS] and 0.79 / 0.82 with the mean over tokens
# (benchmarks/bench_text_head.py), so the phantom profile uses "mean". ``settings.text_pooling``
# overrides either.
DEFAULT_POOLING = "cls"
HEAD_HIDDEN = 256
# Masked-LM steps for the tiny BERT: its loss plateaus near the unigram entropy for ~400 steps and
# then learns to use context (6.8 -> ~1.6 by 800 steps on 700 phantom reports, ~45 s of one CPU core).
MLM_STEPS, MLM_STEPS_FAST = 800, 100
SPLITS = ("train", "validate", "test")
EMBEDDING_CHUNK = 2048  # texts encoded between two saves of a resumable embedding run


# ----------------------------------------------------------------------------- names and paths
def text_column(setting: str) -> str:
    """Cohort column holding the cleaned text of a text setting ("findings_impression" or "indication")."""
    if setting not in TEXT_SETTINGS:
        raise ValueError(f"text setting must be one of {TEXT_SETTINGS}, got {setting!r}")
    return f"text_{setting}"


def text_dir(settings: Settings) -> Path:
    """Folder for the text artifacts: tiny BERT, embeddings."""
    return Path(settings.artifacts_dir) / "text"


def tiny_bert_dir(settings: Settings) -> Path:
    """Where the phantom's offline tiny BERT lives."""
    return text_dir(settings) / TINY_BERT


def encoder_short_name(name_or_path: str) -> str:
    """A metrics-friendly name for an encoder: "cxr_bert", "tiny_bert", or the folder/repo name."""
    if name_or_path == CXR_BERT:
        return "cxr_bert"
    if name_or_path == TINY_BERT:
        return "tiny_bert"
    name = re.sub(r"[^0-9a-z]+", "_", Path(str(name_or_path).rstrip("/")).name.lower()).strip("_")
    return name or "text_encoder"


def text_pooling(settings: Settings) -> str:
    """The pooling of token embeddings into one report vector ("cls" as in the paper, or "mean")."""
    pooling = settings.text_pooling
    if pooling not in POOLINGS:
        raise ValueError(f"text_pooling must be one of {POOLINGS}, got {pooling!r}")
    return pooling


def _looks_like_path(name_or_path: str) -> bool:
    text = str(name_or_path)
    return Path(text).expanduser().exists() or text.startswith(("/", "./", "../", "~", ".\\")) or "\\" in text


def resolve_text_model(name_or_path: str, settings: Settings) -> str:
    """The folder or hub id ``from_pretrained`` receives ("tiny-bert" means the artifacts folder)."""
    if name_or_path == TINY_BERT:
        return str(tiny_bert_dir(settings))
    if _looks_like_path(name_or_path):
        return str(Path(name_or_path).expanduser())
    return str(name_or_path)


# ----------------------------------------------------------------------------- loading
def quiet_transformers() -> None:
    """Silence transformers' info logging and download/save progress bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_text_encoder(name_or_path: str, settings: Settings, progress: bool = True):
    """(tokenizer, model) from a hub id or a local folder, always via ``from_pretrained``.

    "tiny-bert" resolves to ``<artifacts>/text/tiny-bert`` and is built from the cohort's training
    reports first if it is missing. The model is returned in eval mode on the CPU.
    """
    from transformers import AutoModel, AutoTokenizer

    quiet_transformers()
    if name_or_path == TINY_BERT and not (tiny_bert_dir(settings) / "config.json").exists():
        ensure_tiny_bert(settings, progress=progress)
    source = resolve_text_model(name_or_path, settings)
    is_local = _looks_like_path(source)
    if is_local and not Path(source).is_dir():
        raise FileNotFoundError(
            f"text model folder {source} does not exist. Point CXR_TEXT_MODEL at a folder written by "
            "`save_pretrained` (tokenizer + model), or at a hub id such as " + CXR_BERT
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source)
    except OSError as error:
        if is_local:
            raise OSError(f"could not load a tokenizer and model from the folder {source}: {error}") from error
        raise OSError(_offline_help(source)) from error
    model.eval()
    return tokenizer, model


def _hub_offline() -> bool:
    """True when huggingface_hub runs in offline mode (HF_HUB_OFFLINE=1)."""
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def _offline_help(hub_id: str) -> str:
    offline = _hub_offline()
    return (
        f"could not load the text model {hub_id!r} from the Hugging Face hub"
        + (" (HF_HUB_OFFLINE is set)" if offline else " (no connection, or not in the local cache)")
        + ". To proceed: on a machine with internet access run\n"
        f"    from transformers import AutoTokenizer, AutoModel\n"
        f"    AutoTokenizer.from_pretrained({hub_id!r}).save_pretrained('cxr-bert')\n"
        f"    AutoModel.from_pretrained({hub_id!r}).save_pretrained('cxr-bert')\n"
        "copy the 'cxr-bert' folder here and set CXR_TEXT_MODEL=/path/to/cxr-bert "
        "(or use the phantom profile, whose tiny BERT is built offline)."
    )


# ----------------------------------------------------------------------------- the tiny offline BERT
def training_reports(cohort) -> list[str]:
    """One text per training study (indication + findings + impression, cleaned): tiny BERT's corpus."""
    train = cohort[cohort["split"] == "train"].drop_duplicates("study_id")
    parts = [train[text_column(s)].fillna("").astype(str) for s in ("indication", "findings_impression")]
    texts = [" ".join(p for p in pair if p).strip() for pair in zip(*parts, strict=True)]
    return [t for t in texts if t]


def ensure_tiny_bert(settings: Settings, progress: bool = True) -> Path:
    """Build the tiny BERT into ``<artifacts>/text/tiny-bert`` from the cohort's training reports if missing."""
    out_dir = tiny_bert_dir(settings)
    if (out_dir / "config.json").exists():
        return out_dir
    from cxr_helpers.prepare import load_cohort

    cohort = load_cohort(settings.artifacts_dir)
    reports = training_reports(cohort)
    if not reports:
        raise ValueError(f"the cohort in {settings.artifacts_dir} has no training reports to build the tiny BERT from")
    steps = MLM_STEPS_FAST if settings.fast else MLM_STEPS
    if progress:
        print(f"Building the offline tiny BERT from {len(reports)} training reports into {out_dir} ...")
    return build_tiny_bert(reports, out_dir, seed=settings.seed, mlm_steps=steps, progress=progress)


def wordpiece_vocabulary(reports: Sequence[str], vocab_size: int = 3000, min_frequency: int = 2) -> list[str]:
    """A lower-case WordPiece vocabulary for ``reports``, the same on every run: tokens in id order.

    BERT's normaliser and pre-tokeniser (``tokenizers``) split the reports into words. The
    vocabulary holds the special tokens, every character seen (alone and as a "##" continuation,
    so any word can be spelled) and then the words seen at least ``min_frequency`` times, most
    frequent first, up to ``vocab_size``. A word outside it is split greedily into the longest
    known pieces, as WordPiece does. (``tokenizers``' WordPieceTrainer would also learn sub-word
    merges, but it breaks ties between equally frequent merges in an order that changes from one
    process to the next, and every number downstream would change with it.)
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for report in reports
                     for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(str(report))))
    characters = sorted({character for word in counts for character in word})
    tokens = [*SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters)]
    known = set(tokens)
    frequent = sorted((w for w, n in counts.items() if n >= min_frequency and w not in known), key=lambda w: (-counts[w], w))
    return tokens + frequent[: max(0, vocab_size - len(tokens))]


def wrap_tokenizer(vocabulary: Sequence[str], model_max_length: int = 512):
    """A transformers ``BertTokenizerFast`` ([CLS] ... [SEP], lower case) over a WordPiece vocabulary."""
    from transformers import BertTokenizerFast

    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
        return BertTokenizerFast.from_pretrained(folder, do_lower_case=True, model_max_length=model_max_length)


def mask_tokens(
    input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int, generator: torch.Generator,
    probability: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: 15% of tokens are targets; of those 80% -> [MASK], 10% random, 10% kept."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & ~special  # (B, L)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.clone()
    draw = torch.rand(input_ids.shape, generator=generator)
    inputs[chosen & (draw < 0.8)] = mask_id
    random_slots = chosen & (draw >= 0.8) & (draw < 0.9)
    inputs[random_slots] = torch.randint(len(SPECIAL_TOKENS), vocab_size, input_ids.shape, generator=generator)[random_slots]
    return inputs, labels


def random_window(ids: list[int], length: int, generator: torch.Generator) -> tuple[list[int], list[int]]:
    """A random stretch of at most ``length`` tokens of ``ids`` ([CLS] ... [SEP]) and its position ids.

    The stretch is re-wrapped in [CLS]/[SEP] and keeps its positions in the whole report, so short
    training windows still train every position embedding a full report uses later.
    """
    if len(ids) <= length:
        return ids, list(range(len(ids)))
    inner = ids[1:-1]
    start = int(torch.randint(len(inner) - (length - 2) + 1, (1,), generator=generator))
    window = [ids[0], *inner[start : start + length - 2], ids[-1]]
    return window, [0, *range(start + 1, start + length)]


def pretrain_mlm(
    mlm_model, tokenizer, reports: Sequence[str], steps: int = 800, batch_size: int = 32, window: int = 32,
    lr: float = 2e-3, mask_probability: float = 0.15, seed: int = 0, progress: bool = True,
) -> list[float]:
    """Masked-language-model pretraining of ``mlm_model`` (BertForMaskedLM) on ``reports``; returns losses.

    Each step reads a random ``window`` of tokens from ``batch_size`` random reports (short windows
    keep a CPU step cheap, and over many steps every part of a report is seen).
    """
    from tqdm.auto import tqdm

    encoded = tokenizer(list(reports))["input_ids"]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(mlm_model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(1, steps - warmup)))
    )
    special_ids = torch.tensor(tokenizer.all_special_ids)
    mlm_model.train()
    losses = []
    for _ in tqdm(range(steps), desc="tiny BERT MLM pretraining", disable=not progress):
        rows = torch.randint(len(encoded), (batch_size,), generator=generator).tolist()
        windows, positions = zip(*(random_window(encoded[r], window, generator) for r in rows), strict=True)
        batch = tokenizer.pad({"input_ids": list(windows)}, return_tensors="pt")  # (B, <= window)
        position_ids = torch.zeros_like(batch["input_ids"])
        for row, row_positions in enumerate(positions):
            position_ids[row, : len(row_positions)] = torch.tensor(row_positions)
        special = torch.isin(batch["input_ids"], special_ids)
        inputs, labels = mask_tokens(batch["input_ids"], special, tokenizer.mask_token_id, len(tokenizer), generator,
                                     mask_probability)
        loss = mlm_model(input_ids=inputs, attention_mask=batch["attention_mask"], position_ids=position_ids,
                         labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mlm_model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    mlm_model.eval()
    return losses


def build_tiny_bert(
    reports: Sequence[str], out_dir: Path, vocab_size: int = 3000, hidden_size: int = 128, num_layers: int = 2,
    num_heads: int = 2, seed: int = 0, mlm_steps: int = 800, window: int = 32, lr: float = 2e-3,
    mask_probability: float = 0.15, pretrain_dropout: float = 0.0, progress: bool = True,
) -> Path:
    """Train a WordPiece tokenizer and an MLM-pretrained tiny BERT on ``reports``; ``save_pretrained`` both.

    A stand-in for CXR-BERT (itself pretrained on MIMIC reports) that needs no download. Pass the
    TRAINING reports only, so nothing from validation or test leaks into the encoder.
    """
    from transformers import BertConfig, BertForMaskedLM, BertModel

    quiet_transformers()
    reports = [r for r in dict.fromkeys(str(r).strip() for r in reports) if r]
    if not reports:
        raise ValueError("build_tiny_bert needs at least one non-empty report")
    tokenizer = wrap_tokenizer(wordpiece_vocabulary(reports, vocab_size))
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=4 * hidden_size, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    # No dropout while pretraining: a few hundred steps on a small corpus underfit rather than overfit.
    mlm_model = BertForMaskedLM(BertConfig(
        **{**config.to_dict(), "hidden_dropout_prob": pretrain_dropout, "attention_probs_dropout_prob": pretrain_dropout}))
    losses = pretrain_mlm(mlm_model, tokenizer, reports, steps=mlm_steps, window=window, lr=lr,
                          mask_probability=mask_probability, seed=seed, progress=progress)
    encoder = BertModel(config)  # the encoder the workbook loads; its pooler is unused ([CLS] is read directly)
    encoder.load_state_dict(mlm_model.bert.state_dict(), strict=False)
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer.save_pretrained(staging)
    encoder.save_pretrained(staging)
    record = {"reports": len(reports), "vocab_size": len(tokenizer), "mlm_steps": mlm_steps, "seed": seed,
              "mlm_loss_first": losses[0] if losses else None, "mlm_loss_last": float(np.mean(losses[-20:])) if losses else None}
    (staging / "pretraining.json").write_text(json.dumps(record, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)  # the folder appears complete or not at all
    return out_dir


# ----------------------------------------------------------------------------- embeddings
def pool_hidden(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, pooling: str = DEFAULT_POOLING) -> torch.Tensor:
    """One vector per text from token states (B, L, H): the [CLS] token or the mean over real tokens."""
    if pooling == "cls":
        return last_hidden_state[:, 0]  # (B, H)
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)  # (B, L, 1)
        return (last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def compute_embeddings(
    texts: Sequence[str], tokenizer, model, batch_size: int = 32, max_length: int = 256,
    device: torch.device | str | None = None, progress: bool = True, pooling: str = DEFAULT_POOLING,
) -> np.ndarray:
    """Frozen-encoder embeddings (N, H) float32, in eval mode without gradients, batched."""
    from tqdm.auto import tqdm

    texts = [str(t) for t in texts]
    device = torch.device(device) if device is not None else pick_device()
    model.eval().to(device)
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths together: less padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    starts = range(0, len(texts), batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc="encoding texts", disable=not progress, total=len(starts)):
            rows = order[start : start + batch_size]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            hidden = model(**batch).last_hidden_state  # (B, L, H)
            out[rows] = pool_hidden(hidden, batch["attention_mask"], pooling).float().cpu().numpy()
    return out


def embeddings_paths(settings: Settings, setting: str) -> tuple[Path, Path]:
    """The cache file of a text setting and its JSON sidecar."""
    text_column(setting)  # validates the setting
    stem = text_dir(settings) / f"embeddings_{setting}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def texts_hash(texts: Iterable[str]) -> str:
    """SHA-256 over the texts in order (a changed cohort or cleaning changes it)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(str(text).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def model_fingerprint(source: str) -> str:
    """The hub id, or for a local folder a hash of its config and weight files (a rebuilt model differs)."""
    folder = Path(source)
    if not folder.is_dir():
        return source
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.suffix in (".json", ".safetensors", ".bin") and path.name != "pretraining.json":
            digest.update(path.name.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()


def embedding_key(settings: Settings, setting: str, texts: Sequence[str]) -> dict:
    """What the cached embeddings depend on; a change in any of these recomputes them."""
    source = resolve_text_model(settings.text_model, settings)
    return {
        "model": settings.text_model,
        "model_source": source,
        "model_fingerprint": model_fingerprint(source),
        "setting": setting,
        "max_length": settings.max_text_length,
        "pooling": text_pooling(settings),
        "n_rows": len(texts),
        "texts_sha256": texts_hash(texts),
    }


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def cached_embeddings(settings: Settings, cohort, setting: str, progress: bool = True, encoder=None) -> np.ndarray:
    """Frozen-encoder embeddings (N, H) of the cohort's ``text_<setting>``, rows = cohort rows, cached.

    The cache ``<artifacts>/text/embeddings_<setting>.npy`` is reused when its sidecar JSON matches
    (model, setting, max_length, pooling, rows, texts hash); otherwise it is recomputed. Identical texts
    are encoded once, and a run saves its progress every few thousand texts so it can resume.
    ``encoder`` = (tokenizer, model) skips loading ``settings.text_model`` again.
    """
    from tqdm.auto import tqdm

    if settings.text_model == TINY_BERT:
        ensure_tiny_bert(settings, progress=progress)  # before the key: the key hashes the built weights
    texts = cohort[text_column(setting)].fillna("").astype(str).tolist()
    key = embedding_key(settings, setting, texts)
    array_path, sidecar_path = embeddings_paths(settings, setting)
    sidecar = _read_json(sidecar_path)
    if sidecar.get("key") == key and sidecar.get("complete") and array_path.exists():
        return np.load(array_path)
    first_row: dict[str, int] = {}
    inverse = np.array([first_row.setdefault(t, len(first_row)) for t in texts], dtype=np.int64)  # row -> unique
    unique = list(first_row)
    partial_path = array_path.with_suffix(".partial.npy")
    done = int(sidecar.get("done", 0)) if sidecar.get("key") == key and partial_path.exists() else 0
    tokenizer, model = encoder if encoder is not None else load_text_encoder(settings.text_model, settings, progress)
    hidden = model.config.hidden_size
    array_path.parent.mkdir(parents=True, exist_ok=True)
    mode = "r+" if done else "w+"
    partial = np.lib.format.open_memmap(partial_path, mode=mode, dtype=np.float32, shape=(len(unique), hidden))
    with tqdm(total=len(unique), initial=done, desc=f"embeddings ({setting})", disable=not progress) as bar:
        for start in range(done, len(unique), EMBEDDING_CHUNK):
            chunk = unique[start : start + EMBEDDING_CHUNK]
            partial[start : start + len(chunk)] = compute_embeddings(
                chunk, tokenizer, model, batch_size=settings.batch_size, max_length=settings.max_text_length,
                progress=False, pooling=key["pooling"],
            )
            partial.flush()
            done = start + len(chunk)
            sidecar_path.write_text(json.dumps({"key": key, "complete": False, "done": done}, indent=2))
            bar.update(len(chunk))
    features = np.ascontiguousarray(partial[inverse], dtype=np.float32)  # (N, H), rows = cohort rows
    del partial
    np.save(array_path, features)
    partial_path.unlink(missing_ok=True)
    sidecar_path.write_text(json.dumps({"key": key, "complete": True, "done": len(unique), "shape": list(features.shape)}, indent=2))
    return features


# ----------------------------------------------------------------------------- models
class TextHead(nn.Module):
    """MLP on a frozen text embedding: (B, H) -> hidden -> 14 logits, dropout 0.5.

    Inputs are first standardised with per-feature training statistics (buffers ``feature_mean`` and
    ``feature_std``, identity until ``set_feature_stats`` is called): frozen embeddings have small,
    uneven scales, and without this the head needs many more epochs to learn the same thing.
    """

    input_keys = ("text_features",)

    def __init__(self, in_features: int, hidden: int = HEAD_HIDDEN, dropout: float = 0.5, num_labels: int = NUM_LABELS):
        super().__init__()
        self.in_features = in_features
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_std", torch.ones(in_features))
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_labels),
        )

    def set_feature_stats(self, train_features: np.ndarray | torch.Tensor) -> TextHead:
        """Standardise inputs with the mean and std of the TRAINING embeddings (N, H)."""
        features = torch.as_tensor(np.asarray(train_features), dtype=torch.float32)
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise ValueError(f"train_features must be (N, {self.in_features}), got {tuple(features.shape)}")
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp(min=1e-6))
        return self

    def forward(self, text_features: torch.Tensor) -> torch.Tensor:
        standardised = (text_features - self.feature_mean) / self.feature_std  # (B, H)
        return self.mlp(standardised)  # (B, 14) logits


class TextClassifier(nn.Module):
    """Encoder + pooling + ``TextHead`` end to end: for fine-tuning (an option) and for SHAP on raw text."""

    input_keys = ("input_ids", "attention_mask")

    def __init__(self, encoder: nn.Module, head: TextHead, tokenizer=None, pooling: str = DEFAULT_POOLING,
                 max_length: int = 256, freeze_encoder: bool = False):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.tokenizer = tokenizer  # not a module: used by predict_texts only
        self.pooling = pooling
        self.max_length = max_length
        self.encoder_frozen = freeze_encoder
        for parameter in encoder.parameters():
            parameter.requires_grad = not freeze_encoder

    def train(self, mode: bool = True) -> TextClassifier:
        """Like ``nn.Module.train``, but a frozen encoder stays in eval mode (no dropout): used "as is"."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled text embedding (B, H)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        return pool_hidden(hidden, attention_mask, self.pooling)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(input_ids, attention_mask))  # (B, 14) logits

    def predict_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Probabilities (N, 14) for raw texts (needs the tokenizer given at construction)."""
        if self.tokenizer is None:
            raise ValueError("TextClassifier.predict_texts needs the tokenizer: pass tokenizer= when building it")
        return _token_probabilities(self, self.tokenizer, texts, batch_size, self.max_length)


def _token_probabilities(model: nn.Module, tokenizer, texts: Sequence[str], batch_size: int, max_length: int) -> np.ndarray:
    device = next(model.parameters()).device
    texts = [str(t) for t in texts]
    out = np.zeros((len(texts), NUM_LABELS), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
            out[start : start + len(logits)] = torch.sigmoid(logits).float().cpu().numpy()
    model.train(was_training)
    return out


def text_probabilities(model_or_head: nn.Module, encoder: nn.Module | None, tokenizer, texts: Sequence[str],
                       settings: Settings) -> np.ndarray:
    """Probabilities (N, 14) for raw texts: the function SHAP explains.

    A ``TextHead`` (input_keys ("text_features",)) gets the frozen ``encoder``'s pooled embeddings;
    a ``TextClassifier`` (input_keys ("input_ids", "attention_mask")) takes tokens directly.
    """
    texts = [str(t) for t in (texts.tolist() if isinstance(texts, np.ndarray) else texts)]
    keys = tuple(getattr(model_or_head, "input_keys", ()))
    if keys == TextClassifier.input_keys:
        return _token_probabilities(model_or_head, tokenizer, texts, settings.batch_size, settings.max_text_length)
    if keys != TextHead.input_keys:
        raise TypeError(f"text_probabilities needs a TextHead or TextClassifier, got input_keys {keys}")
    if encoder is None:
        raise ValueError("text_probabilities with a TextHead needs the frozen encoder that made its features")
    device = next(model_or_head.parameters()).device
    features = compute_embeddings(texts, tokenizer, encoder, batch_size=settings.batch_size,
                                  max_length=settings.max_text_length, device=device, progress=False,
                                  pooling=text_pooling(settings))
    was_training = model_or_head.training
    model_or_head.eval()
    with torch.no_grad():
        probabilities = torch.sigmoid(model_or_head(text_features=torch.from_numpy(features).to(device)))
    model_or_head.train(was_training)
    return probabilities.float().cpu().numpy()


# ----------------------------------------------------------------------------- TF-IDF baseline
@dataclasses.dataclass
class TfidfBaseline:
    """TF-IDF features + one logistic regression per label (a constant prevalence where train has one class)."""

    vectorizer: object
    classifiers: list  # one LogisticRegression per label, or None
    prevalence: np.ndarray  # (14,) training prevalence under the uncertainty policy

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Logits (N, 14) for raw texts."""
        features = self.vectorizer.transform([str(t) for t in texts])
        out = np.zeros((features.shape[0], len(self.classifiers)), dtype=np.float32)
        for j, classifier in enumerate(self.classifiers):
            if classifier is None:
                p = float(np.clip(self.prevalence[j], 1e-4, 1 - 1e-4))
                out[:, j] = np.log(p / (1 - p))
            else:
                out[:, j] = classifier.decision_function(features)
        return out

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities (N, 14) for raw texts."""
        return 1.0 / (1.0 + np.exp(-self.logits(texts)))

    def top_words(self, label: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words (or word pairs) with the largest coefficients for ``label``."""
        classifier = self.classifiers[label_index(label)]
        if classifier is None:
            return []
        vocabulary = self.vectorizer.get_feature_names_out()
        coefficients = classifier.coef_[0]
        top = np.argsort(-coefficients, kind="stable")[:k]
        return [(str(vocabulary[i]), float(coefficients[i])) for i in top]


def fit_tfidf(train_texts: Sequence[str], train_targets: np.ndarray, policy: str = "zeros", seed: int = 0,
              C: float = 4.0) -> TfidfBaseline:
    """Fit TF-IDF (words and word pairs) + one-vs-rest logistic regression on coded targets (N, 14)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = [str(t) for t in train_texts]
    targets = np.asarray(train_targets)
    if targets.shape != (len(texts), NUM_LABELS):
        raise ValueError(f"train_targets must have shape ({len(texts)}, {NUM_LABELS}), got {targets.shape}")
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2 if len(texts) >= 100 else 1, sublinear_tf=True)
    features = vectorizer.fit_transform(texts)
    binary, mask = apply_uncertainty_policy(targets, policy)
    classifiers, prevalence = [], np.full(NUM_LABELS, 0.5)
    for j in range(NUM_LABELS):
        y = binary[mask[:, j], j]
        prevalence[j] = y.mean() if len(y) else 0.5
        if len(np.unique(y)) < 2:  # one class (or no labelled row) in train: predict the prevalence
            classifiers.append(None)
            continue
        classifier = LogisticRegression(C=C, max_iter=2000, random_state=seed)
        classifiers.append(classifier.fit(features[mask[:, j]], y))
    return TfidfBaseline(vectorizer, classifiers, prevalence)


def tfidf_baseline(train_texts: Sequence[str], train_targets: np.ndarray, eval_texts: Sequence[str],
                   policy: str = "zeros") -> np.ndarray:
    """Logits (M, 14) for ``eval_texts`` from a TF-IDF + logistic regression model fit on the training texts."""
    return fit_tfidf(train_texts, train_targets, policy).logits(eval_texts)


# ----------------------------------------------------------------------------- training (notebook 03's job)
class TextFeatureDataset(torch.utils.data.Dataset):
    """Cached text embeddings of one split: batches {"text_features" (B, H), "targets" (B, 14), "index" (B,)}.

    Needs no image cache, so the text stage runs from cohort.csv alone.
    """

    def __init__(self, cohort, text_features: np.ndarray, split: str | None = None):
        from cxr_helpers.datasets import cohort_targets

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


def head_settings(settings: Settings) -> Settings:
    """The settings a text head trains with: the head's own learning rate (``settings.text_head_lr``: it starts from random weights, so it needs more than 1e-5)."""
    return dataclasses.replace(settings, lr=settings.text_head_lr)


def text_loaders(settings: Settings, cohort, text_features: np.ndarray) -> dict:
    """"fit" (shuffled by seed and epoch) and one unshuffled loader per split over cached embeddings."""
    from cxr_helpers.datasets import make_loader

    datasets = {split: TextFeatureDataset(cohort, text_features, split) for split in SPLITS}
    loaders = {"fit": make_loader(datasets["train"], settings.batch_size, True, settings.seed)}
    loaders.update({split: make_loader(d, settings.batch_size, False, settings.seed) for split, d in datasets.items()})
    return loaders


def model_names(settings: Settings, setting: str) -> dict[str, str]:
    """Names in metrics/text.json, e.g. {"tfidf": "tfidf_indication", "head": "tiny_bert_head_indication"}."""
    return {"tfidf": f"tfidf_{setting}", "head": f"{encoder_short_name(settings.text_model)}_head_{setting}"}


def split_rows(cohort) -> dict[str, np.ndarray]:
    """Cohort row positions per split."""
    return {split: np.flatnonzero(cohort["split"].to_numpy() == split) for split in SPLITS}


def run_tfidf(settings: Settings, cohort, setting: str) -> tuple[TfidfBaseline, dict[str, dict], np.ndarray]:
    """Fit the TF-IDF baseline on the training split; (model, figures per split, test logits)."""
    from cxr_helpers.datasets import cohort_targets
    from cxr_helpers.metrics import evaluate

    texts = cohort[text_column(setting)].fillna("").astype(str).to_numpy()
    targets = cohort_targets(cohort)
    rows = split_rows(cohort)
    model = fit_tfidf(texts[rows["train"]], targets[rows["train"]], settings.uncertainty_policy, settings.seed)
    logits = {split: model.logits(texts[r]) for split, r in rows.items()}
    results = {split: evaluate(logits[split], targets[r], settings.uncertainty_policy) for split, r in rows.items()}
    return model, results, logits["test"]


def run_text_head(settings: Settings, cohort, setting: str, text_features: np.ndarray, progress: bool = True,
                  resume: bool = True) -> dict:
    """Train a ``TextHead`` on cached embeddings with ``training.fit``; evaluate it on every split."""
    from cxr_helpers.config import seed_everything
    from cxr_helpers.metrics import evaluate
    from cxr_helpers.training import fit, predict

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
    return {"model": head, "history": history, "metrics": results, "test": test,
            "checkpoint": checkpoint_dir / f"{name}.pt"}


def train_text(settings: Settings, progress: bool = True, resume: bool = True) -> dict:
    """Notebook 03's whole job for both text settings: TF-IDF and frozen encoder + TextHead.

    Reads cohort.csv; writes text/ (tiny BERT in the phantom, embeddings), checkpoints/text_head_<setting>.pt,
    metrics/text.json (TF-IDF, heads, trivial baselines) and predictions/text_<setting>_test.csv
    (+ tfidf_<setting>_test.csv). Returns {setting: {"tfidf": figures per split, "tfidf_model": TfidfBaseline,
    "head": run_text_head(...)}}.
    """
    from cxr_helpers.datasets import cohort_targets
    from cxr_helpers.metrics import sigmoid, write_baselines, write_metrics
    from cxr_helpers.prepare import load_cohort
    from cxr_helpers.training import save_predictions

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
            save_predictions(predictions / f"tfidf_{setting}_test.csv", cohort.iloc[rows["test"]],
                             sigmoid(tfidf_test), targets[rows["test"]])
        with main_process_first():  # rank 0 builds the tiny BERT and the cache; the others then read them
            if encoder is None and not _embeddings_ready(settings, cohort, setting):
                encoder = load_text_encoder(settings.text_model, settings, progress)
            features = cached_embeddings(settings, cohort, setting, progress, encoder)
        head = run_text_head(settings, cohort, setting, features, progress, resume)
        if main:
            write_metrics(metrics_path, names["head"], head["metrics"])
            logits, test_targets, test_rows = head["test"]
            save_predictions(predictions / f"text_{setting}_test.csv", cohort.iloc[test_rows], sigmoid(logits),
                             test_targets)
        outcome[setting] = {"tfidf": tfidf_results, "tfidf_model": tfidf_model, "head": head}
    return outcome


def _embeddings_ready(settings: Settings, cohort, setting: str) -> bool:
    """True when ``cached_embeddings`` would read the cache without loading the encoder."""
    if settings.text_model == TINY_BERT and not (tiny_bert_dir(settings) / "config.json").exists():
        return False
    texts = cohort[text_column(setting)].fillna("").astype(str).tolist()
    array_path, sidecar_path = embeddings_paths(settings, setting)
    sidecar = _read_json(sidecar_path)
    return bool(sidecar.get("complete")) and array_path.exists() and sidecar.get("key") == embedding_key(settings, setting, texts)


def leakage_table(settings: Settings, split: str = "test"):
    """Macro AUROC and masked accuracy of each text model (rows) on each text setting (columns), from text.json."""
    import pandas as pd

    from cxr_helpers.metrics import read_metrics

    models = read_metrics(Path(settings.artifacts_dir) / "metrics" / "text.json")["models"]
    rows = []
    for setting in TEXT_SETTINGS:
        for name in model_names(settings, setting).values():
            if name in models and split in models[name]:
                figures = models[name][split]
                rows.append({"model": name.removesuffix(f"_{setting}"), "setting": setting,
                             "macro AUROC": figures["macro_auroc"], "accuracy": figures["accuracy"]})
    if not rows:
        raise FileNotFoundError("metrics/text.json holds no text models yet; run train_text (notebook 03) first")
    return pd.DataFrame(rows).pivot(index="model", columns="setting")
