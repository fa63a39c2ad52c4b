"""Probe: where `adegan score` spends its time beside the inference engine on photo-size images,
and what the levers named for it would give. In one process, on the same files and bundle:

  phases      score_files in one scoring thread whose calls use every CPU, its steps timed in
              place (read + decode + preprocess, float conversion, inference, CSV rows; "other"
              is the rest: stacking, the score, row dicts, the loop), ms per image, beside bare
              ORT on preloaded arrays through the same session and the same slices
  threads     score_files as `adegan score` runs it by default: one scoring thread per CPU,
              each call with its share of the CPUs (score_threads_ms)
  decode      read + decode + preprocess as shipped (colour decode, then gray), and decoding a gray
              file straight to gray (the same pixels for 8-bit gray PNGs), us per image, warm loop
  io_binding  session.run, and IO binding with every output bound by ORT, ms per image
  engine      bare ORT: one session of N intra-op threads (one scoring thread's), one thread, and N threads
              each running its own slices through a one-thread session ("lanes"), images/s

Every figure is the median of --repeats, the variants interleaved. Not a product path.

    python benchmarks/score_overhead_probe.py BUNDLE FOLDER [--batches 1 32] [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmark_results import save_results
from speed import slices


def timed(owner, name: str, totals: dict, key: str):
    """Wrap owner.name so its time adds to totals[key]; returns a function that unwraps it."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, original)


def scored(model, paths: list[str], batch: int):
    """score_files's summary for `paths`, its rows written to a temporary file."""
    from adegan.runtime.file_scoring import score_files

    with tempfile.TemporaryDirectory() as folder:
        return score_files(model, paths, Path(folder) / "s.csv", batch, progress=False, log=lambda m: None)


def threaded_ms(model, paths: list[str], batch: int) -> float:
    return scored(model, paths, batch).seconds / len(paths) * 1e3


def phases(model, paths: list[str], batch: int) -> dict:
    """score_files's time per image, split by step, ms."""
    from adegan.runtime import file_scoring, model as model_module

    totals = {"load": 0.0, "float": 0.0, "infer": 0.0, "write": 0.0}
    undo = [timed(file_scoring, "_load_all", totals, "load"), timed(model_module, "to_float", totals, "float"),
            timed(model.backend, "infer", totals, "infer"),
            timed(file_scoring.ResultWriter, "write", totals, "write")]
    try:
        summary = scored(model, paths, batch)
    finally:
        for restore in undo:
            restore()
    totals["other"] = summary.seconds - sum(totals.values())
    return {"total": summary.seconds / len(paths) * 1e3, **{k: v / len(paths) * 1e3 for k, v in totals.items()}}


def bare_ms(session, images: np.ndarray, batch: int, step: int | None) -> float:
    start = time.perf_counter()
    for begin, end in slices(len(images), batch, step):
        session.run(None, {"images": images[begin:end]})
    return (time.perf_counter() - start) / len(images) * 1e3


def io_binding_ms(session, images: np.ndarray, batch: int, step: int | None) -> float:
    binding = session.io_binding()
    names = [output.name for output in session.get_outputs()]
    start = time.perf_counter()
    for begin, end in slices(len(images), batch, step):
        binding.bind_cpu_input("images", images[begin:end])
        for name in names:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        binding.copy_outputs_to_cpu()
    return (time.perf_counter() - start) / len(images) * 1e3


def decode_us(paths: list[str], size: int, straight_to_gray: bool) -> float:
    import cv2

    from adegan.runtime.images import read_image, to_model_uint8

    start = time.perf_counter()
    for path in paths:
        if straight_to_gray:
            with open(path, "rb") as file:
                gray = cv2.imdecode(np.frombuffer(file.read(), np.uint8), cv2.IMREAD_GRAYSCALE)
            to_model_uint8(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), size, 1)
        else:
            to_model_uint8(read_image(path), size, 1)
    return (time.perf_counter() - start) / len(paths) * 1e6


def session(bundle: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])


def lanes_rate(one_thread, images: np.ndarray, batch: int, step: int | None, lanes: int) -> float:
    chunk = -(-len(images) // lanes)
    workers = [threading.Thread(target=bare_ms, args=(one_thread, images[i * chunk:(i + 1) * chunk], batch, step))
               for i in range(lanes)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    from adegan.runtime.backends import usable_cpus
    from adegan.runtime.images import list_image_names, read_image, to_float, to_model_uint8
    from adegan.runtime.model import BundleModel

    model, threaded = BundleModel(args.bundle), BundleModel(args.bundle, parallel_calls=usable_cpus())
    size, step, cpus = model.image_size, model.max_inference_batch, usable_cpus()
    paths = list_image_names(args.folder)
    images = to_float(np.stack([to_model_uint8(read_image(p), size, 1) for p in paths]))
    engine, one_thread = model.backend.session, session(args.bundle, 1)
    for warm in (engine, one_thread):
        bare_ms(warm, images[:4], 1, step)
    median = lambda values: round(float(np.median(values)), 4)  # noqa: E731
    rows = []
    for batch in args.batches:
        runs: dict[str, list] = {}
        for _ in range(args.repeats):
            for name, value in phases(model, paths, batch).items():
                runs.setdefault(f"score_{name}_ms", []).append(value)
            runs.setdefault("score_threads_ms", []).append(threaded_ms(threaded, paths, batch))
            runs.setdefault("bare_ort_ms", []).append(bare_ms(engine, images, batch, step))
            runs.setdefault("io_binding_ms", []).append(io_binding_ms(engine, images, batch, step))
            runs.setdefault("ort_images_per_second", []).append(1e3 / bare_ms(engine, images, batch, step))
            runs.setdefault("ort_one_thread_images_per_second", []).append(1e3 / bare_ms(one_thread, images, batch, step))
            runs.setdefault("ort_lanes_images_per_second", []).append(lanes_rate(one_thread, images, batch, step, cpus))
            for gray in (False, True):
                runs.setdefault(f"decode_{'gray' if gray else 'shipped'}_us", []).append(decode_us(paths[:300], size, gray))
        row = {"image_size": size, "batch": batch, "slice": min(batch, step or batch), "cpus": cpus,
               **{name: median(values) for name, values in runs.items()}}
        row["score_over_bare_ort"] = round(row["bare_ort_ms"] / row["score_total_ms"], 3)
        row["score_threads_over_bare_ort"] = round(row["bare_ort_ms"] / row["score_threads_ms"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    model.close()
    threaded.close()
    if args.out:
        save_results(args.out, args, {"rows": rows})


if __name__ == "__main__":
    main()
