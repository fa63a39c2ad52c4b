"""Regenerate tests/data/tiny_bundle/: a few-KB bundle for the torch-free runtime tests.

    python scripts/make_test_bundle.py

Trains a width-2 model (K = 4, d = 8) for 3 epochs on synthetic 32x32 images (bright squares =
normal) and exports it with --fp16. The runtime tests only need a valid, deterministic bundle,
not a good detector.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import normal_image, write_images  # noqa: E402

from adegan.export.exporter import ExportOptions, export_run  # noqa: E402
from adegan.training.config import ModelConfig, TrainConfig  # noqa: E402
from adegan.training.trainer import train  # noqa: E402

TARGET = Path(__file__).resolve().parents[1] / "tests" / "data" / "tiny_bundle"


def main() -> None:
    work = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    write_images(work / "good", [normal_image(rng) for _ in range(300)])
    config = ModelConfig(width=2, n_patterns=4, latent_dim=8)
    train(config, TrainConfig(source=str(work / "good"), epochs=3, batch_size=32, method="adegan"), work / "run", progress=False)
    if TARGET.exists():
        shutil.rmtree(TARGET)
    export_run(work / "run", ExportOptions(out=TARGET, fp16=True, max_batch=8))
    shutil.rmtree(work)
    print(f"wrote {TARGET}: " + ", ".join(f"{p.name} {p.stat().st_size} B" for p in sorted(TARGET.iterdir())))


if __name__ == "__main__":
    main()
