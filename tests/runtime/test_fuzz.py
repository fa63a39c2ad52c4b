"""Fuzzed image bytes never crash decode -> preprocess -> score: either a clean ImageDecodeError
or a score in range."""

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from adegan.runtime.images import ImageDecodeError, decode_image  # noqa: E402
from adegan.runtime.model import BundleModel  # noqa: E402

MODEL = BundleModel(Path(__file__).resolve().parents[1] / "data" / "tiny_bundle")
_, PNG = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
VALID = PNG.tobytes()
_, GRAY_PNG = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (20, 30), dtype=np.uint8))
VALID_GRAY = GRAY_PNG.tobytes()


def check(data: bytes) -> None:
    for gray in (False, True):  # as for a colour model, and straight to gray as for a gray one
        try:
            image = decode_image(data, gray=gray)
        except ImageDecodeError:
            continue
        score = MODEL.score_uint8(MODEL.preprocess(image)[np.newaxis]).score[0]
        assert 0.0 <= score <= 1.0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    check(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(VALID)))
def test_mutated_and_truncated_png(edits, cut):
    for valid in (VALID, VALID_GRAY):
        mutate_and_check(valid, edits, cut)


def mutate_and_check(valid: bytes, edits: list, cut: int) -> None:
    data = bytearray(valid)
    for position, value in edits:
        data[position % len(data)] = value  # the gray file is the shorter one
    check(bytes(data[:cut]))
