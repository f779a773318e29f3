"""Does a model that must use the finding's own pixels point better? Counterfactual training on the phantom.

Usage (on the artifacts of a `make demo` run; about 5 min on a 2-core CPU):
    python benchmarks/bench_counterfactual_training.py [--artifacts DIR] [--out DIR] [--seed 0]

On the test studies the image model detects a finding far less often when the image draws other
findings (``bench_test_studies.py``): its score for one finding rests on the others. The phantom can
take that away in training: each training image with a visible localised finding gets a copy
re-rendered without one of them (chosen at random; same anatomy, same noise), labelled negative
for it. The paired original goes through the same JPEG round trip and resize, so how an image was
made says nothing about its labels. The workbook's image model is trained on this set with the
demo's settings (``train_image``) into ``--out`` (default: a temporary folder), and compared with
the demo's model on what notebook 05 checks: test macro AUROC against the truth, how many localised
findings it detects on the test studies and on the probes, and how often its map (and the map minus
the label's baseline) points at them, over each model's detected findings and over those both detect.
A phantom-only experiment: real X-rays have no such twins.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_test_studies import share  # benchmarks/ is on the path when this runs as a script

from cxr_helpers.config import load_settings
from cxr_helpers.explain.faithfulness.image_checks import probe_checks, study_checks
from cxr_helpers.explain.faithfulness.report import RECORDS_FILE, image_baselines
from cxr_helpers.explain.gradcam import finding_extent
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.image_training import train_image
from cxr_helpers.images import decode_resized
from cxr_helpers.phantom.counterfactual import counterfactuals
from cxr_helpers.phantom.layout import encode_jpeg
from cxr_helpers.phantom.probes import ensure_probes
from cxr_helpers.phantom.truth import load_ground_truth, phantom_root
from cxr_helpers.prepare import load_cohort, open_image_cache


def as_cached(pixels: np.ndarray, size: int, folder: Path) -> np.ndarray:
    """A rendered image through the cache's own path: stored as the phantom's JPEG, decoded and resized."""
    path = folder / "image.jpg"
    path.write_bytes(encode_jpeg(pixels))
    return decode_resized(path, size)


def counterfactual_world(settings, out: Path, seed: int = 0) -> tuple:
    """Write ``out``/cohort.csv and the image cache: the demo's, plus one counterfactual per training
    image with a visible localised finding (that finding removed and coded 0). Returns (settings, count)."""
    root, size = phantom_root(settings), settings.image_size
    cohort = load_cohort(settings.artifacts_dir)
    images = list(np.asarray(open_image_cache(settings.artifacts_dir, size)))
    visible = load_ground_truth(root).visibility
    train = set(cohort.loc[cohort["split"] == "train", "dicom_id"])
    visible = visible[visible["dicom_id"].isin(train) & (visible["visibility"] != "invisible")
                      & (visible["label"].map(finding_extent) == "localised")]
    chosen = visible.sample(frac=1, random_state=seed).drop_duplicates("dicom_id")  # one finding per image
    position = {dicom_id: i for i, dicom_id in enumerate(cohort["dicom_id"])}
    extra = []
    with tempfile.TemporaryDirectory() as folder:
        for label, group in chosen.groupby("label"):
            for pair in counterfactuals(root, group["dicom_id"].tolist(), label):
                row = cohort.iloc[position[pair.dicom_id]]
                images[int(row["cache_index"])] = as_cached(pair.original, size, Path(folder))  # the same path
                twin = row.copy()
                twin["dicom_id"], twin[label], twin["cache_index"] = f"{pair.dicom_id}_without", 0, len(images)
                images.append(as_cached(pair.without, size, Path(folder)))
                extra.append(twin)
    out.mkdir(parents=True, exist_ok=True)
    pd.concat([cohort, pd.DataFrame(extra)], ignore_index=True).to_csv(out / "cohort.csv", index=False)
    np.save(out / f"images_{size}.npy", np.stack(images).astype(np.uint8))
    (out / f"images_{size}.json").write_text(json.dumps({"size": size, "count": len(images), "complete": True,
                                                          "done": [], "failed": [], "chunk_size": 64}))
    (out / "cohort_summary.json").write_bytes((Path(settings.artifacts_dir) / "cohort_summary.json").read_bytes())
    return dataclasses.replace(settings, artifacts_dir=out), len(extra)


def truth_auroc(artifacts: Path) -> float | None:
    """The image model's test macro AUROC against the phantom's truth, from metrics/image.json."""
    metrics = json.loads((artifacts / "metrics" / "image.json").read_text())["models"]["image"]["test"]
    return metrics.get("truth", {}).get("macro_auroc")


def localised_checks(settings, probes) -> dict[str, pd.DataFrame]:
    """The image model's checks (with baselines) on all test studies and on the probes, localised findings only."""
    explainer = StudyExplainer.from_settings(settings, roles=("image",), cache=False)
    baselines = image_baselines(explainer, settings.cam_baseline_negatives)
    tests = study_checks(explainer, load_ground_truth(phantom_root(settings)), explainer.study_ids("test"), "image",
                         baselines=baselines)
    on_probes = probe_checks(explainer.models.get("image"), probes, settings.image_size, baselines=baselines)
    return {"test studies": tests[tests["extent"] == "localised"],
            "probes": on_probes[on_probes["extent"] == "localised"]}


def comparison_row(name: str, artifacts: Path, checks: dict[str, pd.DataFrame]) -> dict:
    row = {"model": name, "test macro AUROC vs truth": round(truth_auroc(artifacts), 3)}
    for source, records in checks.items():
        detected = records[records["detected"].astype(bool)]
        row[f"{source}: detected"] = share(records["detected"].astype(float))
        row[f"{source}: map points"] = share(detected["hit"])
        row[f"{source}: minus baseline"] = share(detected["hit_baseline"])
    return row


def both_detect(demo: dict[str, pd.DataFrame], counterfactual: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Pointing of each model's map (and map minus baseline) on the findings both models detect."""
    keys = {"test studies": ["dicom_id", "label"], "probes": ["probe_id"]}
    rows = []
    for source, key in keys.items():
        paired = demo[source].merge(counterfactual[source], on=key, suffixes=(" demo", " counterfactual"))
        paired = paired[paired["detected demo"].astype(bool) & paired["detected counterfactual"].astype(bool)]
        for model in ("demo", "counterfactual"):
            rows.append({"findings": source, "model": model, "map points": share(paired[f"hit {model}"]),
                         "minus baseline": share(paired[f"hit_baseline {model}"])})
    return pd.DataFrame(rows).set_index(["findings", "model"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default=None, help="the demo's artifacts (default: CXR_ARTIFACTS_DIR or artifacts/<profile>)")
    parser.add_argument("--out", default=None, help="where to write the counterfactual world (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0, help="which finding each training image loses")
    args = parser.parse_args()
    settings = load_settings(**({"artifacts_dir": Path(args.artifacts).resolve()} if args.artifacts else {}))
    if settings.profile != "phantom" or not (Path(settings.artifacts_dir) / "explanations" / RECORDS_FILE).exists():
        raise SystemExit("run on the phantom's artifacts after notebook 05 (make demo): CXR_PROFILE=phantom")
    print(f"{platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | torch {torch.__version__} | "
          f"{settings.epochs} epochs at {settings.image_size} px")
    probes = ensure_probes(phantom_root(settings), settings.probes_per_label)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out) if args.out else Path(scratch)
        began = time.perf_counter()
        world, count = counterfactual_world(settings, out, args.seed)
        print(f"{count} counterfactual training images written in {time.perf_counter() - began:.0f} s")
        began = time.perf_counter()
        train_image(world, progress=False)
        print(f"trained in {time.perf_counter() - began:.0f} s")
        demo, counterfactual = localised_checks(settings, probes), localised_checks(world, probes)
        rows = [comparison_row("the demo's", Path(settings.artifacts_dir), demo),
                comparison_row("with counterfactuals", out, counterfactual)]
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 40):
        print("\nLocalised findings (pointing among the detected; 95% Wilson intervals):")
        print(pd.DataFrame(rows).set_index("model").T.to_string())
        print("\nThe same findings: those both models detect (so the harder findings one of them adds do not count):")
        print(both_detect(demo, counterfactual).to_string())


if __name__ == "__main__":
    main()
