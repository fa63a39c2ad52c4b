"""Probe: a greedy coreset of the whole-image bank (fewer rows), on pseudo-anomaly validation.

Why: at batch 1 a whole-image frame spends most of its time reading the bank (one matrix-vector
product per view over every row), so `watch`'s latency grows with the number of training
images; a coreset (`--bank-size`, PatchCore's greedy k-centre, already used for patches) caps
it. This measures what it costs, or buys, in detection before any test split is looked at.

Protocol: `loco_validation.py`'s (no test image, no true anomaly class: a normal class plays the
anomaly), with the product's own default detector (`build_detector`, pixels+learned, mean-z,
every learned feature: the default when it ran) built once per class on the full bank; the
coreset variants keep the same learned network and take the rows the greedy coreset picks from
the pixel features, then standardise on the same held-out normals, as `build_detector` does when a bank exceeds `bank_size`.

Rule, written before any result of this probe was seen: the smallest size whose mean validation
AUC over the three data sets is at least the full bank's minus 0.002 becomes the candidate for a
test-split run (3 seeds, beside the full bank); none of it changes a default by itself.

    python benchmarks/whole_image_coreset_probe.py mnist fashion-mnist cifar10 --sizes 1024 2048 4096
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_results import save_results  # noqa: E402
from loco_validation import split_indices  # noqa: E402


def default_detector_case(images: np.ndarray, labels: np.ndarray, anomaly_class: int, seed: int) -> dict:
    """The validation case of one class: the product's default detector with every training image
    in its bank (the whole-image default when both probes ran) built on the training normals
    without the pseudo-anomaly class, the held-out normals that standardise it, and the
    query images (other held-out normals, then up to 1,000 pseudo-anomalies) with their labels."""
    from adegan.training.config import MemoryBankConfig, ModelConfig
    from adegan.training.inference import detector_outputs
    from adegan.training.memory_bank import build_detector
    from adegan.training.metrics import roc_auc

    pseudo = (anomaly_class + 1) % 10
    train, calibration = split_indices(labels, anomaly_class, seed, 10000)
    bank_images = images[train[labels[train] != pseudo]]
    held = np.random.default_rng(seed).permutation(calibration[labels[calibration] != pseudo])
    standardise, validation_normals = held[: len(held) // 2], held[len(held) // 2:]
    query = np.concatenate([validation_normals, train[labels[train] == pseudo][:1000]])
    query_labels = np.r_[np.zeros(len(validation_normals)), np.ones(len(query) - len(validation_normals))]
    model_config = ModelConfig(image_size=images.shape[-1], channels=images.shape[1])
    start = time.perf_counter()
    # the full bank of every learned feature: the whole-image default until late 2026-12-03
    every_image = MemoryBankConfig(bank_size=16384, learned_dims=None)
    full, facts = build_detector(model_config, every_image, bank_images, "cpu", seed, images[standardise])
    row = {"anomaly_class": anomaly_class, "pseudo_anomaly_class": pseudo, "bank_rows": facts.rows_kept,
           "build_seconds": round(time.perf_counter() - start, 1),
           "full": round(float(roc_auc(query_labels, detector_outputs(full, images[query], "cpu")[0])), 4)}
    return {"row": row, "detector": full, "model_config": model_config, "standardise": images[standardise],
            "query": images[query], "query_labels": query_labels}


def validate_class(images: np.ndarray, labels: np.ndarray, anomaly_class: int, seed: int, sizes: list[int]) -> dict:
    from adegan.training.config import MemoryBankConfig
    from adegan.training.inference import detector_outputs
    from adegan.training.memory_bank import MemoryBankDetector, greedy_coreset, standardise_views
    from adegan.training.metrics import roc_auc

    case = default_detector_case(images, labels, anomaly_class, seed)
    full, row, model_config = case["detector"], case["row"], case["model_config"]
    features, learned = full.bank, full.learned_bank  # the full bank holds every image's rows, in order
    for size in sizes:
        config = MemoryBankConfig(bank_size=size, learned_dims=None)
        kept = greedy_coreset(features, size, seed)
        detector = MemoryBankDetector(model_config, config, features[kept], full.feature_net, learned[kept]).eval()
        standardise_views(detector, case["standardise"], "cpu")
        auc = roc_auc(case["query_labels"], detector_outputs(detector, case["query"], "cpu")[0])
        row[f"coreset_{size}"] = round(float(auc), 4)
    return row


def probe_arguments(doc: str, out: Path, option: str, values: list[int]) -> argparse.Namespace:
    """The command line both whole-image validation probes share; `option` names the swept values."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    parser.add_argument("datasets", nargs="+")
    parser.add_argument(f"--{option}", type=int, nargs="+", default=values)
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset-path")
    parser.add_argument("--out", type=Path, default=out)
    return parser.parse_args()


def run_probe(args: argparse.Namespace, validate, recipes: list[str]) -> None:
    """validate(images, labels, class, seed) -> row per class of each data set; the mean of each
    recipe per data set; saved after each data set."""
    from adegan.training.data import DATASETS, _to_model, load_benchmark_pool

    payload = {}
    for name in args.datasets:
        pool, labels = load_benchmark_pool(name, args.dataset_path)
        images = _to_model(pool, 32, DATASETS[name]["channels"])
        rows = []
        for anomaly_class in args.classes:
            rows.append(validate(images, labels, anomaly_class, args.seed))
            print(json.dumps({name: rows[-1]}), flush=True)
        payload[name] = {"per_class": rows,
                         "mean": {recipe: round(float(np.mean([r[recipe] for r in rows])), 4) for recipe in recipes}}
        print(json.dumps({name: payload[name]["mean"]}), flush=True)
        save_results(args.out, args, {"seed": args.seed, "results": payload})


def main() -> None:
    args = probe_arguments(__doc__, Path("benchmarks/results/whole_image_coreset_probe.json"),
                           "sizes", [1024, 2048, 4096])

    def validate(images, labels, anomaly_class, seed):
        return validate_class(images, labels, anomaly_class, seed, args.sizes)

    run_probe(args, validate, ["full"] + [f"coreset_{size}" for size in args.sizes])


if __name__ == "__main__":
    main()
