"""A report encoder: loaded with ``from_pretrained``, pooled to one vector per report, run frozen.

One code path loads every encoder: ``load_pretrained_encoder`` calls ``AutoTokenizer`` and
``AutoModel.from_pretrained`` on a hub id (CXR-BERT in the mimic profile) or on a local folder
(the phantom's tiny BERT, or a CXR-BERT copy saved with ``save_pretrained``). The paper used
the encoder "as is": its [CLS] embedding (or the mean over tokens, see ``DEFAULT_POOLING``) is
computed once per report by ``compute_embeddings``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from cxr_helpers.config import CXR_BERT, Settings, pick_device

POOLINGS = ("cls", "mean")
# The paper passes the [CLS] embedding on (the mimic default). An encoder pretrained with masked
# language modelling only (CXR-BERT-general, our tiny BERT) never trains [CLS] to summarise: on the
# 1,000-study phantom (findings+impression), a head on frozen tiny-BERT embeddings reached macro AUROC
# 0.68 (validation) / 0.66 (test) with [CLS] and 0.79 / 0.82 with the mean over tokens
# (benchmarks/bench_text_head.py), so the phantom profile uses "mean". ``settings.text_pooling``
# overrides either.
DEFAULT_POOLING = "cls"


def text_pooling(settings: Settings) -> str:
    """The pooling of token embeddings into one report vector ("cls" as in the paper, or "mean")."""
    pooling = settings.text_pooling
    if pooling not in POOLINGS:
        raise ValueError(f"text_pooling must be one of {POOLINGS}, got {pooling!r}")
    return pooling


def quiet_transformers() -> None:
    """Silence transformers' info logging and download/save progress bars."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _looks_like_path(name_or_path: str) -> bool:
    text = str(name_or_path)
    return Path(text).expanduser().exists() or text.startswith(("/", "./", "../", "~", ".\\")) or "\\" in text


def load_pretrained_encoder(source: str):
    """(tokenizer, model) from a hub id or a local folder via ``from_pretrained``; the model in eval mode.

    A missing folder or an unreachable hub id gives an error that says what to do instead.
    """
    quiet_transformers()
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
    return tokenizer, model.eval()


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
