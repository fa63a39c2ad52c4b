"""load_images decodes a folder of large images in threads, and gives the same images, in the
same order, with the same skipped files, as one thread; small images stay on one thread."""

import threading

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from adegan.runtime import images as images_module  # noqa: E402
from adegan.runtime.images import LOAD_RUN, RUNS_PER_LOADER, SMALL_IMAGE_PIXELS, load_images  # noqa: E402


def write_folder(folder, side: int) -> list:
    """2 LOAD_RUNs and 5 files, two of them unreadable (one in the first run, one in the second)."""
    rng = np.random.default_rng(side)
    paths = []
    for index in range(2 * LOAD_RUN + 5):
        path = folder / f"{index:03d}.{'png' if index % 3 else 'jpg'}"
        if index in (3, LOAD_RUN + 1):
            path.write_bytes(b"not an image")
        else:
            cv2.imwrite(str(path), rng.integers(0, 256, (side + index % 7, side), dtype=np.uint8))
        paths.append(path)
    return paths


def test_unreadable_files_before_the_first_image_are_read_one_by_one(tmp_path, monkeypatch):
    paths = write_folder(tmp_path, int(SMALL_IMAGE_PIXELS ** 0.5) + 2)
    unreadable = [paths[3], paths[LOAD_RUN + 1]]
    paths = unreadable + [path for path in paths if path not in unreadable]
    runs = []
    load_run = images_module._load_run
    monkeypatch.setattr(images_module, "_load_run", lambda load, run: runs.append(len(run)) or load_run(load, run))
    images, loaded, failed = load_images(paths, 32, 1, workers=2)
    step = -(-(len(paths) - 3) // (RUNS_PER_LOADER * 2))  # 66 files left for 2 threads: runs of 9
    assert runs == [1, 1, 1] + [step] * ((len(paths) - 3) // step) + [(len(paths) - 3) % step]
    assert [path for path, _ in failed] == unreadable and loaded == paths[2:] and len(images) == len(paths) - 2


@pytest.mark.parametrize("side", [int(SMALL_IMAGE_PIXELS ** 0.5) + 2, 20])
def test_threads_load_large_images_the_same_in_the_same_order(tmp_path, monkeypatch, side):
    paths = write_folder(tmp_path, side)
    threads = []
    load_run = images_module._load_run
    monkeypatch.setattr(images_module, "_load_run",
                        lambda load, run: threads.append((len(run), threading.get_ident())) or load_run(load, run))

    one = load_images(paths, 32, 1, workers=1)
    assert {thread for _, thread in threads} == {threading.get_ident()}
    threads.clear()
    two = load_images(paths, 32, 1, workers=2)
    counts, small = [count for count, _ in threads], side ** 2 <= SMALL_IMAGE_PIXELS
    step = LOAD_RUN if small else -(-(len(paths) - 1) // (RUNS_PER_LOADER * 2))  # 68 files for 2 threads: runs of 9
    assert counts[0] == 1 and counts[1:-1] == [step] * (len(counts) - 2) and sum(counts) == len(paths)
    loaders = {thread for _, thread in threads[1:]}  # after the first file, which tells small from large
    assert (loaders == {threading.get_ident()}) == small
    assert np.array_equal(one[0], two[0]) and len(two[0]) == len(paths) - 2
    assert one[1] == two[1] == [path for index, path in enumerate(paths) if index not in (3, LOAD_RUN + 1)]
    assert one[2] == two[2] and [path for path, _ in two[2]] == [paths[3], paths[LOAD_RUN + 1]]


def test_no_files_load_to_an_empty_batch():
    images, loaded, failed = load_images([], 32, 3)
    assert images.shape == (0, 3, 32, 32) and loaded == failed == []


def test_an_interrupted_load_does_not_decode_the_rest_of_the_folder(tmp_path, monkeypatch):
    """Ctrl-C (or any error) while a folder loads in threads stops it: the runs not yet started
    are dropped, so the user does not wait for the whole folder to decode."""
    import time

    paths = write_folder(tmp_path, int(SMALL_IMAGE_PIXELS ** 0.5) + 2) * 4  # the first file, then 9 runs
    started = []
    load_run = images_module._load_run

    def slow_run(load, run):
        started.append(len(run))
        if len(started) == 3:
            raise KeyboardInterrupt
        time.sleep(0.05)
        return load_run(load, run)

    monkeypatch.setattr(images_module, "_load_run", slow_run)
    with pytest.raises(KeyboardInterrupt):
        load_images(paths, 32, 1, workers=2)
    time.sleep(0.2)
    assert len(started) <= 7 < 1 + len(range(1, len(paths), LOAD_RUN))  # the first file, 9 runs: not all started
