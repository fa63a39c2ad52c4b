"""Exploration, not a result: which *other* signals inside a trained ADe-GAN separate the anomaly?

Loads finished leave-one-class-out runs (no retraining) and computes, beside the deployed score,
candidate scores from the same networks. Each candidate is standardized with the run's own
calibration normals (never the test set). Because the test AUCs are what we compare, anything
this finds must be confirmed on a dataset it was not chosen on before it can become a default.

    python benchmarks/score_variants.py runs/loco/mnist/cpu/default --out benchmarks/results/score_variants_mnist_cpu.json

Candidates:
  deployed       A(x) as shipped (Eq. 9, CDF reading)
  pixel          e = MSE(x, G(E(x)))
  feature        MSE between D's trunk features of x and of G(E(x)) (f-AnoGAN's izi_f term)
  pixel+feature  sum of the two, each standardized on the calibration normals
  latent         ||z_n_hat||^2 / sigma^2: how far E's noise code lies from the prior
  best-pattern   min over k of MSE(x, G(z_n_hat, one_hot(k)))
  critic         -D(x): how fake the discriminator finds x
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark_results import save_results

from adegan.runtime.score import abnormality_score
from adegan.training.checkpoint import configs_from_state, load_checkpoint
from adegan.training.data import load_benchmark
from adegan.training.metrics import roc_auc
from adegan.training.model import Discriminator, Extractor, Generator


@torch.no_grad()
def signals(run_dir: Path, images: np.ndarray, batch_size: int = 500) -> dict[str, np.ndarray]:
    state = load_checkpoint(run_dir)
    model_config, _ = configs_from_state(state, run_dir)
    G, E, D = Generator(model_config), Extractor(model_config), Discriminator(model_config)
    for name, net in (("generator", G), ("extractor", E), ("discriminator", D)):
        net.load_state_dict(state[name])
        net.eval()
    K = model_config.n_patterns
    out: dict[str, list] = {k: [] for k in ("pixel", "feature", "latent", "best-pattern", "critic", "probs")}
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size]).float() / 127.5 - 1.0  # [-1, 1]
        logits, z_n_hat = E(x)
        probs = F.softmax(logits, dim=1)
        x_hat = G(z_n_hat, probs)
        out["pixel"].append(((x - x_hat) ** 2).mean(dim=(1, 2, 3)) / 4.0)  # in [0, 1] pixel units
        out["feature"].append(((D.trunk(x) - D.trunk(x_hat)) ** 2).mean(dim=1))
        out["latent"].append((z_n_hat ** 2).sum(dim=1) / model_config.noise_std ** 2)
        per_pattern = [((x - G(z_n_hat, F.one_hot(torch.full((len(x),), k), K).float())) ** 2).mean(dim=(1, 2, 3))
                       for k in range(K)]
        out["best-pattern"].append(torch.stack(per_pattern, dim=1).min(dim=1).values)
        out["critic"].append(-D(x))
        out["probs"].append(probs)
    return {k: torch.cat(v).numpy().astype(np.float64) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="a folder of seed<S>_class<C> run directories")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for run_dir in sorted(args.runs.glob("seed*_class*")):
        state = load_checkpoint(run_dir)
        model_config, train_config = configs_from_state(state, run_dir)
        data = load_benchmark(train_config.source, train_config.anomaly_class, train_config.seed,
                              model_config.image_size, train_config.calibration_fraction,
                              channels=model_config.channels, parts=("calibration", "test"))
        calibration, test = signals(run_dir, data.calibration), signals(run_dir, data.test)
        calib = state["calibration"]
        scores = {"deployed": abnormality_score(test["pixel"], test["probs"], calib["mu_e"], calib["sigma_e"], "cdf")}
        for name in ("pixel", "feature", "latent", "best-pattern", "critic"):
            scores[name] = test[name]
        standard = {name: (test[name] - calibration[name].mean()) / calibration[name].std()
                    for name in ("pixel", "feature")}
        scores["pixel+feature"] = standard["pixel"] + standard["feature"]
        auc = {name: round(roc_auc(data.test_labels, values), 4) for name, values in scores.items()}
        rows.append({"run": str(run_dir), "anomaly_class": train_config.anomaly_class, "auc": auc})
        print(json.dumps(rows[-1]), flush=True)
    mean = {name: round(float(np.mean([r["auc"][name] for r in rows])), 4) for name in rows[0]["auc"]}
    save_results(args.out, args, {"mean_auc": mean, "runs": rows})
    print(json.dumps({"mean_auc": mean}, indent=2))


if __name__ == "__main__":
    main()
