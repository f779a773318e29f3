"""Grad-CAM and friends (pytorch-grad-cam) for one label's logit, one target per image.

A CAM explains one label's *raw logit* (``ClassifierOutputTarget``) with respect to a
convolutional block (``model.cam_layer(name)``: ResNet ``layer4`` by default). For the fusion
model the study's report is held fixed: the CAM sees a module ``image -> logits`` that feeds the
fusion model the study's text embedding (``FixedTextImageModel``). Maps come back min-max scaled
to [0, 1] at the image's size, as pytorch-grad-cam returns them.
"""

from __future__ import annotations

import contextlib
import functools
import io
import zlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytorch_grad_cam
import torch
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from cxr_helpers.config import CAM_LAYER_NAMES, seeded_numpy
from cxr_helpers.image_model import ImageEnsemble
from cxr_helpers.labels import label_index

# Names users pick (settings.cam_method, the browser's dropdown) -> pytorch_grad_cam classes.
CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
}
RANDOM_CAM = "randomcam"  # pytorch_grad_cam.RandomCAM: the baseline of the faithfulness checks
# Findings that fill a large part of the chest, and those that sit in one small place. A map can only
# point as finely as its layer's grid (stride 32 at layer4: 4 x 4 cells at 128 px; 16 at layer3: 8 x 8;
# 8 at layer2: 16 x 16). On the phantom's probes (benchmarks/bench_cam_layers.py, two training runs)
# Grad-CAM pointed at small findings twice as often on layer2 as on layer3 and almost never on
# layer4; for global findings layer3 did at least as well as layer4, and LayerCAM on layer3 pointed
# at them far more often than Grad-CAM (0.97 vs 0.63 in the default run, Cardiomegaly 0.93 vs 0.07),
# while on small findings Grad-CAM beat LayerCAM (0.70 vs 0.41). Notebook 05 measures this run's.
GLOBAL_FINDINGS = ("Cardiomegaly", "Edema", "Enlarged Cardiomediastinum", "No Finding")
CAM_LAYER_FOR_EXTENT = {"global": "layer3", "localised": "layer2"}
CAM_METHOD_FOR_EXTENT = {"global": "layercam", "localised": "gradcam"}
AUTO = "auto"  # a method or layer chosen per finding by its extent
SCORECAM_BATCH = 64


def cam_method_name(method: str) -> str:
    """The canonical name of a CAM method ("GradCAM++" -> "gradcam++"); a clear error for unknown ones."""
    key = method.lower().replace("_", "").replace("-", "")
    if key != RANDOM_CAM and key not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {sorted(CAM_METHODS)} (or {RANDOM_CAM!r})")
    return key


def finding_extent(label: str) -> str:
    """"global" (fills much of the chest: heart size, edema, ...) or "localised" (one small place)."""
    label_index(label)  # validates the name
    return "global" if label in GLOBAL_FINDINGS else "localised"


def cam_method_for(label: str, choice: str = AUTO) -> str:
    """The CAM method a label is explained with: ``choice`` itself, or with "auto" by the finding's extent."""
    return CAM_METHOD_FOR_EXTENT[finding_extent(label)] if choice == AUTO else cam_method_name(choice)


def check_cam_method(choice: str) -> str:
    """``choice`` if it is "auto" or a known method (canonical name), else a clear error."""
    return AUTO if choice == AUTO else cam_method_name(choice)


def cam_layer_for(label: str, choice: str = AUTO) -> str:
    """The layer a label's CAM is computed on: ``choice`` itself, or with "auto" by the finding's extent."""
    if choice == AUTO:
        return CAM_LAYER_FOR_EXTENT[finding_extent(label)]
    if choice not in CAM_LAYER_NAMES:
        raise ValueError(f"CAM layer must be 'auto' or one of {CAM_LAYER_NAMES}, got {choice!r}")
    return choice


def cam_class(method: str) -> type:
    """The pytorch_grad_cam class for a method name ("gradcam", "gradcam++", ..., or "randomcam")."""
    key = cam_method_name(method)
    return pytorch_grad_cam.RandomCAM if key == RANDOM_CAM else getattr(pytorch_grad_cam, CAM_METHODS[key])


class FixedTextImageModel(nn.Module):
    """The fusion model as a function of the image alone, with one study's report held fixed.

    ``forward(image (B, 1, S, S)) -> logits (B, 14)`` calls
    ``fusion.forward_features(image, text_embedding.expand(B, -1))``: what Grad-CAM needs.
    """

    def __init__(self, fusion: nn.Module, text_embedding: torch.Tensor):
        super().__init__()
        self.fusion = fusion
        self.register_buffer("text_embedding", text_embedding.detach().reshape(1, -1))  # (1, H)
        self.train(fusion.training)  # wrapping must not switch the fusion model's dropout on or off

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fusion.forward_features(image, self.text_embedding.expand(image.shape[0], -1))  # (B, 14)


@contextlib.contextmanager
def gradients_only_through(model: nn.Module, target_layer: nn.Module) -> Iterator[None]:
    """Temporarily make the target layer the only part of ``model`` that needs gradients.

    A frozen target layer would give Grad-CAM no gradients; every other trainable weight would
    make the backward pass compute weight gradients nobody reads. Flags are restored afterwards.
    """
    parameters = list(model.parameters())
    before = [p.requires_grad for p in parameters]
    target = {id(p) for p in target_layer.parameters()}
    try:
        for p in parameters:
            p.requires_grad_(id(p) in target)
        with torch.enable_grad():
            yield
    finally:
        for p, flag in zip(parameters, before, strict=True):
            p.requires_grad_(flag)


def compute_cams(
    model: nn.Module,
    target_layer: nn.Module,
    images: torch.Tensor,
    label_indices: Sequence[int],
    method: str = "gradcam",
) -> np.ndarray:
    """CAMs (B, S, S) in [0, 1]: image i explained for label ``label_indices[i]`` (one target per image).

    ``images`` float32 (B, 1, S, S) in [0, 1]; targets are the raw logits of the given labels.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, S, S), got shape {tuple(images.shape)}")
    if len(label_indices) != images.shape[0]:
        raise ValueError(f"one label per image: got {len(label_indices)} labels for {images.shape[0]} images")
    if isinstance(model, ImageEnsemble):
        return ensemble_cams(model, target_layer, images, label_indices, method)
    method = cam_method_name(method)
    device = next(model.parameters()).device
    targets = [ClassifierOutputTarget(int(i)) for i in label_indices]
    was_training = model.training
    quiet = contextlib.redirect_stderr(io.StringIO()) if method == "scorecam" else contextlib.nullcontext()
    try:
        seed = zlib.crc32(images.detach().cpu().numpy().tobytes())  # RandomCAM: new weights per image, repeatably
        with gradients_only_through(model, target_layer), quiet, seeded_numpy(seed):
            with cam_class(method)(model=model, target_layers=[target_layer]) as cam:
                if method == "scorecam":
                    cam.batch_size = SCORECAM_BATCH  # ScoreCAM's forward passes per batch (default 16)
                maps = cam(input_tensor=images.to(device), targets=targets)  # (B, S, S)
    finally:
        model.train(was_training)
    return np.asarray(maps, dtype=np.float32)


def ensemble_cams(ensemble: ImageEnsemble, target_layers: Sequence[nn.Module], images: torch.Tensor,
                  label_indices: Sequence[int], method: str = "gradcam") -> np.ndarray:
    """An ensemble's CAMs (B, S, S) in [0, 1]: each member's map on its own logits, averaged, scaled again.

    One member at a time (pytorch-grad-cam's own multi-layer mode would pair the members' activations
    and gradients by hook order, which autograd does not promise for parallel branches).
    """
    members = list(ensemble.members)
    if len(target_layers) != len(members):
        raise ValueError(f"one target layer per member: got {len(target_layers)} for {len(members)} members")
    maps = [compute_cams(member, layer, images, label_indices, method)
            for member, layer in zip(members, target_layers, strict=True)]
    return np.asarray(scale_cam_image(np.mean(maps, axis=0)), dtype=np.float32)


def cams_for_labels(
    model: nn.Module, target_layer: nn.Module, image: np.ndarray | torch.Tensor, labels: Sequence[str],
    method: str = "gradcam",
) -> dict[str, np.ndarray]:
    """One image (S, S) explained for several labels: {label: CAM (S, S)}; the image is repeated, one target each."""
    tensor = torch.as_tensor(np.asarray(image, dtype=np.float32)).reshape(1, 1, *np.shape(image)[-2:])
    batch = tensor.expand(len(labels), -1, -1, -1).contiguous()  # (K, 1, S, S)
    maps = compute_cams(model, target_layer, batch, [label_index(name) for name in labels], method)
    return {name: maps[i] for i, name in enumerate(labels)}


def cam_for_label(model: nn.Module, image: np.ndarray | torch.Tensor, label: str, method: str = AUTO,
                  layer: str = AUTO) -> np.ndarray:
    """One label's map (S, S) on one image (S, S), with the method and on the layer chosen for it
    (``cam_method_for``, ``cam_layer_for``: "auto" picks both by the finding's extent)."""
    target = model.cam_layer(cam_layer_for(label, layer))
    return cams_for_labels(model, target, image, [label], cam_method_for(label, method))[label]


def label_baseline_map(model: nn.Module, images: Sequence[np.ndarray], label: str, method: str = AUTO,
                       layer: str = AUTO) -> np.ndarray:
    """One label's mean map (S, S) over ``images``: where its map points when the finding is absent.

    Pass images the labels call negative or leave unmentioned (training images: no truth needed;
    ``StudyExplainer.label_negatives``). A map always has a peak, and without the finding it falls
    on the label's default (on the phantom a learned spot at the apex or the base). ``map - baseline``
    keeps what this image adds to that default; its peak is the place the image differs from the
    label's normal chest. The images go through the CAM as one batch (the maps of one at a time, up to
    float32 rounding: a batch may sum its convolutions in another order).
    """
    if len(images) == 0:
        raise ValueError(f"no images to average {label}'s baseline map over")
    batch = torch.from_numpy(np.stack([np.asarray(image, dtype=np.float32) for image in images]))[:, None]
    maps = compute_cams(model, model.cam_layer(cam_layer_for(label, layer)), batch, [label_index(label)] * len(images),
                        cam_method_for(label, method))
    return maps.mean(axis=0).astype(np.float32)


def label_baselines(model: nn.Module, negatives: Callable[[str], Sequence[np.ndarray]], method: str = AUTO,
                    layer: str = AUTO) -> Callable[[str], np.ndarray | None]:
    """``label -> label_baseline_map(model, negatives(label), label, method, layer)``, each computed once, on
    first use; None for a label with no negative images (every image has it: no normal chest to compare with)."""

    @functools.cache
    def baseline(label: str) -> np.ndarray | None:
        images = negatives(label)
        return label_baseline_map(model, images, label, method, layer) if len(images) else None

    return baseline


def minus_baseline(cam: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """What a map adds to its label's baseline, for display: ``cam - baseline`` clipped at 0 and scaled
    to a maximum of 1 (all zeros when nothing rises above the baseline). Its peak is that of ``cam - baseline``
    wherever anything does."""
    contrast = np.clip(np.asarray(cam, dtype=np.float32) - baseline, 0.0, None)
    top = float(contrast.max())
    return contrast / top if top > 0 else contrast
