"""The fusion model: an image encoder and a report embedding, fused into 14 logits by one of three strategies.

- ``concat`` (the paper): ResNet-18 pooled features (512) and the report's embedding (H) are
  concatenated (512 + H) and a 2-layer MLP (hidden, ReLU, dropout) gives 14 logits.
- ``decision`` (decision-level fusion): the image model's own head and an MLP on the report
  embedding each give 14 logits; the model returns their average. Both heads train jointly.
- ``film`` (intermediate fusion): the report embedding produces a per-channel scale and shift
  (FiLM) applied to the layer3 and layer4 feature maps; pooled features -> the image head.
  FiLM starts as the identity, so at initialisation the model is exactly the image model.

The text side is either *frozen and cached* (``text_encoder=None``: batches carry the cached
embeddings ``text_features`` (B, H) that notebook 03 computed) or *end to end* (the encoder is a
submodule fed ``input_ids`` / ``attention_mask``, as in the paper, where no layer was frozen).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cxr_helpers.config import TEXT_SETTINGS
from cxr_helpers.image_model import FEATURE_DIM, ImageClassifier
from cxr_helpers.labels import NUM_LABELS
from cxr_helpers.text.encoder import compute_embeddings, pool_hidden

STRATEGIES = ("concat", "decision", "film")
LAYER3_CHANNELS = 256  # ResNet-18 layer3 output channels (layer4: FEATURE_DIM = 512)
END_TO_END_SUFFIX = "_end_to_end"


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


def training_label(image_trained: bool, text_trained: bool) -> str:
    """How a fusion model was trained, in words (used in tables and progress lines)."""
    if image_trained and text_trained:
        return "end to end"
    if text_trained:
        return "text encoder trained, image frozen"
    return "image fine-tuned, text frozen" if image_trained else "frozen encoders"


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


def layer3_maps(image_model: ImageClassifier, image: torch.Tensor) -> torch.Tensor:
    """ResNet-18 up to and including layer3: (B, 1, S, S) -> (B, 256, S/16, S/16)."""
    b = image_model.backbone
    x = b.maxpool(b.relu(b.bn1(b.conv1(image))))  # (B, 64, S/4, S/4)
    return b.layer3(b.layer2(b.layer1(x)))


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

    def cam_layer(self, name: str = "layer4") -> nn.Module:
        """A stage of the image encoder to compute Grad-CAM on (as ``ImageClassifier.cam_layer``)."""
        return self.image_model.cam_layer(name)

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
