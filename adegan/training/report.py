"""`adegan evaluate --report report.html`: one self-contained HTML page (every image embedded as
a data: URI, no scripts, no external files) that a reader can mail or archive.

Sections: the numbers, ROC curves, normal-vs-anomalous histograms of the combined score and of
its two parts, the learned patterns (the paper's Fig. 4), and the worst false positives and false
negatives with their reconstructions and residual heat-maps.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from adegan.runtime.files import atomic_write_text
from adegan.training import plots
from adegan.training.metrics import roc_curve
from adegan.training.model import Detector, pattern_grid

WORST_CASES = 8
TILE_PIXELS = 96  # each case image is enlarged to about this size


@dataclass
class EvaluationData:
    """What evaluate_run computed, handed to the report."""

    metrics: dict
    images: np.ndarray  # (N, C, H, W) uint8, what the model saw
    labels: np.ndarray  # (N,) 1 = anomaly
    names: list[str]
    scores: dict[str, np.ndarray]
    pattern_probs: np.ndarray
    description: str
    method: str = "adegan"


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _chw_to_image(array: np.ndarray) -> np.ndarray:
    """(C, H, W) floats in [0, 1] -> HxW gray or HxWx3 RGB uint8."""
    image = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8).transpose(1, 2, 0)
    return image[:, :, 0] if image.shape[2] == 1 else image


def _heat_map(residual: np.ndarray, scale: float) -> np.ndarray:
    """(1, H, W) residual -> an RGB inferno heat-map on a scale shared by all cases."""
    from adegan.runtime.deps import require_cv2

    cv2 = require_cv2()
    gray = (np.clip(residual[0] / max(scale, 1e-12), 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


@torch.no_grad()
def _cases_html(detector: Detector, data: EvaluationData, indices: np.ndarray, title: str, empty: str) -> str:
    """A table of cases: input, reconstruction, residual heat-map, and the numbers."""
    if len(indices) == 0:
        return f"<h3>{html.escape(title)}</h3><p>{html.escape(empty)}</p>"
    device = next(detector.parameters()).device
    batch = torch.from_numpy(data.images[indices]).to(device).float() / 255.0
    reconstruction, _, _, residual = detector.explain(batch)
    batch, reconstruction, residual = batch.cpu().numpy(), reconstruction.cpu().numpy(), residual.cpu().numpy()
    scale = float(residual.max())
    enlarge = max(1, TILE_PIXELS // data.images.shape[-1])
    rows = []
    for i, index in enumerate(indices):
        tiles = [plots.png_bytes(_chw_to_image(batch[i]), enlarge),
                 plots.png_bytes(_chw_to_image(reconstruction[i]), enlarge),
                 plots.png_bytes(_heat_map(residual[i], scale), enlarge)]
        probs = data.pattern_probs[index]
        rows.append(
            "<tr>" + "".join(f"<td>{_img(tile, kind)}</td>" for tile, kind in
                             zip(tiles, ("input", "reconstruction", "residual")))
            + f"<td>{html.escape(data.names[index])}<br>score {data.scores['combined'][index]:.4f}<br>"
            f"recon error {data.scores['reconstruction'][index]:.5f}<br>"
            f"pattern {int(probs.argmax())} (p = {probs.max():.2f})</td></tr>"
        )
    header = (f"<tr><th>input</th><th>{html.escape(getattr(detector, 'reference_name', 'reconstruction'))}</th>"
              f"<th>{html.escape(getattr(detector, 'evidence_name', '|residual|'))}</th><th></th></tr>")
    return (f"<h3>{html.escape(title)}</h3><p class=note>Residual heat-maps share one scale "
            f"(white = {scale:.3f}).</p><table class=cases>{header}{''.join(rows)}</table>")


def _numbers_html(metrics: dict) -> str:
    """The numbers that mean something for this run's method (no pattern AUC for a memory bank)."""
    auc, at = metrics["auc"], metrics["at_threshold"]
    rows = [("AUC, combined score (as deployed)", f"{auc['combined']:.4f} (score mode {metrics['score_mode']})")]
    if "reconstruction" in auc:
        rows.append(("AUC, reconstruction error only", f"{auc['reconstruction']:.4f}"))
    if "pattern" in auc:
        rows.append(("AUC, pattern confidence only (1 − m)", f"{auc['pattern']:.4f}"))
        rows += [(f"AUC, combined with the {mode} reading", f"{auc[f'combined_{mode}']:.4f}")
                 for mode in ("cdf", "two-sided") if f"combined_{mode}" in auc]
    rows += [
        ("calibrated threshold", f"{metrics['threshold']:.4f}"),
        ("at the threshold: anomalies flagged", f"{at['true_positive_rate']:.1%}"),
        ("at the threshold: normals flagged", f"{at['false_positive_rate']:.1%}"),
    ]
    for kind, entry in metrics.get("per_kind", {}).items():
        rows.append((f"{kind}: AUC vs the normals, flagged", f"{entry['auc']:.4f}, {entry['flagged']:.1%} "
                                                              f"of {entry['images']}"))
    if "mean_pattern_confidence" in metrics:
        confidence = metrics["mean_pattern_confidence"]
        rows.append(("mean pattern confidence m, normal / anomalous",
                     f"{confidence['normal']:.3f} / {confidence['anomalous']:.3f}"))
    rows += [
        ("test images, normal / anomalous", f"{metrics['n_normal']} / {metrics['n_anomalous']}"),
        ("epochs trained", f"{metrics['epochs_trained']}" + ("" if metrics["complete"] else " (run not finished)")),
    ]
    return "<table class=numbers>" + "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>" for name, value in rows) + "</table>"


def _patterns_html(detector: Detector, model_config, method: str) -> str:
    if method == "autoencoder":
        return "<p>This run is the autoencoder baseline: it has no patterns.</p>"
    if method == "memory-bank":
        return "<p>This run is a memory bank of normal features: it has no patterns.</p>"
    from adegan.training.trainer import grid_noise

    device = next(detector.parameters()).device
    images = pattern_grid(detector.generator, grid_noise(model_config).to(device), model_config.n_patterns)
    grid = plots.image_grid(images.cpu().numpy(), rows=model_config.n_patterns)
    return ("<p>Row k is G(z_n, pattern k); column j uses the same z_n in every row. Rows should be "
            "distinct kinds of normal image, columns variations within a kind.</p>"
            + _img(plots.png_bytes(grid[:, :, 0] if grid.shape[2] == 1 else grid, 2), "learned patterns"))


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table.numbers th{text-align:left;font-weight:normal;padding:2px 1.5em 2px 0}
table.cases td{padding:4px;vertical-align:top;font-size:.85em}img{image-rendering:pixelated}
.note{color:#666;font-size:.9em}.row{display:flex;flex-wrap:wrap;gap:1em}"""


def write_report(path: Path, detector: Detector, model_config, train_config, data: EvaluationData) -> Path:
    """Write the HTML report atomically; returns its path."""
    labels, combined = data.labels, data.scores["combined"]
    threshold = data.metrics["threshold"]
    parts = [name for name in ("combined", "reconstruction", "pattern") if name in data.scores]
    curves = {name: (*roc_curve(labels, data.scores[name]), data.metrics["auc"][name]) for name in parts}
    normal, anomalous = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    false_positives = normal[np.argsort(-combined[normal], kind="stable")][:WORST_CASES]
    false_negatives = anomalous[np.argsort(combined[anomalous], kind="stable")][:WORST_CASES]
    histograms = [plots.histogram_png(combined, labels, "score", f"score ({data.metrics['score_mode']})", threshold)]
    if "reconstruction" in parts:
        histograms.append(plots.histogram_png(data.scores["reconstruction"], labels, "reconstruction error",
                                              "e = MSE(x, x̂)"))
    if "pattern" in parts:
        histograms.append(plots.histogram_png(1.0 - data.pattern_probs.max(axis=1), labels, "pattern confidence",
                                              "1 − m"))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>adegan evaluation: {html.escape(data.description)}</h1>",
        f"<p class=note>Run {html.escape(str(data.metrics['run']))}, method {html.escape(train_config.method)}, "
        f"{model_config.channels}×{model_config.image_size}×{model_config.image_size}, K = {model_config.n_patterns}; "
        f"written {when}.</p>",
        "<h2>Numbers</h2>", _numbers_html(data.metrics),
        "<h2>ROC curves</h2>", _img(plots.roc_png(curves, data.description), "ROC curves"),
        "<h2>Score distributions, normal vs anomalous</h2>",
        "<div class=row>" + "".join(_img(h, "histogram") for h in histograms) + "</div>",
        "<h2>Learned patterns</h2>", _patterns_html(detector, model_config, train_config.method),
        "<h2>Worst cases</h2>",
        "<p>Ranked by the score: the normals scored most abnormal and the anomalies scored most "
        "normal. Whether each is above the threshold is in its score.</p>",
        _cases_html(detector, data, false_positives, "Worst false positives (normal images, highest scores)",
                    "No normal images in the test set."),
        _cases_html(detector, data, false_negatives, "Worst false negatives (anomalies, lowest scores)",
                    "No anomalous images in the test set."),
    ]
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>adegan report: "
            f"{html.escape(data.description)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    atomic_write_text(Path(path), page)
    return Path(path)
