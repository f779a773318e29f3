"""The trained models an explanation explains, loaded from the artifacts folder, and the functions of them it calls.

``load_models`` rebuilds the fusion model (notebook 04), the image-only model (notebook 02) and
the text-only model (notebook 03: encoder + head trained end to end, or a head on the frozen
encoder). ``text_logit_fn`` and ``fusion_text_logit_fn`` turn them into ``texts -> logits (N, 14)``:
what SHAP explains.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxr_helpers.artifacts import MADE_BY, file_stamp, read_json
from cxr_helpers.checkpoints import load_checkpoint
from cxr_helpers.config import pick_device
from cxr_helpers.fusion.build import load_fusion_model
from cxr_helpers.image_model import ImageClassifier, ImageEnsemble, load_image_encoder, member_names
from cxr_helpers.text.embeddings import embeddings_paths, load_text_encoder
from cxr_helpers.text.encoder import compute_embeddings, text_pooling
from cxr_helpers.text.finetune import classifier_name, load_text_classifier
from cxr_helpers.text.heads import TextClassifier, TextHead

MODEL_ROLES = ("fusion", "image", "text")
CAM_ROLES = ("fusion", "image")  # models with an image to put a heatmap on
SHAP_ROLES = ("fusion", "text")  # models with a report to colour


@dataclasses.dataclass
class LoadedModels:
    """The trained models a StudyExplainer explains, with their checkpoint names and fingerprints."""

    image: nn.Module | None = None  # image_model.ImageClassifier
    image_ensemble: nn.Module | None = None  # image_model.ImageEnsemble: "image" and its members (settings.image_ensemble)
    text: nn.Module | None = None  # text.heads.TextClassifier (trained end to end), else a TextHead on frozen embeddings
    fusion: nn.Module | None = None  # fusion.FusionModel
    tokenizer: object = None  # the text encoder's tokenizer
    encoder: nn.Module | None = None  # the frozen text encoder (tiny BERT or CXR-BERT)
    names: dict[str, str] = dataclasses.field(default_factory=dict)  # role -> checkpoint name
    fingerprints: dict[str, str] = dataclasses.field(default_factory=dict)  # role -> checkpoint fingerprint
    text_setting: str = "findings_impression"  # the report text the text-reading models were trained on
    text_pooling: str = "cls"  # how the text head's frozen features were pooled ([CLS] or mean)
    text_max_length: int = 256  # and truncated

    def get(self, role: str) -> nn.Module:
        """The model playing ``role`` ("fusion", "image" or "text"); a clear error if it was not loaded."""
        if role not in MODEL_ROLES:
            raise ValueError(f"model role must be one of {MODEL_ROLES}, got {role!r}")
        model = {"fusion": self.fusion, "image": self.image, "text": self.text}[role]
        if model is None:
            raise ValueError(f"no {role} model loaded; it is trained by {MADE_BY[role]}")
        return model


def fusion_checkpoints(artifacts_dir: Path) -> list[str]:
    """Names of the trained fusion models in ``<artifacts>/checkpoints`` (fusion_<strategy>_<setting>[...])."""
    folder = Path(artifacts_dir) / "checkpoints"
    return sorted(p.stem for p in folder.glob("fusion_*.pt") if not p.stem.endswith("_last"))


def default_fusion_name(artifacts_dir: Path, text_setting: str = "findings_impression") -> str:
    """The fusion model explained by default: the paper's (concat, trained end to end), else concat, else any."""
    names = fusion_checkpoints(artifacts_dir)
    for preferred in (f"fusion_concat_{text_setting}_end_to_end", f"fusion_concat_{text_setting}"):
        if preferred in names:
            return preferred
    if not names:
        raise FileNotFoundError(f"no fusion checkpoint in {Path(artifacts_dir) / 'checkpoints'}; "
                                f"the fusion models are trained by {MADE_BY['fusion']}")
    return names[0]


def _require_checkpoint(path: Path, role: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing. The {role} model is trained by {MADE_BY[role]}; run that first "
                                "(or set CXR_ARTIFACTS_DIR to the folder that holds it).")
    return path


def load_models(settings, roles: Sequence[str] = MODEL_ROLES, fusion_name: str | None = None,
                device=None) -> LoadedModels:
    """The trained models of ``roles`` from ``settings.artifacts_dir``, in eval mode, with fingerprints.

    The fusion model decides the text setting (its checkpoint says which report text it read); the
    text-only model explained beside it was trained on that same text: the encoder + head trained end
    to end where notebook 03 trained one (``text.finetune``), else the head on frozen embeddings.
    """
    unknown = [r for r in roles if r not in MODEL_ROLES]
    if unknown:
        raise ValueError(f"model roles must be among {MODEL_ROLES}, got {unknown}")

    device = pick_device(device) if not isinstance(device, torch.device) else device
    checkpoints = Path(settings.artifacts_dir) / "checkpoints"
    models = LoadedModels(text_setting=settings.text_setting, text_pooling=text_pooling(settings),
                          text_max_length=settings.max_text_length)
    if "fusion" in roles:
        name = fusion_name or default_fusion_name(settings.artifacts_dir, settings.text_setting)
        path = _require_checkpoint(checkpoints / f"{name}.pt", "fusion")
        # with the text-only model loaded too, the fusion model borrows its frozen encoder (one copy in memory)
        models.fusion = load_fusion_model(settings.artifacts_dir, name, device=device,
                                          text_tools="text" not in roles).eval()
        models.names["fusion"], models.fingerprints["fusion"] = name, file_stamp(path)
        models.text_setting = models.fusion.checkpoint_meta.get("text_setting", settings.text_setting)
    if "image" in roles:
        path = _require_checkpoint(checkpoints / "image.pt", "image")
        models.image = ImageClassifier(dropout=settings.dropout, freeze_through="none")
        load_checkpoint(path, models.image)
        models.image.to(device).eval()
        models.names["image"], models.fingerprints["image"] = "image", file_stamp(path)
        if settings.image_ensemble > 1:
            models.image_ensemble = load_image_ensemble(settings, models.image, checkpoints, device)
    if "text" in roles:
        load_text_model(models, settings, checkpoints, device)
    if models.fusion is not None and "text" in roles and not models.fusion.end_to_end:
        meta = models.fusion.checkpoint_meta
        if meta["text_model"] == settings.text_model:
            tokenizer, encoder = models.tokenizer, models.encoder
        else:
            tokenizer, encoder = load_text_encoder(meta["text_model"], settings, progress=False)
        models.fusion.attach_text_tools(tokenizer, encoder.to(device).eval(), meta["max_text_length"])
    return models


def load_image_ensemble(settings, first: nn.Module, checkpoints: Path, device: torch.device) -> ImageEnsemble | None:
    """``first`` (notebook 02's image model) and the members ``train_image_ensemble`` trained, as one ensemble;
    None, with a warning naming the missing file, when a member was not trained (everything else works without)."""
    members = [first]
    for name in member_names(settings.image_ensemble):
        path = checkpoints / f"{name}.pt"
        if not path.exists():
            warnings.warn(f"{path} is missing: CXR_IMAGE_ENSEMBLE={settings.image_ensemble} asks for "
                          f"{settings.image_ensemble} image models, trained by notebook 02 (section 11) with the same "
                          "setting; until then the checks score the single image model only.", stacklevel=3)
            return None
        members.append(load_image_encoder(settings, path).to(device).eval())
    return ImageEnsemble(members).eval()


def load_text_model(models: LoadedModels, settings, checkpoints: Path, device: torch.device) -> None:
    """Load the text-only model into ``models``: the end-to-end classifier if trained, else head + frozen encoder."""
    sidecar = embeddings_paths(settings, models.text_setting)[1]  # how the frozen features were made
    made = read_json(sidecar, {}).get("key", {})
    models.text_pooling = made.get("pooling", models.text_pooling)
    models.text_max_length = int(made.get("max_length", models.text_max_length))
    models.tokenizer, models.encoder = load_text_encoder(settings.text_model, settings, progress=False)
    models.encoder.to(device).eval()
    name = classifier_name(models.text_setting)
    if (checkpoints / f"{name}.pt").exists():
        models.text = load_text_classifier(settings, models.text_setting, device)
    else:
        name = f"text_head_{models.text_setting}"
        path = _require_checkpoint(checkpoints / f"{name}.pt", "text")
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        models.text = TextHead(state["mlp.0.weight"].shape[1], hidden=state["mlp.0.weight"].shape[0],
                               dropout=settings.dropout)
        load_checkpoint(path, models.text)
        models.text.to(device).eval()
    models.names["text"], models.fingerprints["text"] = name, file_stamp(checkpoints / f"{name}.pt")


def text_logit_fn(models: LoadedModels, model: nn.Module | None = None,
                  batch_size: int = 64) -> Callable[[Sequence[str]], np.ndarray]:
    """texts -> logits (N, 14) of the text-only model (or ``model``, a copy of it: the randomisation test)."""
    model = model if model is not None else models.get("text")
    if isinstance(model, TextClassifier):
        return classifier_logit_fn(model, batch_size)
    return text_head_logit_fn(model, models.tokenizer, models.encoder, models.text_max_length, models.text_pooling,
                              batch_size)


def classifier_logit_fn(classifier: TextClassifier, batch_size: int = 64) -> Callable[[Sequence[str]], np.ndarray]:
    """texts -> logits (N, 14) of an encoder + head trained end to end (it tokenises the texts itself)."""
    device = next(classifier.parameters()).device

    @torch.no_grad()
    def logits(texts: Sequence[str]) -> np.ndarray:
        classifier.eval()
        parts = []
        for start in range(0, len(texts), batch_size):
            batch = classifier.tokenizer([str(t) for t in texts[start:start + batch_size]], padding=True,
                                         truncation=True, max_length=classifier.max_length, return_tensors="pt")
            parts.append(classifier(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float().cpu())
        return torch.cat(parts).numpy()  # (N, 14)

    return logits


def _embed_texts(texts: Sequence[str], tokenizer, encoder: nn.Module, max_length: int, pooling: str,
                 batch_size: int, device: torch.device) -> torch.Tensor:
    """Frozen-encoder pooled embeddings (N, H) of raw texts, as the cached features were made."""
    features = compute_embeddings(list(texts), tokenizer, encoder, batch_size=batch_size, max_length=max_length,
                                  device=device, progress=False, pooling=pooling)
    return torch.from_numpy(features).to(device)


def text_head_logit_fn(head: nn.Module, tokenizer, encoder: nn.Module, max_length: int = 256,
                       pooling: str = "cls", batch_size: int = 64) -> Callable[[Sequence[str]], np.ndarray]:
    """texts -> logits (N, 14) of the text-only model (frozen encoder + ``TextHead``)."""
    device = next(head.parameters()).device

    @torch.no_grad()
    def logits(texts: Sequence[str]) -> np.ndarray:
        head.eval()
        features = _embed_texts(texts, tokenizer, encoder, max_length, pooling, batch_size, device)  # (N, H)
        return head(text_features=features).float().cpu().numpy()

    return logits


def fusion_text_logit_fn(fusion: nn.Module, image: torch.Tensor,
                         batch_size: int = 64) -> Callable[[Sequence[str]], np.ndarray]:
    """texts -> logits (N, 14) of the fusion model with one study's image (1, 1, S, S) held fixed.

    The image path the report does not touch (``image_trunk``: pooled features, or FiLM's layer3
    maps) runs once per study; per batch of texts only the text encoder and ``fuse`` run (for
    FiLM that includes the report-modulated layer4). The texts are embedded by the model's own
    text tools (``FusionModel.embed_texts``), as its training inputs were.
    """
    device = next(fusion.parameters()).device
    image = image.reshape(1, 1, *image.shape[-2:]).to(device)
    state: dict = {}

    @torch.no_grad()
    def logits(texts: Sequence[str]) -> np.ndarray:
        fusion.eval()
        text = fusion.embed_texts([str(t) for t in texts], batch_size=batch_size)  # (N, H)
        if "trunk" not in state:
            state["trunk"] = fusion.image_trunk(image)  # (1, 512) or (1, 256, h, w): once per study
        trunk = state["trunk"].expand(text.shape[0], *state["trunk"].shape[1:])
        return fusion.fuse(trunk, text).float().cpu().numpy()  # (N, 14)

    return logits
