"""The encoder the settings name, and its report embeddings cached per cohort row.

``load_text_encoder(settings.text_model, settings)`` resolves "tiny-bert" (built into the
artifacts folder if missing), a local folder or a hub id. ``cached_embeddings`` encodes the
cohort's cleaned text of a text setting once, into ``<artifacts>/text/embeddings_<setting>.npy``,
and reuses it while its key (model and its weights, setting, length, pooling, texts) is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cxr_helpers.artifacts import folder_sha256, read_json, sha256_hex, write_json, write_npy
from cxr_helpers.config import CXR_BERT, Settings
from cxr_helpers.reports import text_column
from cxr_helpers.text.encoder import (
    _looks_like_path,
    compute_embeddings,
    load_pretrained_encoder,
    text_pooling,
)
from cxr_helpers.text.tiny_bert import TINY_BERT, ensure_tiny_bert, text_dir, tiny_bert_dir

EMBEDDING_CHUNK = 2048  # texts encoded between two saves of a resumable embedding run


def encoder_short_name(name_or_path: str) -> str:
    """A metrics-friendly name for an encoder: "cxr_bert", "tiny_bert", or the folder/repo name."""
    if name_or_path == CXR_BERT:
        return "cxr_bert"
    if name_or_path == TINY_BERT:
        return "tiny_bert"
    name = re.sub(r"[^0-9a-z]+", "_", Path(str(name_or_path).rstrip("/")).name.lower()).strip("_")
    return name or "text_encoder"


def resolve_text_model(name_or_path: str, settings: Settings) -> str:
    """The folder or hub id ``from_pretrained`` receives ("tiny-bert" means the artifacts folder)."""
    if name_or_path == TINY_BERT:
        return str(tiny_bert_dir(settings))
    if _looks_like_path(name_or_path):
        return str(Path(name_or_path).expanduser())
    return str(name_or_path)


def load_text_encoder(name_or_path: str, settings: Settings, progress: bool = True):
    """(tokenizer, model) for a hub id, a local folder, or "tiny-bert" (built from the training reports if missing).

    Always through ``from_pretrained``; the model is returned in eval mode on the CPU.
    """
    if name_or_path == TINY_BERT:
        ensure_tiny_bert(settings, progress=progress)
    return load_pretrained_encoder(resolve_text_model(name_or_path, settings))


def embeddings_paths(settings: Settings, setting: str) -> tuple[Path, Path]:
    """The cache file of a text setting and its JSON sidecar."""
    text_column(setting)  # validates the setting
    stem = text_dir(settings) / f"embeddings_{setting}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def texts_hash(texts: Iterable[str]) -> str:
    """SHA-256 over the texts in order (a changed cohort or cleaning changes it)."""
    return sha256_hex(str(text) for text in texts)


def model_fingerprint(source: str) -> str:
    """The hub id, or for a local folder a hash of its config and weight files (a rebuilt model differs)."""
    if not Path(source).is_dir():
        return source
    return folder_sha256(source, (".json", ".safetensors", ".bin"), skip=("pretraining.json",))


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


def cached_embeddings(settings: Settings, cohort, setting: str, progress: bool = True, encoder=None) -> np.ndarray:
    """Frozen-encoder embeddings (N, H) of the cohort's ``text_<setting>``, rows = cohort rows, cached.

    The cache ``<artifacts>/text/embeddings_<setting>.npy`` is reused when its sidecar JSON matches
    (model, setting, max_length, pooling, rows, texts hash); otherwise it is recomputed. Identical texts
    are encoded once, and a run saves its progress every few thousand texts so it can resume.
    ``encoder`` = (tokenizer, model) skips loading ``settings.text_model`` again.
    """
    if settings.text_model == TINY_BERT:
        ensure_tiny_bert(settings, progress=progress)  # before the key: the key hashes the built weights
    texts = cohort[text_column(setting)].fillna("").astype(str).tolist()
    key = embedding_key(settings, setting, texts)
    array_path, sidecar_path = embeddings_paths(settings, setting)
    sidecar = read_json(sidecar_path, {})
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
            write_json(sidecar_path, {"key": key, "complete": False, "done": done})
            bar.update(len(chunk))
    features = np.ascontiguousarray(partial[inverse], dtype=np.float32)  # (N, H), rows = cohort rows
    del partial
    write_npy(array_path, features)
    partial_path.unlink(missing_ok=True)
    write_json(sidecar_path, {"key": key, "complete": True, "done": len(unique), "shape": list(features.shape)})
    return features


def embeddings_ready(settings: Settings, cohort, setting: str) -> bool:
    """True when ``cached_embeddings`` would read the cache without loading the encoder."""
    if settings.text_model == TINY_BERT and not (tiny_bert_dir(settings) / "config.json").exists():
        return False
    texts = cohort[text_column(setting)].fillna("").astype(str).tolist()
    array_path, sidecar_path = embeddings_paths(settings, setting)
    sidecar = read_json(sidecar_path, {})
    return bool(sidecar.get("complete")) and array_path.exists() and sidecar.get("key") == embedding_key(settings, setting, texts)
