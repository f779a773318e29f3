"""Fusion of the X-ray and its report: the paper's late fusion and two strategies it left for later.

One class, ``FusionModel``, holds every strategy behind one interface:

- ``concat`` (the paper): ResNet-18 pooled features (512) and the report's embedding (H; [CLS]
  in the paper, ``settings.text_pooling`` here)
  are concatenated (512 + H) and a 2-layer MLP (hidden, ReLU, dropout) gives 14 logits.
- ``decision`` (decision-level fusion): the image model's own head and an MLP on the report
  embedding each give 14 logits; the model returns their average. Both heads train jointly.
- ``film`` (intermediate fusion): the report embedding produces a per-channel scale and shift
  (FiLM) applied to the layer3 and layer4 feature maps; pooled features -> the image head.
  FiLM starts as the identity, so at initialisation the model is exactly the image model.

The text side is either *frozen and cached* (``text_encoder=None``: batches carry the cached
embeddings ``text_features`` (B, H) that notebook 03 computed) or *end to end* (the encoder is a
submodule fed ``input_ids`` / ``attention_mask``, as in the paper, where no layer was frozen).

``train_fusion`` is notebook 04's whole job. Its strategy table trains every strategy under one
protocol, with both encoders frozen (the image encoder from notebook 02, the text encoder from
notebook 03) and their outputs cached, so only the fusion layers learn; then it trains the
paper's model once end to end (nothing frozen). Every model is also scored with one modality
removed (``modality_ablation``), which shows which modality it leans on. A finished run is reused
only while its inputs (image checkpoint, cohort, report embeddings) are unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from cxr_helpers.config import TEXT_SETTINGS, seed_everything
from cxr_helpers.distributed import (
    barrier,
    gather_rows,
    is_main_process,
    main_process_first,
    shard,
    sum_across_ranks,
)
from cxr_helpers.image_model import FEATURE_DIM, ImageClassifier
from cxr_helpers.labels import CHEXPERT_LABELS, NUM_LABELS

STRATEGIES = ("concat", "decision", "film")
TEXT_REMOVALS = ("empty_report", "zeros")
ABLATION_CONDITIONS = ("full", "text_removed", "image_blanked")
MIN_GAIN_FOR_SHARE = 0.01  # leakage_table: below this gain (in the metric's units) no share is computed
LAYER3_CHANNELS = 256  # ResNet-18 layer3 output channels (layer4: FEATURE_DIM = 512)
# With both encoders frozen only fresh fusion layers learn; like the text heads of notebook 03 they
# need a larger step than the paper's fine-tuning rate of 1e-5 (``settings.fusion_head_lr`` overrides).
FROZEN_ENCODERS_LR = 1e-3
CACHE_LIMIT_BYTES = 2 * 1024**3  # above this the layer3 maps for FiLM are not cached (computed per step)
END_TO_END_SUFFIX = "_end_to_end"
MADE_BY_IMAGE = "notebook 02 (notebooks/02_image_baseline.ipynb) or `python -m cxr_helpers train image`"
MADE_BY_TEXT = "notebook 03 (notebooks/03_text_baseline.ipynb) or `python -m cxr_helpers train text`"
# Checkpoint meta keys ``load_fusion_model`` rebuilds a model from.
META_KEYS = ("strategy", "text_dim", "hidden", "dropout", "text_setting", "text_model", "image_size",
             "end_to_end", "freeze_image", "pooling", "max_text_length")


# ----------------------------------------------------------------------------- building blocks
def fusion_name(strategy: str, text_setting: str, end_to_end: bool = False) -> str:
    """The model name used for checkpoints, predictions and metrics: fusion_<strategy>_<setting>[_end_to_end]."""
    check_strategy(strategy)
    if text_setting not in TEXT_SETTINGS:
        raise ValueError(f"text setting must be one of {TEXT_SETTINGS}, got {text_setting!r}")
    return f"fusion_{strategy}_{text_setting}" + (END_TO_END_SUFFIX if end_to_end else "")


def check_strategy(strategy: str) -> str:
    """``strategy`` if it is one of STRATEGIES, else a clear error."""
    if strategy not in STRATEGIES:
        raise ValueError(f"fusion strategy must be one of {STRATEGIES}, got {strategy!r}")
    return strategy


def mlp_head(in_features: int, hidden: int, dropout: float, num_labels: int = NUM_LABELS) -> nn.Sequential:
    """The paper's 2-layer feed-forward head: Linear -> ReLU -> Dropout -> Linear (logits)."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_labels),
    )


class FiLM(nn.Module):
    """Feature-wise linear modulation: maps (B, C, h, w) * (1 + gamma(text)) + beta(text), per channel.

    The projection starts at zero, so the layer starts as the identity: the conditioned network
    begins exactly where the image model stopped, and learns how far the report should move it.
    """

    def __init__(self, text_dim: int, channels: int):
        super().__init__()
        self.project = nn.Linear(text_dim, 2 * channels)  # text (B, H) -> [gamma | beta] (B, 2C)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, maps: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.project(text).chunk(2, dim=1)  # (B, C) each
        return maps * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]  # (B, C, h, w)


# ----------------------------------------------------------------------------- the model
class FusionModel(nn.Module):
    """Image encoder + text embedding -> 14 logits, by one of STRATEGIES.

    ``input_keys`` (what ``training.fit`` feeds ``forward``): ("image", "text_features") with a frozen,
    cached text encoder; ("image", "input_ids", "attention_mask") end to end. A model whose image
    encoder is frozen can also train from cached image-encoder outputs (``use_cached_image``): then
    "image" becomes "image_features". Parameters and state dict are the same in every mode.
    """

    def __init__(
        self,
        image_model: ImageClassifier,
        text_dim: int,
        strategy: str = "concat",
        hidden: int = 512,
        dropout: float = 0.5,
        text_encoder: nn.Module | None = None,
        pooling: str = "cls",
        freeze_image: bool = False,
        image_size: int | None = None,
    ):
        super().__init__()
        self.strategy = check_strategy(strategy)
        self.text_dim, self.hidden, self.dropout, self.pooling = int(text_dim), int(hidden), float(dropout), pooling
        self.image_size = image_size
        self.image_model = image_model
        self.text_encoder = text_encoder
        if text_encoder is not None and getattr(getattr(text_encoder, "config", None), "hidden_size", text_dim) != text_dim:
            raise ValueError(f"text_dim {text_dim} differs from the encoder's hidden size {text_encoder.config.hidden_size}")
        if strategy == "concat":
            self.head = mlp_head(FEATURE_DIM + self.text_dim, self.hidden, self.dropout)  # (B, 512 + H) -> (B, 14)
        elif strategy == "decision":
            self.text_head = mlp_head(self.text_dim, self.hidden, self.dropout)  # (B, H) -> (B, 14)
        else:
            self.film3 = FiLM(self.text_dim, LAYER3_CHANNELS)
            self.film4 = FiLM(self.text_dim, FEATURE_DIM)
        self.cached_image = False
        self._text_tools: tuple = ()  # (tokenizer, frozen encoder or None): a tuple, so not a submodule
        self.max_text_length = 256
        self.set_image_frozen(freeze_image)
        self._freeze_unused()

    def _freeze_unused(self) -> None:
        """Stop training the parts no forward pass uses: the image model's fc head (read by decision and
        FiLM only) and the text encoder's pooler (reports are pooled from ``last_hidden_state``).

        Training is the same either way (they get no gradient), but DistributedDataParallel
        requires every trainable parameter to take part in the loss.
        """
        unused = [self.text_encoder.pooler] if getattr(self.text_encoder, "pooler", None) is not None else []
        if self.strategy == "concat":
            unused.append(self.image_head)
        for module in unused:
            module.requires_grad_(False)

    # -- keys and modes
    @property
    def input_keys(self) -> tuple[str, ...]:
        image_key = "image_features" if self.cached_image else "image"
        text_keys = ("input_ids", "attention_mask") if self.text_encoder is not None else ("text_features",)
        return (image_key, *text_keys)

    @property
    def end_to_end(self) -> bool:
        """True when the text encoder is part of the model (and trains with it)."""
        return self.text_encoder is not None

    @property
    def image_head(self) -> nn.Module:
        """The image model's Dropout + Linear(512, 14) head, used by ``decision`` and ``film``."""
        return self.image_model.backbone.fc

    def _encoder_stages(self) -> list[nn.Module]:
        """The image encoder's stages (everything of the ResNet but its fc head)."""
        return [m for name, m in self.image_model.backbone.named_children() if name != "fc"]

    def set_image_frozen(self, frozen: bool) -> None:
        """Freeze (or unfreeze) every image-encoder stage; a frozen encoder's BatchNorm stays in eval mode."""
        self.image_frozen = bool(frozen)
        for stage in self._encoder_stages():
            for parameter in stage.parameters():
                parameter.requires_grad = not frozen
        if not frozen:
            self.cached_image = False
        self.train(self.training)

    def use_cached_image(self, enabled: bool = True) -> FusionModel:
        """Read cached image-encoder outputs ("image_features", see ``image_trunk``) instead of images."""
        if enabled and not self.image_frozen:
            raise ValueError("cached image features need a frozen image encoder (set_image_frozen(True))")
        self.cached_image = bool(enabled)
        return self

    def train(self, mode: bool = True) -> FusionModel:
        """Like nn.Module.train, but a frozen image encoder (BatchNorm included) always stays in eval mode."""
        super().train(mode)
        if getattr(self, "image_frozen", False):
            for stage in self._encoder_stages():
                stage.eval()
        return self

    def image_target_layer(self) -> nn.Module:
        """The last convolutional block (ResNet layer4): the Grad-CAM target."""
        return self.image_model.backbone.layer4

    # -- the two encoders
    @property
    def trunk_kind(self) -> str:
        """What ``image_trunk`` returns: "pooled" (B, 512) features, or "layer3" maps (B, 256, S/16, S/16) for FiLM."""
        return "layer3" if self.strategy == "film" else "pooled"

    def image_trunk(self, image: torch.Tensor) -> torch.Tensor:
        """The image-encoder part the report does not touch: pooled features, or layer3 maps for FiLM."""
        if self.strategy != "film":
            return self.image_model.features(image)  # (B, 512)
        return layer3_maps(self.image_model, image)  # (B, 256, S/16, S/16)

    def encode_text(
        self,
        text_features: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The report embedding (B, H): the cached features as they are, or the encoder's pooled output."""
        if input_ids is not None:
            if self.text_encoder is None:
                raise ValueError("this fusion model reads cached text embeddings (text_features), not input_ids")
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            from cxr_helpers.text_model import pool_hidden

            hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
            return pool_hidden(hidden, attention_mask, self.pooling)  # (B, H)
        if text_features is None:
            raise ValueError(f"encode_text needs {'input_ids' if self.end_to_end else 'text_features'}")
        if text_features.shape[-1] != self.text_dim:
            raise ValueError(f"text features have {text_features.shape[-1]} dimensions, the model expects {self.text_dim}")
        return text_features

    # -- fusion
    def fuse(self, trunk: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Logits (B, 14) from the image trunk's output (see ``image_trunk``) and the report embedding (B, H)."""
        if self.strategy == "concat":
            return self.head(torch.cat([trunk, text], dim=1))  # (B, 512 + H) -> (B, 14)
        if self.strategy == "decision":
            return 0.5 * (self.image_head(trunk) + self.text_head(text))  # mean of two (B, 14)
        backbone = self.image_model.backbone
        maps = self.film4(backbone.layer4(self.film3(trunk, text)), text)  # (B, 512, S/32, S/32)
        return self.image_head(torch.flatten(backbone.avgpool(maps), 1))  # (B, 512) -> (B, 14)

    def forward_features(self, image: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        """Logits (B, 14) from images (B, 1, S, S) and already-encoded reports (B, H): for Grad-CAM and SHAP."""
        return self.fuse(self.image_trunk(image), text_embedding)

    def forward(
        self,
        image: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, 14) from a batch's image (or cached ``image_features``) and report."""
        text = self.encode_text(text_features, input_ids, attention_mask)  # (B, H)
        if image_features is not None:
            return self.fuse(image_features.float(), text)
        if image is None:
            raise ValueError("FusionModel.forward needs an image (or image_features in cached mode)")
        return self.forward_features(image, text)

    # -- raw text (SHAP, the empty report of the ablation)
    def attach_text_tools(self, tokenizer, frozen_encoder: nn.Module | None = None, max_length: int = 256) -> None:
        """Give the model what ``embed_texts`` needs: the tokenizer and, for cached features, the frozen encoder."""
        if self.text_encoder is None and frozen_encoder is None:
            raise ValueError("a fusion model with cached text features needs the frozen encoder that made them")
        self._text_tools = (tokenizer, None if self.text_encoder is not None else frozen_encoder)
        self.max_text_length = int(max_length)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Report embeddings (N, H) of raw (cleaned) texts, made as the model's training inputs were."""
        if not self._text_tools:
            raise ValueError("no tokenizer attached: load the model with load_fusion_model or call attach_text_tools")
        tokenizer, frozen = self._text_tools
        device = next(self.parameters()).device
        texts = [str(t) for t in texts]
        if frozen is not None:
            from cxr_helpers.text_model import compute_embeddings

            features = compute_embeddings(texts, tokenizer, frozen, batch_size=batch_size, max_length=self.max_text_length,
                                          device=device, progress=False, pooling=self.pooling)
            return torch.from_numpy(features).to(device)  # (N, H)
        parts = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                              max_length=self.max_text_length, return_tensors="pt")
            parts.append(self.encode_text(input_ids=batch["input_ids"].to(device),
                                          attention_mask=batch["attention_mask"].to(device)))
        return torch.cat(parts)  # (N, H)


def layer3_maps(image_model: ImageClassifier, image: torch.Tensor) -> torch.Tensor:
    """ResNet-18 up to and including layer3: (B, 1, S, S) -> (B, 256, S/16, S/16)."""
    b = image_model.backbone
    x = b.maxpool(b.relu(b.bn1(b.conv1(image))))  # (B, 64, S/4, S/4)
    return b.layer3(b.layer2(b.layer1(x)))


def load_image_encoder(settings, image_checkpoint: str | Path | None = "auto") -> ImageClassifier:
    """ResNet-18 with nothing frozen (the paper's fusion), weights from notebook 02's checkpoint.

    ``image_checkpoint``: "auto" = <artifacts>/checkpoints/image.pt (must exist), a path, or None
    for fresh random weights (tests).
    """
    from cxr_helpers.training import load_checkpoint

    model = ImageClassifier(dropout=settings.dropout, freeze_through="none")
    if image_checkpoint is None:
        return model
    path = Path(settings.artifacts_dir) / "checkpoints" / "image.pt" if image_checkpoint == "auto" else Path(image_checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing. The image model is trained by {MADE_BY_IMAGE}; run that first.")
    meta = load_checkpoint(path, model)
    trained_size = (meta.get("fingerprint") or {}).get("image_size")
    if trained_size is not None and int(trained_size) != int(settings.image_size):
        raise ValueError(f"{path} was trained on {trained_size} px images but CXR_IMAGE_SIZE={settings.image_size}; "
                         "use the same image size or retrain notebook 02")
    return model


def build_fusion_model(
    settings,
    strategy: str,
    text_dim: int,
    image_checkpoint: str | Path | None = "auto",
    text_encoder: nn.Module | None = None,
    freeze_image: bool = False,
) -> FusionModel:
    """A FusionModel for ``settings`` (fusion_hidden, dropout, image_size), the image encoder from notebook 02.

    ``text_encoder`` given = end to end (its hidden size must equal ``text_dim``); ``freeze_image``
    freezes the image encoder (False = the paper: no layer frozen).
    """
    from cxr_helpers.text_model import text_pooling

    image_model = load_image_encoder(settings, image_checkpoint)
    return FusionModel(image_model, text_dim, strategy, hidden=settings.fusion_hidden, dropout=settings.dropout,
                       text_encoder=text_encoder, pooling=text_pooling(settings), freeze_image=freeze_image,
                       image_size=settings.image_size)


def fusion_meta(model: FusionModel, settings, text_setting: str) -> dict:
    """What ``load_fusion_model`` needs to rebuild ``model`` (plain values only)."""
    return {
        "strategy": model.strategy, "text_dim": model.text_dim, "hidden": model.hidden, "dropout": model.dropout,
        "text_setting": text_setting, "text_model": str(settings.text_model), "image_size": int(settings.image_size),
        "end_to_end": model.end_to_end, "freeze_image": model.image_frozen, "pooling": model.pooling,
        "max_text_length": int(settings.max_text_length), "uncertainty_policy": settings.uncertainty_policy,
        "labels": list(CHEXPERT_LABELS),
    }


def add_checkpoint_meta(path: Path, extra: Mapping) -> None:
    """Merge ``extra`` into a checkpoint's meta (atomic rewrite; the weights stay as they are)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["meta"] = {**checkpoint["meta"], **dict(extra)}
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(checkpoint, temporary)
    os.replace(temporary, path)


def load_fusion_model(artifacts_dir: str | Path, name: str, device=None, text_tools: bool = True) -> FusionModel:
    """Rebuild a trained fusion model from checkpoints/<name>.pt (eval mode, image input).

    With ``text_tools`` the tokenizer (and, for cached-text models, the frozen encoder of notebook
    03) is attached, so ``model.embed_texts(strings)`` works (what SHAP needs).
    """
    from cxr_helpers.config import load_settings, pick_device
    from cxr_helpers.text_model import load_text_encoder

    path = Path(artifacts_dir) / "checkpoints" / f"{name}.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; train the fusion models with notebook 04 "
                                "(notebooks/04_fusion_training.ipynb) or `python -m cxr_helpers train fusion`")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    meta = checkpoint["meta"]
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{path} is not a fusion checkpoint (meta lacks {missing}); retrain it with notebook 04")
    settings = load_settings(artifacts_dir=Path(artifacts_dir).resolve(), text_model=meta["text_model"],
                             max_text_length=meta["max_text_length"], image_size=meta["image_size"])
    tokenizer = encoder = None
    if meta["end_to_end"] or text_tools:
        tokenizer, encoder = load_text_encoder(meta["text_model"], settings, progress=False)
    image_model = ImageClassifier(dropout=meta["dropout"], freeze_through="none")
    model = FusionModel(image_model, meta["text_dim"], meta["strategy"], meta["hidden"], meta["dropout"],
                        text_encoder=encoder if meta["end_to_end"] else None, pooling=meta["pooling"],
                        freeze_image=meta["freeze_image"], image_size=meta["image_size"])
    model.load_state_dict(checkpoint["state_dict"])
    if tokenizer is not None and (text_tools or meta["end_to_end"]):
        model.attach_text_tools(tokenizer, None if meta["end_to_end"] else encoder, meta["max_text_length"])
    model.checkpoint_meta = meta
    return model.to(pick_device(device) if not isinstance(device, torch.device) else device).eval()


# ----------------------------------------------------------------------------- cached image-encoder outputs
class CachedImageDataset(Dataset):
    """A split dataset whose batches carry cached image-encoder outputs ("image_features") instead of images.

    ``features``: (N_cohort, ...) array, row = cohort row (as ``index`` in every batch).
    """

    def __init__(self, base, features: np.ndarray):
        if len(features) != len(base.cohort):
            raise ValueError(f"cached features have {len(features)} rows but the cohort has {len(base.cohort)}")
        self.base, self.features = base, features
        self.cohort, self.targets, self.rows, self.split = base.cohort, base.targets, base.rows, base.split

    def __len__(self) -> int:
        return len(self.base)

    def __getitems__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        batch = self.base.__getitems__(positions)
        batch.pop("image")
        batch["image_features"] = torch.from_numpy(np.asarray(self.features[batch["index"].numpy()]))
        return batch

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([int(position)]).items()}


@torch.no_grad()
def cache_image_trunks(
    image_model: ImageClassifier, cohort: pd.DataFrame, images: np.ndarray, kinds: Sequence[str],
    batch_size: int = 64, device=None, progress: bool = True,
) -> dict[str, np.ndarray]:
    """The frozen image encoder's outputs for every cohort row, in one pass: {"pooled": (N, 512), "layer3": (N, 256, h, w)}."""
    from tqdm.auto import tqdm

    from cxr_helpers.config import pick_device
    from cxr_helpers.datasets import CohortImageDataset, make_loader

    device = pick_device(device) if not isinstance(device, torch.device) else device
    dataset = CohortImageDataset(cohort, images)
    size = dataset.image_size
    shapes = {"pooled": (FEATURE_DIM,), "layer3": (LAYER3_CHANNELS, size // 16, size // 16)}
    unknown = set(kinds) - set(shapes)
    if unknown:
        raise ValueError(f"kinds must be among {sorted(shapes)}, got {sorted(unknown)}")
    out = {kind: np.zeros((len(cohort), *shapes[kind]), dtype=np.float32) for kind in kinds}
    image_model.eval().to(device)
    backbone = image_model.backbone
    # Under torchrun each rank encodes its own rows and the sum over ranks fills in the rest.
    loader = make_loader(dataset, batch_size, shuffle=False, sampler=shard(len(dataset)))
    for batch in tqdm(loader, desc="caching image features", disable=not progress or not is_main_process()):
        rows = batch["index"].numpy()
        maps = layer3_maps(image_model, batch["image"].to(device))  # (B, 256, S/16, S/16)
        if "layer3" in out:
            out["layer3"][rows] = maps.cpu().numpy()
        if "pooled" in out:
            out["pooled"][rows] = torch.flatten(backbone.avgpool(backbone.layer4(maps)), 1).cpu().numpy()
    return {kind: sum_across_ranks(array) for kind, array in out.items()}


# ----------------------------------------------------------------------------- modality reliance
def empty_text_embedding(model: FusionModel, text_removal: str = "empty_report") -> torch.Tensor:
    """The embedding (H,) that stands for "no report": the encoder's output for "" (default), or zeros.

    An empty report is what the model would really meet without a report, and lies where the
    encoder's outputs lie; a zero vector is a point no encoder ever produces.
    """
    if text_removal not in TEXT_REMOVALS:
        raise ValueError(f"text_removal must be one of {TEXT_REMOVALS}, got {text_removal!r}")
    device = next(model.parameters()).device
    if text_removal == "zeros":
        return torch.zeros(model.text_dim, device=device)
    with torch.no_grad():
        return model.embed_texts([""])[0]  # (H,)


@torch.no_grad()
def modality_ablation(
    model: FusionModel, loader, uncertainty_policy: str = "zeros", text_removal: str = "empty_report",
    device=None, empty_text: torch.Tensor | None = None,
) -> dict:
    """Score ``model`` with both modalities, with the report removed, and with the image blanked (zeros).

    Returns {"full", "text_removed", "image_blanked"}: ``metrics.evaluate`` figures each, plus
    "reliance" = the macro-AUROC drop when each modality is removed (larger = leaned on more),
    and how the text was removed. Works in image mode and in cached-image mode.
    """
    from cxr_helpers.metrics import evaluate

    device = next(model.parameters()).device if device is None else torch.device(device)
    model.eval()
    empty = (empty_text if empty_text is not None else empty_text_embedding(model, text_removal)).to(device)  # (H,)
    blank_trunk = None
    logits = {condition: [] for condition in ABLATION_CONDITIONS}
    targets, rows = [], []
    for batch in loader:
        inputs = {k: batch[k].to(device) for k in model.input_keys}
        text = model.encode_text(inputs.get("text_features"), inputs.get("input_ids"), inputs.get("attention_mask"))
        trunk = inputs["image_features"].float() if model.cached_image else model.image_trunk(inputs["image"])
        if blank_trunk is None:
            size = model.image_size or int(batch["image"].shape[-1])
            blank_trunk = model.image_trunk(torch.zeros(1, 1, size, size, device=device))  # (1, ...)
        n = trunk.shape[0]
        logits["full"].append(model.fuse(trunk, text).cpu())
        logits["text_removed"].append(model.fuse(trunk, empty.expand(n, -1)).cpu())
        logits["image_blanked"].append(model.fuse(blank_trunk.expand(n, *blank_trunk.shape[1:]), text).cpu())
        targets.append(batch["targets"])
        rows.append(batch["index"])
    # Under torchrun each rank saw a shard of the split: score the whole split on every rank.
    _, target_array, *condition_logits = gather_rows(torch.cat(rows).numpy(), torch.cat(targets).numpy(),
                                                     *(torch.cat(logits[c]).numpy() for c in ABLATION_CONDITIONS))
    result = {c: evaluate(scores, target_array, uncertainty_policy)
              for c, scores in zip(ABLATION_CONDITIONS, condition_logits, strict=True)}
    full = result["full"]["macro_auroc"]

    def drop(condition: str) -> float | None:
        value = result[condition]["macro_auroc"]
        return None if full is None or value is None else full - value

    result["reliance"] = {"text": drop("text_removed"), "image": drop("image_blanked")}
    result["text_removal"], result["image_removal"] = text_removal, "zeros"
    return result


# ----------------------------------------------------------------------------- training (notebook 04)
def _setting(settings, name: str, default):
    """A fusion option from the settings, or the default here where the setting is None."""
    value = getattr(settings, name)
    return default if value is None else value


def tokenize_texts(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
    """input_ids / attention_mask (N, L) int64 for every text, padded to the longest (at most max_length)."""
    encoded = tokenizer([str(t) for t in texts], padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {"input_ids": encoded["input_ids"].astype(np.int64), "attention_mask": encoded["attention_mask"].astype(np.int64)}


def _require_embeddings(settings, text_setting: str) -> None:
    from cxr_helpers.text_model import embeddings_paths

    path = embeddings_paths(settings, text_setting)[0]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing. The cached report embeddings are made by {MADE_BY_TEXT}; "
                                "run that first (with the same CXR_TEXT_MODEL).")


def _write_fusion_extras(path: Path, section: str, name: str, value: dict) -> None:
    """Store one model's extra figures (ablation, run facts) under a top-level section of fusion.json."""
    from cxr_helpers.metrics import _json_ready, read_metrics

    data = read_metrics(path)
    data.setdefault(section, {})[name] = _json_ready(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, allow_nan=False))
    os.replace(temporary, path)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (read in blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def run_inputs(settings, model: FusionModel, text_setting: str, texts: Sequence[str], image_checkpoint_sha: str,
               cohort_sha: str) -> dict:
    """What a fusion run was trained from: if any of it changes, a saved run is stale and is retrained.

    ``training.fit`` resumes by its own fingerprint (model size, lr, batch, ...), which cannot see a
    retrained image model, a new cohort, or report embeddings recomputed with another pooling.
    """
    from cxr_helpers.text_model import embedding_key

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
    from cxr_helpers.datasets import make_loader
    from cxr_helpers.training import fit, record_results

    checkpoint_dir = Path(settings.artifacts_dir) / "checkpoints"
    main = is_main_process()  # under torchrun only rank 0 writes files
    resume = resume and _resume_allowed(checkpoint_dir, name, inputs, progress and main)
    barrier()  # every rank has decided from the old inputs file before rank 0 replaces it
    if main:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        (checkpoint_dir / f"{name}_inputs.json").write_text(json.dumps(inputs, indent=2))
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
    from cxr_helpers.datasets import load_split_datasets
    from cxr_helpers.prepare import load_cohort, open_image_cache
    from cxr_helpers.text_model import cached_embeddings, load_text_encoder, text_column

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
        kinds = ["pooled"] + (["layer3"] if "film" in strategies and _layer3_fits(len(cohort), settings.image_size) else [])
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
    return {"models": outputs, "seconds": time.perf_counter() - began}


def training_label(image_trained: bool, text_trained: bool) -> str:
    """How a fusion model was trained, in words (used in tables and progress lines)."""
    if image_trained and text_trained:
        return "end to end"
    if text_trained:
        return "text encoder trained, image frozen"
    return "image fine-tuned, text frozen" if image_trained else "frozen encoders"


def _layer3_fits(n_rows: int, image_size: int) -> bool:
    """Whether the layer3 maps of every cohort row fit the cache budget (float32)."""
    return n_rows * LAYER3_CHANNELS * (image_size // 16) ** 2 * 4 <= CACHE_LIMIT_BYTES


def _with_text(dataset, features: np.ndarray):
    """The same split over the same cohort and images, now also carrying cached text features."""
    from cxr_helpers.datasets import CohortImageDataset

    return CohortImageDataset(dataset.cohort, dataset.images, dataset.split, text_features=features)


def _with_tokens(dataset, tokens: Mapping[str, np.ndarray]):
    """The same split, carrying input_ids / attention_mask for an end-to-end text encoder."""
    from cxr_helpers.datasets import CohortImageDataset

    return CohortImageDataset(dataset.cohort, dataset.images, dataset.split, tokens=tokens)


# ----------------------------------------------------------------------------- tables and figures
def _load_models(metrics_dir: Path, stage: str) -> dict:
    from cxr_helpers.metrics import BASELINE_NAMES, read_metrics

    data = read_metrics(Path(metrics_dir) / f"{stage}.json")
    return {name: splits for name, splits in data["models"].items() if name not in BASELINE_NAMES.values()}


def _text_setting_of(name: str) -> str | None:
    return next((s for s in TEXT_SETTINGS if s in name), None)


def comparison_table(metrics_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """One row per model (image-only, text-only, every fusion model): accuracy and macro AUROC on ``split``.

    Reads metrics/image.json, text.json and fusion.json (whichever exist); "runs" in fusion.json
    says how each fusion model was trained.
    """
    from cxr_helpers.metrics import read_metrics

    metrics_dir = Path(metrics_dir)
    runs = read_metrics(metrics_dir / "fusion.json").get("runs", {})
    rows = []
    for stage, modality in (("image", "image"), ("text", "text"), ("fusion", "image+text")):
        for name, splits in _load_models(metrics_dir, stage).items():
            figures = splits.get(split) or {}
            run = runs.get(name, {})
            rows.append({
                "model": name, "modality": modality,
                "strategy": run.get("strategy", "-"), "text_setting": _text_setting_of(name) or "-",
                "training": training_label(not run.get("freeze_image", True), bool(run.get("end_to_end")))
                if stage == "fusion" else "-",
                f"{split}_loss": figures.get("loss"), f"{split}_accuracy": figures.get("accuracy"),
                f"{split}_macro_auroc": figures.get("macro_auroc"),
            })
    return pd.DataFrame(rows)


def paper_comparison(metrics_dir: str | Path, name: str = "fusion_concat_findings_impression") -> pd.DataFrame:
    """One fusion model's loss, masked accuracy and macro AUROC per split, beside the paper's late fusion."""
    from cxr_helpers.results import PAPER

    splits = _load_models(Path(metrics_dir), "fusion").get(name)
    if splits is None:
        raise KeyError(f"no model {name!r} in {Path(metrics_dir) / 'fusion.json'}; train it with notebook 04")
    paper = PAPER["paper: late fusion"]
    rows = []
    for split in ("train", "validate", "test"):
        figures = splits.get(split, {})
        paper_loss, paper_accuracy = paper.get(split, (None, None))
        rows.append({"split": split, "loss": figures.get("loss"), "paper loss": paper_loss,
                     "accuracy": figures.get("accuracy"), "paper accuracy": paper_accuracy,
                     "macro AUROC": figures.get("macro_auroc")})
    return pd.DataFrame(rows).set_index("split")


def leakage_table(metrics_dir: str | Path, split: str = "test", metric: str = "macro_auroc") -> pd.DataFrame:
    """Per strategy: the fusion score with each text setting, the gain over image-only, and the share of
    the findings+impression gain that the indication alone does not give (the labels' own text).

    The share is clipped to [0, 1] (1: the indication alone gains nothing, or loses) and left empty
    (None) when the findings+impression gain is below MIN_GAIN_FOR_SHARE: a share of no gain says nothing.
    """
    metrics_dir = Path(metrics_dir)
    image = (_load_models(metrics_dir, "image").get("image", {}).get(split) or {}).get(metric)
    fusion = _load_models(metrics_dir, "fusion")
    rows = []
    for strategy in STRATEGIES:
        if not any(fusion_name(strategy, s) in fusion for s in TEXT_SETTINGS):
            continue
        scores = {s: (fusion.get(fusion_name(strategy, s), {}).get(split) or {}).get(metric) for s in TEXT_SETTINGS}
        row = {"strategy": strategy, "image only": image, **scores}
        for setting in TEXT_SETTINGS:
            row[f"gain ({setting})"] = None if image is None or scores[setting] is None else scores[setting] - image
        gain_fi, gain_ind = row["gain (findings_impression)"], row["gain (indication)"]
        row["share of gain from leaked labels"] = (
            None if gain_fi is None or gain_ind is None or gain_fi < MIN_GAIN_FOR_SHARE
            else float(np.clip((gain_fi - gain_ind) / gain_fi, 0.0, 1.0))
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index("strategy") if rows else pd.DataFrame()


def reliance_table(metrics_dir: str | Path, metric: str = "macro_auroc") -> pd.DataFrame:
    """Per fusion model: the test score with both modalities, with the report removed, with the image blanked."""
    from cxr_helpers.metrics import read_metrics

    ablation = read_metrics(Path(metrics_dir) / "fusion.json").get("ablation", {})
    rows = []
    for name, result in ablation.items():
        rows.append({"model": name, "both": result["full"][metric], "report removed": result["text_removed"][metric],
                     "image blanked": result["image_blanked"][metric], "text reliance": result["reliance"]["text"],
                     "image reliance": result["reliance"]["image"]})
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def per_label_table(metrics_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """AUROC per label (rows) for image-only, text-only and fusion models (columns), plus the macro mean."""
    metrics_dir = Path(metrics_dir)
    columns = {}
    for stage in ("image", "text", "fusion"):
        for name, splits in _load_models(metrics_dir, stage).items():
            figures = splits.get(split) or {}
            if "auroc" in figures:
                columns[name] = {**figures["auroc"], "macro": figures.get("macro_auroc")}
    return pd.DataFrame(columns).reindex([*CHEXPERT_LABELS, "macro"])


def label_aurocs(metrics_dir: str | Path, names: Sequence[str], split: str = "test") -> dict[str, dict]:
    """{model: {label: AUROC or None}} for the named models of any stage (for plots_training.plot_label_auroc)."""
    metrics_dir = Path(metrics_dir)
    models = {name: splits for stage in ("image", "text", "fusion") for name, splits in _load_models(metrics_dir, stage).items()}
    return {name: dict((models[name].get(split) or {}).get("auroc", {})) for name in names if name in models}


def epoch_seconds_table(metrics_dir: str | Path) -> pd.DataFrame:
    """Seconds per training epoch of every fusion model, with how it was trained."""
    from cxr_helpers.metrics import read_metrics

    runs = read_metrics(Path(metrics_dir) / "fusion.json").get("runs", {})
    return pd.DataFrame([{"model": name, "training": training_label(not run.get("freeze_image"), bool(run.get("end_to_end"))),
                          "epochs": run.get("epochs"), "seconds per epoch": run.get("epoch_seconds")}
                         for name, run in runs.items()]).set_index("model") if runs else pd.DataFrame()


def plot_reliance(table: pd.DataFrame, title: str = "Which modality does each fusion model lean on? (test macro AUROC)"):
    """Grouped bars per fusion model: both modalities, report removed, image blanked; 0.5 = chance."""
    import matplotlib.pyplot as plt

    conditions = ["both", "report removed", "image blanked"]
    colours = ["#555555", "#2e86c1", "#c0392b"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(table) + 2), 3.8))
    positions = np.arange(len(table))
    width = 0.8 / len(conditions)
    for k, (condition, colour) in enumerate(zip(conditions, colours, strict=True)):
        values = [np.nan if v is None else v for v in table[condition]]
        ax.bar(positions - 0.4 + width * (k + 0.5), values, width=width, label=condition, color=colour)
    ax.axhline(0.5, color="black", ls="--", lw=0.8)
    short = [name.replace("fusion_", "").replace("findings_impression", "F+I").replace("indication", "ind")
             .replace("_end_to_end", "\n(end to end)") for name in table.index]
    ax.set_xticks(positions, short, fontsize=8)
    ax.set(ylim=(0.3, 1.0), ylabel="macro AUROC", title=title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
