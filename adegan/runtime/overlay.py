"""Overlays for people: the residual heat-map blended over the image, with score and verdict."""

from __future__ import annotations

import numpy as np

from pathlib import Path

from adegan.errors import AdeganError
from adegan.runtime.deps import require_cv2
from adegan.runtime.files import atomic_write_bytes
from adegan.runtime.images import letterbox_box


def render_overlay(image_bgr: np.ndarray, residual: np.ndarray, score: float, anomalous: bool,
                   extra: str = "", alpha: float = 0.45, min_width: int = 256, full_scale: float = 0.5) -> np.ndarray:
    """image (H, W, 3) uint8 BGR + residual (s, s) in [0, 1] at the model size -> annotated BGR image.

    The heat-map has a fixed scale (a residual of `full_scale` is full red), so a well
    reconstructed image stays blue instead of being stretched to its own maximum. Small images
    are enlarged (nearest neighbour) to at least `min_width` so the text is legible.
    """
    cv2 = require_cv2()
    height, width = image_bgr.shape[:2]
    top, left, box_height, box_width = letterbox_box(height, width, residual.shape[0])
    residual = residual[top:top + box_height, left:left + box_width]  # drop the padding of a non-square image
    if width < min_width:
        scale = int(np.ceil(min_width / width))
        image_bgr = cv2.resize(image_bgr, (width * scale, height * scale), interpolation=cv2.INTER_NEAREST)
        height, width = image_bgr.shape[:2]
    heat = np.clip(residual.astype(np.float32) / full_scale, 0, 1)
    heat = cv2.resize((heat * 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    blended = cv2.addWeighted(image_bgr, 1 - alpha, cv2.applyColorMap(heat, cv2.COLORMAP_JET), alpha, 0)
    colour = (0, 0, 255) if anomalous else (0, 200, 0)
    label = f"{'ANOMALY' if anomalous else 'OK'}  score {score:.3f}" + (f"  {extra}" if extra else "")
    cv2.rectangle(blended, (0, 0), (width, 22), (0, 0, 0), -1)
    cv2.putText(blended, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    cv2.rectangle(blended, (0, 0), (width - 1, height - 1), colour, 2)
    return blended


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
