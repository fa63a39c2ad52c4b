"""The bundle contract: what export writes and the runtime reads, in one place.

A bundle is a folder with the manifest `adegan.json` and the model files below. Every model
file has one input, `images` (N, C, H, W) float32 in [0, 1] with a dynamic batch, and three
outputs: `recon_error` (N,) the detector's distance or reconstruction error, `pattern_probs`
(N, K) and `residual` (N, 1, H, W), the map of where the evidence is. The manifest carries
everything the score needs (mu_e, sigma_e, score mode, threshold) and the sha256 of every file.

Standard library only (numpy inside the one function that needs it), so the command line can
read the choices below without importing anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from adegan.errors import AdeganError

if TYPE_CHECKING:
    import numpy as np

MANIFEST_NAME = "adegan.json"
MANIFEST_KIND = "adegan-bundle"
SCHEMA_VERSION = 1
METADATA_KEY = "adegan"  # key of the manifest (less file hashes) in ONNX metadata_props

MODEL_FILE = "model.onnx"
MODEL_FP16_FILE = "model.fp16.onnx"
ENGINE_FILE = "model.engine"

INPUT_NAME = "images"
OUTPUT_NAMES = ("recon_error", "pattern_probs", "residual")

SCORE_MODES = ("cdf", "two-sided", "z")
BACKENDS = ("auto", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16")


def onnx_file(precision: str) -> str:
    """The bundle's ONNX file for a precision."""
    return MODEL_FP16_FILE if precision == "fp16" else MODEL_FILE


class InputError(AdeganError):
    """Images that do not fit the model."""


@dataclass
class Outputs:
    """The three graph outputs, as numpy arrays."""

    recon_error: np.ndarray  # (N,)
    pattern_probs: np.ndarray  # (N, K)
    residual: np.ndarray  # (N, 1, H, W)


class Backend(Protocol):
    """What ONNX Runtime and TensorRT both offer: run float images, say what they are, let go."""

    name: str
    on_cpu: bool  # runs on the CPU (a memory bank then scores fewer images per call)
    concurrent_calls: bool  # infer() may run in several threads at once

    def infer(self, images: np.ndarray) -> Outputs: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def validate_images(images: np.ndarray, manifest: dict) -> np.ndarray:
    """Check dtype, rank, channels and size against the manifest; returns a contiguous float32 array."""
    import numpy as np

    spec = manifest["input"]
    expected = (spec["channels"], spec["image_size"], spec["image_size"])
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        raise InputError(f"images must be a 4-D array (N, C, H, W), got {getattr(images, 'shape', type(images))}")
    if images.shape[1] != expected[0]:
        raise InputError(f"the model expects {expected[0]} channel(s) ({spec['colour_order']}), got {images.shape[1]}")
    if images.shape[2:] != expected[1:]:
        raise InputError(f"the model expects {expected[1]}x{expected[2]} images, got "
                         f"{images.shape[2]}x{images.shape[3]}; preprocess with adegan.runtime.images")
    if images.dtype != np.float32:
        raise InputError(f"images must be float32 in [0, 1], got {images.dtype}")
    return np.ascontiguousarray(images)
