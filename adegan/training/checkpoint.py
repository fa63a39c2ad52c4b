"""Run directories and checkpoints.

A checkpoint is a plain dict of tensors and primitives, so it loads with
`torch.load(weights_only=True)` (no pickled code is ever executed). It carries its own
ModelConfig, TrainConfig and calibration statistics, and is written atomically
(temp file + rename): a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from adegan import __version__
from adegan.errors import AdeganError, UsageError
from adegan.runtime.files import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "adegan-checkpoint"
CHECKPOINT_VERSION = 1
RUN_OUTPUTS = (CHECKPOINT_NAME, "config.json", "metrics.jsonl", "samples", "evaluation")


def prepare_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite an existing run unless asked; clear it for --force."""
    checkpoint = run_dir / CHECKPOINT_NAME
    if resume and force:
        raise UsageError("--resume and --force contradict each other: pick one")
    if resume:
        if not checkpoint.exists():
            raise UsageError(f"{run_dir}: no {CHECKPOINT_NAME} to resume from; drop --resume to start a new run")
        return
    if checkpoint.exists():
        if not force:
            raise UsageError(
                f"{run_dir} already holds a run; pass --resume to continue it or --force to replace it"
            )
        for name in RUN_OUTPUTS:
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def save_checkpoint(path: Path, state: dict) -> None:
    import torch

    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
               "adegan_version": __version__, **state}
    atomic_write_bytes(path, lambda file: torch.save(payload, file))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load with weights_only=True; a clear error for a missing, corrupt or foreign file."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise UsageError(f"{path}: checkpoint not found; give a run directory made by `adegan train`")
    if not zipfile.is_zipfile(path):  # torch.save always writes a zip archive
        raise AdeganError(f"{path}: corrupt or truncated checkpoint (not a torch archive); retrain or restore it")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise AdeganError(
            f"{path}: refused: the file is not a plain weights checkpoint (it would need to run "
            f"pickled code); only checkpoints written by `adegan train` are loaded"
        ) from exc
    except Exception as exc:  # torch raises many types for truncated/corrupt zip files
        raise AdeganError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}); retrain or restore it") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise AdeganError(f"{path}: not an adegan checkpoint")
    if state.get("format_version") != CHECKPOINT_VERSION:
        raise AdeganError(
            f"{path}: checkpoint format {state.get('format_version')} is not supported by adegan "
            f"{__version__} (expects {CHECKPOINT_VERSION}); retrain with this version"
        )
    return state


def configs_from_state(state: dict, path: Path):
    """(ModelConfig, TrainConfig) from a checkpoint; an incompatible one gets a clear error."""
    from adegan.training.config import ModelConfig, TrainConfig

    try:
        return ModelConfig.from_dict(state["model_config"]), TrainConfig.from_dict(state["train_config"])
    except (UsageError, KeyError, TypeError) as exc:
        raise AdeganError(
            f"{path}: checkpoint written by an incompatible adegan version ({exc}); retrain it with adegan {__version__}"
        ) from exc
