"""Check, not a result: is the low AUC an artefact of BatchNorm statistics?

During training, G's and E's BatchNorm running statistics mix two kinds of batch: GAN samples from
the prior (stage 1, L_sl, L_ip) and the reconstruction path G(E(x)) on real images (L_recon). In
eval mode the detector runs only the second kind, with statistics partly taken from the first.
This script loads finished runs (no retraining), recomputes every BatchNorm's running mean and
variance from the reconstruction path alone over the run's own training normals (a cumulative
average, as `torch.optim.swa_utils.update_bn` does), re-calibrates μ_e and σ_e on the calibration
normals, and scores the test set again. Nothing from the test set is used to change the networks.

    python benchmarks/bn_recompute.py runs/loco/mnist/cpu/default --out benchmarks/results/bn_recompute_mnist_cpu.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from benchmark_results import save_results

from adegan.runtime.score import calibrate
from adegan.training.data import load_benchmark
from adegan.training.evaluate import summarize
from adegan.training.inference import load_detector
from adegan.training.inference import detector_outputs


@torch.no_grad()
def recompute_batchnorm(detector: torch.nn.Module, images_uint8: np.ndarray, batch_size: int = 64) -> None:
    """Running statistics of every BatchNorm from the detector's own forward pass over `images`."""
    norms = [m for m in detector.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over all batches
    detector.train()
    for start in range(0, len(images_uint8), batch_size):
        detector(torch.from_numpy(images_uint8[start:start + batch_size]).float() / 255.0)
    detector.eval()


def evaluate(detector, data) -> dict:
    """AUCs on the test split, with μ_e and σ_e from the calibration normals (as training does)."""
    calibration = calibrate(*detector_outputs(detector, data.calibration, "cpu"))
    recon_error, pattern_probs = detector_outputs(detector, data.test, "cpu")
    metrics, _ = summarize(data.test_labels, recon_error, pattern_probs, calibration)
    return {"auc": {k: round(v, 4) for k, v in metrics["auc"].items()},
            "mean_pattern_confidence": {k: round(v, 4) for k, v in metrics["mean_pattern_confidence"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="a folder of seed<S>_class<C> run directories")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: leaves room for a benchmark)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for run_dir in sorted(args.runs.glob("seed*_class*")):
        detector, model_config, train_config, _, _ = load_detector(run_dir, "cpu")
        data = load_benchmark(train_config.source, train_config.anomaly_class, train_config.seed,
                              model_config.image_size, train_config.calibration_fraction,
                              train_config.dataset_path, train_config.max_train_images, model_config.channels)
        as_trained = evaluate(detector, data)
        recompute_batchnorm(detector, data.train)
        rows.append({"run": str(run_dir), "anomaly_class": train_config.anomaly_class,
                     "as_trained": as_trained, "batchnorm_recomputed": evaluate(detector, data)})
        print(json.dumps(rows[-1]), flush=True)
    mean = {kind: {part: round(float(np.mean([r[kind]["auc"][part] for r in rows])), 4)
                   for part in ("combined", "reconstruction", "pattern")}
            for kind in ("as_trained", "batchnorm_recomputed")}
    save_results(args.out, args, {"mean_auc": mean, "runs": rows})
    print(json.dumps({"mean_auc": mean}, indent=2))


if __name__ == "__main__":
    main()
