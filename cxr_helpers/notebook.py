"""What every notebook's setup cell does: Colab widgets, quiet warnings, settings, seeds, versions."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import warnings
from pathlib import Path

from cxr_helpers.config import Settings, load_settings, seed_everything

# Packages whose versions the setup cell prints, with the lowest version the workbook supports.
CHECKED_PACKAGES = {
    "torch": "2.2",
    "torchvision": "0.17",
    "transformers": "4.40",
    "numpy": "1.26",
    "pandas": "2.1",
    "scikit-learn": "1.3",
    "shap": "0.45",
    "grad-cam": "1.5.4",
    "ipywidgets": "8.1",
    "matplotlib": "3.8",
}


DRIVE_MOUNT_POINT = "/content/drive"  # where Colab mounts Google Drive


def in_colab() -> bool:
    """True inside a Google Colab kernel."""
    return "google.colab" in sys.modules


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_environment(packages: dict[str, str] = CHECKED_PACKAGES) -> dict[str, str]:
    """[OK]/[FAIL] per package against the workbook's lower bounds; returns name -> status line."""
    lines = {}
    for name, minimum in packages.items():
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            lines[name] = f"[FAIL] {name}: not installed (need >= {minimum})"
            continue
        ok = _version_tuple(found) >= _version_tuple(minimum)
        lines[name] = f"[{'OK' if ok else 'FAIL'}] {name} {found}" + ("" if ok else f" (need >= {minimum})")
    return lines


def quiet_warnings() -> None:
    """Hide known-harmless library warnings (shap under new matplotlib, HF deprecations)."""
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(shap|transformers|torchvision|matplotlib)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def use_drive_artifacts(mount_point: str | None = None) -> Path:
    """In Colab, keep artifacts (checkpoints included) on Google Drive so a disconnect loses nothing."""
    from google.colab import drive  # type: ignore[import-not-found]

    mount_point = mount_point or DRIVE_MOUNT_POINT
    drive.mount(mount_point)
    folder = Path(mount_point) / "MyDrive" / "cxr-workbook-artifacts" / os.environ.get("CXR_PROFILE", "phantom")
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["CXR_ARTIFACTS_DIR"] = str(folder)
    return folder


def setup_notebook(title: str, **overrides) -> Settings:
    """Everything a notebook's first cell needs; returns the settings it will run with."""
    quiet_warnings()
    if in_colab():
        from google.colab import output  # type: ignore[import-not-found]

        output.enable_custom_widget_manager()  # ipywidgets 8 render in Colab only with this
        if os.environ.get("CXR_USE_DRIVE") == "1":
            print("Artifacts on Google Drive:", use_drive_artifacts())
    settings = load_settings(**overrides)
    seed_everything(settings.seed)
    print(f"== {title} ==")
    print("\n".join(check_environment().values()))
    print(settings.describe())
    return settings
