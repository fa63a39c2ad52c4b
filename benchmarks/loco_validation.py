"""Choosing a whole-image memory-bank recipe without the test split: pseudo-anomaly validation.

For each true anomaly class c of the leave-one-class-out benchmark (CPU tier: the same seeded
10,000 training normals), one *normal* class p = (c + 1) mod 10 plays the anomaly: the bank is
built from the training normals without p, the calibration normals without p set the
standardisation, and the validation set is those calibration normals plus up to 1,000 training
images of class p. Neither class c nor any test image is touched, so a recipe chosen here is
chosen before looking at the test split.

Recipes compared (blurred image, sigma 1 px at 32 px, k = 5 neighbours):
  cosine    1 - cosine similarity (the first default)
  l2        Euclidean distance
  max-z     max of the two, each standardised on the calibration normals: an image is as
            anomalous as the view that finds it most unusual
  mean-z    their mean
  with --pca-view, also (a probe for the next recipe):
  pca       reconstruction error after projecting on the first 64 principal components of the bank
  mean-z3   the mean of the cosine, L2 and PCA z-scores

    python benchmarks/loco_validation.py mnist fashion-mnist cifar10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmark_results import save_results

RESULTS = Path("benchmarks/results/loco_validation.json")


def split_indices(labels: np.ndarray, anomaly_class: int, seed: int, max_train: int) -> tuple[np.ndarray, np.ndarray]:
    """The training and calibration indices of the benchmark split (same as load_benchmark)."""
    from adegan.training.data import leave_one_class_out

    split = leave_one_class_out(labels, anomaly_class, seed)
    train = split["train"]
    if max_train < len(train):
        train = np.sort(np.random.default_rng(seed + 1).choice(train, max_train, replace=False))
    return train, split["calibration"]


def distances(bank, queries, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(cosine distance, L2 distance), each the mean over the k nearest bank rows."""
    from baselines import nearest_distances

    l2, cosine = nearest_distances(bank, queries, k)
    return cosine.mean(1).numpy(), l2.mean(1).numpy()


def blurred(images_uint8: np.ndarray):
    import torch

    from adegan.training.config import MemoryBankConfig, ModelConfig
    from adegan.training.memory_bank import MemoryBankDetector

    config = ModelConfig(image_size=images_uint8.shape[-1], channels=images_uint8.shape[1])
    detector = MemoryBankDetector(config, MemoryBankConfig()).eval()
    with torch.no_grad():
        return detector.blur(torch.from_numpy(images_uint8).float() / 255).flatten(1)


def pca_errors(bank, queries, components: int = 64) -> np.ndarray:
    """Mean squared reconstruction error of the queries in the bank's first principal components."""
    import torch

    mean = bank.mean(0, keepdim=True)
    _, _, basis = torch.linalg.svd(bank - mean, full_matrices=False)
    top = basis[:components]
    centred = queries - mean
    return ((centred - (centred @ top.t()) @ top) ** 2).mean(1).numpy()


def validate_class(images: np.ndarray, labels: np.ndarray, anomaly_class: int, seed: int,
                   pca_view: bool = False) -> dict:
    from adegan.training.metrics import roc_auc

    pseudo = (anomaly_class + 1) % 10
    train, calibration = split_indices(labels, anomaly_class, seed, 10000)
    bank = blurred(images[train[labels[train] != pseudo]])
    calibration_normals = calibration[labels[calibration] != pseudo]
    pseudo_images = train[labels[train] == pseudo][:1000]
    rng = np.random.default_rng(seed)
    held = rng.permutation(calibration_normals)
    standardise, validation_normals = held[: len(held) // 2], held[len(held) // 2:]
    query = np.concatenate([validation_normals, pseudo_images])
    query_labels = np.concatenate([np.zeros(len(validation_normals)), np.ones(len(pseudo_images))])
    cosine, l2 = distances(bank, blurred(images[query]))
    reference_cosine, reference_l2 = distances(bank, blurred(images[standardise]))
    z_cosine = (cosine - reference_cosine.mean()) / reference_cosine.std()
    z_l2 = (l2 - reference_l2.mean()) / reference_l2.std()
    scores = {"cosine": cosine, "l2": l2, "max-z": np.maximum(z_cosine, z_l2), "mean-z": (z_cosine + z_l2) / 2}
    if pca_view:
        pca, reference_pca = pca_errors(bank, blurred(images[query])), pca_errors(bank, blurred(images[standardise]))
        z_pca = (pca - reference_pca.mean()) / reference_pca.std()
        scores.update({"pca": pca, "mean-z3": (z_cosine + z_l2 + z_pca) / 3})
    return {"anomaly_class": anomaly_class, "pseudo_anomaly_class": pseudo,
            **{name: round(float(roc_auc(query_labels, s)), 4) for name, s in scores.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset-path")
    parser.add_argument("--pca-view", action="store_true", help="also the PCA view and the three-view mean")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from adegan.training.data import DATASETS, _to_model, load_benchmark_pool

    payload = {}
    for name in args.datasets:
        pool, labels = load_benchmark_pool(name, args.dataset_path)
        images = _to_model(pool, 32, DATASETS[name]["channels"])
        rows = [validate_class(images, labels, c, args.seed, args.pca_view) for c in range(10)]
        recipes = [key for key in rows[0] if key not in ("anomaly_class", "pseudo_anomaly_class")]
        means = {recipe: round(float(np.mean([r[recipe] for r in rows])), 4) for recipe in recipes}
        payload[name] = {"per_class": rows, "mean": means}
        print(json.dumps({name: means}), flush=True)
    save_results(args.out, args, {"seed": args.seed, "results": payload})


if __name__ == "__main__":
    main()
