"""How large is each finding at the model's size? Mask area and bounding box per label, frontal images.

    python benchmarks/bench_finding_sizes.py --studies 1000 --image-size 128 [--out DIR]

Builds a phantom (or reads the one in --out if it is there), then prints, per label, the number
of frontal images with a drawn (non-empty) mask, the mask's share of the image (median and 10th
percentile), its width (twice the largest distance from inside the mask to its outside: the
thickness of a band, the diameter of a disc) and its bounding box in pixels (median sides).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import distance_transform_edt

from cxr_helpers.phantom import write_phantom
from cxr_helpers.phantom.layout import JPG_DIR, METADATA_CSV, TRUTH_DIR


def finding_sizes(root: Path) -> pd.DataFrame:
    """One row per (frontal image, drawn finding): label, area share, bounding-box sides in pixels."""
    metadata = pd.read_csv(root / JPG_DIR / METADATA_CSV)
    rows = []
    for image in metadata[metadata["ViewPosition"].isin(["PA", "AP"])].itertuples():
        with np.load(root / TRUTH_DIR / "masks" / f"{image.dicom_id}.npz") as masks:
            for label in masks.files:
                mask = masks[label]
                if not mask.any():
                    continue
                r, c = np.nonzero(mask)
                sides = sorted((int(r.max() - r.min() + 1), int(c.max() - c.min() + 1)))
                width = 2.0 * float(distance_transform_edt(np.pad(mask, 1)).max())
                rows.append({"label": label, "share": float(mask.mean()), "width": width, "short": sides[0],
                             "long": sides[1]})
    return pd.DataFrame(rows)


def summary(sizes: pd.DataFrame) -> pd.DataFrame:
    """Per label: n, area share (%, median and 10th percentile), width (px, median and 10th percentile), box sides."""
    grouped = sizes.groupby("label")
    return pd.DataFrame({
        "n": grouped.size(),
        "area % (median)": grouped["share"].median() * 100,
        "area % (p10)": grouped["share"].quantile(0.1) * 100,
        "width px (median)": grouped["width"].median(),
        "width px (p10)": grouped["width"].quantile(0.1),
        "box short side px": grouped["short"].median(),
        "box long side px": grouped["long"].median(),
    }).round(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=None, help="phantom folder (built there if empty; default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phantom-sizes-") as tmp:
        root = Path(args.out or tmp)
        if not (root / JPG_DIR / METADATA_CSV).exists():
            write_phantom(root, n_studies=args.studies, image_size=args.image_size, seed=args.seed,
                          workers=args.workers, progress=False)
        print(f"phantom: {root}, frontal images, sizes at {args.image_size} px")
        print(summary(finding_sizes(root)).to_string())


if __name__ == "__main__":
    main()
