"""Training data: image folders and the leave-one-class-out benchmarks.

Everything is held in memory as uint8 (N, C, H, W) at the model size, produced by the
runtime's shared preprocessing; the float conversion happens per batch.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adegan.errors import UsageError
from adegan.training.config import BENCHMARKS
from adegan.runtime.images import (
    ImageDecodeError,
    read_header,
    read_image,
    detect_channels,
    gray_to_model_uint8,
    list_images,
    load_images,
    to_model_uint8,
    decode_image,
)



def datasets_folder() -> Path:
    """Where the benchmark files (mnist.npz, cifar10_jpegbytes.npz) are: $ADEGAN_DATASETS, else
    ./datasets in the working directory; --dataset-path names one file directly."""
    return Path(os.environ.get("ADEGAN_DATASETS") or "datasets")


DATASETS = {
    "mnist": {"channels": 1, "default": "mnist.npz"},
    "fashion-mnist": {"channels": 1, "default": "/usr/share/datasets/fashion-mnist"},
    "cifar10": {"channels": 3, "default": "cifar10_jpegbytes.npz"},
}
assert tuple(DATASETS) == BENCHMARKS, "every benchmark name needs its data source"
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion-mnist": [
        "t-shirt", "trouser", "pullover", "dress", "coat",
        "sandal", "shirt", "sneaker", "bag", "ankle-boot",
    ],
    "cifar10": [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ],
}
NORMAL_FOLDER_NAMES = ("good", "normal", "ok")
MIN_CALIBRATION_IMAGES = 10


@dataclass
class DataSplit:
    """Images for one run: train and calibration are normal; test carries labels (1 = anomaly)."""

    train: np.ndarray
    calibration: np.ndarray
    test: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    channels: int = 1
    info: dict = field(default_factory=dict)


def is_benchmark(source: str) -> bool:
    return source in BENCHMARKS


def leave_one_class_out(
    labels: np.ndarray, anomaly_class: int, seed: int,
    test_fraction: float = 0.2, calibration_fraction: float = 0.1,
) -> dict[str, np.ndarray]:
    """Leave-one-class-out index sets over the pooled train+test labels.

    The normals (all classes but `anomaly_class`) get a seeded 80/20 split; 10 % of the 80 %
    is the calibration hold-out; test = the 20 % normals + every anomalous image.
    """
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(labels != anomaly_class)
    anomalous = np.flatnonzero(labels == anomaly_class)
    normal = normal[rng.permutation(len(normal))]
    n_test = int(round(test_fraction * len(normal)))
    test_normal, train_pool = normal[:n_test], normal[n_test:]
    n_calibration = int(round(calibration_fraction * len(train_pool)))
    return {
        "calibration": np.sort(train_pool[:n_calibration]),
        "train": np.sort(train_pool[n_calibration:]),
        "test_normal": np.sort(test_normal),
        "test_anomalous": anomalous,
    }


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    n_dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(shape)


def _resolve_dataset_path(name: str, dataset_path: str | None) -> Path:
    if dataset_path:
        path = Path(dataset_path)
    else:
        default = Path(DATASETS[name]["default"])
        path = default if default.is_absolute() else datasets_folder() / default
    if not path.exists():
        hint = {
            "fashion-mnist": "install it with `apt-get install dataset-fashion-mnist` or pass --dataset-path",
        }.get(name, "pass --dataset-path to the file or set ADEGAN_DATASETS to its folder")
        raise UsageError(f"{name} data not found at {path}: {hint}")
    return path


def load_benchmark_pool(name: str, dataset_path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pooled official train+test images (N, H, W[, 3] BGR) and labels (N,)."""
    path = _resolve_dataset_path(name, dataset_path)
    if name == "mnist":
        with np.load(path) as archive:
            images = np.concatenate([archive["x_train"], archive["x_test"]])
            labels = np.concatenate([archive["y_train"], archive["y_test"]])
    elif name == "fashion-mnist":
        parts = [
            (_read_idx(path / f"{split}-images-idx3-ubyte.gz"), _read_idx(path / f"{split}-labels-idx1-ubyte.gz"))
            for split in ("train", "t10k")
        ]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
    else:
        images, labels = _load_cifar_jpegs(path)
    return images, labels.astype(np.int64)


def _load_cifar_jpegs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as archive:
        images, labels = [], []
        for split in ("train", "test"):
            data, offsets = archive[f"{split}_jpeg"], archive[f"{split}_offsets"]
            for i in range(len(offsets) - 1):
                images.append(decode_image(data[offsets[i]:offsets[i + 1]], f"{path}[{split} {i}]"))
            labels.append(archive[f"y_{split}"])
    return np.stack(images), np.concatenate(labels)


def _to_model(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    if len(images) == 0:
        return np.zeros((0, channels, size, size), dtype=np.uint8)
    if images.ndim == 3:
        return gray_to_model_uint8(images, size, channels)
    return np.stack([to_model_uint8(image, size, channels) for image in images])


def load_benchmark(
    name: str, anomaly_class: int | None, seed: int, image_size: int,
    calibration_fraction: float = 0.1, dataset_path: str | None = None,
    max_train_images: int | None = None, channels: int | None = None,
    parts: tuple[str, ...] = ("train", "calibration", "test"),
) -> DataSplit:
    """The leave-one-class-out split of a benchmark dataset at the model size.

    Only the `parts` asked for are converted (training needs no test images, evaluation no
    training images); the others come back empty. The split and `info` are the same either way.
    """
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)} or give a folder")
    if anomaly_class is None or not 0 <= anomaly_class <= 9:
        raise UsageError(f"{name} needs --anomaly-class between 0 and 9 (got {anomaly_class})")
    channels = channels or DATASETS[name]["channels"]
    images, labels = load_benchmark_pool(name, dataset_path)
    split = leave_one_class_out(labels, anomaly_class, seed, calibration_fraction=calibration_fraction)
    train_index = split["train"]
    if max_train_images is not None and max_train_images < len(train_index):
        rng = np.random.default_rng(seed + 1)
        train_index = np.sort(rng.choice(train_index, max_train_images, replace=False))
    test_index = np.concatenate([split["test_normal"], split["test_anomalous"]])
    test_labels = np.concatenate([np.zeros(len(split["test_normal"])), np.ones(len(split["test_anomalous"]))])
    def convert(part: str, index: np.ndarray) -> np.ndarray:
        return _to_model(images[index if part in parts else index[:0]], image_size, channels)

    return DataSplit(
        train=convert("train", train_index),
        calibration=convert("calibration", split["calibration"]),
        test=convert("test", test_index),
        test_labels=test_labels.astype(np.int64),
        channels=channels,
        info={
            "dataset": name, "anomaly_class": anomaly_class,
            "anomaly_name": CLASS_NAMES[name][anomaly_class],
            "n_train": len(train_index), "n_calibration": len(split["calibration"]),
            "n_test_normal": len(split["test_normal"]), "n_test_anomalous": len(split["test_anomalous"]),
        },
    )


def _folder_images(folder: Path, image_size: int, channels: int | None, log) -> tuple[np.ndarray, list[Path], int]:
    if not folder.exists():
        raise UsageError(f"{folder}: folder not found (give a folder of images, or one of the datasets "
                         f"{', '.join(DATASETS)})")
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder; give a folder of images or a dataset name ({', '.join(DATASETS)})")
    paths = list_images(folder)
    if not paths:
        raise UsageError(f"{folder}: no images found (looked recursively for png, jpg, jpeg, bmp, tif)")
    channels = channels or detect_channels(paths)
    images, loaded, failed = load_images(paths, image_size, channels)
    for path, reason in failed:
        log(f"skipped: {reason}")
    if failed:
        log(f"{len(failed)} of {len(paths)} image(s) in {folder} could not be read and were skipped")
    if len(images) == 0:
        raise UsageError(f"{folder}: none of the {len(paths)} image files could be read")
    return images, loaded, channels


def load_folder(
    folder: str | os.PathLike, image_size: int, seed: int,
    calibration_fraction: float = 0.1, channels: int | None = None,
    max_train_images: int | None = None, log=print,
) -> DataSplit:
    """Normal images from a folder (recursive), with a seeded calibration hold-out."""
    folder = Path(folder)
    images, _, channels = _folder_images(folder, image_size, channels, log)
    n_calibration = int(round(calibration_fraction * len(images)))
    if n_calibration < MIN_CALIBRATION_IMAGES or len(images) - n_calibration < MIN_CALIBRATION_IMAGES:
        raise UsageError(
            f"{folder}: too few normal images ({len(images)}): the calibration hold-out "
            f"({calibration_fraction:.0%}) needs at least {MIN_CALIBRATION_IMAGES}; add images "
            f"(at least {int(np.ceil(MIN_CALIBRATION_IMAGES / calibration_fraction))}) or raise --calibration-fraction"
        )
    order = np.random.default_rng(seed).permutation(len(images))
    calibration, train = order[:n_calibration], order[n_calibration:]
    if max_train_images is not None:
        train = train[:max_train_images]
    return DataSplit(
        train=images[np.sort(train)], calibration=images[np.sort(calibration)], channels=channels,
        info={"dataset": "folder", "path": str(folder), "n_train": len(train), "n_calibration": len(calibration)},
    )


def load_labelled_folder(
    folder: str | os.PathLike, image_size: int, channels: int, log=print
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """A test folder laid out like MVTec AD: `good/` (or `normal/`, `ok/`) holds normal images,
    every other top-level subfolder holds anomalies. Returns images, labels (1 = anomaly), paths."""
    folder = Path(folder)
    images, paths, _ = _folder_images(folder, image_size, channels, log)
    top = [path.relative_to(folder).parts[0] if len(path.relative_to(folder).parts) > 1 else "" for path in paths]
    labels = np.array([0 if name.lower() in NORMAL_FOLDER_NAMES else 1 for name in top], dtype=np.int64)
    if "" in top or labels.min() == 1 or labels.max() == 0:
        raise UsageError(
            f"{folder}: a test folder needs normal images in {folder}/good/ and anomalies in other "
            f"subfolders (e.g. {folder}/scratch/); found subfolders: {sorted(set(top) - {''}) or 'none'}"
        )
    return images, labels, paths


def source_channels(source: str) -> int:
    """The channel count a source naturally has: the dataset's, or detected from a folder."""
    if is_benchmark(source):
        return DATASETS[source]["channels"]
    paths = list_images(source) if Path(source).is_dir() else []
    return detect_channels(paths) if paths else 1


def source_image_size(source: str, sample: int = 16) -> int:
    """The model size a source needs: the smallest of IMAGE_SIZES that holds the long side of
    its images (the median over the first readable ones), capped at the largest. Benchmarks
    (28 and 32 px) get 32."""
    from adegan.training.config import IMAGE_SIZES

    if is_benchmark(source) or not Path(source).is_dir():
        return IMAGE_SIZES[0]
    sides = []
    for path in list_images(source):
        header = read_header(path)  # the size without decoding, where the header gives it
        try:
            sides.append(max(header[:2]) if header and min(header[:2]) > 0 else max(read_image(path).shape[:2]))
        except ImageDecodeError:
            continue
        if len(sides) >= sample:
            break
    return image_size_for(float(np.median(sides))) if sides else IMAGE_SIZES[0]


def image_size_for(long_side: float) -> int:
    """The smallest model size that holds `long_side` pixels, capped at the largest."""
    from adegan.training.config import IMAGE_SIZES

    return next((size for size in IMAGE_SIZES if size >= long_side), IMAGE_SIZES[-1])


def load_source(config, image_size: int, channels: int, log=print) -> DataSplit:
    """The training data for a TrainConfig: a benchmark name or a folder of normal images."""
    if is_benchmark(config.source):
        return load_benchmark(
            config.source, config.anomaly_class, config.seed, image_size,
            config.calibration_fraction, config.dataset_path, config.max_train_images, channels,
            parts=("train", "calibration"),
        )
    if config.anomaly_class is not None:
        raise UsageError("--anomaly-class applies to benchmark datasets only, not to a folder")
    return load_folder(
        config.source, image_size, config.seed, config.calibration_fraction,
        channels, config.max_train_images, log,
    )
