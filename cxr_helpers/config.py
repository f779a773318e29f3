"""One source of settings: environment variables over profile defaults, as one dataclass.

Profiles:
- ``mimic``: the paper's settings (224 px, lr 1e-5, batch 32, 10 epochs, 10,850 studies,
  ImageNet ResNet-18, CXR-BERT from the hub).
- ``phantom`` (default): the same code on the synthetic dataset, sized so ``make demo`` runs
  all notebooks in minutes on a laptop CPU, with no pretrained weights to download.
- ``openi``: real radiographs and reports (Open-i, Indiana University) imported into the MIMIC
  layout by ``python -m cxr_helpers openi`` (docs/openi.md), with the phantom's laptop-sized
  training settings at 128 px.
``CXR_FAST=1`` shrinks either profile further for tests. Notebooks never edit these values in
their source: set an environment variable or pass overrides to ``load_settings``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cxr_helpers.labels import BLANK_POLICIES, UNCERTAINTY_POLICIES

# ResNet stages a Grad-CAM can target (image_model.CAM_LAYERS), from fine (stride 8) to coarse (stride 32).
CAM_LAYER_NAMES = ("layer2", "layer3", "layer4")

PROFILES = ("phantom", "mimic", "openi")
CXR_BERT = "microsoft/BiomedVLP-CXR-BERT-general"
TEXT_SETTINGS = ("findings_impression", "indication")
TEXT_FINETUNE_HEADS = ("mlp", "label_attention")  # text.heads.TextHead on the pooled embedding, or LabelAttentionHead
LR_SCHEDULES = ("constant", "warmup_linear")  # how training.fit moves the learning rate over the steps


@dataclass(frozen=True)
class Settings:
    """Every knob of the workbook; defaults are the paper's (mimic profile)."""

    profile: str = "mimic"
    fast: bool = False
    data_dir: Path = Path("data/mimic-cxr-jpg")
    reports_dir: Path = Path("data/mimic-cxr-reports")
    artifacts_dir: Path = Path("artifacts/mimic")
    seed: int = 42
    # cohort (notebook 01)
    n_studies: int | None = 10_850  # the paper's random subsample; None keeps all
    views: str = "frontal"  # "frontal" (PA/AP) or "all"
    one_image_per_study: bool = True
    split: str = "random"  # "random" = the paper's 70/20/10 by patient; "official" = MIMIC's split CSV
    split_fractions: tuple[float, float, float] = (0.7, 0.2, 0.1)
    image_size: int = 224
    prepare_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    # training (notebooks 02-04)
    uncertainty_policy: str = "zeros"
    blank_policy: str = "ignore"  # blank labels in the training loss: "ignore" (the paper), "negative", ...
    batch_size: int = 32
    epochs: int = 10
    lr: float = 1e-5
    lr_schedule: str = "constant"  # "constant" (the paper) or "warmup_linear": LR_SCHEDULES, training.lr_factor
    weight_decay: float = 0.01
    dropout: float = 0.5
    augment_shift: float = 0.0  # image training: move each image by up to this fraction of its side
    freeze_through: str = "layer2"  # only with pretrained weights: random layers are never frozen
    image_weights: str | None = "imagenet"  # "imagenet", a local .pth path, or None
    conv1_init: str = "rgb_sum"  # "rgb_sum" (from pretrained RGB kernels) or "random" (the paper)
    text_model: str = CXR_BERT  # hub id or local folder
    text_setting: str = "findings_impression"  # or "indication" (does not hold the sentences the labels were read from)
    text_pooling: str = "cls"  # "cls" (the paper) or "mean" over tokens
    text_head_lr: float = 1e-3  # a head trained from scratch on frozen features needs more than 1e-5
    text_finetune_epochs: int = 0  # > 0: also train encoder + head end to end (the text model notebook 05 explains)
    text_finetune_lr: float = 5e-5
    text_finetune_head: str = "mlp"  # "mlp" on the pooled embedding (as the frozen model) or "label_attention"
    text_finetune_schedule: str = "warmup_linear"  # BERT's fine-tuning recipe: a constant rate swings from epoch to epoch
    max_text_length: int = 256
    fusion_hidden: int = 512
    fusion_end_to_end: bool = True  # also train the paper's model with nothing frozen
    fusion_end_to_end_epochs: int | None = None  # None: settings.epochs
    fusion_freeze_encoders: bool = True  # the strategy table trains heads on cached encoder outputs
    fusion_train_text_encoder: bool = False  # let the table's models fine-tune the text encoder
    fusion_head_lr: float | None = None  # None: max(lr, 1e-3) for heads on frozen encoders
    mixed_precision: bool = False  # autocast while training: bf16/fp16 on CUDA, bf16 on a CPU with bf16 instructions
    num_workers: int = 0
    # interpretation (notebook 05)
    top_k_labels: int = 3
    cam_method: str = "auto"  # "auto": per finding (Grad-CAM for small ones, LayerCAM for global ones), or a method
    cam_layer: str = "auto"  # "auto": per finding (layer2 for small ones, layer3 for global ones), or layer2-4
    shap_max_evals: int = 300
    explain_studies: int = 50
    probes_per_label: int = 30  # phantom probe set: fresh images with one finding each (notebook 05)
    cam_baseline_negatives: int = 40  # training images the labels call negative, per label: its baseline map (05)
    image_ensemble: int = 1  # > 1: notebook 02 also trains image models with seeds seed+1, ...; 05 scores their mean map

    def describe(self) -> str:
        """A readable multi-line listing, printed by every notebook's setup cell."""
        width = max(len(f.name) for f in dataclasses.fields(self))
        return "\n".join(f"{f.name:<{width}} = {getattr(self, f.name)!r}" for f in dataclasses.fields(self))

    @property
    def metrics_dir(self) -> Path:
        return self.artifacts_dir / "metrics"


# Phantom: small images, more studies than a test needs, a learning rate that trains from scratch.
PHANTOM_DEFAULTS = dict(
    data_dir=Path("data/phantom/mimic-cxr-jpg"),
    reports_dir=Path("data/phantom/mimic-cxr-reports"),
    artifacts_dir=Path("artifacts/phantom"),
    n_studies=None,
    image_size=128,  # CAM grids of 16 x 16 (layer2) and 8 x 8 (layer3): fine enough to point at a finding (notebook 05)
    blank_policy="negative",  # with blanks ignored the model learns base rates, not findings (notebook 02)
    lr=1e-3,
    lr_schedule="warmup_linear",  # a constant 1e-3 from scratch leaves val loss swinging (README: 0.79-0.85 vs 0.85-0.87)
    epochs=8,
    mixed_precision=True,  # bfloat16 on a CPU with its instructions (1.7x faster training, README); float32 elsewhere
    augment_shift=0.1,  # a finding is not always in the same place: maps point better (notebook 05)
    image_weights=None,
    conv1_init="random",
    text_model="tiny-bert",  # built offline by notebook 03 into the artifacts folder
    max_text_length=128,
    text_pooling="mean",  # the tiny BERT's [CLS] carries less than its mean token (measured in notebook 03)
    text_finetune_epochs=15,  # the frozen tiny BERT reads reports too poorly for SHAP's words to mean much
    text_finetune_lr=1.5e-3,
    text_finetune_head="label_attention",  # each label reads its own words (validation AUROC 0.96 vs 0.90, README)
    fusion_hidden=256,
    fusion_end_to_end_epochs=2,  # the end-to-end model dominates notebook 04's time on a CPU
    shap_max_evals=200,
    explain_studies=30,
)
# Open-i: the phantom's training settings (no pretrained weights, the offline tiny BERT; set
# CXR_IMAGE_WEIGHTS=imagenet / CXR_TEXT_MODEL=<CXR-BERT> where they can be loaded) on the ~3,800
# frontal images of `python -m cxr_helpers openi --out data/openi`, at 128 px.
OPENI_DEFAULTS = dict(
    PHANTOM_DEFAULTS,
    data_dir=Path("data/openi/mimic-cxr-jpg"),
    reports_dir=Path("data/openi/mimic-cxr-reports"),
    artifacts_dir=Path("artifacts/openi"),
    image_size=128,
)
# CXR_FAST=1: what tests run; tiny everything.
FAST_OVERRIDES = dict(fusion_end_to_end_epochs=1, image_size=64, epochs=2, batch_size=16, shap_max_evals=40,
                      explain_studies=4, prepare_workers=2, probes_per_label=2, text_finetune_epochs=1,
                      cam_baseline_negatives=4)

ENV_VARS = {
    "CXR_DATA_DIR": ("data_dir", Path),
    "CXR_REPORTS_DIR": ("reports_dir", Path),
    "CXR_ARTIFACTS_DIR": ("artifacts_dir", Path),
    "CXR_IMAGE_SIZE": ("image_size", int),
    "CXR_EPOCHS": ("epochs", int),
    "CXR_BATCH_SIZE": ("batch_size", int),
    "CXR_LR": ("lr", float),
    "CXR_LR_SCHEDULE": ("lr_schedule", str),
    "CXR_SEED": ("seed", int),
    "CXR_N_STUDIES": ("n_studies", int),
    "CXR_TEXT_MODEL": ("text_model", str),
    "CXR_IMAGE_WEIGHTS": ("image_weights", str),
    "CXR_TEXT_SETTING": ("text_setting", str),
    "CXR_TEXT_POOLING": ("text_pooling", str),
    "CXR_UNCERTAINTY_POLICY": ("uncertainty_policy", str),
    "CXR_BLANK_POLICY": ("blank_policy", str),
    "CXR_AUGMENT_SHIFT": ("augment_shift", float),
    "CXR_CAM_LAYER": ("cam_layer", str),
    "CXR_CAM_METHOD": ("cam_method", str),
    "CXR_NUM_WORKERS": ("num_workers", int),
    "CXR_FREEZE_THROUGH": ("freeze_through", str),
    "CXR_FUSION_E2E_EPOCHS": ("fusion_end_to_end_epochs", int),
    "CXR_CONV1_INIT": ("conv1_init", str),
    "CXR_MIXED_PRECISION": ("mixed_precision", lambda raw: _truthy(raw)),
    "CXR_IMAGE_ENSEMBLE": ("image_ensemble", int),
}


def workbook_root() -> Path:
    """The folder relative default paths start from: the checkout holding this package, else cwd."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "notebooks").is_dir() else Path.cwd()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def load_settings(**overrides) -> Settings:
    """Settings for the profile in ``CXR_PROFILE`` (default phantom), env vars, then overrides."""
    profile = overrides.pop("profile", None) or os.environ.get("CXR_PROFILE", "phantom")
    if profile not in PROFILES:
        raise ValueError(f"CXR_PROFILE must be one of {PROFILES}, got {profile!r}")
    fast = overrides.pop("fast", None)
    fast = _truthy(os.environ.get("CXR_FAST")) if fast is None else bool(fast)
    values: dict = {"profile": profile, "fast": fast}
    if profile == "phantom":
        values.update(PHANTOM_DEFAULTS)
    elif profile == "openi":
        values.update(OPENI_DEFAULTS)
    else:
        values["artifacts_dir"] = Path("artifacts/mimic")
    if fast:
        values.update(FAST_OVERRIDES)
    for var, (name, kind) in ENV_VARS.items():
        raw = os.environ.get(var)
        if raw not in (None, ""):
            values[name] = None if raw.lower() == "none" and name in {"image_weights", "n_studies"} else kind(raw)
    values.update(overrides)
    for name in ("data_dir", "reports_dir", "artifacts_dir"):
        path = Path(values.get(name, getattr(Settings, name)))
        values[name] = path if path.is_absolute() else workbook_root() / path
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    checks = [
        (s.views in ("frontal", "all"), f"views must be 'frontal' or 'all', got {s.views!r}"),
        (s.split in ("random", "official"), f"split must be 'random' or 'official', got {s.split!r}"),
        (s.uncertainty_policy in UNCERTAINTY_POLICIES, f"uncertainty_policy must be one of {UNCERTAINTY_POLICIES}"),
        (s.blank_policy in BLANK_POLICIES, f"blank_policy must be one of {BLANK_POLICIES}, got {s.blank_policy!r}"),
        (s.cam_layer in ("auto", *CAM_LAYER_NAMES), f"cam_layer must be auto or one of {CAM_LAYER_NAMES}, got {s.cam_layer!r}"),
        *((schedule in LR_SCHEDULES, f"lr_schedule and text_finetune_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
          for schedule in (s.lr_schedule, s.text_finetune_schedule)),
        (s.text_finetune_head in TEXT_FINETUNE_HEADS,
         f"text_finetune_head must be one of {TEXT_FINETUNE_HEADS}, got {s.text_finetune_head!r}"),
        (s.text_setting in TEXT_SETTINGS, f"text_setting must be one of {TEXT_SETTINGS}, got {s.text_setting!r}"),
        (s.text_pooling in ("cls", "mean"), f"text_pooling must be 'cls' or 'mean', got {s.text_pooling!r}"),
        (s.freeze_through in ("none", "layer1", "layer2", "layer3"), f"freeze_through must be none or layer1-3, got {s.freeze_through!r}"),
        (s.conv1_init in ("rgb_sum", "random"), f"conv1_init must be 'rgb_sum' or 'random', got {s.conv1_init!r}"),
        (0 <= s.augment_shift < 0.5, f"augment_shift is a fraction of the side in [0, 0.5), got {s.augment_shift}"),
        (s.image_size >= 32, f"image_size must be at least 32 px, got {s.image_size}"),
        (s.image_ensemble >= 1, f"image_ensemble counts image models (1: no ensemble), got {s.image_ensemble}"),
        (s.cam_baseline_negatives >= 0, f"cam_baseline_negatives must be 0 (no baseline maps) or more, got {s.cam_baseline_negatives}"),
        (abs(sum(s.split_fractions) - 1) < 1e-6, f"split_fractions must add up to 1, got {s.split_fractions}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so runs repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


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


def pick_device(prefer: str | None = None):
    """The best available torch device: cuda, then mps, then cpu (or ``prefer`` if given)."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
