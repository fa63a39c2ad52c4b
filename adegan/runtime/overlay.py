"""Overlays for people: where the evidence is, marked on the image, with score, verdict and a colour bar."""

from __future__ import annotations

import numpy as np

from pathlib import Path

from adegan.errors import AdeganError
from adegan.runtime.deps import require_cv2
from adegan.runtime.files import atomic_write_bytes
from adegan.runtime.images import letterbox_box


def render_overlay(image_bgr: np.ndarray, residual: np.ndarray, score: float, anomalous: bool,
                   extra: str = "", max_alpha: float = 0.45, min_width: int = 256, full_scale: float = 0.5) -> np.ndarray:
    """image (H, W, 3) uint8 BGR, or gray (H, W), + residual (s, s) at the model size -> annotated BGR image.

    The part stays visible: colour is blended in only where the evidence is (nothing below a
    quarter of `full_scale`, up to `max_alpha` at full scale), the region at full scale or above
    gets a white outline, and a colour bar under the image says what the colours mean. The
    scale is fixed (for a memory bank, full scale is the threshold's distance), so an image
    with nothing wrong stays uncoloured instead of being stretched to its own maximum. Small
    images are enlarged (nearest neighbour) to at least `min_width` so the text is legible.
    """
    cv2 = require_cv2()
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    height, width = image_bgr.shape[:2]
    top, left, box_height, box_width = letterbox_box(height, width, residual.shape[0])
    residual = residual[top:top + box_height, left:left + box_width]  # drop the padding of a non-square image
    if width < min_width:
        scale = int(np.ceil(min_width / width))
        image_bgr = cv2.resize(image_bgr, (width * scale, height * scale), interpolation=cv2.INTER_NEAREST)
        height, width = image_bgr.shape[:2]
    heat = np.clip(residual.astype(np.float32) / full_scale, 0, 1)
    heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET).astype(np.float32)
    weight = (np.clip((heat - 0.25) / 0.75, 0, 1) * max_alpha)[:, :, None]
    blended = (image_bgr.astype(np.float32) * (1 - weight) + colours * weight).round().astype(np.uint8)
    hot = (heat >= 0.999).astype(np.uint8)
    contours, _ = cv2.findContours(hot, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(blended, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
    colour = (0, 0, 255) if anomalous else (0, 200, 0)
    label = f"{'ANOMALY' if anomalous else 'OK'}  score {score:.3f}" + (f"  {extra}" if extra else "")
    cv2.rectangle(blended, (0, 0), (width, 22), (0, 0, 0), -1)
    cv2.putText(blended, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    cv2.rectangle(blended, (0, 0), (width - 1, height - 1), colour, 2)
    return np.vstack([blended, colour_bar(width, full_scale)])


def colour_bar(width: int, full_scale: float, height: int = 22) -> np.ndarray:
    """A legend strip: the heat-map colours from 0 to full scale, with both ends labelled."""
    cv2 = require_cv2()
    bar = np.zeros((height, width, 3), np.uint8)
    left, right = 34, max(35, width - 60)
    ramp = np.linspace(0, 255, right - left).astype(np.uint8)[None, :].repeat(8, axis=0)
    bar[7:15, left:right] = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)
    white = (255, 255, 255)
    cv2.putText(bar, "0", (left - 14, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.35, white, 1, cv2.LINE_AA)
    cv2.putText(bar, f">={full_scale:g}", (right + 4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.35, white, 1, cv2.LINE_AA)
    return bar


def encode_png(image_bgr: np.ndarray, what: str = "the image") -> bytes:
    """An HxW gray or HxWx3 BGR uint8 image as PNG bytes."""
    ok, encoded = require_cv2().imencode(".png", image_bgr)
    if not ok:
        raise AdeganError(f"OpenCV could not encode {what} as PNG")
    return encoded.tobytes()


def save_png(path: Path, image_bgr: np.ndarray) -> None:
    """Write an overlay atomically (cv2.imwrite fails silently: a full disk would go unnoticed)."""
    data = encode_png(image_bgr, f"the overlay {path}")
    atomic_write_bytes(Path(path), lambda file: file.write(data))
