"""Shared fixtures: small synthetic image folders made on the fly (no downloads, a few KB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")


def normal_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A 'good part': one bright square of a few fixed sizes, jittered, on a dark background."""
    image = np.full((size, size), 20, np.uint8)
    side = int(rng.choice([8, 12, 16]))
    top, left = rng.integers(4, size - side - 4, size=2)
    image[top:top + side, left:left + side] = 220
    return image


def anomalous_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A 'defect': a bright ring + salt noise, unlike any normal image."""
    image = np.full((size, size), 20, np.uint8)
    cv2.circle(image, (size // 2, size // 2), int(rng.integers(8, 13)), 230, 2)
    noise = rng.random((size, size)) < 0.08
    image[noise] = 255
    return image


def write_images(folder: Path, images) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"img_{index:04d}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> dict[str, Path]:
    """train/ (normals) and test/good + test/defect folders of 32x32 gray PNGs."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    write_images(root / "train", [normal_image(rng) for _ in range(320)])
    write_images(root / "test" / "good", [normal_image(rng) for _ in range(60)])
    write_images(root / "test" / "defect", [anomalous_image(rng) for _ in range(60)])
    return {"train": root / "train", "test": root / "test"}


def _private_tmpfs_works() -> bool:
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def small_disk():
    """Run a shell script with a size-limited tmpfs mounted at $DISK, in a private mount namespace
    (`unshare -rm`: no root needed, nothing leaks to the host). The disk vanishes when the script
    ends, so the script itself lists what is left; returns the CompletedProcess."""
    import subprocess

    if not _private_tmpfs_works():
        pytest.skip("needs `unshare -rm` and tmpfs mounts (user namespaces) to make a small disk")

    def run(mount_point: Path, size_kb: int, script: str, **env) -> subprocess.CompletedProcess:
        import os

        mount_point.mkdir(parents=True, exist_ok=True)
        wrapped = f'mount -t tmpfs -o size={size_kb}k tmpfs "$DISK" || exit 99\n{script}'
        environment = {**os.environ, "DISK": str(mount_point), **env}
        return subprocess.run(["unshare", "-rm", "sh", "-c", wrapped], capture_output=True, text=True,
                              env=environment, timeout=300)

    return run


@pytest.fixture
def sigint_default():
    """A `preexec_fn` that gives the child SIGINT at its default. A shell without job control
    starts background jobs (nohup ... &, some CI runners) with SIGINT ignored, and Python then
    never raises KeyboardInterrupt; a user pressing Ctrl-C in a terminal has it at its default."""
    import signal

    return lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def ctrl_c_inside():
    """Run `adegan ARGS` in a real process where `module.function` raises KeyboardInterrupt when
    called, as if the user pressed Ctrl-C there; returns the finished process."""
    import subprocess
    import sys

    def run(module: str, function: str, arguments: list[str]) -> subprocess.CompletedProcess:
        script = (f"import sys, {module} as target\n"
                  "def interrupted(*args, **kwargs):\n    raise KeyboardInterrupt\n"
                  f"target.{function} = interrupted\n"
                  f"sys.argv = ['adegan', *{[str(a) for a in arguments]!r}]\n"
                  "from adegan.cli import app\napp()")
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)

    return run


@pytest.fixture
def bundle(tmp_path):
    """A copy of the committed tests/data/tiny_bundle that a test may damage (the runtime tests)."""
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(Path(__file__).resolve().parent / "data" / "tiny_bundle", copy)
    return copy
