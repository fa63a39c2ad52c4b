"""Probe: does a second patch view made of *oriented line evidence* help the memory bank find thin
defects (cracks, scratches) on real photos? Chosen on synthetic defects made from training normals,
with the real test folds run once beside it as the confirmation.

Why a line view: a crack 1-2 px wide adds little to the distance of a 16 px pixel patch whose
granular texture differs from every bank patch anyway (the texture's energy drowns the line's).
Averaging along a line of length L keeps a line's contrast and divides uncorrelated texture by
about sqrt(L). So for each of 8 orientations the image is averaged along a centred segment of
L = patch size - 1 px, the mean over the orientations (an isotropic local mean) is subtracted, and
the line evidence of a pixel is the largest absolute response over orientations: ~0 on isotropic
texture, high on lines and edges. Normal line structures (part edges, stripes) go into the bank
like any other patch.

Views (each: 16 px patches at stride 8 at 256 px, Euclidean distance to the nearest of a
16,384-row coreset, image = max over its patches, z-scored on held-out normals):
  pixels     the shipped default (blur sigma 0.5, mean-removed patches)
  line       the line-evidence map's patches (not mean-removed: the amount of evidence counts)
  oriented   the 8 signed orientation responses, each pooled 4 x 4 inside the patch (8 x 16 values)
Combinations: mean-z and max-z of pixels with line / oriented.

Protocols: validation (defect_benchmark's mixed synthetic defects: high-contrast scratches, blobs,
pasted patches), validation-faint (faint cracks and spots, 1-3x the image's texture contrast),
test (the real defects, run once as the confirmation). Rule fixed before any test fold of this
probe was seen: the recipe with the highest mean of the two validation AUCs wins; within 0.005 of
pixels alone, pixels stay (one view is simpler and half the bank).

  python benchmarks/line_view_probe.py --npz PATH/kolektorsdd_256.npz --seeds 0
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
from benchmark_results import save_results  # noqa: E402
from defect_benchmark import DEFECT_MAKERS, load_npz, make_folds, model_images  # noqa: E402
from patch_feature_probe import blur, coreset_bank, distance_maps, fold_split  # noqa: E402

ORIENTATIONS = 8
VIEWS = ("pixels", "line", "oriented")


def line_kernels(length: int) -> torch.Tensor:
    """(8, 1, L, L) kernels, each a unit-sum anti-aliased segment through the centre."""
    import cv2

    scale, kernels = 8, []
    for i in range(ORIENTATIONS):
        angle = np.pi * i / ORIENTATIONS
        canvas = np.zeros((length * scale, length * scale), np.float32)
        centre, half = (length * scale - 1) / 2, (length * scale - scale) / 2
        dx, dy = half * np.cos(angle), half * np.sin(angle)
        cv2.line(canvas, (int(round(centre - dx)), int(round(centre - dy))),
                 (int(round(centre + dx)), int(round(centre + dy))), 1.0, scale)
        kernel = cv2.resize(canvas, (length, length), interpolation=cv2.INTER_AREA)
        kernels.append(kernel / kernel.sum())
    return torch.from_numpy(np.stack(kernels)[:, None])


def orientation_responses(images: torch.Tensor, length: int) -> torch.Tensor:
    """(N, 8, H, W): mean along each orientation minus the mean over orientations."""
    radius = length // 2
    padded = F.pad(images, (radius,) * 4, mode="replicate")
    means = F.conv2d(padded, line_kernels(length))
    return means - means.mean(dim=1, keepdim=True)


def view_features(images_uint8: np.ndarray, view: str, patch: int = 16) -> torch.Tensor:
    images = torch.from_numpy(images_uint8[:, :1]).float() / 255.0
    stride = patch // 2
    if view == "pixels":
        columns = F.unfold(blur(images, 0.5), patch, stride=stride).transpose(1, 2)
        return (columns - columns.mean(dim=2, keepdim=True)).contiguous()
    responses = torch.cat([orientation_responses(images[i:i + 16], patch - 1) for i in range(0, len(images), 16)])
    if view == "line":
        evidence = responses.abs().max(dim=1, keepdim=True).values
        return F.unfold(evidence, patch, stride=stride).transpose(1, 2).contiguous()
    pooled = F.avg_pool2d(responses, 4)  # 4 x 4 cells: a 16 px patch is 4 x 4 cells of 8 responses
    return F.unfold(pooled, patch // 4, stride=stride // 4).transpose(1, 2).contiguous()


def view_scores(view: str, bank_images, held_images, query_images, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(query image distances, held-out normal image distances) for one view."""
    bank = coreset_bank(view_features(bank_images, view), 16384, seed)
    held = distance_maps(view_features(held_images, view), bank, 1).max(1).values.numpy()
    query = distance_maps(view_features(query_images, view), bank, 1).max(1).values.numpy()
    return query, held


def run_fold(data, images, train_index, test_index, seed, protocol: str) -> dict:
    from adegan.training.metrics import roc_auc

    make_defect = None if protocol == "test" else DEFECT_MAKERS["faint" if protocol == "validation-faint" else "mixed"]
    bank, held, query, labels = fold_split(data, images, train_index, test_index, seed, make_defect)
    z = {}
    for view in VIEWS:
        query_scores, held_scores = view_scores(view, images[bank], images[held], query, seed)
        z[view] = (query_scores - held_scores.mean()) / held_scores.std()
    scores = dict(z)
    for other in ("line", "oriented"):
        scores[f"mean-z pixels+{other}"] = (z["pixels"] + z[other]) / 2
        scores[f"max-z pixels+{other}"] = np.maximum(z["pixels"], z[other])
    return {name: round(float(roc_auc(labels, s)), 4) for name, s in scores.items()}


def run_protocols(data, images, args, run_fold) -> None:
    """Every seed x protocol x part-wise fold of `args`, printed as it goes; per seed and protocol
    the fold AUCs and their mean, saved to args.out after each protocol (a stopped probe keeps them).
    `run_fold(data, images, train_index, test_index, fold_seed, protocol)` returns {recipe: AUC}."""
    results = {}
    for seed in args.seeds:
        for protocol in args.protocols:
            per_fold = []
            for fold, test_index in enumerate(make_folds(data, args.folds, seed)):
                start = time.perf_counter()
                train_index = np.setdiff1d(np.flatnonzero(data["labels"] == 0), test_index)
                per_fold.append(run_fold(data, images, train_index, test_index, seed * 100 + fold, protocol))
                print(json.dumps({"seed": seed, "protocol": protocol, "fold": fold, **per_fold[-1],
                                  "seconds": round(time.perf_counter() - start)}), flush=True)
            means = {name: round(float(np.mean([f[name] for f in per_fold])), 4) for name in per_fold[0]}
            results.setdefault(protocol, {})[str(seed)] = {"mean": means, "per_fold": per_fold}
            print(json.dumps({"seed": seed, "protocol": protocol, "mean": means}), flush=True)
            save_results(args.out, args, {"results": results})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--npz", type=Path, required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--protocols", nargs="+", default=["validation", "validation-faint", "test"],
                        choices=["validation", "validation-faint", "test"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/line_view_probe.json"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    data = load_npz(args.npz)
    images = model_images(data["images"], 256, 3)
    run_protocols(data, images, args, run_fold)


if __name__ == "__main__":
    main()
