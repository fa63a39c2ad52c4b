"""Probe: where `adegan score` loses time against bare ONNX Runtime on small images, and which
thread settings win. In one process, on the same files and bundle: bare ORT on preloaded arrays
(ORT defaults, and one intra-op thread), then score_files with each decode-worker count (0:
decoding in the scoring thread), with ORT's intra-op threads spinning (ORT's default) or not,
several repeats each (best kept).

Written when `--workers` counted decoding threads (its results up to 2026-12-05, afternoon). Since
then `score` runs scoring threads that share the CPUs (benchmarks/score_overhead_probe.py measures
those); here the worker counts now mean scoring threads whose calls each use every CPU.

    python benchmarks/score_threads_probe.py BUNDLE FOLDER [--repeats 3] [--workers 0 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def bare(bundle: Path, images: np.ndarray, batch: int, threads: int | None, spinning: bool = True) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    session.run(None, {"images": images[:batch]})
    start = time.perf_counter()
    for begin in range(0, len(images), batch):
        session.run(None, {"images": images[begin:begin + batch]})
    return len(images) / (time.perf_counter() - start)


def scored(bundle: Path, paths: list[str], batch: int, workers: int, spinning: bool) -> float:
    import onnxruntime as ort

    from adegan.runtime.backends import usable_cpus
    from adegan.runtime.file_scoring import score_files
    from adegan.runtime.model import BundleModel

    with BundleModel(bundle) as model, tempfile.TemporaryDirectory() as folder:
        if not spinning:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = usable_cpus()
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            model.backend.session = ort.InferenceSession(str(bundle / "model.onnx"), options,
                                                         providers=["CPUExecutionProvider"])
        summary = score_files(model, paths, Path(folder) / "s.csv", batch, workers=workers, progress=False,
                              log=lambda m: None)
    return summary.images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4], help="decode-worker counts")
    parser.add_argument("--spinning", choices=["both", "on"], default="both", help="ORT spinning settings to try")
    args = parser.parse_args()
    from adegan.runtime.images import read_image, to_float, to_model_uint8

    manifest = json.loads((args.bundle / "adegan.json").read_text())
    size = manifest["input"]["image_size"]
    paths = sorted(str(p) for p in args.folder.glob("*.png"))
    images = to_float(np.stack([to_model_uint8(read_image(p), size, 1) for p in paths]))
    for batch in args.batches:
        rows = {"bare ORT defaults": lambda: bare(args.bundle, images, batch, None),
                "bare ORT 1 thread": lambda: bare(args.bundle, images, batch, 1),
                "bare ORT no spinning": lambda: bare(args.bundle, images, batch, None, False)}
        for workers in args.workers:
            for spinning in (True, False) if args.spinning == "both" else (True,):
                rows[f"score workers {workers} spinning {spinning}"] = \
                    lambda w=workers, s=spinning: scored(args.bundle, paths, batch, w, s)
        results = {name: round(max(run() for _ in range(args.repeats)), 1) for name, run in rows.items()}
        print(json.dumps({"batch": batch, **results}), flush=True)


if __name__ == "__main__":
    main()
