"""How fast is the phantom? Studies/s and images/s, serial beside parallel, and counterfactual re-renders.

    python benchmarks/bench_phantom.py --studies 500 --image-size 224 [--workers 2]

Prints the machine and a small table; each build goes to a fresh temporary folder. The last
rows time re-rendering images without one of their findings (``phantom.counterfactual``) on the
serial build: one image at a time, and as one batch.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from cxr_helpers.phantom import write_phantom
from cxr_helpers.phantom.counterfactual import image_without, images_without
from cxr_helpers.phantom.layout import TRUTH_DIR


def build(out: Path, n_studies: int, image_size: int, workers: int, seed: int) -> dict:
    """One phantom build into ``out``; returns write_phantom's summary."""
    return write_phantom(out, n_studies=n_studies, image_size=image_size, seed=seed, workers=workers, progress=False)


def time_counterfactuals(root: Path, n_images: int) -> list[tuple[str, int, float]]:
    """Seconds to re-render ``n_images`` images without their most common finding: one by one, then batched."""
    images = pd.read_csv(root / TRUTH_DIR / "images.csv")
    label = images["label"].value_counts().index[0]
    ids = images.loc[images["label"] == label, "dicom_id"].drop_duplicates().tolist()[:n_images]
    start = time.perf_counter()
    for dicom_id in ids:
        image_without(root, dicom_id, label)
    one_by_one = time.perf_counter() - start
    start = time.perf_counter()
    images_without(root, ids, label)
    return [("without, 1 by 1", len(ids), one_by_one), ("without, batch", len(ids), time.perf_counter() - start)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--counterfactuals", type=int, default=100, help="images re-rendered without a finding")
    args = parser.parse_args()

    print(f"machine: {platform.platform()} | python {platform.python_version()} | "
          f"{os.cpu_count()} CPUs | {platform.processor() or platform.machine()}")
    print(f"phantom: {args.studies} studies at {args.image_size} px, seed {args.seed}\n")
    print(f"{'run':<16}{'workers':>8}{'studies':>9}{'images':>8}{'seconds':>9}{'studies/s':>11}{'images/s':>10}")
    runs = [("serial", 1)] + ([("parallel", args.workers)] if args.workers > 1 else [])
    with tempfile.TemporaryDirectory(prefix="phantom-bench-") as tmp:
        for name, workers in runs:
            summary = build(Path(tmp) / name, args.studies, args.image_size, workers, args.seed)
            seconds = max(summary["seconds"], 1e-9)
            print(f"{name:<16}{workers:>8}{summary['studies']:>9}{summary['images']:>8}{seconds:>9.2f}"
                  f"{summary['studies'] / seconds:>11.1f}{summary['images'] / seconds:>10.1f}")
        for name, n_images, seconds in time_counterfactuals(Path(tmp) / "serial", args.counterfactuals):
            print(f"{name:<16}{1:>8}{'':>9}{n_images:>8}{seconds:>9.2f}{'':>11}{n_images / seconds:>10.1f}")


if __name__ == "__main__":
    main()
