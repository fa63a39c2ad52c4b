"""Simple baselines that every detector is measured beside, on the same split in the same run.

All take uint8 images (N, C, H, W) at the model size, as the product sees them: training normals
and test images. Each returns an anomaly score per test image (higher = more anomalous).

  pca-<n>         reconstruction error (MSE) after projecting onto the first n principal
                  components of the training normals
  pca-<n>-local   the same residual, blurred (Gaussian sigma = image size / 64), then its maximum:
                  local evidence for small defects on large photos
  knn-l2-<k>      mean Euclidean distance to the k nearest training normals (raw pixels)
  knn-cos-<k>     mean (1 - cosine similarity) to the k nearest training normals (raw pixels)

torch is used only as a fast matrix library (CPU).
"""

from __future__ import annotations

import numpy as np

PCA_COMPONENTS = (8, 64)
NEIGHBOURS = (1, 5)
CHUNK = 2048


def _flat(images: np.ndarray):
    import torch

    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)


def pca_scores(train: np.ndarray, test: np.ndarray, components: tuple[int, ...] = PCA_COMPONENTS) -> dict:
    """pca-<n> and pca-<n>-local for each n."""
    import cv2
    import torch

    x_train, x_test = _flat(train), _flat(test)
    mean = x_train.mean(0, keepdim=True)
    _, _, basis = torch.linalg.svd(x_train - mean, full_matrices=False)
    scores = {}
    size = test.shape[-1]
    sigma = max(size / 64.0, 0.5)
    for n in components:
        if n >= min(x_train.shape):
            continue
        top = basis[:n]  # (n, D)
        centred = x_test - mean
        residual = (centred - (centred @ top.t()) @ top).reshape(test.shape).abs().mean(1).numpy()  # (N, H, W)
        scores[f"pca-{n}"] = (residual ** 2).mean(axis=(1, 2))
        scores[f"pca-{n}-local"] = np.array([cv2.GaussianBlur(r, (0, 0), sigma).max() for r in residual])
    return scores


def nearest_distances(bank, queries, k: int):
    """(L2, 1 - cosine) distances of each query row to its k nearest bank rows, nearest first:
    two (N, k) tensors from one pass over the distance matrix. Rows are any float features."""
    import torch
    import torch.nn.functional as F

    k = min(k, len(bank))
    bank_sq, unit_bank = (bank * bank).sum(1), F.normalize(bank, dim=1)
    l2, cos = [], []
    for start in range(0, len(queries), CHUNK):
        batch = queries[start:start + CHUNK]
        squared = (batch * batch).sum(1, keepdim=True) - 2 * batch @ bank.t() + bank_sq
        l2.append(squared.clamp_min(0).topk(k, dim=1, largest=False).values.sqrt())
        cos.append(1 - (F.normalize(batch, dim=1) @ unit_bank.t()).topk(k, dim=1).values)
    return torch.cat(l2), torch.cat(cos)


def knn_scores(train: np.ndarray, test: np.ndarray, neighbours: tuple[int, ...] = NEIGHBOURS) -> dict:
    """knn-l2-<k> and knn-cos-<k> for each k, from one pass over the distance matrix."""
    l2, cos = nearest_distances(_flat(train), _flat(test), max(neighbours))
    scores = {}
    for k in neighbours:
        scores[f"knn-l2-{k}"] = l2[:, :k].mean(1).numpy()
        scores[f"knn-cos-{k}"] = cos[:, :k].mean(1).numpy()
    return scores


def baseline_scores(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
    """Every baseline's scores for the test images."""
    return {**pca_scores(train, test), **knn_scores(train, test)}


def baseline_aucs(train: np.ndarray, test: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from adegan.training.metrics import roc_auc

    return {name: round(float(roc_auc(labels, score)), 4) for name, score in baseline_scores(train, test).items()}
