"""The defect-photo benchmark's split and synthetic defects (the parts a wrong number would hide in)."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import defect_benchmark  # noqa: E402


def test_folds_keep_every_part_on_one_side_and_cover_every_image():
    groups = np.repeat(np.arange(10), 8)
    labels = np.zeros(80, np.int64)
    labels[::8] = 1
    data = {"groups": groups, "labels": labels}
    folds = defect_benchmark.make_folds(data, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(80))
    for fold in folds:
        inside = set(groups[fold])
        outside = set(groups[np.setdiff1d(np.arange(80), fold)])
        assert not inside & outside  # a part is never both trained on and tested


def test_synthetic_defects_stay_on_the_part_and_change_it():
    rng = np.random.default_rng(0)
    image = np.zeros((1, 64, 64), np.uint8)
    image[:, :, 16:48] = rng.integers(80, 160, (1, 64, 32))  # a part in the middle, black padding around
    changed = 0
    for seed in range(20):
        out = defect_benchmark.synthetic_defect(image, image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.uint8
        columns = np.argwhere((out != image)[0])[:, 1]
        if len(columns):  # a scratch may run past the edge, but the defect is centred on the part
            assert 16 <= columns.mean() < 48
            changed += 1
    assert changed >= 15  # nearly every draw leaves a visible defect


def test_faint_defects_stay_on_the_part_and_hide_in_its_texture():
    rng = np.random.default_rng(0)
    image = np.zeros((1, 64, 64), np.uint8)
    image[:, :, 16:48] = rng.integers(80, 160, (1, 64, 32))
    texture = float(image[:, :, 16:48].std())
    changed = 0
    for seed in range(20):
        out = defect_benchmark.faint_defect(image, image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.uint8
        difference = out.astype(int) - image.astype(int)
        assert not difference[:, :, :16].any() and not difference[:, :, 48:].any()  # never on the padding
        if difference.any():
            changed += 1
            assert np.abs(difference).max() <= 3 * texture + 1  # faint: at most 3x the texture contrast
    assert changed >= 15
