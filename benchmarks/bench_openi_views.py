"""How good is the Open-i importer's frontal/lateral guess? Measured on phantom images only.

    python benchmarks/bench_openi_views.py --studies 300 --image-size 256

Builds two phantoms in a temporary folder: one (seed 0) to look at the score ranges the
thresholds in ``cxr_helpers/openi/views.py`` were chosen from, one (another seed) held out.
On each it prints, per true view, the score range and how the guess came out (frontal, lateral,
unknown), then accuracy over the images it decided and coverage (the share it decided). The
"perturbed" rows repeat the held-out run on images shifted sideways, zoomed out on a black
border and gamma-changed, a rough stand-in for positioning and exposure on real radiographs.
No real Open-i image is measured here: that number stays unknown (see docs/openi.md).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxr_helpers.mimic import image_path
from cxr_helpers.openi.views import FRONTAL_FROM, LATERAL_UNDER, guess_view, mediastinum_contrast
from cxr_helpers.phantom import write_phantom


def perturb(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shift sideways by up to 8%, zoom out to 85-100% on black, gamma 0.7-1.4."""
    width, height = image.size
    scale = rng.uniform(0.85, 1.0)
    small = image.resize((max(1, int(width * scale)), max(1, int(height * scale))), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (width, height), 0)
    dx = int((width - small.size[0]) / 2 + rng.uniform(-0.08, 0.08) * width)
    canvas.paste(small, (dx, int((height - small.size[1]) / 2)))
    gamma = rng.uniform(0.7, 1.4)
    return canvas.point([int(255 * (v / 255) ** gamma) for v in range(256)])


def scores(root: Path, perturbed: bool, seed: int) -> pd.DataFrame:
    """Per phantom image: true view (frontal/lateral), score and guess."""
    data = root / "mimic-cxr-jpg"
    metadata = pd.read_csv(data / "mimic-cxr-2.0.0-metadata.csv.gz")
    rng = np.random.default_rng(seed)
    rows = []
    for row in metadata.itertuples():
        with Image.open(image_path(data, row.subject_id, row.study_id, row.dicom_id)) as image:
            image = image.convert("L")
            score = mediastinum_contrast(perturb(image, rng) if perturbed else image)
        truth = "frontal" if row.ViewPosition in ("PA", "AP") else "lateral"
        rows.append({"view": truth, "score": score, "guess": guess_view(score)})
    return pd.DataFrame(rows)


def report(name: str, table: pd.DataFrame) -> None:
    """Score range and guesses per true view, accuracy on decided images, coverage."""
    decided = table[table["guess"] != "unknown"]
    accuracy = (decided["guess"] == decided["view"]).mean() if len(decided) else float("nan")
    right = int((decided["guess"] == decided["view"]).sum())
    print(
        f"\n{name}: {len(table)} images, accuracy on decided {accuracy:.1%} ({right}/{len(decided)}), "
        f"coverage {len(decided) / len(table):.1%}"
    )
    for view, part in table.groupby("view"):
        counts = part["guess"].value_counts().to_dict()
        low, high = part["score"].quantile(0.05), part["score"].quantile(0.95)
        print(
            f"  true {view:<8} n={len(part):<5} "
            f"score {part['score'].min():+.2f} .. {part['score'].max():+.2f} "
            f"(5%-95%: {low:+.2f} .. {high:+.2f})  guesses {counts}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--held-out-seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    print(f"thresholds: frontal >= {FRONTAL_FROM}, lateral < {LATERAL_UNDER}, unknown between")
    with tempfile.TemporaryDirectory(prefix="openi-views-") as tmp:
        for name, seed in (
            ("tuning phantom (seed 0)", 0),
            (f"held-out phantom (seed {args.held_out_seed})", args.held_out_seed),
        ):
            root = Path(tmp) / f"seed{seed}"
            write_phantom(
                root,
                n_studies=args.studies,
                image_size=args.image_size,
                seed=seed,
                workers=args.workers,
                progress=False,
            )
            report(name, scores(root, perturbed=False, seed=seed))
            if seed != 0:
                report(name + ", perturbed", scores(root, perturbed=True, seed=seed))


if __name__ == "__main__":
    main()
