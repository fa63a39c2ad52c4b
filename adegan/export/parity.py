"""Parity checks run by every export: ONNX Runtime vs torch (fp32), and fp16 vs fp32.

Measured on the calibration images stored in the checkpoint, through the same numpy score
function the runtime uses, so the numbers say what changes for a deployed verdict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adegan.errors import AdeganError, MissingDependencyError
from adegan.runtime.contract import INPUT_NAME, MODEL_FILE, MODEL_FP16_FILE, OUTPUT_NAMES
from adegan.runtime.images import to_float
from adegan.runtime.score import Calibration, abnormality_score

FP32_RELATIVE_TOLERANCE = 1e-4
# A memory bank's distance to the nearest normal can be ~0 for a calibration image that nearly
# repeats a bank image, where a relative difference means nothing; there the difference is
# judged in units of the calibration spread sigma_e instead: what moves the standardised score.
FP32_SIGMA_TOLERANCE = 1e-3


class ParityError(AdeganError):
    pass


def onnx_outputs(path: Path, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, ...]:
    """Run an ONNX file on CPU with ONNX Runtime over float32 images in [0, 1]."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError(
            "the export parity check needs ONNX Runtime: pip install 'adegan[cpu]' (or 'adegan[gpu]')"
        ) from exc
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    parts = [session.run(list(OUTPUT_NAMES), {INPUT_NAME: images[i:i + batch_size]})
             for i in range(0, len(images), batch_size)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(len(OUTPUT_NAMES)))


def compare(reference: tuple, candidate: tuple, calibration: Calibration) -> dict:
    """Max abs difference per output and of the score; relative difference of recon_error;
    and how many images change verdict (score above / below the threshold)."""
    result = {f"max_abs_{name}": float(np.abs(a - b).max()) for name, a, b in zip(OUTPUT_NAMES, reference, candidate)}
    e_ref, e_new = reference[0].astype(np.float64), candidate[0].astype(np.float64)
    result["max_rel_recon_error"] = float((np.abs(e_ref - e_new) / np.maximum(np.abs(e_ref), 1e-12)).max())
    result["max_recon_error_in_sigma"] = float(np.abs(e_ref - e_new).max() / max(calibration.sigma_e, 1e-12))
    scores = [abnormality_score(out[0], out[1], calibration.mu_e, calibration.sigma_e, calibration.score_mode)
              for out in (reference, candidate)]
    result["max_abs_score"] = float(np.abs(scores[0] - scores[1]).max())
    verdicts = [s > calibration.threshold for s in scores]
    result["verdict_changes"] = int((verdicts[0] != verdicts[1]).sum())
    result["images"] = int(len(e_ref))
    return result


def check_parity(detector, bundle: Path, images_uint8: np.ndarray, calibration: Calibration, fp16: bool) -> dict:
    """{"fp32_vs_torch": {...}, "fp16_vs_fp32": {...}}; raises if fp32 parity fails."""
    from adegan.training.inference import detector_outputs

    device = next(detector.parameters()).device
    reference = detector_outputs(detector, images_uint8, device, batch_size=64, with_residual=True)
    images = to_float(images_uint8)
    fp32 = onnx_outputs(bundle / MODEL_FILE, images)
    report = {"fp32_vs_torch": compare(reference, fp32, calibration)}
    worst = report["fp32_vs_torch"]["max_rel_recon_error"]
    in_sigma = report["fp32_vs_torch"]["max_recon_error_in_sigma"]
    if worst > FP32_RELATIVE_TOLERANCE and in_sigma > FP32_SIGMA_TOLERANCE:
        raise ParityError(
            f"ONNX export is not faithful: recon_error differs from torch by {worst:.2e} (relative) and "
            f"{in_sigma:.2e} sigma_e, more than {FP32_RELATIVE_TOLERANCE:.0e} and {FP32_SIGMA_TOLERANCE:.0e}; please report this with your torch/onnx versions"
        )
    if fp16:
        report["fp16_vs_fp32"] = compare(fp32, onnx_outputs(bundle / MODEL_FP16_FILE, images), calibration)
    return report
