"""Torch datasets over the cohort table and the uint8 image cache; batches are dicts of tensors.

A batch (see docs/design.md, "Batches and models"):
``image`` float32 (B, 1, S, S) in [0, 1]; ``targets`` float32 (B, 14) coded 1/0/-1/-2;
``index`` int64 (B,) cohort row; optionally ``text_features`` float32 (B, H) or
``input_ids`` / ``attention_mask`` int64 (B, L).

Speed: the loader asks the dataset for whole batches (``__getitems__``), and the dataset reads
the memory-mapped cache once per batch with a sorted index array, so there is no per-image
Python work and the disk is read in order. Within a batch, samples come sorted by cache row;
models, BatchNorm and the mean loss do not care about order inside a batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler
from torch.utils.data.dataloader import default_collate
from torch.utils.data.distributed import DistributedSampler

from cxr_helpers.artifacts import MADE_BY
from cxr_helpers.distributed import is_initialized
from cxr_helpers.images import open_image_cache
from cxr_helpers.labels import CHEXPERT_LABELS, VALID_CODES
from cxr_helpers.prepare import load_cohort

SPLITS = ("train", "validate", "test")
TOKEN_KEYS = ("input_ids", "attention_mask")


def cohort_targets(cohort: pd.DataFrame) -> np.ndarray:
    """The 14 coded label columns as float32 (N, 14); a clear error for a missing or bad code."""
    missing = [name for name in CHEXPERT_LABELS if name not in cohort.columns]
    if missing:
        raise KeyError(f"cohort table lacks label columns {missing}; rebuild it with notebook 01_data_prep")
    codes = cohort[list(CHEXPERT_LABELS)].to_numpy(dtype=np.float64)  # (N, 14), NaN where blank
    bad = ~np.isin(codes, list(VALID_CODES))
    if bad.any():
        row, column = map(int, np.argwhere(bad)[0])
        study = cohort["study_id"].iloc[row] if "study_id" in cohort.columns else "?"
        raise ValueError(
            f"cohort row {row} (study_id {study}) has label {CHEXPERT_LABELS[column]!r} = {codes[row, column]!r}; "
            f"expected one of {sorted(VALID_CODES)} ({int(bad.sum())} bad cells in all)"
        )
    return codes.astype(np.float32)


class CohortImageDataset(Dataset):
    """The images of one split (cohort rows) from the uint8 cache, with their coded targets.

    ``images``: the (N_cache, S, S) uint8 array or memmap that ``cache_index`` points into.
    ``text_features``: optional (N_cohort, H) array, row = cohort row (cached [CLS] embeddings).
    ``tokens``: optional {"input_ids", "attention_mask"} arrays (N_cohort, L), row = cohort row.
    ``max_shift``: data augmentation for training, as a fraction of the side: each image is moved by
    up to that many pixels in each direction (the uncovered border black), drawn from (seed, epoch,
    cohort row) so that a resumed run sees the same images (``set_epoch``, called by ``fit``).
    """

    def __init__(
        self,
        cohort: pd.DataFrame,
        images: np.ndarray,
        split: str | None = None,
        text_features: np.ndarray | None = None,
        tokens: Mapping[str, np.ndarray] | None = None,
        max_shift: float = 0.0,
        seed: int = 0,
    ):
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"image cache must be uint8 (N, S, S), got {images.dtype} {images.shape}")
        if split is None:
            rows = np.arange(len(cohort))
        else:
            rows = np.flatnonzero(cohort["split"].to_numpy() == split)
            if len(rows) == 0:
                counts = cohort["split"].value_counts().to_dict()
                raise ValueError(f"no cohort rows in split {split!r}; the cohort has {counts}")
        self.split = split
        self.cohort = cohort  # the whole table (not copied); ``rows`` index into it
        self.rows = rows.astype(np.int64)  # cohort row positions, (n,)
        self.cache_index = cohort["cache_index"].to_numpy()[rows].astype(np.int64)  # (n,)
        out_of_range = (self.cache_index < 0) | (self.cache_index >= images.shape[0])
        if out_of_range.any():
            row = int(self.rows[np.argmax(out_of_range)])
            raise IndexError(
                f"cohort row {row} has cache_index {int(cohort['cache_index'].iloc[row])} outside the image cache "
                f"({images.shape[0]} rows); rebuild the cache with notebook 01_data_prep"
            )
        self.targets = cohort_targets(cohort)[rows]  # (n, 14)
        self.images = images
        self.text_features = self._check_rows("text_features", text_features, len(cohort))
        self.tokens = {k: self._check_rows(k, v, len(cohort)) for k, v in (tokens or {}).items()}
        unknown = set(self.tokens) - set(TOKEN_KEYS)
        if unknown:
            raise KeyError(f"tokens may hold {TOKEN_KEYS}, got {sorted(unknown)}")
        if not 0 <= max_shift < 0.5:
            raise ValueError(f"max_shift is a fraction of the image side in [0, 0.5), got {max_shift}")
        self.max_shift, self.seed, self.epoch = float(max_shift), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shifts the next batches get (only matters with ``max_shift``)."""
        self.epoch = int(epoch)

    def _shifted(self, image: np.ndarray, cohort_rows: np.ndarray) -> np.ndarray:
        """Each (1, S, S) image moved by its own (dy, dx), drawn from (seed, epoch, cohort row)."""
        reach = int(self.max_shift * image.shape[-1])
        moved = np.zeros_like(image)
        for i, row in enumerate(cohort_rows):
            rng = np.random.default_rng([self.seed, self.epoch, int(row)])
            dy, dx = rng.integers(-reach, reach + 1, size=2)
            source = image[i, 0, max(0, -dy):image.shape[-2] - max(0, dy), max(0, -dx):image.shape[-1] - max(0, dx)]
            moved[i, 0, max(0, dy):max(0, dy) + source.shape[0], max(0, dx):max(0, dx) + source.shape[1]] = source
        return moved

    @staticmethod
    def _check_rows(name: str, array: np.ndarray | None, expected: int) -> np.ndarray | None:
        if array is not None and len(array) != expected:
            raise ValueError(f"{name} has {len(array)} rows but the cohort has {expected}; rows must be cohort rows")
        return array

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        """One whole batch: a single sorted read of the cache instead of one read per image."""
        positions = np.asarray(positions, dtype=np.int64)
        positions = positions[np.argsort(self.cache_index[positions], kind="stable")]
        pixels = np.asarray(self.images[self.cache_index[positions]])  # (B, S, S) uint8, one read
        # NumPy converts single-threaded: a torch op here would start a parallel region per batch,
        # which stalls whenever the model's threads hold the cores (same float32 result, bit for bit).
        image = np.divide(pixels, np.float32(255.0), dtype=np.float32)[:, None]  # (B, 1, S, S) in [0, 1]
        if self.max_shift > 0:
            image = self._shifted(image, self.rows[positions])
        batch = {
            "image": torch.from_numpy(image),
            "targets": torch.from_numpy(self.targets[positions]),  # (B, 14)
            "index": torch.from_numpy(self.rows[positions]),  # (B,)
        }
        cohort_rows = self.rows[positions]
        if self.text_features is not None:
            batch["text_features"] = torch.as_tensor(np.asarray(self.text_features[cohort_rows]), dtype=torch.float32)
        for key, array in self.tokens.items():
            batch[key] = torch.as_tensor(np.asarray(array[cohort_rows]), dtype=torch.int64)  # (B, L)
        return batch

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        """One sample (the batch keys without the batch dimension)."""
        return {key: value[0] for key, value in self.__getitems__([int(position)]).items()}

    def __getstate__(self) -> dict:
        """Pickle a memmap as its file name, so spawned loader workers reopen it instead of copying it."""
        state = self.__dict__.copy()
        if isinstance(self.images, np.memmap) and self.images.filename:
            state["images"] = ("memmap", str(self.images.filename), tuple(self.images.shape))
        return state

    def __setstate__(self, state: dict) -> None:
        images = state["images"]
        if isinstance(images, tuple) and images[0] == "memmap":
            _, filename, shape = images
            reopened = np.load(filename, mmap_mode="r")
            if tuple(reopened.shape) != shape:
                raise ValueError(f"image cache {filename} changed shape ({reopened.shape} != {shape}) while in use")
            state["images"] = reopened
        self.__dict__.update(state)


class EpochShuffleSampler(Sampler[int]):
    """A random order that depends only on (seed, epoch): what makes resumed training repeat exactly."""

    def __init__(self, length: int, seed: int = 0):
        self.length, self.seed, self.epoch = int(length), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration gives (like DistributedSampler)."""
        self.epoch = int(epoch)

    def __iter__(self):
        entropy = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(entropy))
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


def collate_batch(batch):
    """Pass through a batch the dataset already built (``__getitems__``); stack a list of samples."""
    return batch if isinstance(batch, Mapping) else default_collate(batch)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    sampler: Sampler | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader that fetches whole batches; under torchrun it shards with a DistributedSampler.

    Shuffled orders come from (seed, epoch): ``training.fit`` calls ``set_epoch`` every epoch.
    """
    if sampler is None:
        if is_initialized():
            sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        elif shuffle:
            sampler = EpochShuffleSampler(len(dataset), seed)
        else:
            sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        collate_fn=collate_batch,
        pin_memory=torch.cuda.is_available(),
        # a persistent worker keeps its copy of the dataset: an augmented one must see each new epoch
        persistent_workers=num_workers > 0 and not getattr(dataset, "max_shift", 0),
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the loader's sampler (ours or a DistributedSampler), and an augmented dataset, which epoch comes next."""
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
    for candidate in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if hasattr(candidate, "set_epoch"):
            candidate.set_epoch(epoch)
            return


def load_split_datasets(
    settings,
    splits: Sequence[str] = SPLITS,
    text_features: np.ndarray | None = None,
    tokens: Mapping[str, np.ndarray] | None = None,
) -> dict[str, CohortImageDataset]:
    """The cohort and image cache from ``settings.artifacts_dir``, one dataset per split.

    Raises FileNotFoundError naming notebook 01 (or the prepare command) when they are missing.
    """
    artifacts = Path(settings.artifacts_dir)
    needed = [artifacts / "cohort.csv", artifacts / f"images_{settings.image_size}.npy"]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing. They are made by {MADE_BY['cohort']}; run that "
                                f"first with the same CXR_IMAGE_SIZE={settings.image_size}.")
    cohort = load_cohort(artifacts)
    images = open_image_cache(artifacts, settings.image_size)
    return {split: CohortImageDataset(cohort, images, split, text_features, tokens) for split in splits}
