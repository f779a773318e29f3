"""Which CAM method and layer point at the finding? The pointing game on the phantom's probe set.

Usage (on the artifacts of a `make demo` run, or any run of notebook 02 on the phantom):
    python benchmarks/bench_cam_layers.py [--checkpoint image] [--methods gradcam,layercam]
                                          [--layers layer2,layer3,layer4] [--per-label]
                                          [--baseline-negatives 40] [--test-studies]

Each probe is a fresh phantom image with exactly one finding; a finding counts as detected when the
model's logit drops by more than ``DETECTION_DROP`` without it (the phantom's counterfactual). For
each (method, layer) the table gives the share of detected findings whose map peaks within the
tolerance (5% of the side) of the finding's mask, localised and global findings apart, beside the
random peak's chance (the share of pixels within that tolerance), where the misses peak, and where
the maps peak on each probe's finding-free twin (the map's default for a normal chest), beside an
untrained network's maps on the same twins and the training findings that touch those cells. Last,
the pointing game of the workbook's map and of the map minus the label's baseline (its mean map over
negative training images, ``gradcam.label_baselines``; notebook 05 scores it too), on the probes and, with
``--test-studies``, on notebook 05's test studies (through notebook 05's ``StudyExplainer``: run it
on the artifacts of a finished demo). This is how ``explain.gradcam.CAM_LAYER_FOR_EXTENT`` and ``CAM_METHOD_FOR_EXTENT`` were
chosen. Nothing is written.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd
import torch

from cxr_helpers.checkpoints import load_checkpoint
from cxr_helpers.config import load_settings
from cxr_helpers.explain.faithfulness.detection import DETECTION_DROP
from cxr_helpers.explain.faithfulness.image_checks import probe_checks, study_checks
from cxr_helpers.explain.faithfulness.report import image_baselines
from cxr_helpers.explain.gradcam import cam_for_label, finding_extent, label_baselines
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.image_model import build_image_model
from cxr_helpers.images import resize_pixels
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.phantom.probes import ProbeSet, ensure_probes
from cxr_helpers.phantom.truth import load_ground_truth, phantom_root
from cxr_helpers.prepare import load_cohort


def pointing_table(records: pd.DataFrame, by: str = "extent") -> pd.DataFrame:
    """Mean pointing game (tolerance) over detected findings per method@layer (columns) and ``by`` (rows)."""
    detected = records[records["detected"]]
    table = detected.pivot_table(index=by, columns="run", values="hit", aggfunc="mean")
    table["random peak"] = detected[detected["run"] == detected["run"].iloc[0]].groupby(by)["tolerance_share"].mean()
    table["detected"] = detected[detected["run"] == detected["run"].iloc[0]].groupby(by).size()
    return table


def grid_cells(peak_y, peak_x, size: int, cells: int) -> pd.Series:
    """Each peak's cell on a cells x cells grid over a size x size map, as "row,col" strings."""
    rows, columns = pd.Series(peak_y) * cells // size, pd.Series(peak_x) * cells // size
    return rows.astype(str) + "," + columns.astype(str)


def missed_peaks(records: pd.DataFrame, size: int, cells: int = 8) -> pd.DataFrame:
    """Where the maps of detected findings that miss their mask peak: on a cells x cells grid, per run.

    A map that misses near the finding is a near miss; one whose misses pile up in the same cell
    whatever the label points at something the model uses for every label (a hot spot), not at the
    finding.
    """
    rows = []
    for run, group in records[records["detected"]].groupby("run", sort=False):
        cell = grid_cells(group["peak_y"], group["peak_x"], size, cells)
        misses, hits = cell[group["hit"] == 0], cell[group["hit"] == 1]
        if misses.empty:
            continue
        top = misses.value_counts().index[:2].tolist()
        rows.append({"run": run, "misses": len(misses), "top 2 cells (row,col)": " ".join(top),
                     "share of misses there": misses.isin(top).mean(), "share of hits there": hits.isin(top).mean(),
                     "one cell's share": 1 / cells**2})
    return pd.DataFrame(rows)


def localised_peak_cells(model, probes: ProbeSet, size: int, cells: int = 8) -> dict[str, pd.Series]:
    """Where the localised labels' maps (the workbook's method and layer) peak on each probe, with its
    finding and on its finding-free twin (the same image without it), as grid cells."""
    peaks: dict[str, list[tuple[int, int]]] = {"with the finding": [], "finding-free twin": []}
    for k, label in enumerate(probes.table["label"]):
        if finding_extent(label) != "localised":
            continue
        for case, pixels in (("with the finding", probes.images[k]), ("finding-free twin", probes.without[k])):
            cam = cam_for_label(model, resize_pixels(pixels, size), label)
            peaks[case].append(np.unravel_index(int(np.argmax(cam)), cam.shape))
    return {case: grid_cells(*zip(*found, strict=True), size, cells) for case, found in peaks.items()}


def finding_free_peaks(model, probes: ProbeSet, size: int, cells: int = 8, untrained=None) -> pd.DataFrame:
    """The two cells most of the twins' maps peak in, and the share of peaks there: with the finding,
    on the twins, and (``untrained``: the same architecture at random init) on the twins again.

    A map always has a peak, even when there is nothing to find. If the twins' maps pile up in one
    place, that place is the map's default for a normal chest, and a finding has to outweigh it; if
    an untrained network's maps do not peak there, the default was learned, not drawn.
    """
    found = localised_peak_cells(model, probes, size, cells)
    top = found["finding-free twin"].value_counts().index[:2].tolist()
    if untrained is not None:
        found["finding-free twin, untrained network"] = localised_peak_cells(untrained, probes, size, cells)["finding-free twin"]
    return pd.DataFrame([{"image": case, "probes": len(cells_of), "top 2 cells of the twins (row,col)": " ".join(top),
                          "share of peaks there": cells_of.isin(top).mean(), "one cell's share": 1 / cells**2}
                         for case, cells_of in found.items()])


def finding_homes(settings, cells_of_interest: list[str], size: int, cells: int = 8) -> pd.DataFrame:
    """Per localised label, the share of the training split's findings whose mask touches each given
    cell: which finding "lives" in a hot spot."""
    truth = load_ground_truth(phantom_root(settings))
    cohort = load_cohort(settings.artifacts_dir)
    step = size // cells
    touched: dict[str, dict[str, int]] = {}
    for dicom_id in cohort.loc[cohort["split"] == "train", "dicom_id"]:
        for label in CHEXPERT_LABELS:
            mask = truth.mask(dicom_id, label, size) if finding_extent(label) == "localised" else None
            if mask is None or not mask.any():
                continue
            grid = mask[: step * cells, : step * cells].reshape(cells, step, cells, step).any(axis=(1, 3))
            counts = touched.setdefault(label, {"training findings": 0} | dict.fromkeys(cells_of_interest, 0))
            counts["training findings"] += 1
            for cell in cells_of_interest:
                row, column = map(int, cell.split(","))
                counts[cell] += int(grid[row, column])
    table = pd.DataFrame(touched).T
    for cell in cells_of_interest:
        table[f"share touching {cell}"] = table.pop(cell) / table["training findings"]
    return table.sort_values(f"share touching {cells_of_interest[0]}", ascending=False)


def baseline_pointing(records: pd.DataFrame) -> pd.DataFrame:
    """Pointing game (tolerance) of the map and of the map minus its label's baseline, over the
    detected localised findings of ``probe_checks``/``study_checks`` records: per label and over all."""
    detected = records[records["detected"] & (records["extent"] == "localised")]
    columns = {"hit": "map", "hit_baseline": "map minus baseline"}
    table = detected.groupby("label")[list(columns)].mean()
    table.loc["all localised"] = detected[list(columns)].mean()
    table["detected"] = detected.groupby("label").size().reindex(table.index).fillna(len(detected)).astype(int)
    return table.rename(columns=columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="image", help="checkpoints/<name>.pt of an image model")
    parser.add_argument("--methods", default="gradcam,layercam")
    parser.add_argument("--layers", default="layer2,layer3,layer4")
    parser.add_argument("--per-label", action="store_true", help="also print the table per label")
    parser.add_argument("--baseline-negatives", type=int, default=40,
                        help="negative training images per label for the baseline map (0: skip that table)")
    parser.add_argument("--test-studies", action="store_true",
                        help="also compare map and map minus baseline on the test studies notebook 05 checks")
    args = parser.parse_args()
    settings = load_settings()
    if settings.profile != "phantom":
        raise SystemExit("the probe set is the phantom's: run with CXR_PROFILE=phantom")
    model = build_image_model(settings)
    load_checkpoint(settings.artifacts_dir / "checkpoints" / f"{args.checkpoint}.pt", model)
    model.eval()
    probes = ensure_probes(phantom_root(settings), settings.probes_per_label)
    print(f"{platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | torch {torch.__version__} | "
          f"load average {os.getloadavg()[0]:.1f} | {len(probes.table)} probes at {settings.image_size} px")
    runs = []
    for method in args.methods.split(","):
        for layer in args.layers.split(","):
            began = time.perf_counter()
            records = probe_checks(model, probes, settings.image_size, method, layer)
            runs.append(records.assign(run=f"{method}@{layer}"))
            print(f"{method}@{layer}: {time.perf_counter() - began:.0f} s")
    records = pd.concat(runs, ignore_index=True)
    if not records["detected"].any():
        raise SystemExit(f"the model detects none of the {len(probes.table)} probes' findings (no logit drops by more "
                         f"than {DETECTION_DROP} without it): no map to score. Is checkpoints/{args.checkpoint}.pt trained?")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print("\nPointing game (tolerance) on detected probe findings:")
        print(pointing_table(records).round(2).to_string())
        if args.per_label:
            print(pointing_table(records, "label").round(2).to_string())
        print(f"\nWhere the misses peak (a {settings.image_size // 8} px grid of 8 x 8 cells):")
        print(missed_peaks(records, settings.image_size).round(3).to_string(index=False))
        print("\nLocalised labels, the workbook's method and layer: where maps peak with and without the finding:")
        torch.manual_seed(0)
        peaks = finding_free_peaks(model, probes, settings.image_size, untrained=build_image_model(settings).eval())
        print(peaks.round(3).to_string(index=False))
        print("\nWhich findings of the training split touch those two cells:")
        hot = peaks["top 2 cells of the twins (row,col)"].iloc[0].split()
        print(finding_homes(settings, hot, settings.image_size).round(2).to_string())
        if args.baseline_negatives > 0:
            print(f"\nThe workbook's method and layer, pointing game of the map and of the map minus the label's"
                  f" mean map over {args.baseline_negatives} negative training images (gradcam.label_baselines):")
            explainer = StudyExplainer.from_settings(settings, roles=("image",))  # the cohort, its images, its labels

            def negatives(label):
                return explainer.label_negatives(label, args.baseline_negatives)

            print(baseline_pointing(probe_checks(model, probes, settings.image_size,
                                                 baselines=label_baselines(model, negatives))).round(3).to_string())
            if args.test_studies:
                print(f"\nThe same on the image model's detected localised findings of the first {settings.explain_studies}"
                      " test studies:")
                studies = explainer.study_ids("test")[: settings.explain_studies]
                records = study_checks(explainer, load_ground_truth(phantom_root(settings)), studies, "image",
                                       baselines=image_baselines(explainer, args.baseline_negatives))
                print(baseline_pointing(records).round(3).to_string())


if __name__ == "__main__":
    main()
