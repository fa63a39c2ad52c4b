"""Probe: loading a training folder on one thread against the default (threads for large images).

`adegan train`, `evaluate` and the defect benchmark load a folder with load_images. This times it
with workers=1 and with the default, on the quickstart's 2,000 Fashion-MNIST PNGs (small: they
stay on one thread) and on generated 2448 x 2048 mono JPEGs (speed.py's camera frames) into a
256 px model, medians of --repeats, and checks that both give the same array.

    python benchmarks/folder_loading_probe.py [--camera-images 64] [--out results/folder_loading_probe.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmark_results import save_results
from speed import write_images


def compare(paths: list[Path], size: int, repeats: int) -> dict:
    from adegan.runtime.images import load_images

    seconds, arrays = {"one_thread": [], "default": []}, {}
    for _ in range(repeats):
        for name, workers in (("one_thread", 1), ("default", None)):
            start = time.perf_counter()
            arrays[name] = load_images(paths, size, 1, workers=workers)[0]
            seconds[name].append(time.perf_counter() - start)
    assert np.array_equal(arrays["one_thread"], arrays["default"])
    medians = {name: round(float(np.median(values)), 3) for name, values in seconds.items()}
    return {"files": len(paths), "seconds": medians, "speedup": round(medians["one_thread"] / medians["default"], 2),
            "same_images": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=Path("samples/fashion-mnist/train"))
    parser.add_argument("--camera-images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from adegan.runtime.images import list_images

    rows = {"fashion_mnist_png_32px": compare(list_images(args.samples), 32, args.repeats)}
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder), 256, args.camera_images, seed=4, camera=True)
        rows["camera_jpeg_256px"] = compare(list_images(folder), 256, args.repeats)
    print(json.dumps(rows, indent=1))
    if args.out:
        save_results(args.out, args, rows)


if __name__ == "__main__":
    main()
