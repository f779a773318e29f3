"""How fast does the Open-i importer convert images? Images/s and the time for all 7,470 PNGs.

    python benchmarks/bench_openi.py --images 24 [--workers 2] [--side 2048x2500]

Writes synthetic radiograph-sized 8-bit PNGs (a phantom image scaled up to 2048 x 2500 with a
little noise, so they compress like real ones) into a temporary folder and as a .tgz, then times
``convert_all`` (decode, 8-bit gray, shrink, view score, JPEG) serial and parallel, at the
default ``--max-side 1024`` and at full size, from the folder and from the archive. The estimate
for the whole collection is 7,470 / images per second; real PNG sizes vary, so read it as the
order of magnitude. Each run converts into a fresh folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_helpers.openi.archive import iter_members
from cxr_helpers.openi.convert import ImageJob, convert_all
from cxr_helpers.phantom import write_phantom

COLLECTION_IMAGES = 7470


def synthetic_pngs(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """n radiograph-sized grayscale PNGs drawn from phantom images (scaled up, with noise)."""
    write_phantom(
        folder / "phantom", n_studies=max(2, n // 2), image_size=256, seed=0, workers=1, progress=False
    )
    sources = sorted((folder / "phantom").rglob("*.jpg"))
    rng = np.random.default_rng(0)
    paths = []
    for k in range(n):
        with Image.open(sources[k % len(sources)]) as image:
            big = np.asarray(image.convert("L").resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
        noisy = np.clip(big + rng.normal(0, 2.0, big.shape), 0, 255).astype(np.uint8)
        path = folder / "png" / f"CXR{k + 1}_IM-{k:04d}-1001.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy).save(path, format="PNG")
        paths.append(path)
    return paths


def pack(paths: list[Path], archive: Path) -> Path:
    """A .tgz of the PNGs."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in paths:
            tar.add(path, arcname=f"NLMCXR_png/{path.name}")
    return archive


def time_run(source: Path, out: Path, workers: int, max_side: int | None) -> tuple[float, int]:
    """Seconds to convert every PNG of a folder or archive, and how many were written."""
    start = time.perf_counter()
    jobs = (
        ImageJob(m.name, m.name, str(out / f"{k}.jpg"), max_side, path=m.path, data=m.data)
        for k, m in enumerate(iter_members(source, (".png",)))
    )
    written = sum(result.ok for result in convert_all(jobs, workers))
    return time.perf_counter() - start, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--side", default="2048x2500", help="PNG width x height")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.side.lower().split("x"))
    print(f"machine: {platform.platform()} | python {platform.python_version()} | {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="openi-bench-") as tmp:
        tmp = Path(tmp)
        paths = synthetic_pngs(tmp, args.images, size)
        archive = pack(paths, tmp / "NLMCXR_png.tgz")
        megabytes = sum(p.stat().st_size for p in paths) / len(paths) / 2**20
        print(f"{len(paths)} PNGs of {size[0]} x {size[1]} px, {megabytes:.1f} MB each on average\n")
        print(f"{'source':<9}{'max side':>9}{'workers':>8}{'seconds':>9}{'images/s':>10}{'7,470 images':>14}")
        runs = [
            (kind, side, workers)
            for kind in ("folder", "tgz")
            for side in (1024, None)
            for workers in sorted({1, args.workers})
        ]
        for run, (kind, side, workers) in enumerate(runs):
            source = tmp / "png" if kind == "folder" else archive
            seconds, written = time_run(source, tmp / f"out{run}", workers, side)
            rate = written / seconds
            print(
                f"{kind:<9}{side or 'full':>9}{workers:>8}{seconds:>9.2f}{rate:>10.2f}"
                f"{COLLECTION_IMAGES / rate / 60:>11.1f} min"
            )


if __name__ == "__main__":
    main()
