"""Shared fixtures: small synthetic image folders made on the fly (no downloads, a few KB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")


def normal_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A 'good part': one bright square of a few fixed sizes, jittered, on a dark background."""
    image = np.full((size, size), 20, np.uint8)
    side = int(rng.choice([8, 12, 16]))
    top, left = rng.integers(4, size - side - 4, size=2)
    image[top:top + side, left:left + side] = 220
    return image


def anomalous_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A 'defect': a bright ring + salt noise, unlike any normal image."""
    image = np.full((size, size), 20, np.uint8)
    cv2.circle(image, (size // 2, size // 2), int(rng.integers(8, 13)), 230, 2)
    noise = rng.random((size, size)) < 0.08
    image[noise] = 255
    return image


def write_images(folder: Path, images) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"img_{index:04d}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> dict[str, Path]:
    """train/ (normals) and test/good + test/defect folders of 32x32 gray PNGs."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    write_images(root / "train", [normal_image(rng) for _ in range(320)])
    write_images(root / "test" / "good", [normal_image(rng) for _ in range(60)])
    write_images(root / "test" / "defect", [anomalous_image(rng) for _ in range(60)])
    return {"train": root / "train", "test": root / "test"}
