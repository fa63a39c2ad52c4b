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
               "--method", "adegan", "--preset", "tiny", "--epochs", "4", "--batch-size", "32", "--no-progress"]
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


@pytest.mark.parametrize("failure,expected", [
    (OSError(28, "No space left on device"), "no space left on the device; nothing was written"),
    (RuntimeError("the process died here"), "the process died here"),
])
def test_a_crash_mid_write_leaves_the_previous_file_intact(tmp_path, failure, expected):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"previous good content")

    def crashing_writer(file):
        file.write(b"half of the new")
        raise failure

    with pytest.raises(Exception, match=expected):
        atomic_write_bytes(target, crashing_writer)
    assert target.read_bytes() == b"previous good content"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind


EXPORT_ON_A_FULL_DISK = """
"$PY" -m adegan export "$RUN" --out "$DISK/fresh" --fp16
echo "fresh_rc=$?"
echo "fresh_left=[$(ls -A "$DISK")]"
cp -r "$HOST_BUNDLE" "$DISK/bundle"
before=$(cd "$DISK/bundle" && sha256sum * | sha256sum)
"$PY" -m adegan export "$RUN" --out "$DISK/bundle" --fp16 --force
echo "replace_rc=$?"
after=$(cd "$DISK/bundle" && sha256sum * | sha256sum)
[ "$before" = "$after" ] && echo "old bundle unchanged"
echo "replace_left=[$(ls -A "$DISK")]"
"$PY" -m adegan info "$DISK/bundle" > /dev/null && echo "old bundle still loads"
"""


def test_export_to_a_full_disk_leaves_no_half_bundle(synthetic_data, tmp_path, small_disk):
    run_dir = tmp_path / "run"
    train = subprocess.run([sys.executable, "-m", "adegan", "train", str(synthetic_data["train"]), "--out",
                            str(run_dir), "--preset", "tiny", "--epochs", "1", "--batch-size", "32", "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    host_bundle = tmp_path / "bundle"
    exported = subprocess.run([sys.executable, "-m", "adegan", "export", str(run_dir), "--out", str(host_bundle)],
                              capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    bundle_kb = sum(p.stat().st_size for p in host_bundle.iterdir()) // 1024
    # Room for the old fp32 bundle, not for a new fp32 + fp16 one beside it.
    done = small_disk(tmp_path / "disk", bundle_kb + 48, EXPORT_ON_A_FULL_DISK, PY=sys.executable,
                      RUN=str(run_dir), HOST_BUNDLE=str(host_bundle))
    output = done.stdout + done.stderr
    assert "fresh_rc=1" in output and "fresh_left=[]" in output, output
    assert "replace_rc=1" in output and "replace_left=[bundle]" in output, output
    assert "old bundle unchanged" in output and "old bundle still loads" in output, output
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("no space left on the device" in e for e in errors), output
    assert "no partial bundle was left" in errors[0] and "previous bundle there is unchanged" in errors[1]
    assert "Traceback" not in output


def test_full_disk_while_training_keeps_the_last_checkpoint(synthetic_data, tmp_path, monkeypatch):
    import errno

    from adegan.errors import DiskFullError
    from adegan.training import trainer as trainer_module
    from adegan.training.config import ModelConfig, TrainConfig

    real_save, calls = trainer_module.save_checkpoint, []

    def save_then_fill_the_disk(path, state):
        calls.append(state["epoch"])
        if len(calls) == 1:
            return real_save(path, state)

        def no_space(file):
            file.write(b"part of a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        atomic_write_bytes(path, no_space)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_then_fill_the_disk)
    config = TrainConfig(source=str(synthetic_data["train"]), epochs=3, batch_size=32, method="adegan")
    with pytest.raises(DiskFullError, match=r"no space left on the device; the last checkpoint is intact.*--resume"):
        trainer_module.train(ModelConfig.preset("tiny", n_patterns=4), config, tmp_path / "run",
                             progress=False, log=lambda m: None)
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1  # epoch 1's checkpoint, untouched
