"""`adegan bench`: throughput and latency of a bundle per backend, precision and batch size."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from adegan.errors import AdeganError
from adegan.runtime.backends import open_backend, tensorrt_available
from adegan.runtime.bundle import load_manifest
from adegan.runtime.contract import ENGINE_FILE, MODEL_FP16_FILE


def _variants(bundle: Path, manifest: dict) -> list[tuple[str, str]]:
    variants = [("onnxruntime", "fp32")]
    if (bundle / MODEL_FP16_FILE).is_file():
        variants.append(("onnxruntime", "fp16"))
    if (bundle / ENGINE_FILE).is_file() and tensorrt_available():
        variants.append(("tensorrt", "engine"))
    return variants


def benchmark(bundle: Path, batch_sizes: list[int], seconds: float = 2.0) -> list[dict]:
    """One row per (backend, precision, batch): images/s and per-batch latency percentiles (ms)."""
    bundle = Path(bundle)
    manifest = load_manifest(bundle)
    spec = manifest["input"]
    rng = np.random.default_rng(0)
    rows = []
    for kind, precision in _variants(bundle, manifest):
        try:
            backend = open_backend(bundle, manifest, kind, "fp16" if precision == "fp16" else "fp32")
        except AdeganError as exc:
            rows.append({"backend": kind, "precision": precision, "error": str(exc)})
            continue
        for batch in batch_sizes:
            images = rng.random((batch, spec["channels"], spec["image_size"], spec["image_size"]), dtype=np.float32)
            backend.infer(images)  # warm-up (TensorRT EP builds here)
            latencies = []
            start = time.perf_counter()
            while time.perf_counter() - start < seconds or len(latencies) < 5:
                tick = time.perf_counter()
                backend.infer(images)
                latencies.append((time.perf_counter() - tick) * 1000)
            total = time.perf_counter() - start
            rows.append({"backend": backend.describe(), "precision": precision, "batch": batch,
                         "images_per_second": round(batch * len(latencies) / total, 1),
                         "latency_ms_p50": round(float(np.percentile(latencies, 50)), 3),
                         "latency_ms_p95": round(float(np.percentile(latencies, 95)), 3)})
    return rows
