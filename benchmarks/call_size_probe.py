"""Probe: how a bundle's inference rate on a CPU depends on the images per call, with one scoring
thread and with two side by side (each with its share of the CPUs, as `adegan score` opens them).
Tells whether score's threads should make calls of a whole batch or of a piece of it.

    python benchmarks/call_size_probe.py BUNDLE FOLDER [--calls 8 16 32 64] [--out results/x.json]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np


def images_per_second(model, inputs: np.ndarray, call: int, threads: int) -> float:
    def infer(part: np.ndarray) -> None:
        for start in range(0, len(part), call):
            model.score_uint8(part[start:start + call])

    infer(inputs[:call])  # warm-up
    workers = [threading.Thread(target=infer, args=(inputs[index::threads],)) for index in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return round(len(inputs) / (time.perf_counter() - start), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--calls", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from adegan.runtime.images import list_image_names
    from adegan.runtime.model import BundleModel

    with BundleModel(args.bundle, parallel_calls=2) as model:
        paths = list_image_names(args.folder)[:args.images]
        inputs = np.stack([model.load(path)[1] for path in paths])
        rows = [{"images_per_call": call, "one_thread": images_per_second(model, inputs, call, 1),
                 "two_threads": images_per_second(model, inputs, call, 2)} for call in args.calls]
    for row in rows:
        print(json.dumps(row))
    if args.out:
        from benchmark_results import save_results

        save_results(args.out, args, {"rows": rows})


if __name__ == "__main__":
    main()
