"""Heatmaps over the X-ray: overlays, the browser's fast grid, the paper's Figure 8.

The study browser's grid (``grid_jpeg``) draws each tile with, optionally, a finding's true mask as
an outline (``TRUTH_COLOUR``, the colour that also underlines the stating words in the report)
and the heatmap's peak as a small cross, so a glance says whether the map points at the finding.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pytorch_grad_cam.utils.image import show_cam_on_image

TRUTH_COLOUR = (255, 0, 255)  # magenta: absent from the jet colour map and clear on gray
CAPTION_BAND, TITLE_BAND = 18, 20  # pixels above each tile (its caption) and above each row (its title)


def gray_to_rgb(image: np.ndarray) -> np.ndarray:
    """A grayscale image (S, S) as RGB float32 (S, S, 3) in [0, 1]: what show_cam_on_image expects."""
    gray = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return np.repeat(gray[..., None], 3, axis=-1)


def overlay_cam(image: np.ndarray, cam: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The heatmap over the X-ray as uint8 RGB (S, S, 3); ``opacity`` 0 = only the X-ray, 1 = only the map."""

    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    cam = np.clip(np.asarray(cam, dtype=np.float32), 0.0, 1.0)
    return show_cam_on_image(gray_to_rgb(image), cam, use_rgb=True, image_weight=1.0 - opacity)


def cam_panel_png(
    image: np.ndarray, cams: Sequence[np.ndarray], captions: Sequence[str], opacity: float = 0.5, tile: int = 224,
) -> bytes:
    """PNG bytes: the X-ray then one overlay per CAM, each captioned (fast: PIL, no matplotlib)."""
    tiles = [np.uint8(255 * gray_to_rgb(image))] + [overlay_cam(image, cam, opacity) for cam in cams]
    titles = ["X-ray"] + list(captions)
    band = 22
    canvas = Image.new("RGB", (tile * len(tiles), tile + band), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    for i, (pixels, title) in enumerate(zip(tiles, titles, strict=True)):
        canvas.paste(Image.fromarray(pixels).resize((tile, tile), Image.Resampling.BILINEAR), (i * tile, band))
        draw.text((i * tile + 4, 4), title, fill="black", font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def images_figure(images: Mapping[str, np.ndarray], title: str | None = None):
    """Grayscale images side by side, each titled (uint8 or float in [0, 1])."""
    figure, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.6), layout="constrained")
    for axis, (name, image) in zip(np.atleast_1d(axes), images.items(), strict=True):
        pixels = np.asarray(image, dtype=np.float32)
        axis.imshow(pixels / 255.0 if pixels.max() > 1 else pixels, cmap="gray", vmin=0, vmax=1)
        axis.set_title(name, fontsize=10)
        axis.axis("off")
    if title:
        figure.suptitle(title)
    return figure


def cam_figure(image: np.ndarray, cams: Mapping[str, np.ndarray], probabilities: Mapping[str, float],
               title: str | None = None, opacity: float = 0.5):
    """The paper's Figure 8: the X-ray and one Grad-CAM overlay per label, titled with its probability."""

    figure, axes = plt.subplots(1, len(cams) + 1, figsize=(3.2 * (len(cams) + 1), 3.8), layout="constrained")
    axes = np.atleast_1d(axes)
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("X-ray")
    for axis, (label, cam) in zip(axes[1:], cams.items(), strict=True):
        axis.imshow(overlay_cam(image, cam, opacity))
        axis.set_title(f"{label}\np = {probabilities[label]:.2f}", fontsize=10)
    for axis in axes:
        axis.axis("off")
    if title:
        figure.suptitle(title)
    return figure


def mask_boundary(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The mask's rim (bool, same shape): mask pixels within ``width`` steps of a pixel outside it."""
    mask = np.asarray(mask, dtype=bool)
    inner = mask.copy()
    for _ in range(width):  # erosion by the 4-neighbourhood; outside the image counts as outside the mask
        padded = np.pad(inner, 1, constant_values=False)
        inner &= padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


@dataclass
class Tile:
    """One picture of the browser's grid: RGB pixels, a caption, and what to draw over them."""

    pixels: np.ndarray  # uint8 (H, W, 3)
    caption: str = ""
    outline: np.ndarray | None = None  # bool (H, W): a true mask, drawn as its rim in TRUTH_COLOUR
    outline_alpha: float = 1.0  # 1 on the X-ray; lighter on the heatmaps
    peak: tuple[int, int] | None = None  # (row, col) in ``pixels``: the heatmap's maximum, marked with a cross


def tile_picture(tile: Tile, size: int) -> Image.Image:
    """The tile at ``size`` x ``size`` px with its outline and peak drawn at that resolution (crisp lines)."""
    picture = np.asarray(Image.fromarray(tile.pixels).resize((size, size), Image.Resampling.BILINEAR)).copy()
    if tile.outline is not None and tile.outline.any():
        big = np.asarray(Image.fromarray(np.uint8(tile.outline) * 255).resize((size, size), Image.Resampling.NEAREST)) > 0
        rim = mask_boundary(big, width=2 if tile.outline_alpha >= 1 else 1)
        colour = np.array(TRUTH_COLOUR, dtype=np.float32)
        picture[rim] = np.uint8((1 - tile.outline_alpha) * picture[rim] + tile.outline_alpha * colour)
    image = Image.fromarray(picture)
    if tile.peak is not None:
        height, width = tile.pixels.shape[:2]
        y, x = (tile.peak[0] + 0.5) * size / height, (tile.peak[1] + 0.5) * size / width
        draw = ImageDraw.Draw(image)
        for colour, thickness in (("black", 4), ("white", 2)):
            draw.line([(x - 6, y), (x + 6, y)], fill=colour, width=thickness)
            draw.line([(x, y - 6), (x, y + 6)], fill=colour, width=thickness)
    return image


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's default font at ``size`` (loaded once)."""
    return ImageFont.load_default(size=size)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def grid_jpeg(rows: Sequence[tuple[str, Sequence[Tile]]], tile: int = 200, quality: int = 88) -> bytes:
    """JPEG bytes of a grid: one row per (title, tiles), each tile captioned above.

    PIL only, and JPEG without chroma subsampling: a tenth of a PNG's encoding time, a quarter of its
    bytes (what a browser update sends), and the outlines stay crisp.
    """
    columns = max((len(tiles) for _, tiles in rows), default=1)
    row_height = TITLE_BAND + CAPTION_BAND + tile
    canvas = Image.new("RGB", (columns * tile + (columns - 1) * 4, max(len(rows), 1) * row_height), "white")
    draw = ImageDraw.Draw(canvas)
    title_font, caption_font = _font(13), _font(12)
    for r, (title, tiles) in enumerate(rows):
        top = r * row_height
        draw.text((2, top + 2), _fit(draw, title, title_font, canvas.width - 4), fill="black", font=title_font)
        for c, item in enumerate(tiles):
            left = c * (tile + 4)
            draw.text((left + 2, top + TITLE_BAND + 2), _fit(draw, item.caption, caption_font, tile - 4),
                      fill="#333333", font=caption_font)
            canvas.paste(tile_picture(item, tile), (left, top + TITLE_BAND + CAPTION_BAND))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()
