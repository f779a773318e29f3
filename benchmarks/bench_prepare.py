"""How fast is notebook 01's work? Image cache building, serial vs parallel, on a phantom it generates.

    python benchmarks/bench_prepare.py --studies 300 --image-size 224 --jpeg-size 3056

A small phantom is generated, then its JPEGs are re-encoded at ``--jpeg-size`` (longer side,
MIMIC's 0.83 aspect) because decoding cost grows with the pixel count and real MIMIC-CXR-JPG
files are about 2544 x 3056. The table has one row per worker count (seconds, images/s,
speed-up, time for the paper's 10,850 studies at that rate), plus a serial row without JPEG
draft mode (full-resolution decoding) to show what decoding at reduced scale saves.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

from cxr_helpers.cohort import select_cohort
from cxr_helpers.images import build_image_cache
from cxr_helpers.mimic import read_layout
from cxr_helpers.phantom import write_phantom

PAPER_STUDIES = 10_850
MIMIC_ASPECT = 2544 / 3056  # columns / rows of a typical MIMIC-CXR-JPG image


def enlarge_jpegs(paths: list[str], long_side: int, seed: int = 0) -> None:
    """Re-encode each JPEG at ``long_side`` rows (MIMIC's aspect) with film-like noise, quality 95.

    The noise matters: an upscaled smooth image compresses to almost nothing and decodes far
    faster than a real radiograph (entropy decoding dominates JPEG decoding time).
    """
    rng = np.random.default_rng(seed)
    for path in paths:
        with Image.open(path) as image:
            big = image.convert("L").resize((round(long_side * MIMIC_ASPECT), long_side), Image.Resampling.BICUBIC)
        pixels = np.asarray(big, dtype=np.float32) + rng.normal(0.0, 6.0, size=big.size[::-1])  # (rows, cols)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=95)


@contextmanager
def without_draft():
    """Make JPEG draft mode a no-op in this process (serial runs only), to time full decoding."""
    original = JpegImagePlugin.JpegImageFile.draft
    JpegImagePlugin.JpegImageFile.draft = lambda self, mode, size: None
    try:
        yield
    finally:
        JpegImagePlugin.JpegImageFile.draft = original


def time_cache(paths: list[str], size: int, workers: int) -> float:
    """Seconds to build a fresh cache of ``paths`` with ``workers`` processes."""
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as temporary:
        folder = Path(temporary)
        start = time.perf_counter()
        result = build_image_cache(paths, folder, size, workers=workers, progress=False)
        seconds = time.perf_counter() - start
        assert result.count == len(paths) and not result.failed, result.failed[:3]
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=300, help="phantom studies to generate")
    parser.add_argument("--image-size", type=int, default=224, help="cache side in pixels (the paper: 224)")
    parser.add_argument("--jpeg-size", type=int, default=3056, help="rows of the re-encoded JPEGs (0: keep)")
    parser.add_argument("--workers", type=int, nargs="*", default=None, help="worker counts (default: 1 and all cores)")
    args = parser.parse_args()
    counts = args.workers or sorted({1, os.cpu_count() or 1})

    with tempfile.TemporaryDirectory(prefix="bench-phantom-") as temporary:
        root = Path(temporary)
        start = time.perf_counter()
        write_phantom(root, n_studies=args.studies, image_size=256, seed=0, progress=False)
        start_read = time.perf_counter()
        layout = read_layout(root / "mimic-cxr-jpg", root / "mimic-cxr-reports")
        selection = select_cohort(layout, seed=0)
        read_rate = len(selection.reports) / (time.perf_counter() - start_read)
        paths = selection.cohort["image_path"].tolist()
        if args.jpeg_size:
            enlarge_jpegs(paths, args.jpeg_size)
        print(f"phantom: {args.studies} studies ({len(paths)} frontal images) in {time.perf_counter() - start:.0f} s; "
              f"JPEGs {Image.open(paths[0]).size} px, {os.path.getsize(paths[0]) / 1e6:.1f} MB; cache {args.image_size} px; {os.cpu_count()} cores")
        print(f"layout + reports read, cohort selected: {read_rate:.0f} studies/s\n")
        print(f"{'decoding':>18} {'workers':>7} {'images':>7} {'seconds':>8} {'images/s':>9} {'speed-up':>9} "
              f"{'10,850 studies':>15}")
        rows = [("draft (default)", workers) for workers in counts] + [("full resolution", 1)]
        baseline = None
        for mode, workers in rows:
            if mode == "full resolution":
                with without_draft():
                    seconds = time_cache(paths, args.image_size, 1)
            else:
                seconds = time_cache(paths, args.image_size, workers)
            rate = len(paths) / seconds
            baseline = baseline or rate
            paper_minutes = (PAPER_STUDIES / rate + PAPER_STUDIES / read_rate) / 60
            print(f"{mode:>18} {workers:>7} {len(paths):>7} {seconds:>8.2f} {rate:>9.1f} {rate / baseline:>8.2f}x "
                  f"{paper_minutes:>11.1f} min")


if __name__ == "__main__":
    main()
