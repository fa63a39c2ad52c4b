"""Probe: a memory bank of the GAN's own features (E's and D's intermediate maps), beside pixels.

For trained leave-one-class-out runs of the paper's method, each trunk block's output of E and
of D (eval mode, images in [-1, 1]) is averaged on a 4 x 4 grid (the last block already is
4 x 4) and compared by cosine distance, the mean over the k = 5 nearest training normals (the
run's own split and training images), as the shipped learned view compares its features. The
pixel cosine k-NN (k = 5, `baselines.py`) is scored on the same split in the same run. AUC on the
run's test split: an exploration of the lead, not a choice of default (that needs validation).

    python benchmarks/gan_feature_bank_probe.py runs/loco/mnist/cpu/default --out results.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

GRID = 4
NEIGHBOURS = 5


def block_features(trunk, images_uint8: np.ndarray) -> list:
    """(N, D_b) grid-averaged features of each block of a trunk, for uint8 images."""
    import torch
    import torch.nn.functional as F

    per_block: list[list] = []
    with torch.no_grad():
        for start in range(0, len(images_uint8), 512):
            x = torch.from_numpy(images_uint8[start:start + 512]).float() / 127.5 - 1.0
            outputs = []
            for layer in trunk.net:
                x = layer(x)
                if isinstance(layer, torch.nn.LeakyReLU):
                    outputs.append(F.adaptive_avg_pool2d(x, GRID).flatten(1))
            for index, output in enumerate(outputs):
                if len(per_block) <= index:
                    per_block.append([])
                per_block[index].append(output)
    return [torch.cat(parts) for parts in per_block]


def probe_run(run_dir: Path) -> dict:
    import torch

    from adegan.training.checkpoint import configs_from_state, load_checkpoint
    from adegan.training.data import load_benchmark
    from adegan.training.metrics import roc_auc
    from adegan.training.model import Discriminator, Extractor
    from baselines import knn_scores, nearest_distances

    state = load_checkpoint(run_dir)
    model_config, train_config = configs_from_state(state, run_dir)
    data = load_benchmark(train_config.source, train_config.anomaly_class, train_config.seed, model_config.image_size,
                          train_config.calibration_fraction, train_config.dataset_path, train_config.max_train_images,
                          model_config.channels, parts=("train", "test"))
    row = {"run": str(run_dir), "anomaly_class": train_config.anomaly_class, "method": train_config.method,
           "pixels_knn_cos_5": round(float(roc_auc(data.test_labels, knn_scores(data.train, data.test, (5,))["knn-cos-5"])), 4)}
    for name, network_class, key in (("E", Extractor, "extractor"), ("D", Discriminator, "discriminator")):
        network = network_class(model_config)
        network.load_state_dict(state[key])
        network.eval()
        bank, queries = block_features(network.trunk, data.train), block_features(network.trunk, data.test)
        for index, (bank_rows, query_rows) in enumerate(zip(bank, queries)):
            cosine = nearest_distances(bank_rows, query_rows, NEIGHBOURS)[1].mean(1).numpy()
            row[f"{name}_block{index}"] = round(float(roc_auc(data.test_labels, cosine)), 4)
        joined = nearest_distances(torch.cat(bank, 1), torch.cat(queries, 1), NEIGHBOURS)[1].mean(1).numpy()
        row[f"{name}_all_blocks"] = round(float(roc_auc(data.test_labels, joined)), 4)
    return row


def main() -> None:
    from benchmark_results import probe_trained_runs

    probe_trained_runs(__doc__, probe_run)


if __name__ == "__main__":
    main()
