"""The frozen image encoder's outputs, computed once for every cohort row, so fusion heads train in seconds.

With the image encoder frozen, its output for an image never changes: ``cache_image_trunks``
runs it once over the cohort ("pooled" (N, 512) features, and layer3 maps for FiLM), and
``CachedImageDataset`` serves those instead of images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cxr_helpers.config import pick_device
from cxr_helpers.datasets import CohortImageDataset, make_loader
from cxr_helpers.distributed import is_main_process, shard, sum_across_ranks
from cxr_helpers.fusion.model import LAYER3_CHANNELS, layer3_maps
from cxr_helpers.image_model import FEATURE_DIM, ImageClassifier

CACHE_LIMIT_BYTES = 2 * 1024**3  # above this the layer3 maps for FiLM are not cached (computed per step)


def layer3_fits(n_rows: int, image_size: int) -> bool:
    """Whether the layer3 maps of every cohort row fit the cache budget (float32)."""
    return n_rows * LAYER3_CHANNELS * (image_size // 16) ** 2 * 4 <= CACHE_LIMIT_BYTES


class CachedImageDataset(Dataset):
    """A split dataset whose batches carry cached image-encoder outputs ("image_features") instead of images.

    ``features``: (N_cohort, ...) array, row = cohort row (as ``index`` in every batch).
    """

    def __init__(self, base, features: np.ndarray):
        if len(features) != len(base.cohort):
            raise ValueError(f"cached features have {len(features)} rows but the cohort has {len(base.cohort)}")
        self.base, self.features = base, features
        self.cohort, self.targets, self.rows, self.split = base.cohort, base.targets, base.rows, base.split

    def __len__(self) -> int:
        return len(self.base)

    def __getitems__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        batch = self.base.__getitems__(positions)
        batch.pop("image")
        batch["image_features"] = torch.from_numpy(np.asarray(self.features[batch["index"].numpy()]))
        return batch

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([int(position)]).items()}


@torch.no_grad()
def cache_image_trunks(
    image_model: ImageClassifier, cohort: pd.DataFrame, images: np.ndarray, kinds: Sequence[str],
    batch_size: int = 64, device=None, progress: bool = True,
) -> dict[str, np.ndarray]:
    """The frozen image encoder's outputs for every cohort row, in one pass: {"pooled": (N, 512), "layer3": (N, 256, h, w)}."""


    device = pick_device(device) if not isinstance(device, torch.device) else device
    dataset = CohortImageDataset(cohort, images)
    size = dataset.image_size
    shapes = {"pooled": (FEATURE_DIM,), "layer3": (LAYER3_CHANNELS, size // 16, size // 16)}
    unknown = set(kinds) - set(shapes)
    if unknown:
        raise ValueError(f"kinds must be among {sorted(shapes)}, got {sorted(unknown)}")
    out = {kind: np.zeros((len(cohort), *shapes[kind]), dtype=np.float32) for kind in kinds}
    image_model.eval().to(device)
    backbone = image_model.backbone
    # Under torchrun each rank encodes its own rows and the sum over ranks fills in the rest.
    loader = make_loader(dataset, batch_size, shuffle=False, sampler=shard(len(dataset)))
    for batch in tqdm(loader, desc="caching image features", disable=not progress or not is_main_process()):
        rows = batch["index"].numpy()
        maps = layer3_maps(image_model, batch["image"].to(device))  # (B, 256, S/16, S/16)
        if "layer3" in out:
            out["layer3"][rows] = maps.cpu().numpy()
        if "pooled" in out:
            out["pooled"][rows] = torch.flatten(backbone.avgpool(backbone.layer4(maps)), 1).cpu().numpy()
    return {kind: sum_across_ranks(array) for kind, array in out.items()}
