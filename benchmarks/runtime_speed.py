"""Runtime benchmark, side by side in one run:

1. end-to-end folder scoring (`adegan score`: decode + preprocess + ONNX Runtime + score + CSV),
2. bare ONNX Runtime inference on preloaded arrays (the ceiling),
3. a torch-eager pipeline doing the same work (decode + preprocess + torch + score),
4. `adegan watch` latency per frame at batch 1 on a 640x480 video,
5. peak memory (max RSS of the `adegan score` process) for 2,000 and 20,000 images.

    python benchmarks/runtime_speed.py --images 20000

Default model (32x32 gray, width 64, K = 10) trained for one short epoch on the bundled sample
(speed does not depend on the weights) and exported like `adegan export`.
Writes benchmarks/results/runtime_speed.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from benchmark_results import save_results


def make_bundle(work: Path) -> Path:
    from adegan.export.exporter import ExportOptions, export_run
    from adegan.training.config import ModelConfig, TrainConfig
    from adegan.training.trainer import train

    train(ModelConfig(), TrainConfig(source="samples/fashion-mnist/train", epochs=1, max_train_images=640, method="adegan"),
          work / "run", progress=False, log=lambda m: None)
    export_run(work / "run", ExportOptions(out=work / "bundle"), log=lambda m: None)
    return work / "bundle"


def make_images(folder: Path, count: int) -> None:
    """`count` 28x28 PNGs (copies of the sample images, renamed), like a production folder."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(Path("samples/fashion-mnist/test").rglob("*.png"))
    data = [p.read_bytes() for p in sources]
    for i in range(count):
        (folder / f"img_{i:06d}.png").write_bytes(data[i % len(data)])


# Peak RSS from /proc/self/status VmHWM: unlike ru_maxrss, it is not inherited from the parent
# across fork+exec (this script's parent process holds torch, ~0.5 GB).
MEASURED = """
import runpy, sys
sys.argv = ["adegan"] + sys.argv[1:]
try:
    runpy.run_module("adegan", run_name="__main__")
finally:
    peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
    print("PEAK_RSS_KB", peak, "TORCH", "torch" in sys.modules, file=sys.stderr)
"""


def run_score(bundle: Path, folder: Path, out: Path) -> dict:
    """`adegan score` in its own process; returns its summary, its own peak RSS, and whether torch was loaded."""
    result = subprocess.run([sys.executable, "-c", MEASURED, "score", str(folder), "--model", str(bundle),
                             "--out", str(out), "--json", "--no-progress"], capture_output=True, text=True, check=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    fields = result.stderr.strip().splitlines()[-1].split()
    summary["peak_rss_mb"] = round(int(fields[1]) / 1024, 1)
    summary["torch_imported"] = fields[3] == "True"
    return summary


def bare_onnxruntime(bundle: Path, count: int, batch: int = 32) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((batch, 1, 32, 32), dtype=np.float32)
    session.run(None, {"images": images})
    start = time.perf_counter()
    for _ in range(count // batch):
        session.run(None, {"images": images})
    return (count // batch) * batch / (time.perf_counter() - start)


def torch_pipeline(run_dir: Path, folder: Path, count: int, batch: int = 32) -> float:
    import torch

    from adegan.runtime.images import read_image, to_model_uint8
    from adegan.runtime.score import abnormality_score
    from adegan.training.inference import load_detector

    detector, _, _, calibration, _ = load_detector(run_dir, "cpu")
    paths = sorted(folder.glob("*.png"))[:count]
    start = time.perf_counter()
    for i in range(0, len(paths), batch):
        uint8 = np.stack([to_model_uint8(read_image(p), 32, 1) for p in paths[i:i + batch]])
        with torch.no_grad():
            recon_error, probs, _ = detector(torch.from_numpy(uint8).float() / 255.0)
        abnormality_score(recon_error.numpy(), probs.numpy(), calibration.mu_e, calibration.sigma_e)
    return len(paths) / (time.perf_counter() - start)


def write_noise_video(work: Path, frames: int) -> Path:
    """A 640 x 480 MJPG video of random frames (a camera's worth of pixels to decode)."""
    video = work / "line.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    writer.release()
    return video


def watch_latency(bundle: Path, work: Path, frames: int = 300) -> dict:
    video = write_noise_video(work, frames)
    result = subprocess.run([sys.executable, "-m", "adegan", "watch", "--model", str(bundle), "--video", str(video),
                             "--json"], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/runtime_speed.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    bundle = make_bundle(work)
    make_images(work / "small", 2000)
    make_images(work / "large", args.images)
    rows = {
        "score_2000": run_score(bundle, work / "small", work / "small.csv"),
        f"score_{args.images}": run_score(bundle, work / "large", work / "large.csv"),
        "bare_onnxruntime_images_per_second": round(bare_onnxruntime(bundle, 20000), 1),
        "torch_eager_pipeline_images_per_second": round(torch_pipeline(work / "run", work / "small", 2000), 1),
        "watch_640x480_batch1": watch_latency(bundle, work),
    }
    print(json.dumps(rows, indent=2))
    save_results(args.results, args, {"results": rows})


if __name__ == "__main__":
    main()
