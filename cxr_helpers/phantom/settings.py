"""What a phantom was written with, kept in ``ground_truth/phantom.json`` to re-render it later.

The settings (seed, number of studies, image size, the official split's fractions, the planted
shortcut if any, and the generator version) fix every pixel of a phantom, so any of its images
can be re-planned and re-rendered (``counterfactual``) without regenerating the phantom.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from cxr_helpers.phantom.layout import TRUTH_DIR
from cxr_helpers.phantom.plan import SPLIT_FRACTIONS
from cxr_helpers.phantom.shortcut import Shortcut

SETTINGS_JSON = "phantom.json"
# Bump when the same settings would draw different pixels, so that re-rendering an older phantom
# fails clearly instead of returning images that do not match its files.
GENERATOR_VERSION = 3


@dataclass(frozen=True)
class PhantomSettings:
    """What a phantom was written with: enough to re-plan and re-render any of its images."""

    seed: int
    n_studies: int
    image_size: int
    split_fractions: tuple[float, float, float] = SPLIT_FRACTIONS  # train / validate / test, by subject
    shortcut: Shortcut | None = None
    version: int = GENERATOR_VERSION


def write_settings(out: Path, settings: PhantomSettings) -> None:
    """Write ``ground_truth/phantom.json``."""
    record = {"generator": "cxr_helpers.phantom", **asdict(settings)}
    path = Path(out) / TRUTH_DIR / SETTINGS_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def read_settings(root: Path) -> PhantomSettings:
    """Read ``ground_truth/phantom.json``; a clear error if it is missing or from another generator version."""
    path = Path(root) / TRUTH_DIR / SETTINGS_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: re-rendering needs a phantom written by this version of "
                                "cxr_helpers (real MIMIC-CXR has no such file); rebuild it with write_phantom")
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("version") != GENERATOR_VERSION:
        raise ValueError(f"{path} was written by phantom generator version {record.get('version')}, this code draws "
                         f"version {GENERATOR_VERSION}: its images cannot be re-rendered exactly; rebuild the phantom")
    shortcut = record.get("shortcut")
    return PhantomSettings(seed=int(record["seed"]), n_studies=int(record["n_studies"]),
                           image_size=int(record["image_size"]),
                           split_fractions=tuple(float(f) for f in record["split_fractions"]),
                           shortcut=Shortcut(**shortcut) if shortcut else None, version=int(record["version"]))
