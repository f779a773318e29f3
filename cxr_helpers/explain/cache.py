"""Explanations cached per (model, study, label, method): in memory, and on disk under ``explanations/``.

Each file records the fingerprint of the checkpoint it was made with, so a retrained model never
shows stale maps; ``CACHE_VERSION`` invalidates every file when the way explanations are
computed changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from cxr_helpers.artifacts import atomic_write, write_json
from cxr_helpers.explain.shap_text import TextExplanation

CACHE_VERSION = 1  # bump when the way explanations are computed changes: older cached files are then ignored


def label_slug(label: str) -> str:
    """A file-name-safe label ("Pleural Effusion" -> "pleural_effusion")."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


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
        if kind == "cam":
            cam = np.asarray(value, dtype=np.float32)
            atomic_write(path, lambda handle: np.savez_compressed(handle, cam=cam, fingerprint=fingerprint))
        else:
            write_json(path, {**value.to_dict(), "fingerprint": fingerprint}, indent=None)

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
