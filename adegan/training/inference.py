"""Loading a trained run for inference and running its detector over uint8 images: what
evaluation, export and the benchmarks share (torch; the deployed path is adegan.runtime).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adegan.errors import AdeganError, UsageError
from adegan.runtime.score import Calibration
from adegan.training.checkpoint import configs_from_state, load_checkpoint
from adegan.training.model import Detector, Extractor, Generator


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AdeganError(f"--device {name}: no CUDA GPU is visible to torch; use --device cpu")
    return torch.device(name)


@torch.no_grad()
def detector_outputs(detector: Detector, images_uint8: np.ndarray, device, batch_size: int = 256,
                     with_residual: bool = False) -> tuple[np.ndarray, ...]:
    """Run the detector (eval mode) over uint8 images: recon_error (N,), pattern_probs (N, K),
    and with `with_residual` also residual (N, 1, H, W) (left out by default: it is large)."""
    detector.eval()
    bound = "cpu_batch" if torch.device(device).type == "cpu" else "max_batch"  # a memory bank's bound
    batch_size = min(batch_size, getattr(detector, bound, batch_size))
    keep = 3 if with_residual else 2
    parts: list[list[np.ndarray]] = [[] for _ in range(keep)]
    for start in range(0, len(images_uint8), batch_size):
        batch = torch.from_numpy(images_uint8[start:start + batch_size]).to(device).float() / 255.0
        for part, output in zip(parts, detector(batch)):
            part.append(output.cpu().numpy())
    return tuple(np.concatenate(part) for part in parts)


def load_detector(run_dir: Path, device: str = "auto"):
    """(detector in eval mode, ModelConfig, TrainConfig, Calibration, checkpoint state)."""
    state = load_checkpoint(Path(run_dir))
    model_config, train_config = configs_from_state(state, Path(run_dir))
    if state.get("calibration") is None:
        raise UsageError(f"{run_dir}: the run has not finished an epoch yet, so it has no calibration; "
                         f"train at least one epoch (`adegan train ... --resume`)")
    if train_config.method == "memory-bank":
        from adegan.training import memory_bank

        bank_config = memory_bank.config_from_state(state, run_dir)
        detector = memory_bank.detector_from_state(model_config, bank_config, state["memory_bank"])
        return detector.to(resolve_device(device)), model_config, train_config, Calibration.from_dict(state["calibration"]), state
    generator, extractor = Generator(model_config), Extractor(model_config)
    generator.load_state_dict(state["generator"])
    extractor.load_state_dict(state["extractor"])
    detector = Detector(generator, extractor, train_config.method == "autoencoder").to(resolve_device(device)).eval()
    return detector, model_config, train_config, Calibration.from_dict(state["calibration"]), state
