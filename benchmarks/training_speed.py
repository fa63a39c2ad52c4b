"""Training throughput (real images/s through both stages) of the default model.

    python benchmarks/training_speed.py --steps 40

Times `Trainer.train_step` on random data after a warm-up, for gray and colour 32x32 models
(and any other --sizes), and writes benchmarks/results/training_speed.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmark_results import save_results

from adegan.training.config import ModelConfig, TrainConfig
from adegan.training.data import DataSplit
from adegan.training.trainer import Trainer


def measure(image_size: int, channels: int, batch_size: int, steps: int, device: str) -> dict:
    config = ModelConfig(image_size=image_size, channels=channels)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size * 4, channels, image_size, image_size), dtype=np.uint8)
    data = DataSplit(train=images, calibration=images[:16], channels=channels)
    trainer = Trainer(config, TrainConfig(batch_size=batch_size, device=device, method="adegan"), data, Path("/tmp"),
                      log=lambda m: None, progress=False)
    order = trainer.epoch_order(0)
    for _ in range(5):  # warm-up
        trainer.train_step(trainer.real_batch(order, 0))
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(steps):
        losses = trainer.train_step(trainer.real_batch(order, step % 4))
    float(losses["recon"])  # wait for the device
    seconds = time.perf_counter() - start
    return {"image_size": image_size, "channels": channels, "batch_size": batch_size, "steps": steps,
            "device": str(trainer.device), "images_per_second": round(steps * batch_size / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/training_speed.json"))
    args = parser.parse_args()
    rows = [measure(size, channels, args.batch_size, args.steps, args.device)
            for size in args.sizes for channels in (1, 3)]
    for row in rows:
        print(json.dumps(row), flush=True)
    save_results(args.results, args, {"results": rows},
                 f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")


if __name__ == "__main__":
    main()
