"""Probe: the learned view's features projected to fewer dimensions, on pseudo-anomaly validation.

Why: the default whole-image detector compares each frame's learned features (3,072 numbers: the
rotation network's 4 x 4 grids of two stages) with every bank image's, so at batch 1 `watch`
reads 3,072 x 4 bytes per bank image per frame (22 MB for 1,800 training images; measured as
the reason the default misses 2 ms a frame on one core). Projecting the unit-length features on
the first d principal directions of the bank's own rows (no centring: cosine lives on the
sphere) keeps the dot products that matter in least squares; the bank then holds d numbers per
image and the frame reads d / 3,072 of it, plus the (3,072, d) projection itself.

Protocol: `whole_image_coreset_probe.default_detector_case` (no test image, no true anomaly class:
the next normal class plays the anomaly), the product's default detector built once per class;
each projected variant keeps its pixel bank and network, projects the learned rows and the
queries, and standardises again on the same held-out normals.

Rule, written before any result of this probe was seen: the smallest d whose mean validation AUC
over MNIST, Fashion-MNIST and CIFAR-10 is at least the full features' minus 0.002 becomes the
candidate for a test-split run (3 seeds, beside the full features); none of it changes a default
by itself.

    python benchmarks/learned_projection_probe.py mnist fashion-mnist cifar10 --dims 64 128 256 512
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from whole_image_coreset_probe import default_detector_case, probe_arguments, run_probe  # noqa: E402


def validate_class(images: np.ndarray, labels: np.ndarray, anomaly_class: int, seed: int, dims: list[int]) -> dict:
    from adegan.training.config import MemoryBankConfig
    from adegan.training.inference import detector_outputs
    from adegan.training.memory_bank import MemoryBankDetector, principal_directions, standardise_views
    from adegan.training.metrics import roc_auc

    case = default_detector_case(images, labels, anomaly_class, seed)
    full, row = case["detector"], case["row"]
    learned = full.learned_bank.detach()  # unit rows of every bank image
    for dim in dims:  # what build_detector does with learned_dims = dim, on the same network
        basis = principal_directions(learned, dim)
        detector = MemoryBankDetector(case["model_config"], MemoryBankConfig(learned_dims=dim), full.bank.detach(),
                                      full.feature_net, learned @ basis, basis).eval()
        standardise_views(detector, case["standardise"], "cpu")
        auc = roc_auc(case["query_labels"], detector_outputs(detector, case["query"], "cpu")[0])
        row[f"dims_{dim}"] = round(float(auc), 4)
    return row


def main() -> None:
    args = probe_arguments(__doc__, Path("benchmarks/results/learned_projection_probe.json"),
                           "dims", [64, 128, 256, 512])

    def validate(images, labels, anomaly_class, seed):
        return validate_class(images, labels, anomaly_class, seed, args.dims)

    run_probe(args, validate, ["full"] + [f"dims_{dim}" for dim in args.dims])


if __name__ == "__main__":
    main()
