"""Do maps averaged over shifted copies of the image point better? (test-time augmentation of Grad-CAM)

Usage (on the artifacts of a `make demo` run):
    python benchmarks/bench_cam_shifts.py [--step 4]

A layer2 map at 128 px is a 16 x 16 grid: a cell is 8 px, wider than the pointing game's tolerance
(6.4 px). Shifting the image by less than a cell, computing the map and shifting the map back, then
averaging, gives the map a finer grain (the idea behind pytorch-grad-cam's ``aug_smooth``, here
with shifts only, which a chest X-ray tolerates). For the demo's image model this prints, on the
detected localised probes (notebook 05's probe set and detection): the pointing game of the plain
map and of the map minus the label's baseline (the baseline averaged over the same shifts), per
label, and the seconds each took, for 1, 5 (centre and 4 neighbours) and 9 (3 x 3) shifts of
``--step`` pixels. The workbook computes the plain map; this is the measurement behind that choice.
Nothing is written.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from torch.nn import functional

from cxr_helpers.config import load_settings
from cxr_helpers.explain.faithfulness.detection import DETECTION_DROP, logit_drops, model_inputs
from cxr_helpers.explain.faithfulness.scores import pointing_game_hit, tolerance_pixels
from cxr_helpers.explain.gradcam import cam_layer_for, cam_method_for, compute_cams, finding_extent
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.images import resize_mask
from cxr_helpers.labels import label_index
from cxr_helpers.phantom.probes import ensure_probes
from cxr_helpers.phantom.truth import phantom_root


def shifted(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(B, 1, S, S) moved by (dy, dx) pixels, the uncovered border filled with the edge's values."""
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return images
    size = images.shape[-1]
    padded = functional.pad(images, (pad, pad, pad, pad), mode="replicate")
    return padded[..., pad - dy : pad - dy + size, pad - dx : pad - dx + size]


def shifted_back(maps: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Maps (B, S, S) of shifted images moved back into the original image's frame."""
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return maps
    size = maps.shape[-1]
    padded = np.pad(maps, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    return padded[:, pad + dy : pad + dy + size, pad + dx : pad + dx + size]


def averaged_maps(model, images: torch.Tensor, label: str, shifts) -> np.ndarray:
    """The label's maps (B, S, S), each the mean over the given (dy, dx) shifts."""
    target = model.cam_layer(cam_layer_for(label))
    total = 0.0
    for dy, dx in shifts:
        maps = compute_cams(model, target, shifted(images, dy, dx), [label_index(label)] * len(images), cam_method_for(label))
        total = total + shifted_back(maps, dy, dx)
    return total / len(shifts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=int, default=4, help="shift in pixels (half a layer2 cell at 128 px)")
    args = parser.parse_args()
    settings = load_settings()
    explainer = StudyExplainer.from_settings(settings, roles=("image",), cache=False)
    model = explainer.models.get("image")
    probes = ensure_probes(phantom_root(settings), per_label=settings.probes_per_label)
    size, tolerance, step = settings.image_size, tolerance_pixels(settings.image_size), args.step
    variants = {"plain map": [(0, 0)], f"5 shifts of {step} px": [(0, 0), (step, 0), (-step, 0), (0, step), (0, -step)],
                f"9 shifts of {step} px": [(dy, dx) for dy in (-step, 0, step) for dx in (-step, 0, step)]}
    table = probes.table
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; detected localised probes, "
          f"tolerance {tolerance:.1f} px")
    for name, shifts in variants.items():
        started, hits, contrast_hits, per_label = time.perf_counter(), [], [], {}
        for label in dict.fromkeys(table["label"]):
            if finding_extent(label) != "localised":
                continue
            chosen = [k for k in table.index[table["label"] == label] if resize_mask(probes.masks[k], size).any()]
            drops = logit_drops(model, [probes.images[k] for k in chosen], [probes.without[k] for k in chosen], label, size)
            chosen = [k for k, drop in zip(chosen, drops, strict=True) if drop > DETECTION_DROP]
            negatives = explainer.label_negatives(label, settings.cam_baseline_negatives)
            if not chosen or not negatives:
                continue
            maps = averaged_maps(model, model_inputs([probes.images[k] for k in chosen], size), label, shifts)
            normal = torch.from_numpy(np.stack(negatives).astype(np.float32))[:, None]
            baseline = averaged_maps(model, normal, label, shifts).mean(axis=0)
            for k, cam in zip(chosen, maps, strict=True):
                mask = resize_mask(probes.masks[k], size)
                hits.append(pointing_game_hit(cam, mask, tolerance))
                contrast_hits.append(pointing_game_hit(cam - baseline, mask, tolerance))
                per_label.setdefault(label, []).append(contrast_hits[-1])
        print(f"{name:<18} n={len(hits)}  pointing {np.mean(hits):.3f}  minus baseline {np.mean(contrast_hits):.3f}"
              f"  ({time.perf_counter() - started:.0f} s)", flush=True)
        print("    minus baseline per label: " + ", ".join(f"{label} {np.mean(v):.2f}" for label, v in per_label.items()))


if __name__ == "__main__":
    main()
