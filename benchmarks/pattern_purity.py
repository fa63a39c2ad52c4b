"""Diagnostic: do E's patterns on real images follow the classes of the normal data?

ADe-GAN's pattern term assumes that G learns one pattern per kind of normal image and that E
recognises them on real images. For trained leave-one-class-out runs this measures, on the
calibration normals of each run's own split (never in training; labels from the dataset):
  purity        share of images whose pattern's most frequent class is their own class
                (1.0: every pattern holds one class; about 1/9 for random assignment)
  patterns_used patterns that receive at least 1 % of the images
  confidence    mean max pattern probability on the normals, and on the test anomalies

  python benchmarks/pattern_purity.py runs/loco/mnist/cpu/default runs/loco/mnist/cpu/clustergan
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def run_purity(run_dir: Path) -> dict:
    from adegan.training.data import leave_one_class_out, load_benchmark, load_benchmark_pool
    from adegan.training.inference import detector_outputs, load_detector

    detector, model_config, train_config, _, _ = load_detector(run_dir, "cpu")
    _, labels = load_benchmark_pool(train_config.source, train_config.dataset_path)
    split = leave_one_class_out(labels, train_config.anomaly_class, train_config.seed,
                                calibration_fraction=train_config.calibration_fraction)
    data = load_benchmark(train_config.source, train_config.anomaly_class, train_config.seed, model_config.image_size,
                          train_config.calibration_fraction, train_config.dataset_path, train_config.max_train_images,
                          model_config.channels, parts=("calibration", "test"))
    _, probs = detector_outputs(detector, data.calibration, "cpu")
    classes, patterns = labels[split["calibration"]], probs.argmax(1)
    majority = {p: np.bincount(classes[patterns == p]).argmax() for p in np.unique(patterns)}
    purity = float(np.mean([majority[p] == c for p, c in zip(patterns, classes)]))
    _, test_probs = detector_outputs(detector, data.test[data.test_labels == 1], "cpu")
    return {"run": str(run_dir), "anomaly_class": train_config.anomaly_class, "method": train_config.method,
            "purity": round(purity, 3),
            "patterns_used": int((np.bincount(patterns, minlength=probs.shape[1]) >= 0.01 * len(patterns)).sum()),
            "confidence_normals": round(float(probs.max(1).mean()), 3),
            "confidence_anomalies": round(float(test_probs.max(1).mean()), 3)}


def main() -> None:
    from benchmark_results import probe_trained_runs

    probe_trained_runs(__doc__, run_purity)


if __name__ == "__main__":
    main()
