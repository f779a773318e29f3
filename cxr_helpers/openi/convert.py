"""PNG -> 8-bit grayscale JPEG for the layout, one image at a time, in parallel if asked.

Open-i's PNGs are 8-bit grayscale, about 2,000-3,000 px a side; some downloads hold RGB or
16-bit files. ``to_gray8`` makes every one 8-bit grayscale (16-bit and float images scaled by
their own min-max range), ``shrink`` caps the longer side at ``max_side`` (a 128 px model
loses nothing from a 1,024 px JPEG, and the workbook's image cache then decodes much
faster), and the JPEG is written at quality 95 like MIMIC-CXR-JPG's. A file that does not decode
(corrupt, truncated, not an image) comes back as a failed ``Converted`` with the reason, never
as an exception. The mediastinum-contrast score of ``views`` is computed on the way, so no
image is decoded twice. Each image is converted on its own, so ``convert_all`` with several
workers writes exactly the bytes a serial run writes.
"""

from __future__ import annotations

import io
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_helpers.openi.views import mediastinum_contrast

JPEG_QUALITY = 95
DEFAULT_MAX_SIDE = 1024
# Box-average by the whole factor first (2 for a 2,500 px PNG at 1,024), then Lanczos the rest:
# twice as fast as Lanczos alone (benchmarks/bench_openi.py), no visible difference at 128-1,024 px.
REDUCING_GAP = 1.1
IN_FLIGHT_PER_WORKER = 4  # images read ahead per worker: bounds memory when streaming an archive
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    zlib.error,
    struct.error,
    Image.DecompressionBombError,
)


@dataclass(frozen=True)
class ImageJob:
    """One PNG to convert: its id, where it came from (for messages), its bytes or path, the JPEG to write."""

    image_id: str
    name: str
    out_path: str
    max_side: int | None = DEFAULT_MAX_SIDE
    path: str | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class Converted:
    """What became of one image: written (its PNG mode, JPEG size, view score) or why not."""

    image_id: str
    name: str
    ok: bool
    reason: str = ""
    mode: str = ""
    rows: int = 0
    columns: int = 0
    score: float | None = None


def to_gray8(image: Image.Image) -> Image.Image:
    """An 8-bit gray copy: 16-bit, 32-bit and float images scaled by their min-max range, colour to luma."""
    if image.mode == "L":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        finite = pixels[np.isfinite(pixels)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if high <= low:
            return Image.new("L", image.size, 0)
        scaled = np.clip(np.nan_to_num((pixels - low) / (high - low)), 0.0, 1.0)
        return Image.fromarray(np.round(scaled * 255.0).astype(np.uint8), mode="L")
    return image.convert("L")  # RGB, RGBA, P, LA, 1, CMYK: alpha dropped, colour to luma


def shrink(image: Image.Image, max_side: int | None) -> Image.Image:
    """The image with its longer side at most ``max_side`` (aspect kept); unchanged if already small."""
    if not max_side or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)


def write_jpeg(image: Image.Image, path: Path) -> None:
    """Save an 8-bit grayscale image as a JPEG via a temporary file, so no half-written JPEG is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="JPEG", quality=JPEG_QUALITY)
    os.replace(tmp, path)


def convert_image(job: ImageJob) -> Converted:
    """Decode one PNG, make it 8-bit gray, shrink it, score its view and write the JPEG."""
    try:
        data = job.data if job.data is not None else Path(job.path).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            gray = to_gray8(image)
        small = shrink(gray, job.max_side)
        score = mediastinum_contrast(small)
        write_jpeg(small, Path(job.out_path))
    except DECODE_ERRORS as error:
        message = re.sub(
            r" <[^>]*object at 0x[0-9a-f]+>", "", str(error)
        )  # no memory addresses in the summary
        return Converted(job.image_id, job.name, False, reason=f"{type(error).__name__}: {message}")
    return Converted(
        job.image_id, job.name, True, mode=mode, rows=small.height, columns=small.width, score=score
    )


def _bounded(
    jobs: Iterable[ImageJob], slots: threading.Semaphore, stop: threading.Event
) -> Iterator[ImageJob]:
    """The jobs, each taken only when a slot is free (bounded memory); ends early once ``stop`` is set."""
    for job in jobs:
        slots.acquire()
        if stop.is_set():
            return
        yield job


def convert_all(jobs: Iterable[ImageJob], workers: int = 1) -> Iterator[Converted]:
    """Convert every job (in ``workers`` processes if > 1); results in completion order."""
    if workers <= 1:
        yield from map(convert_image, jobs)
        return
    slots, stop = threading.Semaphore(workers * IN_FLIGHT_PER_WORKER), threading.Event()
    with get_context().Pool(workers) as pool:
        try:
            for result in pool.imap_unordered(convert_image, _bounded(jobs, slots, stop)):
                slots.release()
                yield result
        finally:  # let the pool's feeder thread finish, or closing the pool would wait for it forever
            stop.set()
            slots.release()
