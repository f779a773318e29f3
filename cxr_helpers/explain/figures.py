"""Heatmaps over the X-ray: overlays, a fast PNG panel for the browser, the paper's Figure 8."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pytorch_grad_cam.utils.image import show_cam_on_image


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
