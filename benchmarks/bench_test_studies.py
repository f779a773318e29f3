"""Why maps point worse on test studies than on probes: detection and pointing by visibility and by co-occurring findings.

Usage (on the artifacts of a `make demo` run):
    python benchmarks/bench_test_studies.py [--artifacts DIR] [--studies 0] [--baseline-negatives 40]

A probe holds one clearly drawn finding; a test study's image may draw its finding "subtle" (fainter)
and beside other findings. This runs notebook 05's image-model checks (``image_checks.study_checks``,
with the map minus the label's baseline) on the test studies (``--studies 0``: all of them, not only
the ``settings.explain_studies`` notebook 05 scores) and splits the findings by how they are drawn
(visibility), by how many other findings the same image draws and whether they cover it, against
the probes'
rows of notebook 05's ``explanations/faithfulness_records.csv`` (one clear finding, alone). Per
group: findings, the share the model detects (its logit drops by more than ``DETECTION_DROP``
without the finding), the median drop, and among the detected the pointing game of the map and of
the map minus the baseline, with 95% (Wilson) intervals. Localised findings only. Nothing is written.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxr_helpers.config import load_settings
from cxr_helpers.explain.faithfulness.detection import DETECTION_DROP
from cxr_helpers.explain.faithfulness.image_checks import study_checks
from cxr_helpers.explain.faithfulness.report import RECORDS_FILE, image_baselines
from cxr_helpers.explain.faithfulness.scores import proportion_interval
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.phantom.truth import load_ground_truth, phantom_root


def share(outcomes: pd.Series, digits: int = 2) -> str:
    """A 0/1 column's share of its non-NaN values with its Wilson interval, e.g. "0.46 [0.23, 0.71] (n=13)"
    (the share to ``digits`` decimals, the interval to two)."""
    scored = outcomes.dropna().astype(float)
    if scored.empty:
        return "-"
    low, high = proportion_interval(int(scored.sum()), len(scored))
    return f"{scored.mean():.{digits}f} [{low:.2f}, {high:.2f}] (n={len(scored)})"


def with_co_findings(records: pd.DataFrame) -> pd.DataFrame:
    """The records with "others on the image": how many other scored findings the same image draws (0, 1, 2+)."""
    count = records.groupby("dicom_id")["label"].transform("size") - 1
    return records.assign(**{"others on the image": count.clip(upper=2).map({0: "0", 1: "1", 2: "2+"})})


def with_overlap(records: pd.DataFrame, truth, size: int) -> pd.DataFrame:
    """The records with "overlapped": whether other findings' masks on the same image cover at least half
    of this finding's mask (then the image keeps evidence for it without it: the phantom draws
    pneumonia, consolidation and opacity as shadows in the lung, often in the same place)."""
    masks = {(r.dicom_id, r.label): truth.mask(r.dicom_id, r.label, size) for r in records.itertuples()}
    covered = []
    for r in records.itertuples():
        others = [m for (dicom_id, label), m in masks.items() if dicom_id == r.dicom_id and label != r.label]
        own = masks[r.dicom_id, r.label]
        share = float(np.logical_or.reduce(others)[own].mean()) if others and own.any() else 0.0
        covered.append("half or more" if share >= 0.5 else "less than half")
    return records.assign(overlapped=covered)


def breakdown(records: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per group of ``by``: findings, detected share, median logit drop, and the pointing game of the
    detected findings' maps (plain and minus the label's baseline)."""
    rows = []
    for group, frame in records.groupby(by, sort=True):
        detected = frame[frame["detected"].astype(bool)]
        rows.append({by: group, "findings": len(frame), "detected": share(frame["detected"].astype(float)),
                     "median drop": round(float(frame["drop"].median()), 2),
                     "map points (detected)": share(detected["hit"]),
                     "map minus baseline points": share(detected["hit_baseline"])})
    return pd.DataFrame(rows).set_index(by)


def probe_reference(artifacts: Path) -> pd.DataFrame | None:
    """Notebook 05's probe rows (localised, image model), labelled as one group, or None if it has not run."""
    path = artifacts / "explanations" / RECORDS_FILE
    if not path.exists():
        return None
    records = pd.read_csv(path)
    probes = records[(records["source"] == "probe") & (records["extent"] == "localised")]
    return probes.assign(**{"drawn": "probe: clear, alone"}) if not probes.empty else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default=None, help="artifacts folder (default: CXR_ARTIFACTS_DIR or artifacts/<profile>)")
    parser.add_argument("--studies", type=int, default=0, help="first N test studies (0: all)")
    parser.add_argument("--baseline-negatives", type=int, default=40)
    args = parser.parse_args()
    settings = load_settings(**({"artifacts_dir": Path(args.artifacts).resolve()} if args.artifacts else {}))
    if settings.profile != "phantom":
        raise SystemExit("the truth is the phantom's: run with CXR_PROFILE=phantom")
    explainer = StudyExplainer.from_settings(settings, roles=("image",), cache=False)
    studies = explainer.study_ids("test")
    studies = studies[: args.studies] if args.studies > 0 else studies
    print(f"{platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | torch {torch.__version__} | "
          f"{len(studies)} test studies at {settings.image_size} px | detected = logit drop > {DETECTION_DROP}")
    began = time.perf_counter()
    records = study_checks(explainer, load_ground_truth(phantom_root(settings)), studies, "image",
                           baselines=image_baselines(explainer, args.baseline_negatives))
    print(f"(checks: {time.perf_counter() - began:.0f} s)")
    truth = load_ground_truth(phantom_root(settings))
    localised = with_overlap(with_co_findings(records), truth, settings.image_size)
    localised = localised[localised["extent"] == "localised"]
    localised = localised.assign(drawn="test: " + localised["visibility"] + ", "
                                 + localised["others on the image"] + " other(s)")
    probes = probe_reference(settings.artifacts_dir)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 40):
        print("\nLocalised findings of the test studies, by visibility:")
        print(breakdown(localised, "visibility").to_string())
        print("\nby how many other findings the same image draws:")
        print(breakdown(localised, "others on the image").to_string())
        print("\nby how much of the finding other findings' masks cover:")
        print(breakdown(localised, "overlapped").to_string())
        print("\nboth, beside the probes (notebook 05's records):")
        table = pd.concat([localised, localised.assign(drawn="test: all"), probes])
        print(breakdown(table, "drawn").to_string())
        print("\nper label, test studies (all visibilities) vs probes:")
        both = pd.concat([localised.assign(source="test"), probes.assign(source="probe") if probes is not None else None])
        per_label = both.assign(detected=both["detected"].astype(float)).pivot_table(
            index="label", columns="source", values="detected", aggfunc="mean")
        per_label["test findings"] = localised.groupby("label").size()
        per_label["test: subtle share"] = localised.groupby("label")["visibility"].apply(lambda v: (v == "subtle").mean())
        print(per_label.round(2).to_string())


if __name__ == "__main__":
    main()
