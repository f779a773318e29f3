"""load_image (modes, sizes, bad files), resize_mask geometry, and the resumable uint8 image cache."""

import json

import numpy as np
import pytest
from PIL import Image

from cxr_helpers import images
from cxr_helpers.images import (
    ImageReadError,
    build_image_cache,
    cache_paths,
    load_image,
    open_image_cache,
    resize_mask,
)


def save(path, pixels, **kwargs):
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def test_eight_bit_grayscale_is_scaled_to_unit_range(tmp_path):
    pixels = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    out = load_image(save(tmp_path / "g.png", pixels), size=64)
    assert out.dtype == np.float32 and out.shape == (64, 64)
    np.testing.assert_allclose(out, pixels / 255.0, atol=1e-6)  # same size: no resampling


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA", "CMYK"])
def test_colour_modes_become_grayscale(tmp_path, mode):
    gray = Image.fromarray(np.full((30, 30), 128, dtype=np.uint8))
    image = gray.convert(mode)
    path = tmp_path / ("c.jpg" if mode in ("RGB", "CMYK") else "c.png")
    image.save(path)
    out = load_image(path, size=32)
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert abs(float(out.mean()) - 128 / 255) < 0.02


def test_sixteen_bit_images_are_scaled_by_their_range(tmp_path):
    pixels = np.full((40, 40), 32768, dtype=np.uint16)
    path = save(tmp_path / "s.png", pixels)
    assert Image.open(path).mode == "I;16"
    assert abs(float(load_image(path, size=32).mean()) - 32768 / 65535) < 1e-3
    as_int = save(tmp_path / "i.tif", np.full((40, 40), 16384, dtype=np.int32))
    assert Image.open(as_int).mode == "I"
    assert abs(float(load_image(as_int, size=32).mean()) - 16384 / 65535) < 1e-3


def test_float_images_kept_in_unit_range_or_min_max_scaled(tmp_path):
    unit = save(tmp_path / "u.tif", np.full((20, 20), 0.25, dtype=np.float32))
    assert abs(float(load_image(unit, size=20).mean()) - 0.25) < 1e-6
    ramp = np.tile(np.linspace(-100, 300, 20, dtype=np.float32), (20, 1))
    out = load_image(save(tmp_path / "r.tif", ramp), size=20)
    assert out.min() == pytest.approx(0.0) and out.max() == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(37, 101), (301, 97), (5, 5), (224, 224)])
def test_any_shape_becomes_size_by_size_in_unit_range(tmp_path, shape):
    rng = np.random.default_rng(0)
    path = save(tmp_path / "x.jpg", rng.integers(0, 256, size=shape, dtype=np.uint8))
    out = load_image(path, size=48)
    assert out.shape == (48, 48) and 0.0 <= out.min() and out.max() <= 1.0


def test_large_jpeg_is_decoded_at_reduced_scale_but_keeps_geometry(tmp_path):
    pixels = np.zeros((1200, 1000), dtype=np.uint8)
    pixels[300:600, 500:900] = 255  # rows 25-50%, columns 50-90%
    out = load_image(save(tmp_path / "big.jpg", pixels, quality=95), size=100)
    assert out[30:45, 55:85].mean() > 0.9 and out[60:, :].mean() < 0.05 and out[:, :45].mean() < 0.05


def test_resize_mask_uses_the_same_geometry_as_load_image(tmp_path):
    pixels = np.zeros((173, 211), dtype=np.uint8)  # odd, non-square
    mask = np.zeros_like(pixels, dtype=bool)
    mask[40:97, 120:190] = True
    pixels[mask] = 255
    image = load_image(save(tmp_path / "m.png", pixels), size=64) > 0.5
    small = resize_mask(mask, 64)
    assert small.dtype == bool and small.shape == (64, 64)
    assert (image & small).sum() / (image | small).sum() > 0.95
    coverage = resize_mask(mask, 64, threshold=None)
    assert coverage.dtype == np.float32 and coverage.max() == pytest.approx(1.0)
    assert ((coverage > 0) & (coverage < 1)).any()  # partial coverage at the mask edges
    thin = np.zeros((256, 256), dtype=bool)
    thin[:, 100] = True  # a one-pixel line covers 1/4 of a 4x4 block
    assert not resize_mask(thin, 64).any() and resize_mask(thin, 64, threshold=None).max() == pytest.approx(0.25)


def test_missing_corrupt_and_truncated_files_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nothere\.jpg: image file missing"):
        load_image(tmp_path / "nothere.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff this is not a jpeg at all" * 10)
    with pytest.raises(ImageReadError, match=r"corrupt\.jpg: ") as error:
        load_image(corrupt)
    assert error.value.path == str(corrupt)
    rng = np.random.default_rng(0)
    good = save(tmp_path / "good.jpg", rng.integers(0, 256, size=(300, 300), dtype=np.uint8))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=r"truncated\.jpg: truncated image file"):
        load_image(truncated, size=64)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg"):
        load_image(tmp_path / "empty.jpg")


def make_images(folder, n, bad=()):
    """n flat JPEGs with value 10 + 20*i (a few replaced by garbage); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}.jpg"
        if i in bad:
            path.write_bytes(b"garbage")
        else:
            save(path, np.full((30, 40), 10 + 20 * i, dtype=np.uint8), quality=95)
        paths.append(str(path))
    return paths


def test_cache_rows_follow_the_path_order_serial_and_parallel_agree(tmp_path):
    paths = make_images(tmp_path / "img", 10, bad={3})
    paths.append(str(tmp_path / "img" / "missing.jpg"))
    serial = build_image_cache(paths, tmp_path / "a", size=32, workers=1, progress=False, chunk_size=3)
    parallel = build_image_cache(paths, tmp_path / "b", size=32, workers=2, progress=False, chunk_size=3)
    a, b = open_image_cache(tmp_path / "a", 32), open_image_cache(tmp_path / "b", 32)
    assert a.dtype == np.uint8 and a.shape == (11, 32, 32)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for i in (0, 1, 2, 4, 9):
        assert abs(float(a[i].mean()) - (10 + 20 * i)) < 1.5
    assert [(f["index"], f["path"].endswith(name)) for f, name in zip(serial.failed, ("3.jpg", "missing.jpg"), strict=True)] == [
        (3, True), (10, True)]
    assert serial.failed[1]["reason"] == "image file missing" and serial.failed == parallel.failed
    assert not a[3].any() and not a[10].any()
    marker = json.loads(cache_paths(tmp_path / "a", 32)[1].read_text())
    assert marker["complete"] is True and marker["size"] == 32 and marker["count"] == 11
    assert marker["done"] == [0, 3, 6, 9]


def test_interrupted_cache_is_incomplete_then_resumes_without_redecoding(tmp_path, monkeypatch):
    paths = make_images(tmp_path / "img", 9)
    real = images._decode_chunk
    calls = []

    def dies_after_two_chunks(task):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(task[1])
        return real(task)

    monkeypatch.setattr(images, "_decode_chunk", dies_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        build_image_cache(paths, tmp_path, size=16, workers=1, progress=False, chunk_size=3)
    marker = json.loads(cache_paths(tmp_path, 16)[1].read_text())
    assert marker["complete"] is False and sorted(marker["done"]) == [0, 3]
    with pytest.raises(RuntimeError, match="incomplete.*notebook 01"):
        open_image_cache(tmp_path, 16)

    resumed = []
    monkeypatch.setattr(images, "_decode_chunk", lambda task: resumed.append(task[1]) or real(task))
    result = build_image_cache(paths, tmp_path, size=16, workers=1, progress=False, chunk_size=3)
    assert resumed == [6] and result.decoded == 3
    cache = open_image_cache(tmp_path, 16)
    assert [round(float(cache[i].mean())) for i in range(9)] == pytest.approx([10 + 20 * i for i in range(9)], abs=2)
    again = build_image_cache(paths, tmp_path, size=16, workers=1, progress=False, chunk_size=3)
    assert again.decoded == 0 and resumed == [6]


def test_a_different_image_list_rebuilds_the_cache(tmp_path):
    paths = make_images(tmp_path / "img", 4)
    build_image_cache(paths, tmp_path, size=16, workers=1, progress=False)
    result = build_image_cache(paths[::-1], tmp_path, size=16, workers=1, progress=False)
    assert result.decoded == 4
    assert abs(float(open_image_cache(tmp_path, 16)[0].mean()) - 70) < 1.5


def test_open_missing_cache_names_notebook_01_and_the_cli(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"images_64\.npy.*notebook 01.*python -m cxr_helpers prepare"):
        open_image_cache(tmp_path, 64)
