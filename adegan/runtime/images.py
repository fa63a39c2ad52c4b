"""Image decoding and the one preprocessing function that training and the runtime share.

Pipeline: OpenCV decode -> BGR->RGB (or gray) -> resize the long side to the model size,
keeping the aspect ratio, and pad the short side with black (centred) -> uint8 (C, H, W)
-> float32 in [0, 1]. The resize interpolation is fixed by direction: `INTER_AREA` when
shrinking (averages pixels, no aliasing on large camera frames) and `INTER_LINEAR` when
enlarging (e.g. 28x28 benchmark digits to 32x32). Keeping the uint8 stage lets datasets be
held compactly in memory and converted with the very same division as the runtime.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from adegan.errors import AdeganError
from adegan.runtime.deps import require_cv2

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageDecodeError(AdeganError):
    """An image file that cannot be read or decoded."""


def list_image_names(folder: str | os.PathLike) -> list[str]:
    """All image files under `folder`, recursively, sorted, as plain strings: a str costs about
    a fifth of a Path, which matters when a folder holds a million images."""
    found = []
    for directory, _, names in os.walk(os.path.normpath(folder), followlinks=True):
        for name in names:
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                path = os.path.join(directory, name)
                if os.path.isfile(path):
                    found.append(path)
    found.sort(key=lambda path: path.replace(os.sep, "\0"))  # part by part, as sorting Paths does
    return found


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All image files under `folder`, recursively, in a stable (sorted) order."""
    return [Path(name) for name in list_image_names(folder)]


def decode_image(data: bytes | np.ndarray, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to an 8-bit BGR array (H, W, 3).

    Gray images come back with three equal channels, alpha is dropped and 16-bit images are
    scaled to 8 bits, so every later step sees one layout.
    """
    cv2 = require_cv2()
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise ImageDecodeError(f"{name}: not a readable image (corrupt or unsupported format)")
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file to 8-bit BGR (H, W, 3); works with non-ASCII paths too."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    return decode_image(data, name=str(path))


def is_grayscale(image_bgr: np.ndarray) -> bool:
    """True when all three channels are equal (a gray image stored as colour)."""
    return bool(
        np.array_equal(image_bgr[..., 0], image_bgr[..., 1])
        and np.array_equal(image_bgr[..., 1], image_bgr[..., 2])
    )


def letterbox_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """Where an image of height x width lands in the square model input when its long side is
    resized to `size` and the short side is centred and padded with black: (top, left, h, w).
    Keeping the aspect ratio matters for long, thin parts (a 256 x 104 photo stays 256 x 104)."""
    scale = size / max(height, width)
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    return (size - new_height) // 2, (size - new_width) // 2, new_height, new_width


def to_model_uint8(image_bgr: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Convert one BGR image to the model's uint8 layout (C, H, W): RGB or gray, resized.

    This is the single preprocessing step shared by training, evaluation and the runtime.
    """
    cv2 = require_cv2()
    if channels == 1:
        converted = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    elif channels == 3:
        converted = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    height, width = converted.shape[:2]
    if (height, width) != (size, size):
        top, left, new_height, new_width = letterbox_box(height, width, size)
        interpolation = cv2.INTER_AREA if max(height, width) > size else cv2.INTER_LINEAR
        converted = cv2.resize(converted, (new_width, new_height), interpolation=interpolation)
        if (new_height, new_width) != (size, size):
            converted = cv2.copyMakeBorder(converted, top, size - new_height - top, left, size - new_width - left,
                                           cv2.BORDER_CONSTANT, value=0)
    if channels == 1:
        return converted[np.newaxis, :, :]
    return np.ascontiguousarray(converted.transpose(2, 0, 1))


def gray_to_model_uint8(images_gray: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Batch version for gray uint8 arrays (N, H, W), e.g. MNIST, via `to_model_uint8`."""
    cv2 = require_cv2()
    out = np.empty((len(images_gray), channels, size, size), dtype=np.uint8)
    for index, image in enumerate(images_gray):
        out[index] = to_model_uint8(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), size, channels)
    return out


def to_float(batch_uint8: np.ndarray) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 in [0, 1]: the model input."""
    return batch_uint8.astype(np.float32) / np.float32(255.0)


def load_images(
    paths: Iterable[str | os.PathLike], size: int, channels: int
) -> tuple[np.ndarray, list[Path], list[tuple[Path, str]]]:
    """Load files to uint8 (N, C, H, W); unreadable files are skipped and reported.

    Returns the images, the paths that loaded, and (path, reason) for each that did not.
    """
    images, loaded, failed = [], [], []
    for path in paths:
        try:
            images.append(to_model_uint8(read_image(path), size, channels))
            loaded.append(Path(path))
        except ImageDecodeError as exc:
            failed.append((Path(path), str(exc)))
    stacked = (
        np.stack(images) if images else np.zeros((0, channels, size, size), dtype=np.uint8)
    )
    return stacked, loaded, failed


def detect_channels(paths: list[Path], sample: int = 16) -> int:
    """1 if the first readable images (up to `sample`) are all gray, else 3."""
    checked = 0
    for path in paths:
        try:
            image = read_image(path)
        except ImageDecodeError:
            continue
        if not is_grayscale(image):
            return 3
        checked += 1
        if checked >= sample:
            break
    return 1
