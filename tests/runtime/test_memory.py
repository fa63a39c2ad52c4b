"""Scoring 50,000 images keeps memory flat: the peak RSS of a 50,000-image run is measured and
may grow by at most 0.25 KB per extra image over a 2,000-image run (only the list of file names
may grow; images, batches and rows are streamed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

TINY = str(Path(__file__).resolve().parents[1] / "data" / "tiny_bundle")
MEASURE = """
import json, resource, sys
from adegan.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def image_folder(root: Path, count: int, originals: list[Path]) -> Path:
    """`count` files, hard links to a few hundred distinct PNGs (fast to make, each read for real)."""
    folder = root / f"images_{count}"
    for i in range(count):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        os.link(originals[i % len(originals)], sub / f"image_{i:06d}.png")
    return folder


def peak_rss(folder: Path, out: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, "score", str(folder), "--model", TINY, "--out", str(out),
                           "--batch-size", "64", "--no-progress", "--json"], capture_output=True, text=True, timeout=600)
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["code"] in (0, None), done.stderr
    return {**result, **json.loads(lines[-2])}


def test_scoring_50000_images_keeps_memory_flat(tmp_path):
    rng = np.random.default_rng(0)
    originals = []
    for i in range(200):
        path = tmp_path / "originals" / f"o{i}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 255, (32, 32), dtype=np.uint8))
        originals.append(path)
    small = peak_rss(image_folder(tmp_path, 2_000, originals), tmp_path / "small.csv")
    large = peak_rss(image_folder(tmp_path, 50_000, originals), tmp_path / "large.csv")
    assert small["images"] == 2_000 and large["images"] == 50_000
    assert sum(1 for _ in open(tmp_path / "large.csv")) == 50_001  # header + one row each
    growth_kb_per_image = (large["peak_rss_mb"] - small["peak_rss_mb"]) * 1024 / 48_000
    print(json.dumps({"peak_rss_mb_2000": small["peak_rss_mb"], "peak_rss_mb_50000": large["peak_rss_mb"],
                      "growth_kb_per_image": round(growth_kb_per_image, 3)}))
    # Only the list of file names may grow (~0.1 KB each as strings); measured: no growth at all.
    assert growth_kb_per_image < 0.25, (small, large)
