"""Image decoding and the one preprocessing function that training and the runtime share.

Pipeline: OpenCV decode -> BGR->RGB (or gray; a file stored as gray is decoded straight to gray
for a gray model, the same pixels for less work) -> resize the long side to the model size,
keeping the aspect ratio, and pad the short side with black (centred) -> uint8 (C, H, W)
-> float32 in [0, 1]. The resize interpolation is fixed by direction: `INTER_AREA` when
shrinking (averages pixels, no aliasing on large camera frames) and `INTER_LINEAR` when
enlarging (e.g. 28x28 benchmark digits to 32x32). Keeping the uint8 stage lets datasets be
held compactly in memory and converted with the very same division as the runtime.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from adegan.errors import AdeganError
from adegan.runtime.deps import require_cv2

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# Largest image decoded, in pixels (100 MP: a 12,000 x 8,000 camera frame fits). A PNG "bomb"
# declares far more and would allocate gigabytes; its header is refused before decoding.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
MAX_PIXELS_VARIABLE = "ADEGAN_MAX_IMAGE_PIXELS"


class ImageDecodeError(AdeganError):
    """An image file that cannot be read or decoded."""


def max_image_pixels() -> int:
    """The pixel limit: $ADEGAN_MAX_IMAGE_PIXELS, else DEFAULT_MAX_IMAGE_PIXELS."""
    value = os.environ.get(MAX_PIXELS_VARIABLE, "")
    try:
        return int(value) if value else DEFAULT_MAX_IMAGE_PIXELS
    except ValueError:
        raise AdeganError(f"{MAX_PIXELS_VARIABLE}={value!r}: give a whole number of pixels") from None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_header(data: np.ndarray) -> tuple[int, int, bool] | None:
    """(width, height, stored gray) read from a PNG, JPEG, BMP or TIFF header without decoding, or
    None when the format is another or the header is not where it should be (then OpenCV's own
    limit applies). Stored gray: the file holds one 8-bit gray channel (a PNG of colour type 0 and
    depth 8, a one-component JPEG), so decoding it straight to gray gives the very pixels that
    decoding to BGR and converting give."""
    head = data[:64].tobytes()
    if head.startswith(PNG_SIGNATURE) and len(head) >= 26:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), head[24:26] == b"\x08\x00"
    if head.startswith(b"BM") and len(head) >= 26:
        return (abs(int.from_bytes(head[18:22], "little", signed=True)),
                abs(int.from_bytes(head[22:26], "little", signed=True)), False)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_frame(data)
    if head[:4] in (b"II*\0", b"MM\0*"):
        size = _tiff_size(data)
        return None if size is None else (*size, False)
    return None


def _tiff_size(data: np.ndarray) -> tuple[int, int] | None:
    """ImageWidth and ImageLength from the first image directory of a classic TIFF (SHORT or
    LONG values; a BigTIFF or a directory past the first megabyte gives None)."""
    raw = data[:1 << 20].tobytes()
    order = "little" if raw[:2] == b"II" else "big"
    position = int.from_bytes(raw[4:8], order)
    if position + 2 > len(raw):
        return None
    found = {}
    for entry in range(int.from_bytes(raw[position:position + 2], order)):
        start = position + 2 + 12 * entry
        if start + 12 > len(raw):
            return None
        tag, kind = int.from_bytes(raw[start:start + 2], order), int.from_bytes(raw[start + 2:start + 4], order)
        if tag in (256, 257) and kind in (3, 4):  # SHORT values sit in the first two bytes of the field
            found[tag] = int.from_bytes(raw[start + 8:start + (10 if kind == 3 else 12)], order)
        if len(found) == 2:
            return found[256], found[257]
    return None


def _jpeg_frame(data: np.ndarray) -> tuple[int, int, bool] | None:
    """(width, height, one component) from the first start-of-frame (SOF0-SOF15 but DHT, JPG, DAC)."""
    raw = data[:1 << 20].tobytes()  # the frame header comes early; never scan a whole huge file
    position = 2
    while position + 9 < len(raw):
        if raw[position] != 0xFF:
            return None
        marker = raw[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(raw[position + 2:position + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return (int.from_bytes(raw[position + 7:position + 9], "big"),
                    int.from_bytes(raw[position + 5:position + 7], "big"), raw[position + 9] == 1 and raw[position + 4] == 8)
        position += 2 + length
    return None


def list_image_names(folder: str | os.PathLike) -> list[str]:
    """All image files under `folder`, recursively, sorted, as plain strings: a str costs about
    a fifth of a Path, which matters when a folder holds a million images. Symbolic links are
    followed, but each real folder is listed once (a link loop ends); a folder that cannot be
    listed is reported as a warning."""
    found, seen = [], set()

    def report(error: OSError) -> None:  # a folder that cannot be listed is said, not skipped silently
        from adegan.console import log

        log(f"warning: {error.filename}: cannot list this folder ({error.strerror}); its images are left out")

    for directory, subdirectories, names in os.walk(os.path.normpath(folder), followlinks=True, onerror=report):
        try:
            status = os.stat(directory)
        except OSError:
            continue
        identity = (status.st_dev, status.st_ino)
        if identity in seen:  # a symlink loop or a second link to a folder already listed: once is enough
            subdirectories.clear()
            continue
        seen.add(identity)
        subdirectories.sort()  # a fixed order, so which of two links to one folder is listed does not vary
        for name in names:
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                path = os.path.join(directory, name)
                if os.path.isfile(path):
                    found.append(path)
    found.sort(key=lambda path: path.replace(os.sep, "\0"))  # part by part, as sorting Paths does
    return found


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All image files under `folder`, recursively, in a stable (sorted) order."""
    return [Path(name) for name in list_image_names(folder)]


def decode_image(data: bytes | np.ndarray, name: str = "<bytes>", gray: bool = False) -> np.ndarray:
    """Decode encoded image bytes to an 8-bit BGR array (H, W, 3).

    Gray images come back with three equal channels, alpha is dropped and 16-bit images are
    scaled to 8 bits, so every later step sees one layout. With `gray` (for a gray model), a
    file stored as 8-bit gray comes back as (H, W) instead: the same pixels to_model_uint8
    would make of the BGR array, for less work (a 5 MP mono JPEG: 27 ms instead of 32-39).
    """
    cv2 = require_cv2()
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    header, limit = image_header(buffer), max_image_pixels()
    if header is not None and header[0] * header[1] > limit:
        raise ImageDecodeError(f"{name}: {header[0]} x {header[1]} = {header[0] * header[1]:,} pixels is more than the "
                               f"limit of {limit:,}; not decoded (set {MAX_PIXELS_VARIABLE} to allow larger images)")
    mode = cv2.IMREAD_GRAYSCALE if gray and header is not None and header[2] else cv2.IMREAD_COLOR
    try:
        image = cv2.imdecode(buffer, mode) if buffer.size else None
    except (cv2.error, MemoryError, ValueError, OverflowError) as exc:  # OpenCV's own limits, allocation failures
        raise ImageDecodeError(f"{name}: the decoder failed ({str(exc).strip().splitlines()[-1][:160]})") from exc
    if image is None:
        raise ImageDecodeError(f"{name}: not a readable image (corrupt or unsupported format)")
    return image


def read_image(path: str | os.PathLike, gray: bool = False) -> np.ndarray:
    """Read an image file to 8-bit BGR (H, W, 3), or (H, W) for a file stored as 8-bit gray when
    `gray` (see decode_image); works with non-ASCII paths too."""
    try:
        with open(path, "rb") as file:  # a read and a view: quicker than np.fromfile on small files
            data = np.frombuffer(file.read(), dtype=np.uint8)
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    return decode_image(data, name=str(path), gray=gray)


def is_grayscale(image_bgr: np.ndarray) -> bool:
    """True when all three channels are equal (a gray image stored as colour)."""
    return bool(
        np.array_equal(image_bgr[..., 0], image_bgr[..., 1])
        and np.array_equal(image_bgr[..., 1], image_bgr[..., 2])
    )


def letterbox_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """Where an image of height x width lands in the square model input when its long side is
    resized to `size` and the short side is centred and padded with black: (top, left, h, w).
    Keeping the aspect ratio matters for long, thin parts (a 256 x 104 photo stays 256 x 104)."""
    scale = size / max(height, width)
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    return (size - new_height) // 2, (size - new_width) // 2, new_height, new_width


def to_model_uint8(image: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Convert one BGR image (H, W, 3), or a gray one (H, W), to the model's uint8 layout
    (C, H, W): RGB or gray, resized.

    This is the single preprocessing step shared by training, evaluation and the runtime.
    """
    cv2 = require_cv2()
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if image.ndim == 2:
        converted = image if channels == 1 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    else:
        converted = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if channels == 1 else cv2.COLOR_BGR2RGB)
    height, width = converted.shape[:2]
    if (height, width) != (size, size):
        top, left, new_height, new_width = letterbox_box(height, width, size)
        interpolation = cv2.INTER_AREA if max(height, width) > size else cv2.INTER_LINEAR
        converted = cv2.resize(converted, (new_width, new_height), interpolation=interpolation)
        if (new_height, new_width) != (size, size):
            converted = cv2.copyMakeBorder(converted, top, size - new_height - top, left, size - new_width - left,
                                           cv2.BORDER_CONSTANT, value=0)
    if channels == 1:
        return converted[np.newaxis, :, :]
    return np.ascontiguousarray(converted.transpose(2, 0, 1))


def gray_to_model_uint8(images_gray: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Batch version for gray uint8 arrays (N, H, W), e.g. MNIST, via `to_model_uint8`."""
    out = np.empty((len(images_gray), channels, size, size), dtype=np.uint8)
    for index, image in enumerate(images_gray):
        out[index] = to_model_uint8(image, size, channels)
    return out


def to_float(batch_uint8: np.ndarray) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 in [0, 1]: the model input."""
    return batch_uint8.astype(np.float32) / np.float32(255.0)


def load_images(
    paths: Iterable[str | os.PathLike], size: int, channels: int, workers: int | None = None
) -> tuple[np.ndarray, list[Path], list[tuple[Path, str]]]:
    """Load files to uint8 (N, C, H, W); unreadable files are skipped and reported.

    Returns the images, the paths that loaded, and (path, reason) for each that did not, all in
    the order of `paths` (decoded by load_files' threads: the same pixels, faster for photos).
    """
    paths = [Path(path) for path in paths]

    def model_input(path: Path) -> tuple[tuple[np.ndarray | None, str | None], int]:
        try:
            image = read_image(path, gray=channels == 1)
        except ImageDecodeError as exc:
            return (None, str(exc)), 0
        return (to_model_uint8(image, size, channels), None), image.shape[0] * image.shape[1]

    results = load_files(model_input, paths, workers)
    images = [image for image, _ in results if image is not None]
    loaded = [path for path, (image, _) in zip(paths, results) if image is not None]
    failed = [(path, reason) for path, (image, reason) in zip(paths, results) if image is None]
    stacked = (
        np.stack(images) if images else np.zeros((0, channels, size, size), dtype=np.uint8)
    )
    return stacked, loaded, failed


def load_files(load, paths: list, workers: int | None = None) -> list:
    """[load(path)[0] for path in paths], in order, where load(path) gives (result, pixels it
    decoded, 0 for none). When the first file that decodes is larger than SMALL_IMAGE_PIXELS,
    `workers` threads (default one per usable CPU) load the rest in runs of up to LOAD_RUN files,
    at least RUNS_PER_LOADER runs per thread so that a few dozen photos are shared out too:
    OpenCV lets go of the interpreter while it decodes and resizes, so 5 MP camera JPEGs load
    1.8 times as fast on 2 cores. Small images stay on one thread, where they load faster (2,000
    Fashion-MNIST PNGs: 0.11 s against 0.16 s on two threads)."""
    from adegan.runtime.backends import usable_cpus

    results, pixels, first = [], 0, 0  # the files up to the first that decodes tell small images from large
    while first < len(paths) and not pixels:
        head, pixels = _load_run(load, paths[first:first + 1])
        results, first = results + head, first + 1
    rest = len(paths) - first
    workers = 1 if pixels <= SMALL_IMAGE_PIXELS else min(workers or usable_cpus(), rest)
    step = LOAD_RUN if workers <= 1 else max(1, min(LOAD_RUN, -(-rest // (RUNS_PER_LOADER * workers))))
    runs = [paths[start:start + step] for start in range(first, len(paths), step)]
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:  # an interrupted map cancels the runs not started
            for run_results, _ in pool.map(lambda run: _load_run(load, run), runs):
                results += run_results
    else:
        for run in runs:
            results += _load_run(load, run)[0]
    return results


# Files a loading thread decodes in a row: few enough that the threads finish together (32 camera
# photos take a second), enough that handing out runs costs nothing beside decoding.
LOAD_RUN = 32
RUNS_PER_LOADER = 4
# Images up to this many pixels count as small: decoding one is a handful of short OpenCV calls,
# and threads doing them side by side mostly wait for each other.
SMALL_IMAGE_PIXELS = 64 * 64


def _load_run(load, paths: list) -> tuple[list, int]:
    """load(path)'s result for each path, and the most pixels any of them decoded."""
    results, most = [], 0
    for path in paths:
        result, pixels = load(path)
        results.append(result)
        most = max(most, pixels)
    return results, most


def detect_channels(paths: list[Path], sample: int = 16) -> int:
    """1 if the first readable images (up to `sample`) are all gray, else 3. A file whose header
    says it is stored as 8-bit gray is not decoded (a 5 MP mono JPEG: 20 ms saved)."""
    checked = 0
    for path in paths:
        header = read_header(path)
        if header is None or not header[2]:
            try:
                image = read_image(path)
            except ImageDecodeError:
                continue
            if not is_grayscale(image):
                return 3
        checked += 1
        if checked >= sample:
            break
    return 1


def read_header(path: str | os.PathLike) -> tuple[int, int, bool] | None:
    """(width, height, stored gray) from a file's header without decoding it (see image_header),
    or None when the file cannot be read or its header does not say."""
    try:
        with open(path, "rb") as file:
            data = np.frombuffer(file.read(1 << 20), dtype=np.uint8)  # where image_header looks
    except OSError:
        return None
    return image_header(data)
