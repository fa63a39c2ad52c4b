"""The abnormality score (paper Eqs. 9-11), numpy only.

Training-side evaluation and the runtime both call `abnormality_score`, so a score computed on
a Jetson is the score that was evaluated on the benchmark.

    e(x)  reconstruction error (per-image MSE)
    P(x)  reconstruction probability: Phi((e - mu_e) / sigma_e)        mode "cdf"
          or erf(|e - mu_e| / (sigma_e * sqrt(2)))                     mode "two-sided"
    m(x)  max of E's softmax over the K patterns
    A(x)  = 1 - P/K - (1 - P) * m,   in [0, 1 - 1/K], higher = more anomalous

Mode "z" is the standardised error (e - mu_e) / sigma_e alone, unbounded: for detectors with no
pattern term (the memory bank), where the CDF would squash every clear anomaly onto 1.0 and a
score in [0, 1 - 1/K] would tie many images at its ceiling.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from adegan.runtime.contract import SCORE_MODES

_SIGMA_FLOOR = 1e-12
_erf = np.vectorize(math.erf, otypes=[np.float64])


def standardized_error(recon_error: np.ndarray, mu_e: float, sigma_e: float) -> np.ndarray:
    """(e - mu_e) / sigma_e as float64."""
    return (np.asarray(recon_error, dtype=np.float64) - mu_e) / max(sigma_e, _SIGMA_FLOOR)


def reconstruction_probability(
    recon_error: np.ndarray, mu_e: float, sigma_e: float, mode: str = "cdf"
) -> np.ndarray:
    """P(x): how far the reconstruction error lies from the calibration errors, in [0, 1]."""
    if mode not in SCORE_MODES:
        raise ValueError(f"score mode must be one of {SCORE_MODES}, got {mode!r}")
    z = standardized_error(recon_error, mu_e, sigma_e)
    if mode == "cdf":
        return 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))
    if mode == "two-sided":
        return _erf(np.abs(z) / math.sqrt(2.0))
    raise ValueError("mode z has no probability: it is the standardised error itself")


def abnormality_score(
    recon_error: np.ndarray,
    pattern_probs: np.ndarray,
    mu_e: float,
    sigma_e: float,
    mode: str = "cdf",
) -> np.ndarray:
    """A(x) for a batch: recon_error (N,), pattern_probs (N, K) -> scores (N,) float64."""
    probs = np.asarray(pattern_probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(np.atleast_1d(recon_error)):
        raise ValueError(
            f"pattern_probs must be (N, K) matching recon_error (N,), got {probs.shape}"
        )
    if mode == "z":
        return standardized_error(recon_error, mu_e, sigma_e)
    n_patterns = probs.shape[1]
    p = reconstruction_probability(recon_error, mu_e, sigma_e, mode)
    m = probs.max(axis=1)
    return 1.0 - p / n_patterns - (1.0 - p) * m


def pattern_only_score(pattern_probs: np.ndarray) -> np.ndarray:
    """1 - m(x): the pattern part alone, for ablations."""
    return 1.0 - np.asarray(pattern_probs, dtype=np.float64).max(axis=1)


@dataclass(frozen=True)
class Calibration:
    """Statistics of the calibration set (normal images never trained on)."""

    mu_e: float
    sigma_e: float
    threshold: float
    target_fpr: float
    score_mode: str
    n_images: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        return cls(**data)


def calibrate(
    recon_error: np.ndarray,
    pattern_probs: np.ndarray,
    target_fpr: float = 0.01,
    score_mode: str = "cdf",
) -> Calibration:
    """mu_e, sigma_e from the calibration errors; threshold = (1 - target_fpr) quantile of A."""
    errors = np.asarray(recon_error, dtype=np.float64)
    if len(errors) < 2:
        raise ValueError("calibration needs at least 2 images")
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    mu_e = float(errors.mean())
    sigma_e = float(max(errors.std(ddof=1), _SIGMA_FLOOR))
    scores = abnormality_score(errors, pattern_probs, mu_e, sigma_e, score_mode)
    threshold = float(np.quantile(scores, 1.0 - target_fpr))
    return Calibration(mu_e, sigma_e, threshold, target_fpr, score_mode, len(errors))
