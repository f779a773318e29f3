"""What a CAM layer can resolve at best: the pointing game of an ideal map at the layer's grid.

A Grad-CAM map has one value per cell of its layer (ResNet-18: stride 8 at layer2, 16 at layer3,
32 at layer4: a 4 x 4 grid at 128 px), upsampled to the image. Even a perfect map, each cell set
to how much of it the finding covers, then peaks at a cell's centre: for a finding smaller than a
cell that can lie far from the finding. This ceiling, measured on the probe masks, separates "the
map is wrong" from "the layer cannot say it more finely".
"""

from __future__ import annotations

import numpy as np

from cxr_helpers.config import CAM_LAYER_NAMES
from cxr_helpers.explain.faithfulness.scores import ideal_map, pointing_game_hit, tolerance_pixels
from cxr_helpers.explain.gradcam import finding_extent
from cxr_helpers.images import resize_mask
from cxr_helpers.phantom.probes import ProbeSet

LAYER_STRIDES = {"layer2": 8, "layer3": 16, "layer4": 32}  # ResNet-18: pixels per cell of each stage


def grid_cells(layer: str, image_size: int) -> int:
    """Cells per side of a layer's map at this image size (128 px: 16, 8, 4 for layer2, 3, 4)."""
    return max(1, int(image_size) // LAYER_STRIDES[layer])


def layer_resolution(probes: ProbeSet, image_size: int, layers=CAM_LAYER_NAMES) -> dict:
    """{layer: {"grid": cells, extent: {"hit", "hit_exact", "n"}}}: an ideal map's pointing game on the probes."""
    tolerance = tolerance_pixels(image_size)
    out = {}
    for layer in layers:
        cells = grid_cells(layer, image_size)
        hits: dict[str, list[tuple[bool, bool]]] = {}
        for label, mask in zip(probes.table["label"], probes.masks, strict=True):
            mask = resize_mask(mask, image_size)
            if mask.any():
                best = ideal_map(mask, cells)
                hits.setdefault(finding_extent(label), []).append(
                    (pointing_game_hit(best, mask, tolerance), pointing_game_hit(best, mask)))
        out[layer] = {"grid": cells, **{extent: {"hit": float(np.mean([h for h, _ in pairs])),
                                                 "hit_exact": float(np.mean([e for _, e in pairs])), "n": len(pairs)}
                                        for extent, pairs in sorted(hits.items())}}
    return out
