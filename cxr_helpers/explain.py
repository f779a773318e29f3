"""Grad-CAM (pytorch-grad-cam) on images and SHAP (shap) on report text, per study, with a cache.

What is explained, and on which scale:
- **Grad-CAM** and friends explain one label's *raw logit* (``ClassifierOutputTarget``) with
  respect to the last convolutional block (ResNet ``layer4``). For the fusion model the study's
  report is held fixed: the CAM sees a module ``image -> logits`` that feeds the fusion model the
  study's text embedding (``FixedTextImageModel``). Maps come back min-max scaled to [0, 1] at
  the image's size, as pytorch-grad-cam returns them.
- **SHAP** explains the *logit* of each chosen label as a function of the report's words, with
  the study's image held fixed for the fusion model. Logits, not probabilities: the model's last
  layer is additive in logits, SHAP's values add up exactly to the logit (base value + sum of
  word values = f(report)), and Grad-CAM explains the same quantity. The probability is
  ``sigmoid(base value + sum)``; the plots say both.
- Words are masked by replacing them with ``[MASK]`` (consecutive masked words share one), the
  token both CXR-BERT and the phantom's tiny BERT saw during masked-language-model pretraining;
  deleting words instead would also shift every later word's position. The masker splits on
  non-word characters (``r"\\W+"``); the reports are already cleaned (lower case, no punctuation).
- The paper explains the top-3 labels by predicted probability; so does everything here.

The cache keeps every explanation per (model, study, label, method) in memory and on disk under
``<artifacts>/explanations/<model>/<study_id>/`` (npz for CAMs, json for SHAP), tagged with the
checkpoint's fingerprint, so a retrained model never shows stale maps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxr_helpers.labels import CHEXPERT_LABELS, label_index

# Names users pick (settings.cam_method, the browser's dropdown) -> pytorch_grad_cam classes.
CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
}
RANDOM_CAM = "randomcam"  # pytorch_grad_cam.RandomCAM: the baseline of the faithfulness checks
SHAP_MASK_TOKEN = "[MASK] "  # trailing space: a mask never glues onto the next word
WORD_SPLIT = r"\W+"
SCORECAM_BATCH = 64
CACHE_VERSION = 1  # bump when the way explanations are computed changes: older cached files are then ignored


# ----------------------------------------------------------------------------- Grad-CAM
def cam_method_name(method: str) -> str:
    """The canonical name of a CAM method ("GradCAM++" -> "gradcam++"); a clear error for unknown ones."""
    key = method.lower().replace("_", "").replace("-", "")
    if key != RANDOM_CAM and key not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {sorted(CAM_METHODS)} (or {RANDOM_CAM!r})")
    return key


def cam_class(method: str) -> type:
    """The pytorch_grad_cam class for a method name ("gradcam", "gradcam++", ..., or "randomcam")."""
    import pytorch_grad_cam

    key = cam_method_name(method)
    return pytorch_grad_cam.RandomCAM if key == RANDOM_CAM else getattr(pytorch_grad_cam, CAM_METHODS[key])


@contextlib.contextmanager
def seeded_numpy(seed: int = 0) -> Iterator[None]:
    """Seed NumPy's global random state for a block, then put the caller's state back.

    shap (tie-breaking) and RandomCAM (channel weights) draw from the global state.
    """
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


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
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, S, S), got shape {tuple(images.shape)}")
    if len(label_indices) != images.shape[0]:
        raise ValueError(f"one label per image: got {len(label_indices)} labels for {images.shape[0]} images")
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


def cams_for_labels(
    model: nn.Module, target_layer: nn.Module, image: np.ndarray | torch.Tensor, labels: Sequence[str],
    method: str = "gradcam",
) -> dict[str, np.ndarray]:
    """One image (S, S) explained for several labels: {label: CAM (S, S)}; the image is repeated, one target each."""
    tensor = torch.as_tensor(np.asarray(image, dtype=np.float32)).reshape(1, 1, *np.shape(image)[-2:])
    batch = tensor.expand(len(labels), -1, -1, -1).contiguous()  # (K, 1, S, S)
    maps = compute_cams(model, target_layer, batch, [label_index(name) for name in labels], method)
    return {name: maps[i] for i, name in enumerate(labels)}


def gray_to_rgb(image: np.ndarray) -> np.ndarray:
    """A grayscale image (S, S) as RGB float32 (S, S, 3) in [0, 1]: what show_cam_on_image expects."""
    gray = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return np.repeat(gray[..., None], 3, axis=-1)


def overlay_cam(image: np.ndarray, cam: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The heatmap over the X-ray as uint8 RGB (S, S, 3); ``opacity`` 0 = only the X-ray, 1 = only the map."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    cam = np.clip(np.asarray(cam, dtype=np.float32), 0.0, 1.0)
    return show_cam_on_image(gray_to_rgb(image), cam, use_rgb=True, image_weight=1.0 - opacity)


def cam_panel_png(
    image: np.ndarray, cams: Sequence[np.ndarray], captions: Sequence[str], opacity: float = 0.5, tile: int = 224,
) -> bytes:
    """PNG bytes: the X-ray then one overlay per CAM, each captioned (fast: PIL, no matplotlib)."""
    from PIL import Image, ImageDraw, ImageFont

    tiles = [np.uint8(255 * gray_to_rgb(image))] + [overlay_cam(image, cam, opacity) for cam in cams]
    titles = ["X-ray"] + list(captions)
    band = 22
    canvas = Image.new("RGB", (tile * len(tiles), tile + band), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    for i, (pixels, title) in enumerate(zip(tiles, titles, strict=True)):
        canvas.paste(Image.fromarray(pixels).resize((tile, tile), Image.Resampling.BILINEAR), (i * tile, band))
        draw.text((i * tile + 4, 4), title, fill="black", font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def cam_figure(image: np.ndarray, cams: Mapping[str, np.ndarray], probabilities: Mapping[str, float],
               title: str | None = None, opacity: float = 0.5):
    """The paper's Figure 8: the X-ray and one Grad-CAM overlay per label, titled with its probability."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(cams) + 1, figsize=(3.2 * (len(cams) + 1), 3.8), layout="constrained")
    axes = np.atleast_1d(axes)
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("X-ray")
    for axis, (label, cam) in zip(axes[1:], cams.items(), strict=True):
        axis.imshow(overlay_cam(image, cam, opacity))
        axis.set_title(f"{label}\np = {probabilities[label]:.2f}", fontsize=10)
    for axis in axes:
        axis.axis("off")
    if title:
        figure.suptitle(title)
    return figure


# ----------------------------------------------------------------------------- SHAP
def import_shap():
    """``import shap`` without its deprecation warnings under new matplotlib (filtered, not errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        import shap
    return shap


def word_masker(mask_token: str = SHAP_MASK_TOKEN):
    """shap's Text masker on whole words (split on ``\\W+``), masked words replaced by ``[MASK]``."""
    shap = import_shap()
    return shap.maskers.Text(WORD_SPLIT, mask_token=mask_token, collapse_mask_token=True)


@dataclasses.dataclass
class TextExplanation:
    """SHAP values of one label over the words of one report, on the logit scale."""

    label: str
    tokens: list[str]  # the report's words, as shap split them (trailing separators kept)
    values: np.ndarray  # (T,) one value per word: > 0 pushes towards the label (red), < 0 away (blue)
    base_value: float  # the logit with every word masked
    output: float  # the logit of the whole report = base_value + values.sum()

    @property
    def probability(self) -> float:
        """The model's probability for the label on the whole report."""
        return float(1.0 / (1.0 + np.exp(-self.output)))

    @property
    def words(self) -> list[str]:
        """The tokens without their trailing separators."""
        return [t.strip() for t in self.tokens]

    def top_words(self, k: int = 5) -> list[tuple[str, float]]:
        """The k words pushing hardest towards the label, with their values."""
        order = np.argsort(-self.values, kind="stable")[:k]
        return [(self.words[i], float(self.values[i])) for i in order]

    def to_shap(self):
        """As a single-output shap.Explanation (for shap.plots.text and friends)."""
        shap = import_shap()
        return shap.Explanation(
            values=np.asarray(self.values, dtype=float), base_values=float(self.base_value),
            data=np.asarray(self.tokens, dtype=object),
        )

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"label": self.label, "tokens": list(self.tokens), "values": [float(v) for v in self.values],
                "base_value": float(self.base_value), "output": float(self.output)}

    @classmethod
    def from_dict(cls, data: Mapping) -> TextExplanation:
        """Inverse of ``to_dict``."""
        return cls(data["label"], list(data["tokens"]), np.asarray(data["values"], dtype=np.float64),
                   float(data["base_value"]), float(data["output"]))


def explain_text(
    logit_fn: Callable[[Sequence[str]], np.ndarray],
    text: str,
    labels: Sequence[str],
    max_evals: int = 300,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, TextExplanation]:
    """SHAP (partition explainer, word masking) of each label's logit on one report: {label: TextExplanation}.

    ``logit_fn(texts) -> (N, 14)`` logits. Each label is explained on its own, with NumPy's global
    random state seeded (shap breaks ties with it): when ``max_evals`` stops the explainer before
    the word tree is fully split, the result then depends neither on chance nor on which other
    labels were asked for, so a cached value means the same thing whoever computed it.
    """
    shap = import_shap()
    if not str(text).strip():
        raise ValueError("cannot explain an empty report: it has no words")
    explanations = {}
    for name in labels:
        column = label_index(name)

        def label_logit(texts, column=column) -> np.ndarray:
            return np.asarray(logit_fn([str(t) for t in texts]), dtype=np.float64)[:, column]  # (N,)

        explainer = shap.Explainer(label_logit, word_masker())
        with seeded_numpy(seed), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = explainer([str(text)], max_evals=max(int(max_evals), 2), batch_size=batch_size, silent=True)
        values = np.asarray(result.values[0], dtype=np.float64).reshape(-1)  # (T,)
        base = float(np.asarray(result.base_values).reshape(-1)[0])
        tokens = [str(t) for t in result.data[0]]
        explanations[name] = TextExplanation(name, tokens, values, base, float(base + values.sum()))
    return explanations


_NUMPY_SCALAR = re.compile(r"np\.(?:float|int)(?:16|32|64)\(([^()]*)\)")


def fix_shap_colours(html: str) -> str:
    """Make shap's colours valid CSS again under NumPy 2.

    shap <= 0.51 writes colours as ``rgba(np.float64(255.0), ...)`` under NumPy 2 (shap issue
    #4146, fixed upstream in PR #4332): browsers ignore such a colour and the words lose their
    red/blue. Writing the plain numbers back changes nothing where shap is already fixed.
    """
    return _NUMPY_SCALAR.sub(r"\1", html)


def shap_text_html(explanation: TextExplanation, heading: bool = True) -> str:
    """The report coloured by SHAP (red towards the label, blue away): shap.plots.text's HTML, no scripts."""
    shap = import_shap()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = fix_shap_colours(shap.plots.text(explanation.to_shap(), display=False))
    if not heading:
        return body
    title = (
        f"<div style='font-weight:bold;margin-top:6px'>{explanation.label}: p = {explanation.probability:.2f}"
        f" <span style='font-weight:normal;color:#666'>(logit {explanation.output:+.2f} = base "
        f"{explanation.base_value:+.2f} + word values {explanation.values.sum():+.2f})</span></div>"
    )
    return title + body


def shap_report_html(explanations: Sequence[TextExplanation]) -> str:
    """Several labels' SHAP text plots stacked, as in the paper's Figures 9 to 11."""
    return "\n".join(f"<div style='margin-bottom:8px'>{shap_text_html(e)}</div>" for e in explanations)


# ----------------------------------------------------------------------------- text functions SHAP calls
def _embed_texts(texts: Sequence[str], tokenizer, encoder: nn.Module, max_length: int, pooling: str,
                 batch_size: int, device: torch.device) -> torch.Tensor:
    """Frozen-encoder pooled embeddings (N, H) of raw texts, as the cached features were made."""
    from cxr_helpers.text_model import compute_embeddings

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


# ----------------------------------------------------------------------------- the cache
def label_slug(label: str) -> str:
    """A file-name-safe label ("Pleural Effusion" -> "pleural_effusion")."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def file_fingerprint(*paths: Path | None) -> str:
    """Size and modification time of files (a retrained checkpoint changes it); "" for none."""
    parts = []
    for path in paths:
        if path is not None and Path(path).exists():
            stat = Path(path).stat()
            parts.append(f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


class ExplanationCache:
    """Explanations per (model, study, label, method): in memory, and on disk under ``root`` if given.

    CAMs are stored as ``<root>/<model>/<study_id>/cam_<method>_<label>.npz``, SHAP values as
    ``shap_<method>_<label>.json``; each file records the model fingerprint it was made with and
    is ignored when the fingerprint differs. ``computed`` counts the labels actually computed.
    """

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else None
        self.memory: dict[tuple, object] = {}
        self.computed: dict[str, int] = {"cam": 0, "shap": 0}

    def path(self, kind: str, model: str, study_id: int, label: str, method: str) -> Path | None:
        """Where one explanation lives on disk (None without a root)."""
        if self.root is None:
            return None
        suffix = "npz" if kind == "cam" else "json"
        method_slug = re.sub(r"[^a-z0-9+]+", "_", method.lower()).replace("+", "pp")
        return self.root / model / str(int(study_id)) / f"{kind}_{method_slug}_{label_slug(label)}.{suffix}"

    def _read(self, kind: str, path: Path | None, fingerprint: str):
        if path is None or not path.exists():
            return None
        try:
            if kind == "cam":
                with np.load(path) as stored:
                    if str(stored["fingerprint"]) != fingerprint:
                        return None
                    return stored["cam"].astype(np.float32)
            data = json.loads(path.read_text())
            return TextExplanation.from_dict(data) if data.get("fingerprint") == fingerprint else None
        except (OSError, ValueError, KeyError):
            return None  # unreadable cache file: recompute

    def _write(self, kind: str, path: Path | None, value, fingerprint: str) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "cam":
            with open(path, "wb") as handle:
                np.savez_compressed(handle, cam=np.asarray(value, dtype=np.float32), fingerprint=fingerprint)
        else:
            path.write_text(json.dumps({**value.to_dict(), "fingerprint": fingerprint}))

    def get_many(self, kind: str, model: str, study_id: int, labels: Sequence[str], method: str, fingerprint: str,
                 compute: Callable[[list[str]], Mapping[str, object]]) -> dict[str, object]:
        """{label: explanation}: from memory, else disk, else ``compute(missing labels)`` (stored in both)."""
        fingerprint = f"v{CACHE_VERSION}|{fingerprint}"
        found, missing = {}, []
        for label in labels:
            key = (kind, model, int(study_id), label, method, fingerprint)
            value = self.memory.get(key)
            if value is None:
                value = self._read(kind, self.path(kind, model, study_id, label, method), fingerprint)
                if value is not None:
                    self.memory[key] = value
            if value is None:
                missing.append(label)
            else:
                found[label] = value
        if missing:
            fresh = compute(missing)
            self.computed[kind] = self.computed.get(kind, 0) + len(missing)
            for label in missing:
                value = fresh[label]
                self.memory[(kind, model, int(study_id), label, method, fingerprint)] = value
                self._write(kind, self.path(kind, model, study_id, label, method), value, fingerprint)
                found[label] = value
        return {label: found[label] for label in labels}


# ----------------------------------------------------------------------------- one object per artifacts folder
MODEL_ROLES = ("fusion", "image", "text")
CAM_ROLES = ("fusion", "image")  # models with an image to put a heatmap on
SHAP_ROLES = ("fusion", "text")  # models with a report to colour
MADE_BY = {
    "image": "notebook 02 (notebooks/02_image_baseline.ipynb) or `python -m cxr_helpers train image`",
    "text": "notebook 03 (notebooks/03_text_baseline.ipynb) or `python -m cxr_helpers train text`",
    "fusion": "notebook 04 (notebooks/04_fusion_training.ipynb) or `python -m cxr_helpers train fusion`",
}


@dataclasses.dataclass
class LoadedModels:
    """The trained models a StudyExplainer explains, with their checkpoint names and fingerprints."""

    image: nn.Module | None = None  # image_model.ImageClassifier
    text_head: nn.Module | None = None  # text_model.TextHead on frozen encoder embeddings
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
        model = {"fusion": self.fusion, "image": self.image, "text": self.text_head}[role]
        if model is None:
            raise ValueError(f"no {role} model loaded; it is trained by {MADE_BY[role]}")
        return model


class UnknownStudyError(LookupError):
    """A study id that is not in the cohort (the message says where to find valid ones)."""


def check_study_id(cohort, study_id: int) -> int:
    """``study_id`` as int if the cohort has it, else UnknownStudyError saying where valid ids are."""
    known = set(int(s) for s in cohort["study_id"].unique())
    if int(study_id) not in known:
        test = cohort.loc[cohort["split"] == "test", "study_id"].drop_duplicates().head(5).tolist()
        raise UnknownStudyError(
            f"study {study_id} is not in the cohort (cohort.csv). Valid ids: the study_id column of "
            f"cohort.csv (split == 'test' for held-out studies) or of predictions/<model>_test.csv, "
            f"or StudyExplainer.study_ids('test'); for example {', '.join(str(s) for s in test)}"
        )
    return int(study_id)


class StudyExplainer:
    """Predictions, Grad-CAMs, SHAP values and modality reliance per study, cached.

    ``images`` is the uint8 cache (N, S, S) that the cohort's ``cache_index`` points into; the
    text a model reads is the cohort's cleaned ``text_<text_setting>``. Build it from an
    artifacts folder with ``StudyExplainer.from_settings(settings)``.
    """

    def __init__(self, cohort, images: np.ndarray, models: LoadedModels, text_setting: str = "findings_impression",
                 cache: ExplanationCache | None = None, max_length: int = 256, pooling: str = "cls",
                 batch_size: int = 32, shap_max_evals: int = 300, top_k: int = 3, cam_method: str = "gradcam"):
        self.cohort = cohort
        self.images = images
        self.models = models
        self.text_setting = text_setting
        self.cache = cache if cache is not None else ExplanationCache()
        self.max_length, self.pooling, self.batch_size = max_length, pooling, batch_size
        self.shap_max_evals, self.top_k, self.cam_method = shap_max_evals, top_k, cam_method
        lateral = (~cohort["view_position"].isin(["PA", "AP"])).astype(int) if "view_position" in cohort else 0
        first = cohort.assign(_lateral=lateral).sort_values("_lateral", kind="stable").drop_duplicates("study_id")
        self._rows = {int(s): i for s, i in zip(first["study_id"], first.index, strict=True)}  # frontal view first
        self._logits: dict[tuple[int, str], np.ndarray] = {}

    @classmethod
    def from_settings(cls, settings, roles: Sequence[str] = MODEL_ROLES, fusion_name: str | None = None,
                      cache: bool = True) -> StudyExplainer:
        """Load the cohort, the image cache and the trained models of ``roles`` from the artifacts folder."""
        from cxr_helpers.prepare import load_cohort, open_image_cache

        cohort = load_cohort(settings.artifacts_dir)
        images = open_image_cache(settings.artifacts_dir, settings.image_size)
        models = load_models(settings, roles, fusion_name)
        root = Path(settings.artifacts_dir) / "explanations" if cache else None
        return cls(cohort, images, models, models.text_setting, ExplanationCache(root), models.text_max_length,
                   models.text_pooling, settings.batch_size, settings.shap_max_evals, settings.top_k_labels,
                   settings.cam_method)

    # -- studies
    def example_study(self, split: str = "test", role: str = "fusion", search: int = 50) -> int:
        """A study worth showing first: among the first ``search`` studies with a positive finding (not
        No Finding) and report text, one whose top predicted label is such a finding; else the first."""
        table = self.cohort.drop_duplicates("study_id")
        table = table[table["split"] == split] if (table["split"] == split).any() else table
        findings = [name for name in CHEXPERT_LABELS if name != "No Finding"]
        chosen = table[(table[findings] == 1).any(axis=1) & (table[f"text_{self.text_setting}"].str.strip() != "")]
        candidates = [int(s) for s in (chosen if len(chosen) else table)["study_id"]]
        if self.has(role):
            for study_id in candidates[:search]:
                top = self.top_labels(study_id, role, 1)[0]
                if top != "No Finding" and self.coded_labels(study_id)[top] == 1:
                    return study_id
        return candidates[0]

    def study_ids(self, split: str | None = "test") -> list[int]:
        """Study ids of a split (all studies with ``split=None``), in cohort order."""
        table = self.cohort.drop_duplicates("study_id")
        if split is not None:
            table = table[table["split"] == split]
        return [int(s) for s in table["study_id"]]

    def row(self, study_id: int):
        """The cohort row of a study (its first frontal image); UnknownStudyError for ids not in the cohort."""
        if int(study_id) not in self._rows:
            check_study_id(self.cohort, study_id)
        return self.cohort.loc[self._rows[int(study_id)]]

    def image(self, study_id: int) -> np.ndarray:
        """The study's image from the cache, float32 (S, S) in [0, 1]."""
        return np.asarray(self.images[int(self.row(study_id)["cache_index"])], dtype=np.float32) / 255.0

    def image_tensor(self, study_id: int) -> torch.Tensor:
        """The study's image as the models take it: (1, 1, S, S)."""
        return torch.from_numpy(self.image(study_id))[None, None]

    def text(self, study_id: int) -> str:
        """The cleaned report text the text models read."""
        return str(self.row(study_id)[f"text_{self.text_setting}"])

    def coded_labels(self, study_id: int) -> dict[str, int]:
        """The study's 14 labels as coded in the cohort (1/0/-1/-2)."""
        row = self.row(study_id)
        return {name: int(row[name]) for name in CHEXPERT_LABELS}

    # -- predictions
    def _device(self, role: str) -> torch.device:
        return next(self.models.get(role).parameters()).device

    def text_embedding(self, study_id: int | None = None, text: str | None = None) -> torch.Tensor:
        """The fusion model's report embedding (1, H) of a study (or of ``text``)."""
        text = self.text(study_id) if text is None else text
        with torch.no_grad():
            return self.models.get("fusion").embed_texts([text], batch_size=1)

    def text_logit_fn(self, study_id: int, role: str = "fusion") -> Callable[[Sequence[str]], np.ndarray]:
        """texts -> logits (N, 14): what SHAP explains (for fusion, with the study's image held fixed)."""
        if role not in SHAP_ROLES:
            raise ValueError(f"SHAP explains report text: role must be one of {SHAP_ROLES}, got {role!r}")
        if role == "text":
            return text_head_logit_fn(self.models.get("text"), self.models.tokenizer, self.models.encoder,
                                      self.max_length, self.pooling, self.batch_size)
        return fusion_text_logit_fn(self.models.get("fusion"), self.image_tensor(study_id), self.batch_size)

    def cam_model(self, study_id: int, role: str = "fusion") -> tuple[nn.Module, nn.Module]:
        """(module image -> logits, target layer) for Grad-CAM; the fusion model gets the report held fixed."""
        if role not in CAM_ROLES:
            raise ValueError(f"Grad-CAM explains images: role must be one of {CAM_ROLES}, got {role!r}")
        model = self.models.get(role)
        if role == "image":
            return model, model.target_layer
        wrapper = FixedTextImageModel(model, self.text_embedding(study_id))
        return wrapper, model.image_target_layer()

    def logits(self, study_id: int, role: str = "fusion") -> np.ndarray:
        """The model's logits (14,) for the study (memoised)."""
        key = (int(study_id), role)
        if key not in self._logits:
            model = self.models.get(role)
            model.eval()
            with torch.no_grad():
                if role == "text":
                    out = self.text_logit_fn(study_id, "text")([self.text(study_id)])[0]
                elif role == "image":
                    out = model(self.image_tensor(study_id).to(self._device(role)))[0].float().cpu().numpy()
                else:
                    image = self.image_tensor(study_id).to(self._device(role))
                    out = model.forward_features(image, self.text_embedding(study_id))[0].float().cpu().numpy()
            self._logits[key] = np.asarray(out, dtype=np.float32)
        return self._logits[key]

    def probabilities(self, study_id: int, role: str = "fusion") -> np.ndarray:
        """Predicted probabilities (14,)."""
        return 1.0 / (1.0 + np.exp(-self.logits(study_id, role).astype(np.float64)))

    def top_labels(self, study_id: int, role: str = "fusion", k: int | None = None) -> list[str]:
        """The k labels with the highest predicted probability (the paper's top-3)."""
        order = np.argsort(-self.logits(study_id, role), kind="stable")[: k or self.top_k]
        return [CHEXPERT_LABELS[i] for i in order]

    def prediction_table(self, study_id: int, roles: Sequence[str] | None = None):
        """Probabilities per label for each loaded model beside the cohort's coded labels (a DataFrame)."""
        import pandas as pd

        roles = [r for r in (roles or MODEL_ROLES) if self.has(r)]
        table = pd.DataFrame({"label": list(CHEXPERT_LABELS), "coded label": list(self.coded_labels(study_id).values())})
        for role in roles:
            table[f"p({role})"] = self.probabilities(study_id, role)
        return table

    def has(self, role: str) -> bool:
        """Whether a model for ``role`` is loaded."""
        return {"fusion": self.models.fusion, "image": self.models.image, "text": self.models.text_head}[role] is not None

    # -- explanations
    def cams(self, study_id: int, labels: Sequence[str] | None = None, role: str = "fusion",
             method: str | None = None) -> dict[str, np.ndarray]:
        """{label: CAM (S, S) in [0, 1]} for the study (default: its top-3 labels), cached."""
        method = cam_method_name(method or self.cam_method)  # validated before anything is computed
        labels = list(labels) if labels is not None else self.top_labels(study_id, role)

        def compute(missing: list[str]) -> dict[str, np.ndarray]:
            model, layer = self.cam_model(study_id, role)
            return cams_for_labels(model, layer, self.image(study_id), missing, method)

        return self.cache.get_many("cam", self.models.names.get(role, role), study_id, labels, method,
                                   self.models.fingerprints.get(role, ""), compute)

    def shap_values(self, study_id: int, labels: Sequence[str] | None = None, role: str = "fusion",
                    max_evals: int | None = None) -> dict[str, TextExplanation]:
        """{label: TextExplanation} for the study's report (default: its top-3 labels), cached."""
        max_evals = int(max_evals or self.shap_max_evals)
        labels = list(labels) if labels is not None else self.top_labels(study_id, role)

        def compute(missing: list[str]) -> dict[str, TextExplanation]:
            return explain_text(self.text_logit_fn(study_id, role), self.text(study_id), missing, max_evals,
                                batch_size=max(self.batch_size, 32))

        return self.cache.get_many("shap", self.models.names.get(role, role), study_id, labels,
                                   f"partition{max_evals}", self.models.fingerprints.get(role, ""), compute)

    # -- modality reliance
    def _ablated_probabilities(self, study_id: int) -> tuple[np.ndarray, ...]:
        """Fusion probabilities (14,) with both modalities, without the report, without the image (memoised)."""
        key = (int(study_id), "ablation")
        if key not in self._logits:
            fusion = self.models.get("fusion")
            image = self.image_tensor(study_id).to(self._device("fusion"))
            fusion.eval()
            with torch.no_grad():
                text = self.text_embedding(study_id)  # (1, H)
                texts = torch.cat([text, self.text_embedding(text=""), text])  # (3, H)
                images = torch.cat([image, image, torch.zeros_like(image)])  # (3, 1, S, S)
                self._logits[key] = torch.sigmoid(fusion.forward_features(images, texts)).float().cpu().numpy()
        both, without_report, without_image = self._logits[key]
        return both, without_report, without_image

    def modality_reliance(self, study_id: int, labels: Sequence[str] | None = None):
        """How far the fusion model's probabilities move when the report or the image is taken away.

        As in notebook 04's ablation: the report is replaced by an empty report (the encoder's
        output for ""), the image by a blank (all-zero) image. One row per label (default: the
        top-3): p with both, without the report, without the image, and the two shifts.
        """
        import pandas as pd

        labels = list(labels) if labels is not None else self.top_labels(study_id, "fusion")
        both, without_report, without_image = self._ablated_probabilities(study_id)
        columns = [label_index(name) for name in labels]
        return pd.DataFrame({
            "label": labels,
            "p(image + report)": both[columns],
            "p(image only)": without_report[columns],
            "p(report only)": without_image[columns],
            "shift without report": (without_report - both)[columns],
            "shift without image": (without_image - both)[columns],
        })


def reliance_on_report(table) -> float:
    """Share of the prediction's movement due to the report: |shift without report| / (both shifts), mean over rows."""
    report = np.abs(table["shift without report"].to_numpy(dtype=float)).mean()
    image = np.abs(table["shift without image"].to_numpy(dtype=float)).mean()
    return float(report / (report + image)) if report + image > 0 else float("nan")


# ----------------------------------------------------------------------------- loading the trained models
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
    text-only model explained beside it is the ``TextHead`` trained on that same text.
    """
    from cxr_helpers.config import pick_device
    from cxr_helpers.training import load_checkpoint

    unknown = [r for r in roles if r not in MODEL_ROLES]
    if unknown:
        raise ValueError(f"model roles must be among {MODEL_ROLES}, got {unknown}")
    from cxr_helpers.text_model import text_pooling

    device = pick_device(device) if not isinstance(device, torch.device) else device
    checkpoints = Path(settings.artifacts_dir) / "checkpoints"
    models = LoadedModels(text_setting=settings.text_setting, text_pooling=text_pooling(settings),
                          text_max_length=settings.max_text_length)
    if "fusion" in roles:
        from cxr_helpers.fusion import load_fusion_model

        name = fusion_name or default_fusion_name(settings.artifacts_dir, settings.text_setting)
        path = _require_checkpoint(checkpoints / f"{name}.pt", "fusion")
        # with the text-only model loaded too, the fusion model borrows its frozen encoder (one copy in memory)
        models.fusion = load_fusion_model(settings.artifacts_dir, name, device=device,
                                          text_tools="text" not in roles).eval()
        models.names["fusion"], models.fingerprints["fusion"] = name, file_fingerprint(path)
        models.text_setting = models.fusion.checkpoint_meta.get("text_setting", settings.text_setting)
    if "image" in roles:
        from cxr_helpers.image_model import ImageClassifier

        path = _require_checkpoint(checkpoints / "image.pt", "image")
        models.image = ImageClassifier(dropout=settings.dropout, freeze_through=settings.freeze_through)
        load_checkpoint(path, models.image)
        models.image.to(device).eval()
        models.names["image"], models.fingerprints["image"] = "image", file_fingerprint(path)
    if "text" in roles:
        from cxr_helpers.text_model import TextHead, embeddings_paths, load_text_encoder

        sidecar = embeddings_paths(settings, models.text_setting)[1]  # how the head's features were made
        made = json.loads(sidecar.read_text()).get("key", {}) if sidecar.exists() else {}
        models.text_pooling = made.get("pooling", models.text_pooling)
        models.text_max_length = int(made.get("max_length", models.text_max_length))
        name = f"text_head_{models.text_setting}"
        path = _require_checkpoint(checkpoints / f"{name}.pt", "text")
        models.tokenizer, models.encoder = load_text_encoder(settings.text_model, settings, progress=False)
        models.encoder.to(device).eval()
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        models.text_head = TextHead(state["mlp.0.weight"].shape[1], hidden=state["mlp.0.weight"].shape[0],
                                    dropout=settings.dropout)
        load_checkpoint(path, models.text_head)
        models.text_head.to(device).eval()
        models.names["text"], models.fingerprints["text"] = name, file_fingerprint(path)
    if models.fusion is not None and "text" in roles and not models.fusion.end_to_end:
        meta = models.fusion.checkpoint_meta
        if meta["text_model"] == settings.text_model:
            tokenizer, encoder = models.tokenizer, models.encoder
        else:
            tokenizer, encoder = load_text_encoder(meta["text_model"], settings, progress=False)
        models.fusion.attach_text_tools(tokenizer, encoder.to(device).eval(), meta["max_text_length"])
    return models


# ----------------------------------------------------------------------------- one study to files (the CLI)
def _roles_for(model_name: str | None) -> tuple[tuple[str, ...], str | None]:
    """(roles to load, fusion checkpoint name) for explain_study_to_files' ``model_name``."""
    if model_name in (None, "fusion"):
        return ("fusion",), None
    if model_name.startswith("fusion_"):
        return ("fusion",), model_name
    if model_name in ("image", "text"):
        return (model_name,), None
    raise ValueError(f"model_name must be 'fusion', a fusion checkpoint name (fusion_<strategy>_<setting>...), "
                     f"'image' or 'text'; got {model_name!r}")


def shap_html_page(explanations: Sequence[TextExplanation], title: str, note: str = "") -> str:
    """A standalone HTML page with SHAP text plots (opens in any web browser)."""
    import html as html_lib

    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html_lib.escape(title)}</title></head><body style='font-family:sans-serif;max-width:1100px'>"
        f"<h2>{html_lib.escape(title)}</h2><p>{note}</p>{shap_report_html(explanations)}</body></html>"
    )


def explain_study_to_files(settings, study_id: int, out_dir: Path | None = None,
                           model_name: str | None = None) -> list[Path]:
    """Write one study's Grad-CAM PNG (X-ray + top-3 overlays with probabilities) and SHAP HTML.

    ``model_name``: None or "fusion" (the default fusion model), a fusion checkpoint name, "image"
    (PNG only) or "text" (HTML only). Files go to ``out_dir`` (default ``<artifacts>/explanations``)
    as ``study_<id>_<model>_<method>.png`` and ``study_<id>_<model>_shap.html``; returns their paths.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from cxr_helpers.prepare import load_cohort

    roles, fusion_name = _roles_for(model_name)
    study_id = check_study_id(load_cohort(settings.artifacts_dir), study_id)  # before loading any model
    explainer = StudyExplainer.from_settings(settings, roles=roles, fusion_name=fusion_name)
    role = roles[0]
    name = explainer.models.names[role]
    out_dir = Path(out_dir) if out_dir is not None else Path(settings.artifacts_dir) / "explanations"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    probabilities = explainer.probabilities(study_id, role)
    if role in CAM_ROLES:
        method = explainer.cam_method
        cams = explainer.cams(study_id, role=role, method=method)
        figure = cam_figure(explainer.image(study_id), cams,
                            {label: float(probabilities[label_index(label)]) for label in cams},
                            title=f"study {study_id}: {CAM_METHODS.get(method, method)} of {name}")
        path = out_dir / f"study_{study_id}_{name}_{label_slug(method)}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    if role in SHAP_ROLES and explainer.text(study_id).strip():
        explanations = explainer.shap_values(study_id, role=role)
        note = ("Top-3 labels by predicted probability. Red words push the model towards the label, blue words away; "
                "values on the logit scale (base value + word values = the model's logit for this report).")
        path = out_dir / f"study_{study_id}_{name}_shap.html"
        path.write_text(shap_html_page(list(explanations.values()), f"study {study_id}: SHAP values of {name}", note),
                        encoding="utf-8")
        paths.append(path)
    return paths
