"""The artifacts folder's file contract: atomic writes, content hashes, and which stage makes what.

Every notebook reads only what earlier notebooks wrote into one artifacts folder
(``CXR_ARTIFACTS_DIR``), so each file has a maker (``MADE_BY``) that an error can name, and each
write goes through a temporary file renamed into place (``os.replace`` is atomic): a notebook
interrupted mid-write leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO

import numpy as np
import torch

# Which notebook (or command) makes each stage's artifacts: the provenance every "missing" error names.
MADE_BY = {
    "cohort": "notebook 01 (notebooks/01_data_prep.ipynb) or `python -m cxr_helpers prepare`",
    "image": "notebook 02 (notebooks/02_image_baseline.ipynb) or `python -m cxr_helpers train image`",
    "text": "notebook 03 (notebooks/03_text_baseline.ipynb) or `python -m cxr_helpers train text`",
    "fusion": "notebook 04 (notebooks/04_fusion_training.ipynb) or `python -m cxr_helpers train fusion`",
    "explanations": "notebook 05 (notebooks/05_interpretation.ipynb) or `python -m cxr_helpers explain`",
}


# ----------------------------------------------------------------------------- atomic writes
def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes(path, text.encode("utf-8"))


def json_ready(value):
    """Plain JSON values: NaN and infinities become null, NumPy scalars and arrays Python values, paths strings."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON atomically (NaN written as null: see ``json_ready``)."""
    return write_text(path, json.dumps(json_ready(data), indent=indent, allow_nan=False))


def read_json(path: str | Path, default=None):
    """The JSON at ``path``, or ``default`` when the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def save_checkpoint(payload: Mapping, path: str | Path) -> Path:
    """``torch.save`` atomically: a crash never leaves half a checkpoint."""
    return atomic_write(path, lambda handle: torch.save(dict(payload), handle))


def write_csv(path: str | Path, table, **to_csv) -> Path:
    """A pandas DataFrame as CSV, atomically (``to_csv`` options pass through; no index by default)."""
    to_csv.setdefault("index", False)
    return write_text(path, table.to_csv(**to_csv))


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    """A NumPy array as .npy, atomically."""
    return atomic_write(path, lambda handle: np.save(handle, array))


# ----------------------------------------------------------------------------- content hashes
def sha256_hex(parts: Iterable[str | bytes]) -> str:
    """SHA-256 over a sequence of strings or bytes, each followed by a NUL (so "ab","c" != "a","bc")."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") if isinstance(part, str) else bytes(part))
        digest.update(b"\x00")
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(folder: str | Path, suffixes: Iterable[str], skip: Iterable[str] = ()) -> str:
    """SHA-256 over the names and bytes of a folder's files with the given suffixes (sorted by name)."""
    chosen = [p for p in sorted(Path(folder).iterdir()) if p.suffix in set(suffixes) and p.name not in set(skip)]
    return sha256_hex(part for p in chosen for part in (p.name, file_sha256(p)))


def file_stamp(*paths: str | Path | None) -> str:
    """Name, size and modification time of files: cheap, and changes when a file is rewritten; "" for none."""
    parts = []
    for path in paths:
        if path is not None and Path(path).exists():
            stat = Path(path).stat()
            parts.append(f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


# ----------------------------------------------------------------------------- provenance
def missing_message(path: str | Path, stage: str) -> str:
    """What to say when a stage's artifact is missing: which notebook or command makes it."""
    return (f"{path} is missing. It is made by {MADE_BY[stage]}; run that first "
            "(or set CXR_ARTIFACTS_DIR to the folder that holds it).")


def require(path: str | Path, stage: str) -> Path:
    """``path`` if it exists, else FileNotFoundError naming the notebook (``stage``) that makes it."""
    if not Path(path).exists():
        raise FileNotFoundError(missing_message(path, stage))
    return Path(path)
