"""A full disk during scoring, on a real (small, private) tmpfs: a clear one-line error, the rows
already written are kept, and `--resume` finishes the job once space is freed."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_bundle"

SCRIPT = """
dd if=/dev/zero of="$DISK/filler" bs=1k count=40 2>/dev/null
"$PY" -m adegan score "$IMAGES" --model "$BUNDLE" --out "$DISK/results.csv" --batch-size 16 --no-progress
echo "first_rc=$?"
cp "$DISK/results.csv" "$HOST/partial.csv"
rm "$DISK/filler"
"$PY" -m adegan score "$IMAGES" --model "$BUNDLE" --out "$DISK/results.csv" --batch-size 16 --resume --no-progress
echo "second_rc=$?"
cp "$DISK/results.csv" "$HOST/results.csv"
rm "$DISK/results.csv"
dd if=/dev/zero of="$DISK/filler" bs=1k count=56 2>/dev/null
"$PY" -m adegan score "$IMAGES" --model "$BUNDLE" --out "$DISK/again.csv" --overlays "$DISK/flagged" \
    --threshold 0 --no-progress
echo "third_rc=$?"
echo "left: $(find "$DISK" -name '*.tmp' | wc -l) temp files"
"""


def test_full_disk_while_scoring_keeps_rows_and_resumes(small_disk, tmp_path):
    rng = np.random.default_rng(0)
    images = tmp_path / "a_long_folder_name_so_that_rows_take_room" / "images"
    images.mkdir(parents=True)
    for i in range(300):
        cv2.imwrite(str(images / f"image_{i:04d}.png"), rng.integers(0, 255, (32, 32), dtype=np.uint8))
    bundle = tmp_path / "bundle"
    shutil.copytree(TINY, bundle)
    host = tmp_path / "host"
    host.mkdir()
    done = small_disk(tmp_path / "disk", 64, SCRIPT, PY=sys.executable, IMAGES=str(images),
                      BUNDLE=str(bundle), HOST=str(host))
    output = done.stdout + done.stderr
    assert "first_rc=1" in output, output
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("no space left on the device" in e and "--resume" in e for e in errors), output
    assert "Traceback" not in output
    assert "third_rc=1" in output and "left: 0 temp files" in output  # overlays fill the disk: same story
    with open(host / "partial.csv", newline="") as file:
        partial = [row for row in csv.DictReader(file) if row.get("verdict")]
    assert 0 < len(partial) < 300  # some rows made it to disk before it filled up

    assert "second_rc=0" in output, output
    with open(host / "results.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get("verdict")]
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)) == 300  # each image exactly once
    assert {row["path"]: row["score"] for row in partial}.items() <= {r["path"]: r["score"] for r in rows}.items()
