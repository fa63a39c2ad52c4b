"""Leave-one-class-out benchmark for MNIST, Fashion-MNIST and CIFAR-10, with ablations.

Every (variant, seed, anomaly class) is one training run through the library API (the same code
as `adegan train`), evaluated with `model.eval()` on its full test split after a fixed number of
epochs (no model selection). Each run writes one JSON under

    benchmarks/results/loco/<dataset>/<tier>/<variant>/seed<S>_class<C>.json

and is skipped when that file exists, so an interrupted benchmark continues where it stopped
(a half-trained run also resumes from its checkpoint). `summarize_loco.py` turns the JSONs into
the markdown tables.

Tiers (stated in every result file):
  cpu   10,000 training normals (seeded subsample), 5 epochs, width 32, seed 0:
        about 2 minutes per class on a 2-core CPU
  full  all training normals, 15 epochs, width 64 (the default model), seeds 0 1 2: for a GPU

Variants:
  default            ADe-GAN with the paper's defaults (--method adegan)
  no-ip              without L_ip (alpha = 0)
  no-interpolation   without same-pattern interpolation
  clustergan         the same networks and losses trained as ClusterGAN trains (--method clustergan:
                     WGAN-GP, 5 critic steps, no BatchNorm in D and E, L_recon trains E only)
  autoencoder        baseline: the same E and G trained as a plain autoencoder on L_recon only
                     (no pattern head, no L_sl, no L_ip, no discriminator)
  memory-bank        the memory bank on pixels (the product's default until 2026-12-03)
  memory-bank-D      the same with whole-image distance D: cosine, l2, max-z, mean-z
  memory-bank-learned, memory-bank-pixels+learned
                     the memory bank with features learned on the normals (alone, or beside the
                     pixel views: the product's default since 2026-12-03)
  memory-bank-coreset-N
                     pixels+learned with at most N bank rows (greedy coreset of the whole images);
                     and every learned feature; memory-bank-coreset-4096 was the product's default
                     from late 2026-12-03 (the named-feature variants above keep up to 16,384 rows,
                     the full bank at this tier, and every learned feature)
  memory-bank-dims-N 4,096 rows with the learned features on N principal directions;
                     memory-bank-dims-64 is the product's default since 2026-12-04
  --bank-option KEY=VALUE sets any MemoryBankConfig field for one-off probes

--baselines adds the simple baselines of baselines.py (PCA, pixel k-NN), computed on the same
split in the same run, to each result file (under "baselines").
  patterns-K         n_c = K (e.g. patterns-2 ... patterns-14, the paper's Table 2)
  any variant name with --train-option / --model-option for one-off probes

Examples:
  python benchmarks/leave_one_class_out.py mnist --tier cpu
  python benchmarks/leave_one_class_out.py mnist --tier cpu --variant no-ip --classes 1 9
  python benchmarks/leave_one_class_out.py mnist --tier cpu --variant budget --max-train-images all --epochs 10
  python benchmarks/leave_one_class_out.py cifar10 --tier full --jobs 4      # on a GPU
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from benchmark_results import save_results

DATASETS = ("mnist", "fashion-mnist", "cifar10")
TIERS = {
    "cpu": {"max_train_images": 10000, "epochs": 5, "width": 32, "seeds": [0]},
    "full": {"max_train_images": None, "epochs": 15, "width": 64, "seeds": [0, 1, 2]},
}
VARIANTS = {
    "default": ({"method": "adegan"}, {}),
    "no-ip": ({"method": "adegan", "use_ip_loss": False}, {}),
    "no-interpolation": ({"method": "adegan", "same_pattern_interpolation": False}, {}),
    "autoencoder": ({"method": "autoencoder"}, {}),
    "clustergan": ({"method": "clustergan"}, {}),
}
# Memory-bank variants by whole-image features, and by whole-image distance on pixels
# (MemoryBankConfig.distance), e.g. memory-bank-cosine. The pixel variants name their features,
# so their results keep their meaning when the product's default features change; they keep up to
# 16,384 rows (the full bank at the CPU tier), the product's default before late 2026-12-03, and
# every learned feature (the default before 2026-12-04). Coreset variants keep every learned feature too.
BANK_FEATURE_VARIANTS = {"memory-bank": "pixels", "memory-bank-learned": "learned",
                         "memory-bank-pixels+learned": "pixels+learned"}
BANK_DISTANCE_PREFIX = "memory-bank-"
BANK_CORESET_PREFIX = "memory-bank-coreset-"  # pixels+learned, at most N bank rows (greedy coreset)
BANK_DIMS_PREFIX = "memory-bank-dims-"  # pixels+learned, 4,096 rows, learned features on N directions
FULL_BANK_ROWS = 16384
RESULTS_ROOT = Path("benchmarks/results/loco")


def variant_options(name: str) -> tuple[dict, dict, dict]:
    """(TrainConfig changes, ModelConfig changes, MemoryBankConfig changes) of a named variant."""
    if name in BANK_FEATURE_VARIANTS:
        return {"method": "memory-bank"}, {}, {"image_features": BANK_FEATURE_VARIANTS[name],
                                               "bank_size": FULL_BANK_ROWS, "learned_dims": None}
    if name.startswith(BANK_DIMS_PREFIX):
        return {"method": "memory-bank"}, {}, {"image_features": "pixels+learned", "bank_size": 4096,
                                               "learned_dims": int(name.removeprefix(BANK_DIMS_PREFIX))}
    if name.startswith(BANK_CORESET_PREFIX):
        return {"method": "memory-bank"}, {}, {"image_features": "pixels+learned", "learned_dims": None,
                                               "bank_size": int(name.removeprefix(BANK_CORESET_PREFIX))}
    if name.startswith(BANK_DISTANCE_PREFIX):
        return {"method": "memory-bank"}, {}, {"distance": name.removeprefix(BANK_DISTANCE_PREFIX),
                                               "image_features": "pixels", "bank_size": FULL_BANK_ROWS}
    if name.startswith("patterns-"):
        return {"method": "adegan"}, {"n_patterns": int(name.removeprefix("patterns-"))}, {}
    return (*VARIANTS.get(name, ({"method": "adegan"}, {})), {})


def _parse(option: str) -> tuple[str, object]:
    key, _, value = option.partition("=")
    return key, json.loads(value)


def same_split_baselines(model_config, train_config) -> dict:
    """AUCs of the simple baselines on the run's own split (same seed, class, subsample, size)."""
    from baselines import baseline_aucs

    from adegan.training.data import load_benchmark

    data = load_benchmark(train_config.source, train_config.anomaly_class, train_config.seed,
                          model_config.image_size, train_config.calibration_fraction, train_config.dataset_path,
                          train_config.max_train_images, model_config.channels)
    return baseline_aucs(data.train, data.test, data.test_labels)


def run_one(job: dict) -> dict:
    """Train and evaluate one (variant, seed, class); returns the result row (also saved)."""
    import torch

    from adegan.training.config import MemoryBankConfig, ModelConfig, TrainConfig
    from adegan.training.evaluate import evaluate_run
    from adegan.training.trainer import train

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    run_dir = Path(job["run_dir"])
    model_config = ModelConfig(channels=job["channels"], width=job["width"], **job["model_options"])
    train_config = TrainConfig(source=job["dataset"], anomaly_class=job["anomaly_class"], seed=job["seed"],
                               epochs=job["epochs"], max_train_images=job["max_train_images"],
                               device=job["device"], dataset_path=job["dataset_path"], **job["train_options"])
    resume = (run_dir / "checkpoint.pt").exists()
    start = time.perf_counter()
    bank_config = MemoryBankConfig(**job["bank_options"])
    result = train(model_config, train_config, run_dir, resume=resume, force=not resume, progress=False,
                   log=lambda message: None, bank_config=bank_config)
    train_seconds = time.perf_counter() - start
    metrics = evaluate_run(run_dir, plots=False, device=job["device"], log=lambda message: None)
    if job["baselines"]:
        metrics["baselines"] = same_split_baselines(model_config, train_config)
    row = {"dataset": job["dataset"], "tier": job["tier"], "variant": job["variant"], "seed": job["seed"],
           "anomaly_class": job["anomaly_class"], "train_seconds": round(train_seconds, 1),
           "images_per_second": round(result.images_per_second, 1), "resumed": resume,
           "model_config": model_config.to_dict(), "train_config": train_config.to_dict(),
           **({"memory_bank_config": bank_config.to_dict()} if train_config.method == "memory-bank" else {}),
           **metrics}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("--tier", choices=TIERS, default="cpu")
    parser.add_argument("--variant", default="default")
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the tier's seeds")
    parser.add_argument("--epochs", type=int, help="default: the tier's")
    parser.add_argument("--max-train-images", help="training normals per run, or 'all' (default: the tier's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--baselines", action="store_true", help="also score the simple baselines on each split")
    parser.add_argument("--dataset-path", help="the dataset file or folder (default: $ADEGAN_DATASETS or the "
                        "library's default location)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (GPU: several small runs fill the device)")
    parser.add_argument("--runs", type=Path, default=Path("runs/loco"), help="where the run directories go")
    parser.add_argument("--results", type=Path, default=RESULTS_ROOT)
    parser.add_argument("--train-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a TrainConfig field, value as JSON (e.g. noise_loss_weight=100)")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a ModelConfig field, value as JSON (e.g. noise_std=1.0)")
    parser.add_argument("--bank-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a MemoryBankConfig field, value as JSON (e.g. neighbours=1)")
    args = parser.parse_args()

    tier = dict(TIERS[args.tier], **({"epochs": args.epochs} if args.epochs else {}))
    if args.max_train_images:
        tier["max_train_images"] = None if args.max_train_images == "all" else int(args.max_train_images)
    train_options, model_options, bank_options = variant_options(args.variant)
    train_options = {**train_options, **dict(_parse(o) for o in args.train_option)}
    model_options = {**model_options, **dict(_parse(o) for o in args.model_option)}
    bank_options = {**bank_options, **dict(_parse(o) for o in args.bank_option)}
    out_dir = args.results / args.dataset / args.tier / args.variant
    jobs = []
    for seed in args.seeds or tier["seeds"]:
        for anomaly_class in args.classes:
            result_path = out_dir / f"seed{seed}_class{anomaly_class}.json"
            if result_path.exists():
                print(f"skip {result_path} (exists)", flush=True)
                continue
            jobs.append({
                "dataset": args.dataset, "tier": args.tier, "variant": args.variant, "seed": seed,
                "anomaly_class": anomaly_class, "channels": 3 if args.dataset == "cifar10" else 1,
                "width": tier["width"], "epochs": tier["epochs"], "max_train_images": tier["max_train_images"],
                "device": args.device, "dataset_path": args.dataset_path, "bank_options": bank_options,
                "train_options": train_options, "model_options": model_options,
                "threads": 0 if args.jobs == 1 else 1, "baselines": args.baselines,
                "run_dir": str(args.runs / args.dataset / args.tier / args.variant / f"seed{seed}_class{anomaly_class}"),
                "result_path": str(result_path),
            })

    def finish(job: dict, row: dict) -> None:
        save_results(Path(job["result_path"]), args, row)
        print(json.dumps({"variant": job["variant"], "seed": job["seed"], "class": job["anomaly_class"],
                          "seconds": row["train_seconds"], "auc": {k: round(v, 4) for k, v in row["auc"].items()}}),
              flush=True)

    if args.jobs == 1:
        for job in jobs:
            finish(job, run_one(job))
    else:
        context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = {pool.submit(run_one, job): job for job in jobs}
            for future in as_completed(futures):  # saved as each finishes: a time limit loses little
                finish(futures[future], future.result())


if __name__ == "__main__":
    main()
