import numpy as np
import pytest

from adegan.errors import UsageError
from adegan.training.data import leave_one_class_out, load_folder, load_labelled_folder, load_benchmark
from conftest import normal_image, write_images


def test_leave_one_class_out_counts_on_a_fake_10_class_dataset():
    labels = np.repeat(np.arange(10), 100)  # 1,000 images, 100 per class
    split = leave_one_class_out(labels, anomaly_class=3, seed=7)
    assert len(split["test_anomalous"]) == 100 and set(labels[split["test_anomalous"]]) == {3}
    assert len(split["test_normal"]) == 180  # 20 % of the 900 normals
    assert len(split["calibration"]) == 72  # 10 % of the 720
    assert len(split["train"]) == 648
    used = np.concatenate([split[k] for k in ("train", "calibration", "test_normal")])
    assert len(np.unique(used)) == 900 and 3 not in set(labels[used])  # disjoint, no anomaly leaks
    again = leave_one_class_out(labels, anomaly_class=3, seed=7)
    assert all(np.array_equal(split[k], again[k]) for k in split)  # seeded
    other = leave_one_class_out(labels, anomaly_class=3, seed=8)
    assert not np.array_equal(split["train"], other["train"])


def test_folder_skips_corrupt_images_and_reports_them(tmp_path):
    rng = np.random.default_rng(0)
    write_images(tmp_path / "nested" / "deeper", [normal_image(rng, 28) for _ in range(120)])
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored")
    messages = []
    data = load_folder(tmp_path, image_size=32, seed=0, log=messages.append)
    assert data.train.shape[1:] == (1, 32, 32) and data.train.dtype == np.uint8
    assert len(data.train) + len(data.calibration) == 120 and len(data.calibration) == 12
    assert any("2 of 122" in m for m in messages)
    assert any("broken.png" in m for m in messages)


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(UsageError, match="folder not found"):
        load_folder(tmp_path / "missing", 32, 0)
    with pytest.raises(UsageError, match="no images found"):
        load_folder(tmp_path, 32, 0)
    write_images(tmp_path / "few", [normal_image(np.random.default_rng(0)) for _ in range(30)])
    with pytest.raises(UsageError, match="too few normal images"):
        load_folder(tmp_path / "few", 32, 0)


def test_colour_folder_is_detected_and_can_be_forced_gray(tmp_path):
    rng = np.random.default_rng(0)
    images = [np.stack([normal_image(rng), np.zeros((32, 32), np.uint8), normal_image(rng)], axis=2)
              for _ in range(100)]
    write_images(tmp_path, images)
    assert load_folder(tmp_path, 64, 0).train.shape[1:] == (3, 64, 64)
    assert load_folder(tmp_path, 32, 0, channels=1).train.shape[1:] == (1, 32, 32)


def test_labelled_folder_needs_good_and_defect_subfolders(tmp_path, synthetic_data):
    images, labels, paths = load_labelled_folder(synthetic_data["test"], 32, 1)
    assert len(images) == 120 and labels.sum() == 60
    assert all((label == 1) == ("defect" in str(path)) for label, path in zip(labels, paths))
    with pytest.raises(UsageError, match="good/"):
        load_labelled_folder(synthetic_data["train"], 32, 1)


def test_unknown_dataset_and_class():
    with pytest.raises(UsageError, match="unknown dataset"):
        load_benchmark("imagenet", 0, 0, 32)
    with pytest.raises(UsageError, match="anomaly-class"):
        load_benchmark("mnist", 12, 0, 32)
    with pytest.raises(UsageError, match="anomaly-class"):
        load_benchmark("mnist", None, 0, 32)


def test_missing_dataset_file_says_where_it_looked(tmp_path):
    with pytest.raises(UsageError, match="mnist data not found at .*--dataset-path"):
        load_benchmark("mnist", 0, 0, 32, dataset_path=str(tmp_path / "nope.npz"))


def test_benchmark_converts_only_the_parts_asked_for(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=rng.integers(0, 256, (200, 28, 28), dtype=np.uint8), y_train=np.arange(200) % 10,
             x_test=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), y_test=np.arange(50) % 10)
    full = load_benchmark("mnist", 3, 0, 32, dataset_path=str(path))
    test_only = load_benchmark("mnist", 3, 0, 32, dataset_path=str(path), parts=("test",))
    assert full.train.shape == (162, 1, 32, 32) and len(full.calibration) == 18  # 225 normals: 45 test, 18 calibration
    assert test_only.train.shape == (0, 1, 32, 32) and len(test_only.calibration) == 0
    assert np.array_equal(test_only.test, full.test) and np.array_equal(test_only.test_labels, full.test_labels)
    assert test_only.info == full.info


def test_sizes_and_channels_of_a_folder_come_from_headers_where_they_can(tmp_path, monkeypatch):
    """A folder's model size and channel count are read from file headers: a mono JPEG or an 8-bit
    gray PNG is not decoded; a file stored as colour still is, to see whether it is gray."""
    import cv2

    from adegan.runtime import images
    from adegan.training import data

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (90, 200), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), gray)
    cv2.imwrite(str(tmp_path / "b.png"), gray)
    decoded = []
    read_image = images.read_image
    for module in (images, data):
        monkeypatch.setattr(module, "read_image", lambda path, *rest, **options: decoded.append(path)
                            or read_image(path, *rest, **options))
    assert data.source_image_size(str(tmp_path)) == 256 and data.source_channels(str(tmp_path)) == 1
    assert decoded == []
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(gray[:, :100], cv2.COLOR_GRAY2BGR))  # gray, stored as colour
    (tmp_path / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert data.source_image_size(str(tmp_path)) == 256 and data.source_channels(str(tmp_path)) == 1
    assert [path.name for path in decoded] == ["d.png", "c.png", "d.png"]
    cv2.imwrite(str(tmp_path / "e.png"), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    assert data.source_channels(str(tmp_path)) == 3
