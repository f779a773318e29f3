"""How fast is the phantom? Studies/s and images/s, serial beside parallel, counterfactuals and probes.

    python benchmarks/bench_phantom.py --studies 500 --image-size 224 [--workers 2]

Prints the machine and a small table; each build goes to a fresh temporary folder. Then it times
re-rendering images without one of their findings (``phantom.counterfactual``) on the serial
build, one image at a time and as one batch, and writing the probe set (``phantom.probes``,
--probes per label at --probe-size) in one process; "serial, shortcut" builds with a planted
shortcut (``phantom.shortcut``). "cpu s" is the process's CPU time, which a
busy shared machine does not inflate the way it does wall-clock seconds.
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
from cxr_helpers.phantom.case import FINDING_LABELS
from cxr_helpers.phantom.counterfactual import image_without, images_without
from cxr_helpers.phantom.layout import TRUTH_DIR
from cxr_helpers.phantom.probes import write_probes


def build(out: Path, n_studies: int, image_size: int, workers: int, seed: int, shortcut: str | None = None) -> dict:
    """One phantom build into ``out``; returns write_phantom's summary."""
    return write_phantom(out, n_studies=n_studies, image_size=image_size, seed=seed, workers=workers, progress=False,
                         shortcut=shortcut)


def timed(work) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_counterfactuals(root: Path, n_images: int) -> list[tuple[str, int, float, float]]:
    """Re-render ``n_images`` images without their most common finding: one by one, then batched."""
    images = pd.read_csv(root / TRUTH_DIR / "images.csv")
    label = images["label"].value_counts().index[0]
    ids = images.loc[images["label"] == label, "dicom_id"].drop_duplicates().tolist()[:n_images]
    one_by_one = timed(lambda: [image_without(root, dicom_id, label) for dicom_id in ids])
    batch = timed(lambda: images_without(root, ids, label))
    return [("without, 1 by 1", len(ids), *one_by_one), ("without, batch", len(ids), *batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--counterfactuals", type=int, default=100, help="images re-rendered without a finding")
    parser.add_argument("--probes", type=int, default=30, help="probes per label")
    parser.add_argument("--probe-size", type=int, default=128, help="probe image side")
    parser.add_argument("--shortcut", default="Pleural Effusion", help="label of the planted shortcut's build")
    args = parser.parse_args()

    print(f"machine: {platform.platform()} | python {platform.python_version()} | "
          f"{os.cpu_count()} CPUs | {platform.processor() or platform.machine()}")
    print(f"phantom: {args.studies} studies at {args.image_size} px, seed {args.seed}\n")
    print(f"{'run':<16}{'workers':>8}{'studies':>9}{'images':>8}{'seconds':>9}{'studies/s':>11}{'images/s':>10}"
          f"{'cpu s':>8}")
    runs = [("serial", 1, None)] + ([("parallel", args.workers, None)] if args.workers > 1 else [])
    runs.append(("serial, shortcut", 1, args.shortcut))
    with tempfile.TemporaryDirectory(prefix="phantom-bench-") as tmp:
        for name, workers, shortcut in runs:
            summary = build(Path(tmp) / name.replace(", ", "-"), args.studies, args.image_size, workers, args.seed,
                            shortcut)
            seconds = max(summary["seconds"], 1e-9)
            print(f"{name:<16}{workers:>8}{summary['studies']:>9}{summary['images']:>8}{seconds:>9.2f}"
                  f"{summary['studies'] / seconds:>11.1f}{summary['images'] / seconds:>10.1f}")
        rows = time_counterfactuals(Path(tmp) / "serial", args.counterfactuals)
        probes = Path(tmp) / "probes"
        rows.append((f"probes, {args.probe_size} px", args.probes * len(FINDING_LABELS),
                     *timed(lambda: write_probes(probes, args.probes, args.probe_size, args.seed))))
        for name, n_images, seconds, cpu in rows:
            print(f"{name:<16}{1:>8}{'':>9}{n_images:>8}{seconds:>9.2f}{'':>11}{n_images / seconds:>10.1f}"
                  f"{cpu:>8.2f}")


if __name__ == "__main__":
    main()
