"""Probe: what decoding a camera JPEG at reduced size would save, and how far the model input moves.

`adegan score` decodes a 2448 x 2048 mono JPEG in full and then shrinks it to the model size with
cv2.INTER_AREA (the shared to_model_uint8). libjpeg can decode at 1/2, 1/4 or 1/8 of the size in
the DCT domain (cv2.IMREAD_REDUCED_GRAYSCALE_2/4/8). This times, on one OpenCV thread, the full
decode, the shrink, and each reduced decode followed by the same shrink, and compares the model
inputs (largest, 99.9th percentile and mean absolute difference in gray levels, per --sizes) on
two kinds of frame:

- `blocky`: speed.py's camera frames, smooth texture in 8 px squares plus pixel noise. The squares
  line up with the JPEG blocks, the easy case for DCT scaling.
- `sharp`: shapes, text and 1-3 px lines at arbitrary positions, with sensor-like noise (sigma 3),
  saved at JPEG quality 90: edges inside blocks, as in real photos of parts and cracks.

Not a quality measurement of detection: no real full-resolution photos are at hand.

    python benchmarks/reduced_decode_probe.py [--sizes 128 256] [--out results/reduced_decode_probe.json]
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
from speed import CAMERA_SIZE, write_images

FACTORS = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


def milliseconds(function, repeats: int) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return round((time.perf_counter() - start) / repeats * 1000, 2)


def blocky_frames(count: int) -> list[np.ndarray]:
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder), 256, count, seed=2, camera=True)
        return [np.frombuffer(path.read_bytes(), np.uint8) for path in sorted(Path(folder).iterdir())]


def sharp_frame(rng: np.random.Generator) -> np.ndarray:
    width, height = CAMERA_SIZE
    image = np.full((height, width), 128, np.uint8)
    for _ in range(60):
        x, y = (int(v) for v in rng.integers(0, [width, height]))
        shade, kind = int(rng.integers(0, 256)), int(rng.integers(3))
        if kind == 0:
            cv2.circle(image, (x, y), int(rng.integers(5, 300)), shade, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(image, (x, y), (x + int(rng.integers(5, 400)), y + int(rng.integers(5, 400))), shade, -1)
        else:
            cv2.putText(image, "AB12", (x, y), cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.5, 4)), shade,
                        int(rng.integers(1, 4)))
    for _ in range(8):  # thin dark lines, like cracks
        start = rng.integers(0, [width, height])
        end = start + rng.integers(-400, 400, 2)
        cv2.line(image, tuple(int(v) for v in start), tuple(int(v) for v in end), 20, int(rng.integers(1, 4)))
    noisy = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    return cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]


def differences(frames: list[np.ndarray], size: int) -> dict:
    from adegan.runtime.images import to_model_uint8

    rows = {}
    references = [to_model_uint8(cv2.imdecode(data, cv2.IMREAD_GRAYSCALE), size, 1).astype(np.int16) for data in frames]
    for factor, flag in FACTORS.items():
        gaps = np.concatenate([np.abs(to_model_uint8(cv2.imdecode(data, flag), size, 1) - reference).ravel()
                               for data, reference in zip(frames, references)])
        rows[f"reduced_{factor}"] = {"decoded_long_side": CAMERA_SIZE[0] // factor, "max_abs_difference": int(gaps.max()),
                                     "p99_9_abs_difference": round(float(np.percentile(gaps, 99.9)), 1),
                                     "mean_abs_difference": round(float(gaps.mean()), 3)}
    return rows


def timings(data: np.ndarray, size: int, repeats: int) -> dict:
    from adegan.runtime.images import to_model_uint8

    rows = {}
    for name, flag in {"full": cv2.IMREAD_GRAYSCALE, **{f"reduced_{f}": flag for f, flag in FACTORS.items()}}.items():
        decoded = cv2.imdecode(data, flag)
        rows[name] = {"decoded": list(decoded.shape),
                      "decode_ms": milliseconds(lambda flag=flag: cv2.imdecode(data, flag), repeats),
                      "shrink_ms": milliseconds(lambda decoded=decoded: to_model_uint8(decoded, size, 1), repeats)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="model image sizes")
    parser.add_argument("--frames", type=int, default=6, help="frames of each kind compared")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    kinds = {"blocky": blocky_frames(args.frames), "sharp": [sharp_frame(rng) for _ in range(args.frames)]}
    rows = {"timings_256px": {kind: timings(frames[0], 256, args.repeats) for kind, frames in kinds.items()},
            "differences": {kind: {f"{size}px": differences(frames, size) for size in args.sizes}
                            for kind, frames in kinds.items()}}
    print(json.dumps(rows, indent=1))
    if args.out:
        save_results(args.out, args, rows)


if __name__ == "__main__":
    main()
