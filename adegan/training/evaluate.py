"""Evaluate a trained run: image ROC AUC of the combined, reconstruction-only and pattern-only
scores, plus the calibrated threshold's operating point, plots and a metrics JSON.

The combined score is computed by the runtime's numpy function, exactly as deployed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from adegan.console import log as default_log
from adegan.errors import UsageError
from adegan.runtime.files import atomic_write_text, write_json
from adegan.runtime.images import detect_channels, list_images
from adegan.runtime.score import SCORE_MODES, Calibration, abnormality_score, pattern_only_score
from adegan.training.config import ModelConfig, TrainConfig
from adegan.training.data import is_benchmark, load_benchmark, load_labelled_folder
from adegan.training.metrics import roc_auc, roc_curve
from adegan.training.inference import detector_outputs, load_detector


def load_test_set(model_config: ModelConfig, train_config: TrainConfig, test_source: str | None,
                  convert_channels: bool, log) -> tuple[np.ndarray, np.ndarray, list[str], list[str], str]:
    """Test images, labels (1 = anomaly), a name per image, a kind per image (good, or the
    anomaly's folder or class name), and a description."""
    if test_source is None or test_source == train_config.source:
        if not is_benchmark(train_config.source):
            raise UsageError(
                f"the run was trained on the folder {train_config.source}; give a test folder with "
                f"good/ and anomaly subfolders: `adegan evaluate RUN_DIR TEST_DIR`"
            )
        data = load_benchmark(train_config.source, train_config.anomaly_class, train_config.seed,
                              model_config.image_size, train_config.calibration_fraction,
                              train_config.dataset_path, channels=model_config.channels, parts=("test",))
        names = [f"{train_config.source}[{i}]" for i in range(len(data.test))]
        info = data.info
        kinds = [info["anomaly_name"] if label else "normal" for label in data.test_labels]
        return (data.test, data.test_labels, names, kinds,
                f"{info['dataset']}, anomaly class {info['anomaly_class']} ({info['anomaly_name']})")
    if is_benchmark(test_source):
        raise UsageError(f"to evaluate on {test_source}, train on it: the split is fixed by the run's seed and class")
    folder = Path(test_source)
    if folder.is_dir() and not convert_channels:
        found = detect_channels(list_images(folder))
        if found != model_config.channels:
            kinds = {1: "gray", 3: "colour"}
            raise UsageError(
                f"{folder}: images are {kinds[found]} but the model expects {kinds[model_config.channels]} "
                f"({model_config.channels} channel(s)); pass --convert-channels to convert them on load"
            )
    images, labels, paths = load_labelled_folder(folder, model_config.image_size, model_config.channels, log)
    kinds = [Path(path).relative_to(folder).parts[0] for path in paths]
    return images, labels, [str(p) for p in paths], kinds, str(folder)


# The score parts that mean something per method: a memory bank has one number (its distance), an
# autoencoder no patterns; printing a pattern AUC of 0.5 for them would only mislead.
SCORE_PARTS = {"adegan": ("combined", "reconstruction", "pattern"),
               "clustergan": ("combined", "reconstruction", "pattern"), "autoencoder": ("combined", "reconstruction"),
               "memory-bank": ("combined",)}


def summarize(labels: np.ndarray, recon_error: np.ndarray, pattern_probs: np.ndarray, calibration: Calibration,
              method: str = "adegan", kinds: list[str] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """AUCs of the method's meaningful score parts, the operating point at the calibrated
    threshold, and per anomaly kind (folder or class) its AUC against the normals and the share
    flagged; also the per-image scores."""
    scores = {"combined": abnormality_score(recon_error, pattern_probs, calibration.mu_e, calibration.sigma_e,
                                            calibration.score_mode)}
    if "reconstruction" in SCORE_PARTS[method]:
        scores["reconstruction"] = np.asarray(recon_error, dtype=np.float64)
    if "pattern" in SCORE_PARTS[method]:
        scores["pattern"] = pattern_only_score(pattern_probs)
        for mode in SCORE_MODES:  # each reading of Eq. 9, for the ablation
            scores[f"combined_{mode}"] = abnormality_score(recon_error, pattern_probs, calibration.mu_e,
                                                           calibration.sigma_e, mode)
    flagged = scores["combined"] > calibration.threshold
    metrics = {
        "auc": {name: roc_auc(labels, values) for name, values in scores.items()},
        "threshold": calibration.threshold,
        "score_mode": calibration.score_mode,
        "at_threshold": {
            "false_positive_rate": float(flagged[labels == 0].mean()),
            "true_positive_rate": float(flagged[labels == 1].mean()),
        },
        "n_normal": int((labels == 0).sum()),
        "n_anomalous": int((labels == 1).sum()),
    }
    if kinds is not None:
        kinds_array = np.asarray(kinds)
        metrics["per_kind"] = {
            kind: {"images": int((kinds_array == kind).sum()),
                   "auc": roc_auc(labels[(labels == 0) | (kinds_array == kind)],
                                  scores["combined"][(labels == 0) | (kinds_array == kind)]),
                   "flagged": float(flagged[kinds_array == kind].mean())}
            for kind in sorted(set(kinds_array[labels == 1]))}
    if "pattern" in SCORE_PARTS[method]:
        max_prob = pattern_probs.max(axis=1)
        metrics["mean_pattern_confidence"] = {"normal": float(max_prob[labels == 0].mean()),
                                              "anomalous": float(max_prob[labels == 1].mean())}
    return metrics, scores


def _scores_csv(names, labels, kinds, scores, recon_error, pattern_probs, threshold: float) -> str:
    """One row per test image, with the columns (and names) of `adegan score`'s CSV plus the truth."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "kind", "label", "score", "recon_error", "pattern", "pattern_prob", "verdict"])
    for i, name in enumerate(names):
        verdict = "anomaly" if scores["combined"][i] > threshold else "normal"
        writer.writerow([name, kinds[i], int(labels[i]), f"{scores['combined'][i]:.6f}", f"{recon_error[i]:.6g}",
                         int(pattern_probs[i].argmax()), f"{pattern_probs[i].max():.4f}", verdict])
    return buffer.getvalue()


def evaluate_run(run_dir: Path, test_source: str | None = None, out_dir: Path | None = None,
                 device: str = "auto", batch_size: int = 256, convert_channels: bool = False,
                 plots: bool = True, log=default_log, report: Path | None = None) -> dict:
    """Evaluate `run_dir` on its benchmark split or a labelled test folder; writes
    metrics.json, scores.csv, roc.png and score_histogram.png under `out_dir`, and with `report`
    a self-contained HTML report there."""
    run_dir = Path(run_dir)
    detector, model_config, train_config, calibration, state = load_detector(run_dir, device)
    images, labels, names, kinds, description = load_test_set(model_config, train_config, test_source,
                                                              convert_channels, log)
    device_used = next(detector.parameters()).device
    recon_error, pattern_probs = detector_outputs(detector, images, device_used, batch_size)
    metrics, scores = summarize(labels, recon_error, pattern_probs, calibration, train_config.method, kinds)
    metrics.update({"run": str(run_dir), "method": train_config.method, "test_set": description,
                    "epochs_trained": state["epoch"],
                    "complete": bool(state.get("complete"))})
    out_dir = Path(out_dir) if out_dir else run_dir / "evaluation"
    write_json(out_dir / "metrics.json", metrics)
    atomic_write_text(out_dir / "scores.csv", _scores_csv(names, labels, kinds, scores, recon_error, pattern_probs,
                                                          calibration.threshold))
    if plots:
        from adegan.training.plots import plot_histogram, plot_roc

        curves = {name: (*roc_curve(labels, scores[name]), metrics["auc"][name])
                  for name in SCORE_PARTS[train_config.method]}
        plot_roc(out_dir / "roc.png", curves, f"ROC: {description}")
        plot_histogram(out_dir / "score_histogram.png", scores["combined"], labels, calibration.threshold,
                       f"scores: {description}")
    if report is not None:
        from adegan.training.report import EvaluationData, write_report

        data = EvaluationData(metrics, images, labels, names, scores, pattern_probs, description, train_config.method)
        metrics["report"] = str(write_report(report, detector, model_config, train_config, data))
    metrics["outputs"] = str(out_dir)
    return metrics
