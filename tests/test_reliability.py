"""Faults: a training process killed outright, and a crash in the middle of a file write."""

import signal
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from adegan.runtime.files import atomic_write_bytes  # noqa: E402
from adegan.training.checkpoint import load_checkpoint  # noqa: E402


def test_sigkill_mid_run_resumes_from_the_last_checkpoint(synthetic_data, tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "adegan", "train", str(synthetic_data["train"]), "--out", str(run_dir),
               "--preset", "tiny", "--epochs", "4", "--batch-size", "32", "--no-progress"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("epoch 2/"):
            break
    process.send_signal(signal.SIGKILL)  # no chance to save anything
    process.wait(timeout=30)
    saved = load_checkpoint(run_dir)  # the last epoch-end checkpoint is intact
    assert saved["epoch"] >= 2 and not saved["complete"]
    resumed = subprocess.run(command[:-1] + ["--resume", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "trained 4 epochs" in resumed.stdout
    final = load_checkpoint(run_dir)
    assert final["complete"] and final["step"] == 4 * 9


def test_a_crash_mid_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"previous good content")

    def crashing_writer(file):
        file.write(b"half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, crashing_writer)
    assert target.read_bytes() == b"previous good content"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind
