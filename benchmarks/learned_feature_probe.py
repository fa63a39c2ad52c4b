"""Probe: do features *learned on the normals* beat blurred pixels in the whole-image memory bank?
Pseudo-anomaly validation only (the protocol of loco_validation.py: anomaly class c is never
touched, normal class p = (c + 1) mod 10 plays the anomaly, the bank and the network see the
training normals without p).

The network: a small CNN (3 conv stages, 32/64/128 channels, BatchNorm, ReLU, 2x2 max-pool)
trained from scratch by rotation prediction (each image shown at 0/90/180/270 degrees, the
network names the rotation; a self-supervised task that needs shape, nothing downloaded), Adam
lr 1e-3, batch 128, --epochs passes over the bank images. Features: the global average of each
stage's maps, concatenated (224 values), or (spatial) stages 2 and 3 averaged on a 4 x 4 grid,
each unit length (3,072 values), compared by cosine distance (k = 5), beside the shipped
pixel views (cosine, L2, mean-z) and the rotation score itself (GEOM: minus the mean log
probability of the true rotation over the four rotations). Combinations: mean of z-scores.

  python benchmarks/learned_feature_probe.py mnist fashion-mnist cifar10 --classes 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_results import save_results  # noqa: E402
from loco_validation import blurred, distances, split_indices  # noqa: E402


class RotationNet(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        widths, stages, previous = (32, 64, 128), [], channels
        for width in widths:
            stages.append(nn.Sequential(nn.Conv2d(previous, width, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(width), nn.ReLU(inplace=True)))
            previous = width
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(previous, 4)

    def forward(self, x):
        pooled, spatial = [], []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            pooled.append(x.mean(dim=(2, 3)))
            if index > 0:  # stages 2 and 3 on a 4 x 4 grid, each part unit length
                grid = F.adaptive_avg_pool2d(x, 4).flatten(1)
                spatial.append(grid / (grid.norm(dim=1, keepdim=True) + 1e-6))
            if index < len(self.stages) - 1:
                x = F.max_pool2d(x, 2)
        return self.head(pooled[-1]), torch.cat(pooled, dim=1), torch.cat(spatial, dim=1)


def rotations(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rotated = torch.cat([torch.rot90(batch, r, dims=(2, 3)) for r in range(4)])
    return rotated, torch.arange(4).repeat_interleave(len(batch))


def train_network(images_uint8: np.ndarray, epochs: int, seed: int) -> RotationNet:
    torch.manual_seed(seed)
    net = RotationNet(images_uint8.shape[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    data = torch.from_numpy(images_uint8).float() / 255.0
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for index in torch.randperm(len(data), generator=generator).split(128):
            rotated, targets = rotations(data[index])
            loss = F.cross_entropy(net(rotated)[0], targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


@torch.no_grad()
def network_outputs(net: RotationNet, images_uint8: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(pooled features (N, 224), spatial features (N, 3072) of the upright images, rotation score (N,))."""
    features, grids, scores = [], [], []
    for start in range(0, len(images_uint8), 512):
        batch = torch.from_numpy(images_uint8[start:start + 512]).float() / 255.0
        rotated, targets = rotations(batch)
        logits, pooled, spatial = net(rotated)
        log_prob = F.log_softmax(logits, 1).gather(1, targets[:, None])[:, 0]
        scores.append(-log_prob.reshape(4, -1).mean(0))
        features.append(pooled[:len(batch)])
        grids.append(spatial[:len(batch)])
    return torch.cat(features), torch.cat(grids), torch.cat(scores).numpy()


def validate_class(images, labels, anomaly_class: int, seed: int, epochs: int) -> dict:
    from adegan.training.metrics import roc_auc

    pseudo = (anomaly_class + 1) % 10
    train, calibration = split_indices(labels, anomaly_class, seed, 10000)
    bank_index = train[labels[train] != pseudo]
    calibration_normals = calibration[labels[calibration] != pseudo]
    pseudo_images = train[labels[train] == pseudo][:1000]
    held = np.random.default_rng(seed).permutation(calibration_normals)
    standardise, validation_normals = held[: len(held) // 2], held[len(held) // 2:]
    query = np.concatenate([validation_normals, pseudo_images])
    query_labels = np.r_[np.zeros(len(validation_normals)), np.ones(len(pseudo_images))]

    def z(values, reference):
        return (values - reference.mean()) / reference.std()

    pixel_bank = blurred(images[bank_index])
    cosine, l2 = distances(pixel_bank, blurred(images[query]))
    reference_cosine, reference_l2 = distances(pixel_bank, blurred(images[standardise]))
    scores = {"pixels-cosine": cosine, "pixels-l2": l2,
              "pixels-mean-z": (z(cosine, reference_cosine) + z(l2, reference_l2)) / 2}
    start = time.perf_counter()
    net = train_network(images[bank_index], epochs, seed)
    train_seconds = time.perf_counter() - start
    bank_features, bank_grids, _ = network_outputs(net, images[bank_index])
    query_features, query_grids, query_rotation = network_outputs(net, images[query])
    reference_features, reference_grids, reference_rotation = network_outputs(net, images[standardise])
    learned, _ = distances(bank_features, query_features)
    reference_learned, _ = distances(bank_features, reference_features)
    scores["learned-cosine"] = learned
    spatial, _ = distances(bank_grids, query_grids)
    reference_spatial, _ = distances(bank_grids, reference_grids)
    scores["learned-spatial-cosine"] = spatial
    scores["mean-z pixels+spatial"] = (z(cosine, reference_cosine) + z(l2, reference_l2)
                                       + z(spatial, reference_spatial)) / 3
    scores["rotation"] = query_rotation
    scores["mean-z pixels+learned"] = (z(cosine, reference_cosine) + z(l2, reference_l2)
                                       + z(learned, reference_learned)) / 3
    scores["mean-z learned+rotation"] = (z(learned, reference_learned) + z(query_rotation, reference_rotation)) / 2
    scores["mean-z pixels+learned+rotation"] = (z(cosine, reference_cosine) + z(l2, reference_l2)
                                                + z(learned, reference_learned)
                                                + z(query_rotation, reference_rotation)) / 4
    return {"anomaly_class": anomaly_class, "pseudo_anomaly_class": pseudo, "train_seconds": round(train_seconds, 1),
            **{name: round(float(roc_auc(query_labels, s)), 4) for name, s in scores.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset-path")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/learned_feature_probe.json"))
    args = parser.parse_args()
    from adegan.training.data import DATASETS, _to_model, load_benchmark_pool

    torch.set_num_threads(max(1, torch.get_num_threads()))
    payload = {}
    for name in args.datasets:
        pool, labels = load_benchmark_pool(name, args.dataset_path)
        images = _to_model(pool, 32, DATASETS[name]["channels"])
        rows = []
        for c in args.classes:
            rows.append(validate_class(images, labels, c, args.seed, args.epochs))
            print(json.dumps({name: rows[-1]}), flush=True)
        recipes = [k for k in rows[0] if k not in ("anomaly_class", "pseudo_anomaly_class", "train_seconds")]
        payload[name] = {"per_class": rows, "mean": {r: round(float(np.mean([row[r] for row in rows])), 4) for r in recipes}}
        print(json.dumps({name: payload[name]["mean"]}), flush=True)
        save_results(args.out, args, {"seed": args.seed, "results": payload})


if __name__ == "__main__":
    main()
