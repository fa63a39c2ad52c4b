"""Probe: which patch features and aggregations separate defects on real photos, chosen on
synthetic defects made from training normals (no test images), with the real test folds printed
beside them only as a confirmation of the choice.

Each variant is (blur sigma, patch sizes, normalisation, aggregation). A variant with several
patch sizes z-scores each size's image distance on held-out normals and averages them. Per-location
("position") variants z-score each cell of the patch-distance map on held-out normals before the max.

Example:
  python benchmarks/patch_feature_probe.py --npz PATH/kolektorsdd_256.npz --variants base p8 multi --seeds 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from defect_benchmark import load_npz, make_folds, model_images, synthetic_defect  # noqa: E402

VARIANTS = {
    "base": dict(sigma=0.5, patches=(16,), norm="mean", agg="max"),
    "stride4": dict(sigma=0.5, patches=(16,), norm="mean", agg="max", stride_div=4),
    "p8": dict(sigma=0.25, patches=(8,), norm="mean", agg="max"),
    "p32": dict(sigma=1.0, patches=(32,), norm="mean", agg="max"),
    "multi": dict(sigma=0.5, patches=(8, 16, 32), norm="mean", agg="max"),
    "contrast": dict(sigma=0.5, patches=(16,), norm="contrast", agg="max"),
    "sigma1": dict(sigma=1.0, patches=(16,), norm="mean", agg="max"),
    "sigma2": dict(sigma=2.0, patches=(16,), norm="mean", agg="max"),
    "position": dict(sigma=0.5, patches=(16,), norm="mean", agg="position"),
    "top3": dict(sigma=0.5, patches=(16,), norm="mean", agg="top3"),
    "gradient": dict(sigma=0.5, patches=(16,), norm="gradient", agg="max"),
    "k3": dict(sigma=0.5, patches=(16,), norm="mean", agg="max", k=3),
}


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return images
    radius = max(1, int(np.ceil(2 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-x * x / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    padded = F.pad(images, (radius,) * 4, mode="replicate")
    out = F.conv2d(padded, kernel.reshape(1, 1, 1, -1))
    return F.conv2d(out, kernel.reshape(1, 1, -1, 1))


def patch_features(images_uint8: np.ndarray, variant: dict, patch: int) -> tuple[torch.Tensor, tuple[int, int]]:
    images = torch.from_numpy(images_uint8[:, :1]).float() / 255.0
    images = blur(images, variant["sigma"] * patch / 16)
    if variant["norm"] == "gradient":
        gx = images[:, :, :, 1:] - images[:, :, :, :-1]
        gy = images[:, :, 1:, :] - images[:, :, :-1, :]
        images = torch.cat([F.pad(gx, (0, 1)), F.pad(gy, (0, 0, 0, 1))], dim=1)
    stride = max(1, patch // variant.get("stride_div", 2))
    columns = F.unfold(images, patch, stride=stride)  # (N, D, L)
    side = (images.shape[-1] - patch) // stride + 1
    columns = columns.transpose(1, 2)
    if variant["norm"] in ("mean", "contrast"):
        columns = columns - columns.mean(dim=2, keepdim=True)
    if variant["norm"] == "contrast":
        columns = columns / (columns.std(dim=2, keepdim=True) + 0.02)
    return columns.contiguous(), (side, side)


def coreset_bank(features: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    from adegan.training.memory_bank import greedy_coreset

    flat = features.reshape(-1, features.shape[-1])
    return flat if len(flat) <= size else flat[greedy_coreset(flat, size, seed)]


def distance_maps(features: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    bank_sq = (bank * bank).sum(1)
    out = []
    for start in range(0, len(features), 8):
        f = features[start:start + 8]
        squared = (f * f).sum(2, keepdim=True) - 2 * f @ bank.t() + bank_sq
        out.append(squared.topk(k, dim=2, largest=False).values.mean(2).clamp_min(0).sqrt())
    return torch.cat(out)  # (N, L)


def variant_scores(variant: dict, bank_images: np.ndarray, held_images: np.ndarray, query: np.ndarray,
                   seed: int, cache: dict) -> np.ndarray:
    per_size = []
    for patch in variant["patches"]:
        k = variant.get("k", 1)
        key = (patch, variant["sigma"], variant["norm"], variant.get("stride_div", 2), k)
        if key not in cache:  # variants that differ only in aggregation share one bank
            bank = coreset_bank(patch_features(bank_images, variant, patch)[0], 16384, seed)
            cache[key] = (distance_maps(patch_features(held_images, variant, patch)[0], bank, k),
                          distance_maps(patch_features(query, variant, patch)[0], bank, k))
        held_maps, query_maps = cache[key]
        if variant["agg"] == "position":
            mean, std = held_maps.mean(0), held_maps.std(0)
            std = torch.maximum(std, std[std > 0].median())  # padding cells: every normal ties at 0
            query_maps, held_maps = (query_maps - mean) / std, (held_maps - mean) / std
        if variant["agg"] == "top3":
            query_image, held_image = (m.topk(3, dim=1).values.mean(1) for m in (query_maps, held_maps))
        else:
            query_image, held_image = query_maps.max(1).values, held_maps.max(1).values
        per_size.append(((query_image - held_image.mean()) / held_image.std()).numpy())
    return np.mean(per_size, axis=0)


def fold_split(data, images, train_index, test_index, seed, make_defect=None):
    """(bank index, held-out normal index, query images, labels) of one fold. With `make_defect`
    (validation): bank 72 %, held-out normals 8 %, and 20 % of the training normals scored as
    they are and with one synthetic defect each; without it (test): the fold's own images."""
    rng = np.random.default_rng(seed + 1000)
    order = rng.permutation(train_index)
    if make_defect is not None:
        val = order[:max(2, len(order) // 5)]
        rest = order[len(val):]
        defects = np.stack([make_defect(images[i], images[rng.choice(rest)], rng) for i in val])
        query = np.concatenate([images[val], defects])
        labels = np.r_[np.zeros(len(val)), np.ones(len(val))]
    else:
        rest = order
        query, labels = images[test_index], data["labels"][test_index]
    held = rest[:max(4, len(rest) // 10)]
    return rest[len(held):], held, query, labels


def run_fold(data, images, train_index, test_index, names, seed, validate) -> dict:
    from adegan.training.metrics import roc_auc

    bank, held, query, labels = fold_split(data, images, train_index, test_index, seed,
                                           synthetic_defect if validate else None)
    cache = {}
    return {name: float(roc_auc(labels, variant_scores(VARIANTS[name], images[bank], images[held], query, seed, cache)))
            for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npz", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/patch_feature_probe.json"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    data = load_npz(args.npz)
    images = model_images(data["images"], args.size, 3)
    results = {}
    for seed in args.seeds:
        for protocol in ("validation", "test"):
            per_fold = []
            for fold, test_index in enumerate(make_folds(data, args.folds, seed)):
                start = time.perf_counter()
                train_index = np.setdiff1d(np.flatnonzero(data["labels"] == 0), test_index)
                per_fold.append(run_fold(data, images, train_index, test_index, args.variants, seed,
                                         protocol == "validation"))
                print(f"seed {seed} {protocol} fold {fold}: " + " ".join(f"{k} {v:.3f}" for k, v in per_fold[-1].items())
                      + f" ({time.perf_counter() - start:.0f} s)", flush=True)
            means = {name: round(float(np.mean([f[name] for f in per_fold])), 4) for name in args.variants}
            results.setdefault(protocol, {})[str(seed)] = means
            print(f"seed {seed} {protocol} mean: {means}", flush=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
