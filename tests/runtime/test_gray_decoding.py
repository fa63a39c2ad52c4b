"""A file stored as 8-bit gray is decoded straight to gray for a gray model, and the model input
is exactly what decoding to BGR and converting gives; every other file decodes as before."""

import struct
import zlib

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from adegan.runtime.images import decode_image, image_header, to_model_uint8  # noqa: E402
from adegan.runtime.overlay import render_overlay  # noqa: E402

PIXELS = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def gray_png(pixels: np.ndarray, extra: tuple = (), colour_type: int = 0) -> bytes:
    """A PNG written by hand, so what OpenCV never writes (transparency, gamma, gray with alpha:
    colour type 4, pixels (H, W, 2)) can be tried."""
    height, width = pixels.shape[:2]
    rows = b"".join(b"\0" + row.tobytes() for row in pixels)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
            + b"".join(chunk(kind, body) for kind, body in extra) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def encoded(extension: str, image: np.ndarray, *parameters: int) -> bytes:
    return cv2.imencode(extension, image, list(parameters))[1].tobytes()


STORED_GRAY = {
    "png": encoded(".png", PIXELS),
    "png with transparency": gray_png(PIXELS, ((b"tRNS", struct.pack(">H", 17)),)),
    "png with gamma": gray_png(PIXELS, ((b"gAMA", struct.pack(">I", 45455)), (b"sBIT", b"\x05"))),
    "jpeg": encoded(".jpg", PIXELS),
    "progressive jpeg": encoded(".jpg", PIXELS, cv2.IMWRITE_JPEG_QUALITY, 50, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
}
COLOUR = {
    "colour png": encoded(".png", np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)),
    "colour jpeg": encoded(".jpg", np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)),
    "gray stored as colour": encoded(".png", cv2.cvtColor(PIXELS, cv2.COLOR_GRAY2BGR)),
    "16-bit gray png": encoded(".png", PIXELS.astype(np.uint16) * 257),
    "gray png with alpha": gray_png(np.dstack([PIXELS, 255 - PIXELS]), colour_type=4),
    "bmp": encoded(".bmp", PIXELS),
}


@pytest.mark.parametrize("name", STORED_GRAY)
def test_a_file_stored_gray_decodes_to_gray_and_the_same_model_input(name):
    data = np.frombuffer(STORED_GRAY[name], np.uint8)
    assert image_header(data) == (53, 37, True)
    gray, colour = decode_image(data, gray=True), decode_image(data)
    assert gray.shape == (37, 53) and colour.shape == (37, 53, 3)
    for size in (32, 64):  # shrinking and enlarging
        for channels in (1, 3):
            assert np.array_equal(to_model_uint8(gray, size, channels), to_model_uint8(colour, size, channels))


@pytest.mark.parametrize("name", COLOUR)
def test_other_files_decode_to_colour_as_before_when_gray_is_asked(name):
    data = np.frombuffer(COLOUR[name], np.uint8)
    assert not image_header(data)[2]
    assert np.array_equal(decode_image(data, gray=True), decode_image(data))


def test_an_overlay_of_a_gray_image_is_that_of_its_colour_copy():
    residual = np.random.default_rng(3).random((32, 32)).astype(np.float32)
    gray = decode_image(STORED_GRAY["png"], gray=True)
    assert np.array_equal(render_overlay(gray, residual, 0.7, True),
                          render_overlay(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), residual, 0.7, True))
