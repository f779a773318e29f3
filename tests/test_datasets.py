"""Datasets over the cohort + uint8 cache: batch contents, errors, loaders, shuffling, pickling."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from cxr_helpers import datasets
from cxr_helpers.config import load_settings
from cxr_helpers.labels import CHEXPERT_LABELS

SIZE = 64


def synthetic_cohort(n: int = 30, seed: int = 0) -> pd.DataFrame:
    """A cohort table with the design's columns; cache rows in reverse order to catch mix-ups."""
    rng = np.random.default_rng(seed)
    cohort = pd.DataFrame(
        {
            "subject_id": 10000000 + np.arange(n),
            "study_id": 50000000 + np.arange(n),
            "dicom_id": [f"{i:08x}-0000" for i in range(n)],
            "split": np.array(["train", "validate", "test"])[np.arange(n) % 3],
            "cache_index": np.arange(n)[::-1],
        }
    )
    for name in CHEXPERT_LABELS:
        cohort[name] = rng.choice([1, 0, -1, -2], size=n)
    return cohort


@pytest.fixture
def cohort():
    return synthetic_cohort()


@pytest.fixture
def images(cohort):
    return np.random.default_rng(1).integers(0, 256, size=(len(cohort), SIZE, SIZE), dtype=np.uint8)


def test_batch_holds_image_targets_and_cohort_row(cohort, images):
    dataset = datasets.CohortImageDataset(cohort, images, "validate")
    assert len(dataset) == 10 and dataset.image_size == SIZE
    batch = dataset.__getitems__([4, 0, 2])
    assert batch["image"].shape == (3, 1, SIZE, SIZE) and batch["image"].dtype == torch.float32
    assert batch["targets"].shape == (3, 14) and batch["targets"].dtype == torch.float32
    assert batch["index"].dtype == torch.int64
    for i, row in enumerate(batch["index"].tolist()):
        assert cohort["split"].iloc[row] == "validate"
        expected = images[cohort["cache_index"].iloc[row]].astype(np.float32) / 255
        np.testing.assert_allclose(batch["image"][i, 0].numpy(), expected)
        np.testing.assert_array_equal(batch["targets"][i].numpy(), cohort[list(CHEXPERT_LABELS)].iloc[row].to_numpy())
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0


def test_single_item_has_no_batch_dimension(cohort, images):
    item = datasets.CohortImageDataset(cohort, images, "train")[2]
    assert item["image"].shape == (1, SIZE, SIZE) and item["targets"].shape == (14,) and item["index"].ndim == 0


def test_text_features_and_tokens_follow_cohort_rows(cohort, images):
    features = np.arange(len(cohort) * 4, dtype=np.float32).reshape(len(cohort), 4)
    tokens = {"input_ids": np.arange(len(cohort) * 5).reshape(len(cohort), 5), "attention_mask": np.ones((len(cohort), 5))}
    dataset = datasets.CohortImageDataset(cohort, images, "test", text_features=features, tokens=tokens)
    batch = dataset.__getitems__([1, 3])
    rows = batch["index"].numpy()
    np.testing.assert_array_equal(batch["text_features"].numpy(), features[rows])
    np.testing.assert_array_equal(batch["input_ids"].numpy(), tokens["input_ids"][rows])
    assert batch["input_ids"].dtype == torch.int64 and batch["attention_mask"].dtype == torch.int64
    with pytest.raises(ValueError, match="cohort rows"):
        datasets.CohortImageDataset(cohort, images, "test", text_features=features[:5])


def test_bad_inputs_get_clear_errors(cohort, images):
    with pytest.raises(ValueError, match="no cohort rows in split 'valid'"):
        datasets.CohortImageDataset(cohort, images, "valid")
    broken = cohort.copy()
    broken.loc[7, "Edema"] = 3
    with pytest.raises(ValueError, match=r"row 7 \(study_id 50000007\).*Edema"):
        datasets.CohortImageDataset(broken, images, "train")
    with pytest.raises(IndexError, match="cache_index"):
        datasets.CohortImageDataset(cohort, images[:10], "train")
    with pytest.raises(ValueError, match="uint8"):
        datasets.CohortImageDataset(cohort, images.astype(np.float32), "train")


def test_loader_yields_every_row_once_in_dict_batches(cohort, images):
    dataset = datasets.CohortImageDataset(cohort, images, "train")
    loader = datasets.make_loader(dataset, batch_size=4, shuffle=True, seed=3)
    batches = list(loader)
    assert [len(b["index"]) for b in batches] == [4, 4, 2]
    seen = torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(seen) == sorted(dataset.rows.tolist())


def test_shuffle_order_depends_only_on_seed_and_epoch(cohort, images):
    dataset = datasets.CohortImageDataset(cohort, images, None)

    def order(seed, epoch):
        loader = datasets.make_loader(dataset, batch_size=5, shuffle=True, seed=seed)
        datasets.set_loader_epoch(loader, epoch)
        return torch.cat([b["index"] for b in loader]).tolist()

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 1) != order(1, 1)
    unshuffled = datasets.make_loader(dataset, batch_size=5, shuffle=False)
    # consecutive rows per batch, each batch read in cache order (cache rows run backwards here)
    expected = [row for start in range(0, len(cohort), 5) for row in reversed(range(start, start + 5))]
    assert torch.cat([b["index"] for b in unshuffled]).tolist() == expected


def test_shift_augmentation_moves_each_image_by_a_draw_of_seed_epoch_and_row(cohort, images):
    plain = datasets.CohortImageDataset(cohort, images, "train")
    shifted = datasets.CohortImageDataset(cohort, images, "train", max_shift=0.25, seed=3)

    def images_by_row(dataset, positions):
        batch = dataset.__getitems__(list(positions))
        return {int(row): image for row, image in zip(batch["index"], batch["image"], strict=True)}

    def batch(epoch, positions=(0, 1, 2, 3)):
        loader = datasets.make_loader(shifted, batch_size=4, shuffle=True, seed=0)
        datasets.set_loader_epoch(loader, epoch)  # what fit does: the dataset learns the epoch too
        return images_by_row(shifted, positions)

    original = images_by_row(plain, (0, 1, 2, 3))
    first, again, later = batch(0), batch(0), batch(1)
    assert all(torch.equal(first[r], again[r]) for r in first)  # a resumed run sees the same images
    assert any(not torch.equal(first[r], later[r]) for r in first)  # another epoch, other shifts
    subset = batch(0, (3, 2))  # a row's shift does not depend on the batch it is in
    assert all(torch.equal(subset[r], first[r]) for r in subset)
    for row, image in first.items():  # the same picture, moved: some shift (dy, dx) reproduces it
        source = original[row][0].numpy()
        reach = int(0.25 * SIZE)
        matches = []
        for dy in range(-reach, reach + 1):
            for dx in range(-reach, reach + 1):
                moved = np.zeros_like(source)
                part = source[max(0, -dy):SIZE - max(0, dy), max(0, -dx):SIZE - max(0, dx)]
                moved[max(0, dy):max(0, dy) + part.shape[0], max(0, dx):max(0, dx) + part.shape[1]] = part
                matches.append(np.array_equal(moved, image[0].numpy()))
        assert sum(matches) == 1, row
    assert not datasets.make_loader(shifted, 4, True, num_workers=1).persistent_workers  # workers see new epochs
    with pytest.raises(ValueError, match="max_shift"):
        datasets.CohortImageDataset(cohort, images, "train", max_shift=0.5)


def test_pickled_dataset_reopens_the_memmap_instead_of_copying_it(cohort, images, tmp_path):
    np.save(tmp_path / "images_64.npy", images)
    cache = np.load(tmp_path / "images_64.npy", mmap_mode="r")
    dataset = datasets.CohortImageDataset(cohort, cache, "train")
    blob = pickle.dumps(dataset)
    assert len(blob) < images.nbytes / 2
    clone = pickle.loads(blob)
    assert isinstance(clone.images, np.memmap)
    torch.testing.assert_close(clone.__getitems__([0, 1])["image"], dataset.__getitems__([0, 1])["image"])


def test_load_split_datasets_names_notebook_01_when_artifacts_are_missing(tmp_path):
    pytest.importorskip("cxr_helpers.prepare")
    settings = load_settings(profile="phantom", fast=True, artifacts_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="01_data_prep"):
        datasets.load_split_datasets(settings)
