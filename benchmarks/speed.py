"""Speed from one run: scoring beside the inference engine's own rate, and training per image size.

Scoring, with the default detector (a memory bank) at 32, 128 and 256 px, each on the same image
files and the same bundle, side by side:
  score        `adegan score` in its own process: list -> decode -> preprocess -> infer -> CSV
  bare_ort     the bundle's model.onnx on preloaded float arrays, one session using every core, in
               the slices the bundle gives such a call (score's threads, sharing the cores, cut smaller ones)
  torch_eager  the same detector in torch: decode + preprocess + forward + score, same slices, in a
               fresh process with glibc's default malloc (what a plain torch script gets: its
               largest tensors are mapped and unmapped by the kernel on every call)
  torch_eager_heap  the same, in a fresh process whose malloc serves every block from its heap
               and keeps what is freed (glibc M_MMAP_MAX 0, trim threshold 1 GB): no page faults
               after the first call, torch at its best here (at the cost of memory it never returns)
at batch 1 and at score's default batch (32; a memory bank splits it to what its bundle allows on
a CPU, cpu_inference_batch, which bare_ort and torch_eager use; score's threads split it further,
sharing that budget). Each rate is measured
--repeats times (default 3), the three interleaved, and the median is reported (every repeat is
in the JSON): short runs on a shared 2-core machine move by 20 %. Ratios: score / bare_ort, score / torch_eager
and score / torch_eager_heap. (Measured in this script's own process, torch eager depended on what ran
before it: after a 32 px build had left a large free heap, a 256 px patch bundle ran 1.5x faster than fresh.)

Watch: `adegan watch --video` at batch 1 on a 640 x 480 video, pinned to one core (taskset -c 0)
when taskset exists, ms per frame p50 / p99 from watch's own summary.

Training: images per second per image size (32, 64, 128, 256) for the memory-bank build (the
default's, or that of `--image-features` / `--learned-dims`, which also set the scored bundles')
and for one ADe-GAN train step (`--method adegan`), with GFLOP per image (torch's FLOP counter:
the memory bank's forward pass per image; the GAN's forward + backward per real image).

32 px images are the bundled Fashion-MNIST sample; 128 / 256 px images are generated textured
surfaces of 52 x 128 and 104 x 256 px (the aspect of KolektorSDD photos), so nothing outside
the repository is needed. Those files are near the model's size; a camera's are not, so one more
row scores `--camera-images` generated 2448 x 2048 mono JPEGs (a 5 MP industrial camera) with the
largest size's bundle: there decoding is a large part of the work, for score and torch eager alike.

    python benchmarks/speed.py                      # writes benchmarks/results/speed.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmark_results import save_results

SCORE_BATCH = 32  # adegan score's default --batch-size


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    noise = rng.normal(128, 18, (max(1, height // 4), max(1, width // 4))).astype(np.float32)
    return np.clip(cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


CAMERA_SIZE = (2448, 2048)  # width, height of a 5 MP industrial camera's frame


def write_images(folder: Path, size: int, count: int, seed: int, camera: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if camera:  # a few distinct frames, copied: decoding costs the same, writing them does not
        rng = np.random.default_rng(seed)
        frames = [cv2.imencode(".jpg", texture(rng, CAMERA_SIZE[1] // 8, CAMERA_SIZE[0] // 8).repeat(8, 0).repeat(8, 1)
                               + rng.integers(0, 4, CAMERA_SIZE[::-1], dtype=np.uint8))[1].tobytes() for _ in range(4)]
        for i in range(count):
            (folder / f"img_{i:06d}.jpg").write_bytes(frames[i % len(frames)])
        return
    if size == 32:
        sources = sorted(Path("samples/fashion-mnist/test").rglob("*.png"))
        data = [p.read_bytes() for p in sources]
        for i in range(count):
            (folder / f"img_{i:06d}.png").write_bytes(data[i % len(data)])
        return
    rng = np.random.default_rng(seed)
    for i in range(count):
        cv2.imwrite(str(folder / f"img_{i:06d}.png"), texture(rng, size, int(size * 104 / 256)))


def run_and_bundle(work: Path, size: int) -> tuple[Path, Path]:
    """Where make_bundle puts the training run and the bundle of a size."""
    return work / f"run{size}", work / f"bundle{size}"


def make_bundle(work: Path, size: int, bank_options: dict) -> tuple[Path, Path]:
    from adegan.export.exporter import ExportOptions, export_run
    from adegan.training.config import MemoryBankConfig, ModelConfig, TrainConfig
    from adegan.training.trainer import train

    source = Path("samples/fashion-mnist/train") if size == 32 else work / f"good{size}"
    if size != 32:
        write_images(source / "good", size, 120, seed=1)
    run, bundle = run_and_bundle(work, size)
    bank_config = MemoryBankConfig(**bank_options)
    train(ModelConfig(image_size=size, channels=1), TrainConfig(source=str(source)), run, progress=False,
          log=lambda m: None, bank_config=bank_config)
    export_run(run, ExportOptions(out=bundle), log=lambda m: None)
    return run, bundle


def model_inputs(paths: list, size: int, channels: int = 1) -> np.ndarray:
    """The files' float model inputs, preloaded for bare ONNX Runtime."""
    from adegan.runtime.images import read_image, to_float, to_model_uint8

    return to_float(np.stack([to_model_uint8(read_image(p), size, channels) for p in paths]))


def score_command(bundle: Path, folder: Path, out: Path, batch: int) -> dict:
    result = subprocess.run([sys.executable, "-m", "adegan", "score", str(folder), "--model", str(bundle),
                             "--out", str(out), "--batch-size", str(batch), "--json", "--no-progress"],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def slices(count: int, batch: int, max_inference_batch: int | None):
    step = min(batch, max_inference_batch or batch)
    for start in range(0, count, batch):
        end = min(start + batch, count)
        for inner in range(start, end, step):
            yield inner, min(inner + step, end)


def bare_onnxruntime(bundle: Path, images: np.ndarray, batch: int, max_inference_batch: int | None) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    session.run(None, {"images": images[:min(batch, max_inference_batch or batch)]})
    start = time.perf_counter()
    for begin, end in slices(len(images), batch, max_inference_batch):
        session.run(None, {"images": images[begin:end]})
    return len(images) / (time.perf_counter() - start)


def torch_eager(run: Path, paths: list[Path], size: int, batch: int, max_inference_batch: int | None,
                heap_only: bool = False) -> float:
    import torch

    from adegan.runtime.images import read_image, to_model_uint8
    from adegan.runtime.score import abnormality_score
    from adegan.training.inference import load_detector

    if heap_only:
        heap_only_malloc()
    detector, _, _, calibration, _ = load_detector(run, "cpu")

    def pipeline(chosen: list[Path]) -> None:
        for begin in range(0, len(chosen), batch):
            uint8 = np.stack([to_model_uint8(read_image(p), size, 1) for p in chosen[begin:begin + batch]])
            with torch.no_grad():
                for inner, end in slices(len(uint8), len(uint8), max_inference_batch):
                    distance, probs, _ = detector(torch.from_numpy(uint8[inner:end]).float() / 255.0)
                    abnormality_score(distance.numpy(), probs.numpy(), calibration.mu_e, calibration.sigma_e,
                                      calibration.score_mode)

    pipeline(paths[:batch])  # warm-up, as bare_onnxruntime has
    start = time.perf_counter()
    pipeline(paths)
    return len(paths) / (time.perf_counter() - start)


def heap_only_malloc() -> None:
    """glibc: serve every block from the heap and keep freed memory there (see torch_eager_heap)."""
    import ctypes

    from adegan.training import allocator

    if allocator.glibc():
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: no block of its own mapping
        libc.mallopt(allocator.M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD)


def in_fresh_process(function, *args, **options):
    """function(*args, **options) in a new interpreter, so nothing this process did before (its
    heap, its thread pools) changes the rate."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args, **options).result()


def scoring_rows(work: Path, size: int, count: int, bank_options: dict, repeats: int, camera: bool = False) -> dict:
    from adegan.runtime.model import inference_batch

    run, bundle = run_and_bundle(work, size) if camera else make_bundle(work, size, bank_options)
    manifest = json.loads((bundle / "adegan.json").read_text())
    max_inference_batch = inference_batch(manifest, on_cpu=True)  # the slices score cuts on a CPU
    folder = work / f"files{size}{'_camera' if camera else ''}"
    write_images(folder, size, count, seed=2, camera=camera)
    paths = sorted(folder.iterdir())
    preloaded = model_inputs(paths, size)
    rows = {"image_size": size, "images": count, "max_inference_batch": max_inference_batch,
            "bundle_mb": round(sum(f.stat().st_size for f in bundle.iterdir() if f.is_file()) / 1e6, 1)}
    if camera:
        rows["files"] = f"{CAMERA_SIZE[0]} x {CAMERA_SIZE[1]} mono JPEG"
    for batch in (1, SCORE_BATCH):
        rates = {"score": [], "bare_ort": [], "torch_eager": [], "torch_eager_heap": []}
        for repeat in range(repeats):  # interleaved, so a slow spell of the machine touches all four alike
            summary = score_command(bundle, folder, work / f"scores_{folder.name}_{batch}_{repeat}.csv", batch)
            rates["score"].append(summary["images_per_second"])
            rates["bare_ort"].append(bare_onnxruntime(bundle, preloaded, batch, max_inference_batch))
            for name, heap_only in (("torch_eager", False), ("torch_eager_heap", True)):
                rates[name].append(in_fresh_process(torch_eager, run, paths, size, batch, max_inference_batch, heap_only))
        score_rate, ort_rate, eager_rate, heap_rate = (float(np.median(rates[name])) for name in rates)
        rows[f"batch_{batch}"] = {
            "score_images_per_second": round(score_rate, 1),
            "score_ms_per_image": round(1000 / score_rate, 3),
            "bare_ort_images_per_second": round(ort_rate, 1),
            "torch_eager_images_per_second": round(eager_rate, 1),
            "score_over_bare_ort": round(score_rate / ort_rate, 3),
            "torch_eager_heap_images_per_second": round(heap_rate, 1),
            "score_over_torch_eager": round(score_rate / eager_rate, 3),
            "score_over_torch_eager_heap": round(score_rate / heap_rate, 3),
            "each_repeat": {name: [round(rate, 1) for rate in values] for name, values in rates.items()},
        }
        print(json.dumps({"size": size, "camera": camera, "batch": batch, **rows[f"batch_{batch}"]}), flush=True)
    return rows


def watch_row(work: Path, bundle: Path, frames: int) -> dict:
    from runtime_speed import write_noise_video

    video = write_noise_video(work, frames)
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    result = subprocess.run([*pin, sys.executable, "-m", "adegan", "watch", "--model", str(bundle), "--video",
                             str(video), "--json"], capture_output=True, text=True, check=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return {"pinned_to_one_core": bool(pin), "frames": summary["frames"],
            **{k: summary[k] for k in summary if k.startswith("latency_ms")}}


def flops_per_image(function, images: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        function()
    return counter.get_total_flops() / images / 1e9


def training_rows(sizes: list[int], bank_options: dict) -> list[dict]:
    import torch

    from adegan.training.allocator import keep_freed_memory
    from adegan.training.config import MemoryBankConfig, ModelConfig, TrainConfig
    from adegan.training.data import DataSplit
    from adegan.training.memory_bank import build_detector
    from adegan.training.trainer import Trainer

    keep_freed_memory()  # as `adegan train` does
    rows, rng = [], np.random.default_rng(0)
    for size in sizes:
        model_config = ModelConfig(image_size=size, channels=1)
        count = 2000 if size <= 64 else 200
        images = np.stack([texture(rng, size, size)[None] for _ in range(count)])
        held_out = images[:100]
        start = time.perf_counter()
        bank_config = MemoryBankConfig(**bank_options)
        detector, facts = build_detector(model_config, bank_config, images, "cpu", 0, held_out)
        bank_rate = count / (time.perf_counter() - start)
        sample = torch.from_numpy(images[:8]).float() / 255.0
        with torch.no_grad():
            bank_gflop = flops_per_image(lambda: detector(sample), 8)
        batch = 64 if size <= 64 else 8
        trainer = Trainer(model_config, TrainConfig(batch_size=batch, method="adegan"),
                          DataSplit(train=images[:batch * 4], calibration=images[:16], channels=1), Path("/tmp"),
                          log=lambda m: None, progress=False)
        order = trainer.epoch_order(0)
        trainer.train_step(trainer.real_batch(order, 0))  # warm-up
        steps = 10 if size <= 64 else 3
        start = time.perf_counter()
        for step in range(steps):
            trainer.train_step(trainer.real_batch(order, step % 4))
        gan_rate = steps * batch / (time.perf_counter() - start)
        gan_gflop = flops_per_image(lambda: trainer.train_step(trainer.real_batch(order, 0)), batch)
        rows.append({"image_size": size, "memory_bank_images_per_second": round(bank_rate, 1),
                     "memory_bank_rows": facts.rows_kept, "memory_bank_gflop_per_image": round(bank_gflop, 3),
                     "adegan_images_per_second": round(gan_rate, 1), "adegan_batch": batch,
                     "adegan_gflop_per_image": round(gan_gflop, 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--score-sizes", type=int, nargs="+", default=[32, 128, 256])
    parser.add_argument("--images", type=int, nargs="+", default=[4000, 640, 544],
                        help="files scored per size (same order as --score-sizes); at least 16 batches of 32, "
                        "so that score's threads take whole batches, as in any job of a few hundred files")
    parser.add_argument("--camera-images", type=int, default=48,
                        help="2448 x 2048 mono JPEGs scored with the last --score-sizes bundle (0: no such row)")
    parser.add_argument("--train-sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--watch-frames", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3, help="measurements per rate; the median is reported")
    parser.add_argument("--image-features", choices=["pixels", "learned", "pixels+learned"],
                        help="the bank's whole-image features (default: adegan train's for the size)")
    parser.add_argument("--learned-dims", type=int, help="principal directions the learned features keep "
                        "(default: adegan train's, 64)")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/speed.json"))
    args = parser.parse_args()
    import torch

    bank_options = {key: value for key, value in (("image_features", args.image_features),
                                                   ("learned_dims", args.learned_dims)) if value is not None}
    work = Path(tempfile.mkdtemp())
    try:
        scoring = [scoring_rows(work, size, count, bank_options, args.repeats)
                   for size, count in zip(args.score_sizes, args.images)]
        if args.camera_images:
            scoring.append(scoring_rows(work, args.score_sizes[-1], args.camera_images, bank_options, args.repeats,
                                        camera=True))
        watch = watch_row(work, work / f"bundle{args.score_sizes[0]}", args.watch_frames)
        print(json.dumps({"watch": watch}), flush=True)
        training = training_rows(args.train_sizes, bank_options)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save_results(args.results, args, {"scoring": scoring, "watch": watch, "training": training},
                 f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")


if __name__ == "__main__":
    main()
