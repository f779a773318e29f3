"""Loading X-ray images (any mode, any size) and the uint8 memory-mapped image cache.

Geometry: like the paper, an image is resized to ``size x size`` as a whole (no crop, no
padding), so a non-square radiograph is squeezed a little (MIMIC-CXR-JPG images are about
0.8 to 1.25 wide-to-tall). ``resize_mask`` uses the same mapping, so a finding mask drawn on
the JPEG lands on the same pixels as the finding in the resized image.

The cache ``images_<S>.npy`` holds uint8 (N, S, S), row i = cohort ``cache_index`` i, and is
written once, in parallel, in chunks; ``images_<S>.json`` records which chunks are done and
which images failed, and says ``"complete": true`` only after the last chunk is on disk, so a
killed run resumes where it stopped and a half-written cache never looks finished.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from cxr_helpers.artifacts import MADE_BY, read_json, sha256_hex, write_json

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
MISSING_CACHE_HINT = f"It is written by {MADE_BY['cohort']}; run one of them first."


class ImageReadError(OSError):
    """An image that cannot be read; ``reason`` is short (for skip tables), str() names the file."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _as_unit_array(image: Image.Image) -> np.ndarray:
    """Pixels in [0, 1] as float32 (H, W), or uint8 (H, W) for 8-bit images (scaled later)."""
    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if mode in SIXTEEN_BIT_MODES:
        return np.asarray(image).astype(np.float32) / 65535.0
    if mode == "I":  # 32-bit ints: how Pillow may hold 16-bit PNG/TIFF data
        return np.clip(np.asarray(image, dtype=np.float32), 0, 65535) / 65535.0
    if mode == "F":  # floats: kept if already in [0, 1], else min-max scaled
        pixels = np.asarray(image, dtype=np.float32)
        low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
        if low >= 0.0 and high <= 1.0:
            return np.nan_to_num(pixels)
        return np.nan_to_num((pixels - low) / (high - low)) if high > low else np.zeros_like(pixels)
    return np.asarray(image.convert("L"), dtype=np.uint8)  # RGB, RGBA, P, LA, CMYK, 1, ...


def _resize(pixels: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    """Resize a uint8 or float32 (H, W) array to (size, size), keeping its dtype."""
    if pixels.shape == (size, size):
        return pixels
    if pixels.dtype == np.uint8:
        return np.asarray(Image.fromarray(pixels).resize((size, size), resample))
    image = Image.fromarray(pixels.astype(np.float32))  # mode "F"
    return np.asarray(image.resize((size, size), resample), dtype=np.float32)


def decode_resized(path: Path | str, size: int) -> np.ndarray:
    """Decode and resize one image: uint8 (size, size) for 8-bit files, else float32 in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "image file missing")
    try:
        with Image.open(path) as image:
            # JPEG only: decode at 1/2, 1/4 or 1/8 scale (still >= size) -- much faster on big files.
            image.draft("L", (size, size))
            image.load()
            pixels = _as_unit_array(image)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a readable image (corrupt or unknown format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        reason = "truncated image file" if "truncated" in str(error).lower() else f"corrupt image ({error})"
        raise ImageReadError(path, reason) from None
    if pixels.size == 0:
        raise ImageReadError(path, "image has no pixels")
    return _resize(pixels, size, Image.Resampling.BILINEAR)


def load_image(path: Path | str, size: int = 224) -> np.ndarray:
    """One image as float32 (size, size) in [0, 1], grayscale; ImageReadError names bad files."""
    pixels = decode_resized(path, size)
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    return np.clip(pixels, 0.0, 1.0)


def resize_pixels(pixels: np.ndarray, size: int) -> np.ndarray:
    """An in-memory 8-bit image (H, W) as the models take it: float32 (size, size) in [0, 1], bilinear."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise ValueError(f"expected a uint8 (H, W) image, got {pixels.dtype} {pixels.shape}")
    return _resize(pixels, size, Image.Resampling.BILINEAR).astype(np.float32) / 255.0


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels from a decode_resized/load_image result (exact for 8-bit images)."""
    if pixels.dtype == np.uint8:
        return pixels
    return np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)


def resize_mask(mask: np.ndarray, size: int, threshold: float | None = 0.5) -> np.ndarray:
    """A (H, W) finding mask mapped to (size, size) with load_image's geometry.

    Each output pixel gets the fraction of its area the mask covers (box filter); returns
    bool ``coverage >= threshold``, or the float32 coverage itself when ``threshold`` is None
    (thin findings such as a pleural line can cover < 50% of every pixel at small sizes).
    """
    coverage = np.asarray(mask, dtype=np.float32)
    if coverage.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {coverage.shape}")
    coverage = np.clip(_resize(coverage, size, Image.Resampling.BOX), 0.0, 1.0)
    return coverage if threshold is None else coverage >= threshold


# ----------------------------------------------------------------------------------- the cache


@dataclass
class CacheResult:
    """A built (or found) image cache: its files and the images that could not be read."""

    path: Path
    marker: Path
    count: int
    size: int
    failed: list[dict] = field(default_factory=list)  # {"index", "path", "reason"}
    decoded: int = 0  # images decoded by this call (0 when the cache was already complete)


def cache_paths(artifacts_dir: Path, size: int) -> tuple[Path, Path]:
    """``images_<S>.npy`` and its progress marker ``images_<S>.json``."""
    return Path(artifacts_dir) / f"images_{size}.npy", Path(artifacts_dir) / f"images_{size}.json"


def fingerprint(paths: list[str], size: int) -> str:
    """A hash of the ordered image paths and size: a resumed cache must be for the same list."""
    return sha256_hex([str(size), *(str(path) for path in paths)])[:16]


def _write_marker(marker: Path, state: dict) -> None:
    """Write the progress marker atomically (a crash leaves the old or the new one, never half)."""
    write_json(marker, state, indent=1)


def _read_marker(marker: Path) -> dict | None:
    """The progress marker, or None if absent or unreadable."""
    return read_json(marker)


def _decode_chunk(task: tuple[str, int, list[str], int]) -> tuple[int, list[dict]]:
    """Worker: decode one chunk of images straight into the cache file; returns (start, failures)."""
    npy_path, start, paths, size = task
    cache = np.load(npy_path, mmap_mode="r+")  # (N, S, S) uint8
    failures = []
    for offset, path in enumerate(paths):
        try:
            cache[start + offset] = to_uint8(decode_resized(path, size))
        except ImageReadError as error:
            cache[start + offset] = 0
            failures.append({"index": start + offset, "path": error.path, "reason": error.reason})
    cache.flush()
    del cache
    return start, failures


def _resumable_state(npy: Path, marker: Path, count: int, size: int, chunk_size: int, key: str) -> dict | None:
    """The marker of an earlier run of the same job, if its cache file can be continued."""
    state = _read_marker(marker)
    if not state or not npy.exists():
        return None
    same = (state.get("size"), state.get("count"), state.get("chunk_size"), state.get("fingerprint"))
    if same != (size, count, chunk_size, key):
        return None
    try:
        array = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return state if array.shape == (count, size, size) and array.dtype == np.uint8 else None


def build_image_cache(
    image_paths: list[str],
    artifacts_dir: Path,
    size: int,
    workers: int = 1,
    progress: bool = True,
    chunk_size: int | None = None,
) -> CacheResult:
    """Decode every image once into ``images_<S>.npy`` (uint8, row i = image_paths[i]).

    Parallel over ``workers`` processes in chunks; resumable (finished chunks are never decoded
    again); unreadable images leave a zero row and are returned in ``failed`` with a reason.
    """
    paths = [str(p) for p in image_paths]
    count = len(paths)
    workers = max(1, int(workers))
    chunk_size = chunk_size or max(1, min(64, -(-count // (workers * 4))))
    npy, marker = cache_paths(artifacts_dir, size)
    npy.parent.mkdir(parents=True, exist_ok=True)
    key = fingerprint(paths, size)
    state = _resumable_state(npy, marker, count, size, chunk_size, key)
    if state and state.get("complete"):
        return CacheResult(npy, marker, count, size, state.get("failed", []), decoded=0)
    if state is None:
        state = {"size": size, "count": count, "complete": False, "done": [], "failed": [],
                 "chunk_size": chunk_size, "fingerprint": key}
        _write_marker(marker, state)  # says "incomplete" before the array exists
        open_memmap(npy, mode="w+", dtype=np.uint8, shape=(count, size, size)).flush()
    done = set(state["done"])
    tasks = [(str(npy), start, paths[start : start + chunk_size], size)
             for start in range(0, count, chunk_size) if start not in done]
    initial = sum(min(chunk_size, count - start) for start in done)
    decoded = 0
    with tqdm(total=count, initial=initial, desc=f"image cache {size}px", unit="img", disable=not progress) as bar:
        for start, failures in _run_tasks(tasks, workers):
            state["done"].append(start)
            state["failed"].extend(failures)
            _write_marker(marker, state)  # only after the worker flushed its rows
            n = min(chunk_size, count - start)
            decoded += n
            bar.update(n)
    state["done"].sort()
    state["failed"].sort(key=lambda f: f["index"])
    state["complete"] = True  # last: only now does the cache count as finished
    _write_marker(marker, state)
    return CacheResult(npy, marker, count, size, state["failed"], decoded=decoded)


def _run_tasks(tasks: list, workers: int):
    """Yield chunk results, in this process (workers=1) or from a process pool."""
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield _decode_chunk(task)
        return
    with multiprocessing.get_context().Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap_unordered(_decode_chunk, tasks)


def open_image_cache(artifacts_dir: Path, size: int) -> np.memmap:
    """The finished cache as a read-only memmap (N, S, S) uint8; a clear error if missing or incomplete."""
    npy, marker = cache_paths(artifacts_dir, size)
    state = _read_marker(marker)
    if not npy.exists() or state is None:
        raise FileNotFoundError(f"Image cache {npy} (with {marker.name}) is missing. {MISSING_CACHE_HINT}")
    if not state.get("complete"):
        done = len(state.get("done", [])) * state.get("chunk_size", 0)
        raise RuntimeError(
            f"Image cache {npy} is incomplete (about {min(done, state.get('count', 0))} of {state.get('count')} "
            f"images written; the run was interrupted). {MISSING_CACHE_HINT} It resumes where it stopped."
        )
    cache = np.load(npy, mmap_mode="r")
    if cache.shape != (state["count"], size, size):
        raise RuntimeError(f"Image cache {npy} has shape {cache.shape}, expected {(state['count'], size, size)}. "
                           f"{MISSING_CACHE_HINT}")
    return cache
