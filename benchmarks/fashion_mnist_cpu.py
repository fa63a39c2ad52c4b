"""Fashion-MNIST leave-one-class-out at a budget this 2-core CPU can run.

Superseded by `leave_one_class_out.py` (all datasets, tiers, variants, one file per run); kept so
that the first probes in RESULTS.md (results/fashion_mnist_cpu*.json) stay reproducible.

Trains one run per anomaly class through the library API (the same code as `adegan train`),
evaluates on the full test split, and writes one JSON per class plus a summary JSON/markdown.

    python benchmarks/fashion_mnist_cpu.py --classes 0 1 8 --epochs 5 --max-train-images 10000

The budget is far below the paper's (full data, many epochs): read the numbers as what this
implementation reaches on a CPU in minutes, not as the method's ceiling.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmark_results import save_results

from adegan.training.config import ModelConfig, TrainConfig
from adegan.training.evaluate import evaluate_run
from adegan.training.trainer import train


def _parse(option: str) -> tuple[str, object]:
    key, _, value = option.partition("=")
    return key, json.loads(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 1, 8])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-train-images", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-fmnist"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/fashion_mnist_cpu.json"))
    parser.add_argument("--train-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a TrainConfig field, value as JSON (e.g. noise_loss_weight=100)")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a ModelConfig field, value as JSON (e.g. noise_std=1.0)")
    args = parser.parse_args()
    train_options = dict(_parse(o) for o in args.train_option)
    model_options = dict(_parse(o) for o in args.model_option)

    rows = []
    for anomaly_class in args.classes:
        run_dir = args.runs / f"class{anomaly_class}"
        model_config = ModelConfig(channels=1, width=args.width, **model_options)
        train_config = TrainConfig(source="fashion-mnist", anomaly_class=anomaly_class, seed=args.seed, method="adegan",
                                   epochs=args.epochs, max_train_images=args.max_train_images, **train_options)
        start = time.perf_counter()
        result = train(model_config, train_config, run_dir, force=True, progress=False)
        train_seconds = time.perf_counter() - start
        metrics = evaluate_run(run_dir, plots=False)
        rows.append({"anomaly_class": anomaly_class, "train_seconds": round(train_seconds, 1),
                     "images_per_second": round(result.images_per_second, 1), **metrics})
        print(json.dumps({"class": anomaly_class, "auc": metrics["auc"]}), flush=True)

    aucs = {key: sum(r["auc"][key] for r in rows) / len(rows) for key in rows[0]["auc"]}
    save_results(args.results, args, {"mean_auc": aucs, "runs": rows})
    print(json.dumps({"mean_auc": aucs}, indent=2))


if __name__ == "__main__":
    main()
