"""How fast is the phantom? Studies/s and images/s, serial beside parallel, in one run.

    python benchmarks/bench_phantom.py --studies 500 --image-size 224 [--workers 2]

Prints the machine and a small table; each build goes to a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

from cxr_helpers.phantom import write_phantom


def build_once(n_studies: int, image_size: int, workers: int, seed: int) -> dict:
    """One phantom build into a temporary folder; returns write_phantom's summary."""
    with tempfile.TemporaryDirectory(prefix="phantom-bench-") as tmp:
        return write_phantom(Path(tmp), n_studies=n_studies, image_size=image_size, seed=seed,
                             workers=workers, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"machine: {platform.platform()} | python {platform.python_version()} | "
          f"{os.cpu_count()} CPUs | {platform.processor() or platform.machine()}")
    print(f"phantom: {args.studies} studies at {args.image_size} px, seed {args.seed}\n")
    print(f"{'run':<14}{'workers':>8}{'studies':>9}{'images':>8}{'seconds':>9}{'studies/s':>11}{'images/s':>10}")
    runs = [("serial", 1)] + ([("parallel", args.workers)] if args.workers > 1 else [])
    for name, workers in runs:
        summary = build_once(args.studies, args.image_size, workers, args.seed)
        seconds = max(summary["seconds"], 1e-9)
        print(f"{name:<14}{workers:>8}{summary['studies']:>9}{summary['images']:>8}{seconds:>9.2f}"
              f"{summary['studies'] / seconds:>11.1f}{summary['images'] / seconds:>10.1f}")


if __name__ == "__main__":
    main()
