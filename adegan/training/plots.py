"""Pictures: sample grids (OpenCV), ROC curves and score histograms (matplotlib, Agg), as PNG
files or as PNG bytes (for the HTML report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adegan.runtime.deps import require_cv2
from adegan.runtime.files import atomic_write_bytes
from adegan.runtime.overlay import encode_png


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


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """An HxW or HxWx3 (RGB) uint8 image as PNG bytes, enlarged `scale` times (nearest)."""
    cv2 = require_cv2()
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if scale != 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return encode_png(image)


def save_image_grid(path: Path, images: np.ndarray, rows: int, scale: int = 2) -> None:
    data = png_bytes(image_grid(images, rows), scale)
    atomic_write_bytes(Path(path), lambda file: file.write(data))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure_png(figure) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def plot_roc(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str) -> None:
    data = roc_png(curves, title)
    atomic_write_bytes(Path(path), lambda file: file.write(data))


def plot_histogram(path: Path, scores: np.ndarray, labels: np.ndarray, threshold: float, title: str) -> None:
    data = histogram_png(scores, labels, title, "abnormality score A(x)", threshold)
    atomic_write_bytes(Path(path), lambda file: file.write(data))


def roc_png(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str) -> bytes:
    """curves: name -> (fpr, tpr, auc)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr, auc) in curves.items():
        axis.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    axis.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axis.legend(loc="lower right")
    return _figure_png(figure)


def histogram_bins(values: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(values clipped to the range shown, bin edges, how many were clipped). The range is the
    0.5-99.5 % quantiles (and the threshold), so a few extreme scores do not squeeze the rest
    into one bar; the bin count follows the data (Freedman-Diaconis, 10 to 60 bins), and a
    score with many tied values still gets a readable width."""
    low, high = np.quantile(values, [0.005, 0.995])
    if threshold is not None and np.isfinite(threshold):
        low, high = min(low, threshold), max(high, threshold)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    shown = np.clip(values, low, high)
    count = len(np.histogram_bin_edges(shown, bins="fd", range=(low, high))) - 1
    edges = np.linspace(low, high, int(np.clip(count, 10, 60)) + 1)
    return shown, edges, int(((values < low) | (values > high)).sum())


def histogram_png(values: np.ndarray, labels: np.ndarray, title: str, xlabel: str,
                  threshold: float | None = None) -> bytes:
    """Normal vs anomalous distributions of one score, with the threshold when there is one."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    shown, bins, clipped = histogram_bins(np.asarray(values, dtype=np.float64), threshold)
    axis.hist(shown[labels == 0], bins=bins, alpha=0.6, density=True, label="normal")
    axis.hist(shown[labels == 1], bins=bins, alpha=0.6, density=True, label="anomalous")
    if clipped:
        title = f"{title}\n({clipped} value(s) beyond the range shown are counted in the end bins)"
    if threshold is not None:
        axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    axis.set(xlabel=xlabel, ylabel="density", title=title)
    axis.legend()
    return _figure_png(figure)
