"""The paper's image model: ResNet-18 with a 1-channel conv1, frozen early layers, a 14-logit head.

The paper ends the head with a sigmoid and trains with ``binary_cross_entropy`` on probabilities.
Here the model returns logits and the sigmoid lives in the loss (``metrics.masked_bce`` uses
``binary_cross_entropy_with_logits``) and in prediction: the same mathematics, but it does not
lose precision (or produce log(0)) when a probability rounds to 0 or 1.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from cxr_helpers.artifacts import missing_message
from cxr_helpers.checkpoints import load_checkpoint
from cxr_helpers.config import CAM_LAYER_NAMES
from cxr_helpers.labels import NUM_LABELS

# Freezing stages in forward order; freeze_through=X freezes X and everything before it.
STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3")
FREEZE_CHOICES = ("none", "layer1", "layer2", "layer3")
CONV1_INITS = ("rgb_sum", "random")
FEATURE_DIM = 512
CAM_LAYERS = CAM_LAYER_NAMES  # stages a Grad-CAM can target, from fine (layer2: stride 8) to coarse (layer4: stride 32)


def cam_layer(backbone: ResNet, name: str = "layer4") -> nn.Module:
    """The ResNet stage ``name`` (one of ``CAM_LAYERS``), a clear error for any other."""
    if name not in CAM_LAYERS:
        raise ValueError(f"Grad-CAM layer must be one of {CAM_LAYERS}, got {name!r}")
    return getattr(backbone, name)


def _frozen_stage_names(freeze_through: str) -> tuple[str, ...]:
    if freeze_through not in FREEZE_CHOICES:
        raise ValueError(f"freeze_through must be one of {FREEZE_CHOICES}, got {freeze_through!r}")
    return () if freeze_through == "none" else STAGES[: STAGES.index(freeze_through) + 1]


class ImageClassifier(nn.Module):
    """ResNet-18 on grayscale (B, 1, S, S) images in [0, 1], returning logits (B, 14).

    - ``backbone.conv1`` is Conv2d(1, 64, 7, 2, 3, bias=False): grayscale in, no channel copies.
    - ``backbone.fc`` is Dropout(p) + Linear(512, 14), replacing the 1000-class ImageNet head.
    - Stages through ``freeze_through`` have ``requires_grad=False`` and their BatchNorm layers stay
      in eval mode even in ``model.train()``: frozen means the running means and variances do not
      drift either, so the frozen part computes exactly what it did before fine-tuning.
    """

    input_keys = ("image",)

    def __init__(self, num_labels: int = NUM_LABELS, dropout: float = 0.5, freeze_through: str = "layer2"):
        super().__init__()
        backbone: ResNet = resnet18(weights=None)
        backbone.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        backbone.fc = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(FEATURE_DIM, num_labels))
        self.backbone = backbone
        self.freeze_through = freeze_through
        self.frozen_stages = _frozen_stage_names(freeze_through)
        self.freeze()

    def freeze(self) -> None:
        """Set requires_grad False on the frozen stages (True elsewhere)."""
        for name, module in self.backbone.named_children():
            for parameter in module.parameters():
                parameter.requires_grad = name not in self.frozen_stages

    def train(self, mode: bool = True) -> ImageClassifier:
        """Like nn.Module.train, but frozen stages (their BatchNorm included) always stay in eval mode."""
        super().train(mode)
        for name in self.frozen_stages:
            getattr(self.backbone, name).eval()
        return self

    def cam_layer(self, name: str = "layer4") -> nn.Module:
        """A ResNet stage to compute Grad-CAM on (``CAM_LAYERS``; layer4, the last one, is the usual target)."""
        return cam_layer(self.backbone, name)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The 512-d pooled feature vector (B, 512) before dropout and the linear head."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(image))))  # (B, 64, S/4, S/4)
        x = b.layer4(b.layer3(b.layer2(b.layer1(x))))  # (B, 512, S/32, S/32)
        return torch.flatten(b.avgpool(x), 1)  # (B, 512)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (B, 14); apply a sigmoid for probabilities."""
        return self.backbone.fc(self.features(image))


ENSEMBLE_NAME = "image_ensemble"  # the ensemble's figures in metrics/image.json


def member_names(size: int) -> list[str]:
    """The checkpoint names of an ensemble's members beyond notebook 02's "image": image_member1, ..."""
    return [f"image_member{i}" for i in range(1, int(size))]


class ImageEnsemble(nn.Module):
    """Several trained image models (say, one recipe with several seeds) as one: the mean of their logits.

    Its class activation map is the mean of the members' maps, each computed on its own model and
    scaled to [0, 1] first (``explain.gradcam.compute_cams``). How well one trained model's map
    points varies widely between seeds of the same recipe; the mean map is steadier
    (``benchmarks/bench_cam_ensemble.py``).
    """

    input_keys = ("image",)

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one image model")
        self.members = nn.ModuleList(members)

    def cam_layer(self, name: str = "layer4") -> list[nn.Module]:
        """The stage ``name`` of every member, in member order."""
        return [member.cam_layer(name) for member in self.members]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The members' mean logits (B, 14)."""
        return torch.stack([member(image) for member in self.members]).mean(dim=0)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable, frozen and total parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {"trainable": trainable, "frozen": frozen, "total": trainable + frozen}


def parameter_table(model: ImageClassifier):
    """One row per backbone stage: parameters and whether they train (a pandas DataFrame)."""
    rows = []
    for name, module in model.backbone.named_children():
        count = sum(p.numel() for p in module.parameters())
        if count:
            trains = any(p.requires_grad for p in module.parameters())
            rows.append({"stage": name, "parameters": count, "trainable": trains})
    return pd.DataFrame(rows)


def imagenet_state_dict(progress: bool = True) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet-18 weights (downloaded once into the torch hub cache)."""
    try:
        return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=progress)
    except (OSError, RuntimeError, ValueError) as error:  # URLError is an OSError
        raise RuntimeError(
            "Could not download the ImageNet ResNet-18 weights "
            f"({ResNet18_Weights.IMAGENET1K_V1.url}): {error}. If this machine is offline, either set "
            "CXR_IMAGE_WEIGHTS=none (train from scratch) or download resnet18-f37072fd.pth elsewhere and set "
            "CXR_IMAGE_WEIGHTS=/path/to/resnet18-f37072fd.pth."
        ) from error


def local_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision ResNet-18 state dict from a local .pth (a bare state dict or {"state_dict": ...})."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"image weights file {path} not found; CXR_IMAGE_WEIGHTS takes 'imagenet', 'none' or a .pth path"
        )
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise ValueError(f"{path} is not a torchvision ResNet-18 state dict (no 'conv1.weight' key)")
    return state


def load_pretrained(model: ImageClassifier, state: dict[str, torch.Tensor], conv1_init: str = "rgb_sum") -> None:
    """Copy a torchvision ResNet-18 state dict into ``model``: all but fc; conv1 per ``conv1_init``.

    rgb_sum: the 1-channel kernel is the sum of the 3 RGB kernels. A grayscale image copied into
    R, G and B gives sum_c (w_c * x) = (sum_c w_c) * x, so the new conv1 computes exactly what the
    pretrained conv1 computed on the 3-channel copy. random: keep the fresh random conv1 (the paper).
    """
    if conv1_init not in CONV1_INITS:
        raise ValueError(f"conv1_init must be one of {CONV1_INITS}, got {conv1_init!r}")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    conv1 = state.pop("conv1.weight")  # (64, 3, 7, 7) or (64, 1, 7, 7)
    missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("fc.", "conv1."))]
    if missing or unexpected:
        raise ValueError(f"weights do not fit ResNet-18: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if conv1_init == "rgb_sum":
        with torch.no_grad():
            model.backbone.conv1.weight.copy_(conv1.sum(dim=1, keepdim=True))  # (64, 1, 7, 7)


def pretrained(image_weights: str | None) -> bool:
    """Whether ``image_weights`` names pretrained weights ("imagenet" or a .pth path), not None/"none"."""
    return image_weights is not None and str(image_weights).lower() != "none"


def load_image_encoder(settings, image_checkpoint: str | Path | None = "auto") -> ImageClassifier:
    """ResNet-18 with nothing frozen (the paper's fusion), weights from notebook 02's checkpoint (or another).

    ``image_checkpoint``: "auto" = <artifacts>/checkpoints/image.pt (must exist), a path, or None
    for fresh random weights (tests).
    """
    model = ImageClassifier(dropout=settings.dropout, freeze_through="none")
    if image_checkpoint is None:
        return model
    path = Path(settings.artifacts_dir) / "checkpoints" / "image.pt" if image_checkpoint == "auto" else Path(image_checkpoint)
    if not path.exists():
        raise FileNotFoundError(missing_message(path, "image"))
    meta = load_checkpoint(path, model)
    trained_size = (meta.get("fingerprint") or {}).get("image_size")
    if trained_size is not None and int(trained_size) != int(settings.image_size):
        raise ValueError(f"{path} was trained on {trained_size} px images but CXR_IMAGE_SIZE={settings.image_size}; "
                         "use the same image size or retrain notebook 02")
    return model


def build_image_model(settings, weights: str | None = None) -> ImageClassifier:
    """The image model for ``settings`` (dropout, freeze_through, conv1_init, image_weights).

    ``weights`` overrides ``settings.image_weights``: "imagenet", "none", or a local .pth path.
    Without pretrained weights nothing is frozen, whatever ``freeze_through`` says: freezing keeps
    pretrained features, and frozen random layers would only be noise the rest must work around.
    """
    choice = settings.image_weights if weights is None else weights
    if not pretrained(choice):
        return ImageClassifier(dropout=settings.dropout, freeze_through="none")
    model = ImageClassifier(dropout=settings.dropout, freeze_through=settings.freeze_through)
    state = imagenet_state_dict() if str(choice).lower() == "imagenet" else local_state_dict(choice)
    load_pretrained(model, state, settings.conv1_init)
    return model
