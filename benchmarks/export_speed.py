"""Inference throughput of the exported detector: ONNX Runtime CPU fp32 and fp16 vs torch eager.

    python benchmarks/export_speed.py --batches 1 16 256

Uses the default model (32x32 gray, width 64, K = 10) with fresh weights (speed does not depend
on the values), exports it exactly like `adegan export --fp16`, and times each path on the same
random batch after a warm-up. Writes benchmarks/results/export_speed.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from benchmark_results import save_results

from adegan.export.onnx import onnx_fp32_to_fp16, torch2onnx
from adegan.training.config import ModelConfig
from adegan.training.model import Detector, Extractor, Generator


def images_per_second(run, images: np.ndarray, min_seconds: float = 2.0) -> float:
    run(images)  # warm-up
    run(images)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        run(images)
        count += len(images)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 256])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/export_speed.json"))
    args = parser.parse_args()
    config = ModelConfig(image_size=args.image_size, channels=args.channels)
    torch.manual_seed(0)
    detector = Detector(Generator(config), Extractor(config)).eval()
    folder = Path(tempfile.mkdtemp())
    torch2onnx(detector, folder / "model.onnx", config.channels, config.image_size)
    onnx_fp32_to_fp16(folder / "model.onnx", folder / "model.fp16.onnx")
    sessions = {name: ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
                for name in ("model.onnx", "model.fp16.onnx")}

    def torch_eager(images):
        with torch.no_grad():
            detector(torch.from_numpy(images))

    paths = {"torch eager fp32": torch_eager,
             "ORT CPU fp32": lambda x: sessions["model.onnx"].run(None, {"images": x}),
             "ORT CPU fp16": lambda x: sessions["model.fp16.onnx"].run(None, {"images": x})}
    rows = []
    for batch in args.batches:
        images = np.random.default_rng(0).random((batch, config.channels, config.image_size, config.image_size),
                                                 dtype=np.float32)
        for name, run in paths.items():
            rows.append({"path": name, "batch": batch, "images_per_second": round(images_per_second(run, images), 1)})
            print(json.dumps(rows[-1]), flush=True)
    save_results(args.results, args,
                 {"file_bytes": {name: (folder / name).stat().st_size for name in sessions}, "results": rows},
                 f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}")


if __name__ == "__main__":
    main()
