"""Probe: what decoding a camera JPEG at reduced size would save, and how far the model input moves.

`adegan score` decodes a 2448 x 2048 mono JPEG in full and then shrinks it to the model size with
cv2.INTER_AREA (the shared to_model_uint8). libjpeg can decode at 1/2, 1/4 or 1/8 of the size in
the DCT domain (cv2.IMREAD_REDUCED_GRAYSCALE_2/4/8). This times, on one OpenCV thread, the full
decode, the shrink, and each reduced decode followed by the same shrink, and compares the model
inputs: the largest and the mean absolute difference in gray levels. Not a quality measurement:
the files are speed.py's generated camera frames (smooth texture plus pixel noise), not photos.

    python benchmarks/reduced_decode_probe.py [--size 256] [--out results/reduced_decode_probe.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmark_results import save_results
from speed import write_images


def milliseconds(function, repeats: int) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return round((time.perf_counter() - start) / repeats * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="the model's image size")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from adegan.runtime.images import to_model_uint8

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder), args.size, 4, seed=2, camera=True)
        data = [np.frombuffer(path.read_bytes(), np.uint8) for path in sorted(Path(folder).iterdir())]
    full = cv2.imdecode(data[0], cv2.IMREAD_GRAYSCALE)
    reference = to_model_uint8(full, args.size, 1).astype(np.int16)
    rows = {"full": {"decoded": list(full.shape),
                     "decode_ms": milliseconds(lambda: cv2.imdecode(data[0], cv2.IMREAD_GRAYSCALE), args.repeats),
                     "shrink_ms": milliseconds(lambda: to_model_uint8(full, args.size, 1), args.repeats)}}
    for factor, flag in ((2, cv2.IMREAD_REDUCED_GRAYSCALE_2), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
                         (8, cv2.IMREAD_REDUCED_GRAYSCALE_8)):
        reduced = cv2.imdecode(data[0], flag)
        difference = np.abs(to_model_uint8(reduced, args.size, 1).astype(np.int16) - reference)
        rows[f"reduced_{factor}"] = {
            "decoded": list(reduced.shape),
            "decode_ms": milliseconds(lambda flag=flag: cv2.imdecode(data[0], flag), args.repeats),
            "shrink_ms": milliseconds(lambda reduced=reduced: to_model_uint8(reduced, args.size, 1), args.repeats),
            "max_abs_difference": int(difference.max()), "mean_abs_difference": round(float(difference.mean()), 3)}
    print(json.dumps(rows, indent=1))
    if args.out:
        save_results(args.out, args, rows)


if __name__ == "__main__":
    main()
