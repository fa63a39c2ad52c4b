"""Training under torchrun: two CPU processes on gloo, as `torchrun --standalone --nproc-per-node 2`.

Small enough for the default run (a tiny preset, 32 px, a few hundred images, ~30 s in all)."""

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed")

from adegan.runtime.score import calibrate  # noqa: E402
from adegan.training.checkpoint import load_checkpoint  # noqa: E402
from adegan.training.inference import detector_outputs, load_detector  # noqa: E402


def torchrun(*arguments, processes: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "adegan", *[str(a) for a in arguments]]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_two_processes_train_checkpoint_resume_and_load_in_one(synthetic_data, tmp_path):
    run = tmp_path / "run"
    gan = ["--method", "adegan", "--preset", "tiny", "--batch-size", "16", "--no-progress"]
    first = torchrun("train", synthetic_data["train"], "--out", run, "--epochs", "1", *gan)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("trained 1 epochs") == 1  # rank 0 reports, rank 1 stays quiet
    assert "x 2 processes (gloo)" in first.stderr
    config = json.loads((run / "config.json").read_text())["distributed"]
    assert config == {"world_size": 2, "backend": "gloo", "batch_per_process": 16, "effective_batch": 32}
    # 288 training images / (16 per process x 2 processes) = 9 steps per epoch
    assert load_checkpoint(run)["step"] == 9 and load_checkpoint(run)["distributed"]["world_size"] == 2

    resumed = torchrun("train", synthetic_data["train"], "--out", run, "--resume", "--epochs", "2", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = load_checkpoint(run)
    assert state["epoch"] == 2 and state["step"] == 18 and state["complete"]
    assert not any(key.startswith("module.") for key in state["generator"])  # no wrapper prefixes

    # One process loads it and recalibrates the same weights on the same images: the threshold
    # rank 0 computed comes back to floating-point tolerance.
    detector, _, train_config, calibration, state = load_detector(run, "cpu")
    errors, probs = detector_outputs(detector, state["calibration_sample"].numpy(), "cpu")
    again = calibrate(errors, probs, train_config.target_fpr, train_config.score_mode)
    assert len(state["calibration_sample"]) == calibration.n_images
    assert again.mu_e == pytest.approx(calibration.mu_e, rel=1e-6)
    assert again.threshold == pytest.approx(calibration.threshold, abs=1e-6)
    exported = subprocess.run([sys.executable, "-m", "adegan", "export", str(run)], capture_output=True, text=True,
                              timeout=300)
    assert exported.returncode == 0, exported.stderr


def test_a_memory_bank_under_torchrun_is_built_once_by_rank_0(synthetic_data, tmp_path):
    run = tmp_path / "bank"
    result = torchrun("train", synthetic_data["train"], "--out", run, "--no-progress", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('"run_dir"') == 1 and "built by rank 0 alone" in result.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_gradients_are_averaged_over_ranks(monkeypatch):
    """The averaging itself, in one process: a stand-in all-reduce adds the other rank's gradient
    (all ones), and each parameter ends with the mean of the two."""
    import torch.distributed as dist

    from adegan.training.distributed import Distributed

    layer = torch.nn.Linear(3, 2)
    layer(torch.full((1, 3), 4.0)).sum().backward()
    mine = [p.grad.clone() for p in layer.parameters()]
    monkeypatch.setattr(dist, "all_reduce", lambda tensor: tensor.add_(1.0))
    Distributed(world_size=2, rank=0, backend="gloo").average_gradients(layer)
    for parameter, own in zip(layer.parameters(), mine):
        assert torch.allclose(parameter.grad, (own + 1.0) / 2)


def test_killing_one_process_stops_all_and_resume_finishes(synthetic_data, tmp_path):
    """SIGKILL on one rank mid-run: torchrun ends the others, rank 0's last epoch-end checkpoint
    is intact, and --resume under torchrun finishes the run."""
    import os
    import signal
    import time
    from pathlib import Path

    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "adegan",
               "train", str(synthetic_data["train"]), "--out", str(run), "--method", "adegan", "--preset", "tiny",
               "--batch-size", "16", "--epochs", "200", "--no-progress"]
    launcher = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in launcher.stderr:
        if line.startswith("epoch 1/"):
            break
    workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
               and (p / "stat").exists() and _parent(p) == launcher.pid]
    assert len(workers) == 2
    os.kill(max(workers), signal.SIGKILL)  # one rank dies without warning
    start = time.monotonic()
    launcher.communicate(timeout=120)
    assert launcher.returncode != 0 and time.monotonic() - start < 60
    saved = load_checkpoint(run)
    assert saved["epoch"] >= 1 and not saved["complete"]
    resumed = torchrun("train", synthetic_data["train"], "--out", run, "--resume", "--epochs", saved["epoch"] + 1,
                       "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(run)["complete"]


def _parent(process) -> int:
    try:
        return int((process / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


@pytest.mark.gpu
def test_nccl_on_gpus_trains_and_records_its_backend(synthetic_data, tmp_path):
    """The GPU path: one process per visible GPU (two at most), NCCL. Run with `pytest -m gpu`."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    processes = min(2, torch.cuda.device_count())
    run = tmp_path / "run"
    result = torchrun("train", synthetic_data["train"], "--out", run, "--epochs", "1", "--method", "adegan",
                      "--preset", "tiny", "--batch-size", "16", "--device", "cuda", "--no-progress",
                      processes=processes)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())["distributed"]
    assert config["backend"] == "nccl" and config["world_size"] == processes
    assert load_checkpoint(run)["complete"]
