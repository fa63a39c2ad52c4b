"""Probe: do two threads decoding image files side by side go faster than one, and does `score`
gain from letting one scoring thread decode small images at a time? In one process, on the
same files and bundle, medians of --repeats, the variants interleaved:

  decode      read + decode + preprocess of every file, in one thread and in two threads
              (each half of the files, in pieces of 16), us per image
  score       score_files as `adegan score` runs it by default (one scoring thread per CPU, each
              call with its share of the CPUs), with the decoding turns as shipped and with them
              turned off (every piece decoded side by side), beside bare ORT on preloaded arrays
              (one session using every CPU, the same batch and slices), ms per image and the ratio

With --sides, only the decode rows, on generated square textures of each side (2,000 PNGs each):
where two decoding threads stop losing to one.

Not a product path.

    python benchmarks/decoding_turns_probe.py BUNDLE FOLDER [--images 4000] [--batch 32] [--repeats 5] [--out FILE]
    python benchmarks/decoding_turns_probe.py BUNDLE --sides 28 40 48 64 [--repeats 7] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmark_results import save_results
from score_overhead_probe import bare_ms, scored, session


def decode_us(model, paths: list[str], threads: int) -> float:
    """read + decode + preprocess of `paths` split among `threads` threads, in pieces of 16."""
    from adegan.runtime.file_scoring import _load_all

    share = -(-len(paths) // threads)

    def decode(chunk: list[str]) -> None:
        for start in range(0, len(chunk), 16):
            _load_all(model, chunk[start:start + 16])

    workers = [threading.Thread(target=decode, args=(paths[i * share:(i + 1) * share],)) for i in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - start) / len(paths) * 1e6


def score_ms(model, paths: list[str], batch: int, turns: bool) -> float:
    from adegan.runtime import file_scoring

    shipped = file_scoring._load_all
    if not turns:
        file_scoring._load_all = lambda model, piece, turns=None: shipped(model, piece, None)
    try:
        return scored(model, paths, batch).seconds / len(paths) * 1e3
    finally:
        file_scoring._load_all = shipped


def decode_rows(model, sides: list[int], repeats: int) -> list[dict]:
    """Decode in one and in two threads on 2,000 generated textures per side."""
    import cv2

    from speed import texture

    rows, rng = [], np.random.default_rng(0)
    for side in sides:
        with tempfile.TemporaryDirectory() as folder:
            paths = [str(Path(folder) / f"{index:05d}.png") for index in range(2000)]
            for path in paths:
                cv2.imwrite(path, texture(rng, side, side))
            runs = {"decode_one_thread_us": [], "decode_two_threads_us": []}
            for _ in range(repeats):
                runs["decode_one_thread_us"].append(decode_us(model, paths, 1))
                runs["decode_two_threads_us"].append(decode_us(model, paths, 2))
        rows.append({"image_pixels": f"{side} x {side}", **{name: round(statistics.median(values), 1)
                                                             for name, values in runs.items()}})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("folder", type=Path, nargs="?")
    parser.add_argument("--sides", type=int, nargs="+", help="decode rows only, on generated squares of these sides")
    parser.add_argument("--images", type=int, default=4000, help="files used, the first in sorted order")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from adegan.runtime.backends import usable_cpus
    from adegan.runtime.images import list_image_names, read_image, to_float
    from adegan.runtime.model import BundleModel, inference_batch

    cpus = usable_cpus()
    if args.sides or args.folder is None:
        model = BundleModel(args.bundle, parallel_calls=cpus)
        rows = decode_rows(model, args.sides or [28, 40, 48, 64], args.repeats)
        if args.out:
            save_results(args.out, args, {"rows": rows})
        return
    paths = list_image_names(args.folder)[:args.images]
    model = BundleModel(args.bundle, parallel_calls=cpus)
    images = to_float(np.stack([model.preprocess(read_image(path)) for path in paths]))
    engine = session(args.bundle, cpus)
    step = inference_batch(model.manifest, model.backend.on_cpu)  # one call's slice when it has every CPU
    variants = {"decode_one_thread_us": lambda: decode_us(model, paths, 1),
                "decode_two_threads_us": lambda: decode_us(model, paths, 2),
                "bare_ort_ms": lambda: bare_ms(engine, images, args.batch, step),
                "score_with_turns_ms": lambda: score_ms(model, paths, args.batch, True),
                "score_without_turns_ms": lambda: score_ms(model, paths, args.batch, False)}
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, measure in variants.items():
            runs.setdefault(name, []).append(measure())
    height, width = read_image(paths[0]).shape[:2]
    row = {"image_pixels": f"{width} x {height}", "model_size": model.image_size, "batch": args.batch, "cpus": cpus,
           **{name: round(statistics.median(values), 4) for name, values in runs.items()}}
    row["score_with_turns_over_bare_ort"] = round(row["bare_ort_ms"] / row["score_with_turns_ms"], 3)
    row["score_without_turns_over_bare_ort"] = round(row["bare_ort_ms"] / row["score_without_turns_ms"], 3)
    row["each_repeat"] = {name: [round(value, 4) for value in values] for name, values in runs.items()}
    print(row, flush=True)
    if args.out:
        save_results(args.out, args, {"rows": [row]})


if __name__ == "__main__":
    main()
