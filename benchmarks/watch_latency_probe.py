"""Probe: where `adegan watch` spends a frame at batch 1. Times each step of the per-frame path on
one 640 x 480 colour frame, many times: preprocessing (the shared to_model_uint8), the backend's
inference, the score function, the row; and the whole path as watch runs it (score_uint8 + rows).
In such a loop the model's constants stay in the processor's caches; in watch, the source decodes a
frame between two inferences. So the inference is also timed after `--touch-mb` MB of other memory
was written, and, with `--video`, after each frame read from that video (as watch does).
Run it pinned to one core to see watch's one-core budget:

    taskset -c 0 python benchmarks/watch_latency_probe.py BUNDLE [--frames 2000] [--video V --out R.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def percentiles(function, frames: int, before=None) -> dict:
    """p50 and p99 ms of function(); `before` (untimed) runs ahead of each call."""
    for _ in range(50):
        function()
    times = []
    for _ in range(frames):
        if before is not None:
            before()
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return {"p50": round(float(np.percentile(times, 50)), 3), "p99": round(float(np.percentile(times, 99)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--touch-mb", type=int, nargs="*", default=[16, 64],
                        help="MB of memory written before each timed inference")
    parser.add_argument("--video", type=Path, help="a video whose next frame is read before each timed inference")
    parser.add_argument("--out", type=Path, help="results JSON")
    args = parser.parse_args()
    from adegan.runtime.images import to_float
    from adegan.runtime.model import BundleModel
    from adegan.runtime.score import abnormality_score

    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    with BundleModel(args.bundle) as model:
        batch = model.preprocess(frame)[np.newaxis]
        floats = to_float(batch)
        outputs = model.infer(floats)
        scores = model.score_uint8(batch)
        steps = {
            "preprocess": lambda: model.preprocess(frame),
            "to_float": lambda: to_float(batch),
            "infer": lambda: model.infer(floats),
            "score_function": lambda: abnormality_score(outputs.recon_error, outputs.pattern_probs, model.mu_e,
                                                        model.sigma_e, model.score_mode),
            "rows": lambda: scores.rows(),
            "whole_frame": lambda: model.score_uint8(model.preprocess(frame)[np.newaxis]).rows(),
        }
        timed = {name: percentiles(step, args.frames) for name, step in steps.items()}
        for megabytes in args.touch_mb:
            memory = np.zeros(megabytes << 18, np.float32)
            timed[f"infer_after_writing_{megabytes}_mb"] = percentiles(lambda: model.infer(floats), args.frames,
                                                                        before=lambda: memory.__iadd__(1.0))
        if args.video:
            timed["infer_after_reading_a_video_frame"] = percentiles(lambda: model.infer(floats), args.frames,
                                                                      before=looping_reader(args.video))
    print(json.dumps(timed, indent=1))
    if args.out:
        from benchmark_results import save_results

        save_results(args.out, args, timed)


def looping_reader(video: Path):
    """A function that reads the video's next frame, from the start again at its end."""
    import cv2

    capture = cv2.VideoCapture(str(video))

    def read() -> None:
        if not capture.read()[0]:
            capture.open(str(video))
            capture.read()
    return read


if __name__ == "__main__":
    main()
