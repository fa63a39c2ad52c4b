"""A loaded bundle, ready to score images: manifest + backend + the shared numpy score."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adegan.runtime.backends import open_backend, usable_cpus
from adegan.runtime.bundle import load_manifest
from adegan.runtime.contract import OUTPUT_NAMES, Outputs
from adegan.runtime.images import read_image, to_float, to_model_uint8
from adegan.runtime.score import abnormality_score


def inference_batch(manifest: dict, on_cpu: bool, parallel_calls: int = 1) -> int | None:
    """Most images per inference call, None for no limit. A memory bank's patch-distance matrix
    grows with the batch; its bundle says how many images keep it near 256 MB of memory, and how
    many keep it near a CPU's cache (faster there), a budget that calls running at once share.
    Larger batches are split."""
    cpu_batch = manifest.get("cpu_inference_batch") if on_cpu else None
    if cpu_batch:
        return max(1, int(cpu_batch) // parallel_calls)
    return int(manifest.get("max_inference_batch") or 0) or None


@dataclass
class Scores:
    score: np.ndarray  # A(x), (N,)
    anomalous: np.ndarray  # score > threshold, (N,) bool
    outputs: Outputs

    def rows(self) -> list[dict]:
        """One dict of plain Python numbers per image (whole columns converted at once: per-element
        numpy scalars cost more than the rest of a row on small images)."""
        probs = self.outputs.pattern_probs
        columns = zip(self.score.tolist(), self.outputs.recon_error.tolist(), probs.argmax(axis=1).tolist(),
                      probs.max(axis=1).tolist(), self.anomalous.tolist())
        return [{"score": score, "recon_error": error, "pattern": pattern, "pattern_prob": prob,
                 "verdict": "anomaly" if anomalous else "normal"}
                for score, error, pattern, prob, anomalous in columns]


class BundleModel:
    """Preprocess -> infer -> score, exactly as training evaluated it. A context manager: leaving
    the `with` block releases the backend (ORT session, TensorRT buffers and stream).

    `parallel_calls`: how many threads will score at once. The CPUs are shared among them (ONNX
    Runtime gives each call usable CPUs / parallel_calls threads), and a backend that cannot run
    two calls at once (TensorRT's one execution context) takes them in turn."""

    def __init__(self, bundle: Path, backend: str = "auto", precision: str = "fp32",
                 threshold: float | None = None, verify: bool = True, parallel_calls: int = 1):
        self.bundle = Path(bundle)
        self.manifest = load_manifest(self.bundle, verify=verify)
        self.parallel_calls = max(1, parallel_calls)
        threads = max(1, usable_cpus() // self.parallel_calls)
        self.backend = open_backend(self.bundle, self.manifest, backend, precision, verify, threads)
        self.turns = None if self.backend.concurrent_calls or self.parallel_calls == 1 else threading.Lock()
        score = self.manifest["score"]
        self.mu_e, self.sigma_e, self.score_mode = score["mu_e"], score["sigma_e"], score["score_mode"]
        self.threshold = float(score["threshold"] if threshold is None else threshold)
        self.max_inference_batch = inference_batch(self.manifest, self.backend.on_cpu, self.parallel_calls)
        self.channels = self.manifest["input"]["channels"]
        self.image_size = self.manifest["input"]["image_size"]

    def identity(self) -> dict:
        """What decides the rows this model writes: the bundle's files and calibration (a hash of
        both) and the threshold in use. Results files record it, so a resume cannot mix models."""
        import hashlib
        import json

        decisive = json.dumps({"files": self.manifest.get("files"), "score": self.manifest["score"]}, sort_keys=True)
        return {"bundle_sha256": hashlib.sha256(decisive.encode()).hexdigest(), "threshold": self.threshold}

    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """One decoded BGR (or gray) image -> uint8 (C, H, W) at the model size (the shared function)."""
        return to_model_uint8(image_bgr, self.image_size, self.channels)

    def load(self, path) -> tuple[np.ndarray, np.ndarray]:
        """Decode a file for this model: (the decoded image, its model input). A file stored as
        gray, for a gray model, is decoded straight to gray: no colour round trip, the same pixels.
        Raises ImageDecodeError for a file that cannot be read."""
        image = read_image(path, gray=self.channels == 1)
        return image, self.preprocess(image)

    def infer(self, images: np.ndarray) -> Outputs:
        """The backend's outputs for float images, in slices of at most max_inference_batch."""
        step = self.max_inference_batch
        if step is None or len(images) <= step:
            return self._backend_infer(images)
        parts = [self._backend_infer(images[start:start + step]) for start in range(0, len(images), step)]
        return Outputs(*(np.concatenate([getattr(part, name) for part in parts])
                         for name in OUTPUT_NAMES))

    def _backend_infer(self, images: np.ndarray) -> Outputs:
        if self.turns is None:
            return self.backend.infer(images)
        with self.turns:
            return self.backend.infer(images)

    def score_uint8(self, batch_uint8: np.ndarray) -> Scores:
        outputs = self.infer(to_float(batch_uint8))
        score = abnormality_score(outputs.recon_error, outputs.pattern_probs, self.mu_e, self.sigma_e, self.score_mode)
        return Scores(score, score > self.threshold, outputs)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "BundleModel":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
