"""Probe: could `adegan score` reach 0.90 of bare ONNX Runtime on small images by running the
model on each core separately ("lanes": each lane decodes its own batch and runs it through a
one-thread session) instead of one session over both cores? In one run, on the same files and
bundle, at each batch size:

  bare ORT, N threads          one session with one intra-op thread per usable CPU (score's setting)
  bare ORT, N lanes x 1 thread N threads, each running its own slices through a one-thread session
  decode alone                 read + decode + preprocess, one thread, nothing else running (us/image)
  decode inside score          the same, timed inside score_files's loop (us/image)
  score                        score_files as shipped (decoding in the scoring thread on 1-2 CPUs)
  score, thread lanes          N threads, each: decode + infer (one-thread session) + rows; rows written in order
  score, process lanes         N processes, each with its own one-thread session; rows sent back in order
  bound                        N / (one-thread ORT time + decode alone), the rate of a pipeline that
                               overlapped everything perfectly and lost nothing to caches or the GIL

Rates are the best of --repeats. Not a product path: the lanes are hand-built here to measure them.

    python benchmarks/score_lanes_probe.py BUNDLE FOLDER [--batches 1 32] [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from score_threads_probe import bare

_model = None  # each process lane's model


def one_thread_model(bundle: Path):
    from adegan.runtime import backends
    from adegan.runtime.model import BundleModel

    cpus = backends.usable_cpus
    backends.usable_cpus = lambda: 1  # the backend gives ORT one intra-op thread per usable CPU
    try:
        return BundleModel(bundle)
    finally:
        backends.usable_cpus = cpus


def score_batch(model, batch: list[str]) -> list[dict]:
    from adegan.runtime import file_scoring

    return file_scoring._score_batch(model, batch, file_scoring._load_all(model, batch), None)


def _start_lane(bundle: Path) -> None:
    global _model
    _model = one_thread_model(bundle)


def _lane_batch(batch: list[str]) -> list[dict]:
    return score_batch(_model, batch)


def write_in_order(results, out: Path) -> None:
    from adegan.runtime.file_scoring import ResultWriter

    writer = ResultWriter(out, False, None)
    for rows in results:
        writer.write(rows)
    writer.close()


def bare_lanes(bundle: Path, images: np.ndarray, batch: int, lanes: int) -> float:
    model = one_thread_model(bundle)
    session = model.backend.session
    session.run(None, {"images": images[:batch]})

    def lane(index: int) -> None:
        for begin in range(index * batch, len(images), lanes * batch):
            session.run(None, {"images": images[begin:begin + batch]})

    start = time.perf_counter()
    with ThreadPoolExecutor(lanes) as pool:
        list(pool.map(lane, range(lanes)))
    return len(images) / (time.perf_counter() - start)


def decode_alone(paths: list[str], size: int) -> float:
    from adegan.runtime.images import read_image, to_model_uint8

    start = time.perf_counter()
    for path in paths:
        to_model_uint8(read_image(path), size, 1)
    return (time.perf_counter() - start) / len(paths) * 1e6


def score_shipped(bundle: Path, paths: list[str], batch: int) -> tuple[float, float]:
    """(images/s, decode us per image inside the loop)."""
    from adegan.runtime import file_scoring
    from adegan.runtime.model import BundleModel

    decoding, load_all = [0.0], file_scoring._load_all

    def timed(model, batch_paths):
        start = time.perf_counter()
        loaded = load_all(model, batch_paths)
        decoding[0] += time.perf_counter() - start
        return loaded

    file_scoring._load_all = timed
    try:
        with BundleModel(bundle) as model, tempfile.TemporaryDirectory() as folder:
            summary = file_scoring.score_files(model, paths, Path(folder) / "s.csv", batch, progress=False,
                                               log=lambda m: None)
    finally:
        file_scoring._load_all = load_all
    return summary.images_per_second, decoding[0] / len(paths) * 1e6


def score_thread_lanes(bundle: Path, paths: list[str], batch: int, lanes: int) -> float:
    model = one_thread_model(bundle)
    batches = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(lanes) as pool:
        start = time.perf_counter()
        write_in_order(pool.map(lambda b: score_batch(model, b), batches), Path(folder) / "s.csv")
        return len(paths) / (time.perf_counter() - start)


def score_process_lanes(pool, paths: list[str], batch: int) -> float:
    batches = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_in_order(pool.imap(_lane_batch, batches), Path(folder) / "s.csv")
        return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    from benchmark_results import save_results

    from adegan.runtime.backends import usable_cpus
    from adegan.runtime.images import list_image_names, read_image, to_float, to_model_uint8

    lanes, size = usable_cpus(), json.loads((args.bundle / "adegan.json").read_text())["input"]["image_size"]
    paths = list_image_names(args.folder)
    images = to_float(np.stack([to_model_uint8(read_image(p), size, 1) for p in paths]))
    rows = []
    with multiprocessing.get_context("forkserver").Pool(lanes, _start_lane, (args.bundle,)) as pool:
        pool.map(_lane_batch, [paths[:8]] * lanes)  # every lane started and warm
        for batch in args.batches:
            best = lambda run: max(run() for _ in range(args.repeats))  # noqa: E731
            shipped = max((score_shipped(args.bundle, paths, batch) for _ in range(args.repeats)),
                          key=lambda result: result[0])
            one_thread = 1e6 / best(lambda: bare_lanes(args.bundle, images, batch, 1))
            decode = min(decode_alone(paths, size) for _ in range(args.repeats))
            row = {"batch": batch, "lanes": lanes,
                   "bare_ort_threads": round(best(lambda: bare(args.bundle, images, batch, lanes)), 1),
                   "bare_ort_lanes": round(best(lambda: bare_lanes(args.bundle, images, batch, lanes)), 1),
                   "ort_one_thread_us_per_image": round(one_thread, 1),
                   "decode_alone_us_per_image": round(decode, 1),
                   "decode_inside_score_us_per_image": round(shipped[1], 1),
                   "score": round(shipped[0], 1),
                   "score_thread_lanes": round(best(lambda: score_thread_lanes(args.bundle, paths, batch, lanes)), 1),
                   "score_process_lanes": round(best(lambda: score_process_lanes(pool, paths, batch)), 1),
                   "bound": round(lanes * 1e6 / (one_thread + decode), 1)}
            for name in ("score", "score_thread_lanes", "score_process_lanes", "bound"):
                row[f"{name}_over_bare_ort_threads"] = round(row[name] / row["bare_ort_threads"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        save_results(args.out, args, {"rows": rows})


if __name__ == "__main__":
    main()
