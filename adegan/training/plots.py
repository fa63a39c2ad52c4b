"""Pictures: sample grids (OpenCV), ROC curves and score histograms (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adegan.runtime.deps import require_cv2
from adegan.runtime.files import atomic_write_bytes


def image_grid(images: np.ndarray, rows: int, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> one uint8 HxWxC (RGB or gray) tile image."""
    n, channels, height, width = images.shape
    columns = int(np.ceil(n / rows))
    grid = np.ones((rows * (height + pad) + pad, columns * (width + pad) + pad, channels), np.float32)
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[top:top + height, left:left + width] = images[i].transpose(1, 2, 0)
    return (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)


def save_image_grid(path: Path, images: np.ndarray, rows: int, scale: int = 2) -> None:
    cv2 = require_cv2()
    grid = image_grid(images, rows)
    if grid.shape[2] == 3:
        grid = cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)
    grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    ok, encoded = cv2.imencode(".png", grid)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    atomic_write_bytes(Path(path), lambda file: file.write(encoded.tobytes()))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(figure, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(Path(path), lambda file: file.write(buffer.getvalue()))


def plot_roc(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str) -> None:
    """curves: name -> (fpr, tpr, auc)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr, auc) in curves.items():
        axis.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    axis.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axis.legend(loc="lower right")
    _save_figure(figure, path)
    plt.close(figure)


def plot_histogram(path: Path, scores: np.ndarray, labels: np.ndarray, threshold: float, title: str) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    bins = np.linspace(float(scores.min()), float(scores.max()) + 1e-9, 50)
    axis.hist(scores[labels == 0], bins=bins, alpha=0.6, density=True, label="normal")
    axis.hist(scores[labels == 1], bins=bins, alpha=0.6, density=True, label="anomalous")
    axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    axis.set(xlabel="abnormality score A(x)", ylabel="density", title=title)
    axis.legend()
    _save_figure(figure, path)
    plt.close(figure)
