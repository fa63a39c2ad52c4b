"""The commands through typer's test runner, as a user types them."""

import json
import re

import pytest
from typer.testing import CliRunner

from adegan.cli import app

pytest.importorskip("torch")
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_train_then_evaluate_a_folder(synthetic_data, tmp_path):
    run_dir = tmp_path / "run"
    result = invoke("train", synthetic_data["train"], "--out", run_dir, "--method", "adegan", "--preset", "tiny",
                    "--patterns", "4", "--epochs", "2", "--batch-size", "32", "--no-progress", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 2 and summary["calibration"]["n_images"] == 32

    result = invoke("evaluate", run_dir, synthetic_data["test"])
    assert result.exit_code == 0, result.output
    for line in ("AUC  ", "AUC reconstruction", "AUC pattern", "anomalies flagged"):
        assert line in result.stdout
    result = invoke("evaluate", run_dir, synthetic_data["test"], "--json")
    metrics = json.loads(result.stdout)
    assert set(metrics["auc"]) >= {"combined", "reconstruction", "pattern"}

    # Two anomaly folders: an AUC and the share flagged per folder (per defect type).
    import shutil

    two_kinds = tmp_path / "two_kinds"
    shutil.copytree(synthetic_data["test"], two_kinds)
    (two_kinds / "scratch").mkdir()
    for path in sorted((two_kinds / "defect").iterdir())[:20]:
        path.rename(two_kinds / "scratch" / path.name)
    result = invoke("evaluate", run_dir, two_kinds, "--out", tmp_path / "ev2")
    assert result.exit_code == 0, result.output
    per_kind = json.loads((tmp_path / "ev2" / "metrics.json").read_text())["per_kind"]
    assert {k: v["images"] for k, v in per_kind.items()} == {"defect": 40, "scratch": 20}
    for kind, entry in per_kind.items():
        line = f"{kind} +AUC {entry['auc']:.3f}, {entry['flagged']:.1%} of {entry['images']} flagged"
        assert re.search(line.replace(".", r"\.").replace("%", "%"), result.stdout), result.stdout
    result = invoke("evaluate", run_dir, synthetic_data["test"], "--report", tmp_path / "report.html")
    assert result.exit_code == 0 and f"wrote {tmp_path / 'report.html'}" in result.stdout, result.output
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")
    result = invoke("evaluate", run_dir, synthetic_data["test"], "--report", tmp_path / "report.pdf")
    assert result.exit_code == 2 and "give a name ending in .html" in result.output

    again = invoke("train", synthetic_data["train"], "--out", run_dir, "--preset", "tiny", "--epochs", "2")
    assert again.exit_code == 2 and "already holds a run" in again.output and "--resume" in again.output
    more = invoke("train", synthetic_data["train"], "--out", run_dir, "--resume", "--epochs", "3", "--no-progress")
    assert more.exit_code == 0, more.output
    assert "trained 3 epochs" in more.stdout
    same = invoke("train", synthetic_data["train"], "--out", run_dir, "--resume", "--no-progress")
    assert same.exit_code == 0 and "trained 3 epochs" in same.stdout  # keeps the run's own total
    fewer = invoke("train", synthetic_data["train"], "--out", run_dir, "--resume", "--epochs", "1")
    assert fewer.exit_code == 2 and "already trained 3 epochs" in fewer.output


@pytest.mark.parametrize("args,message", [
    (["train", "imagenet", "--out", "{tmp}/r"], "one of the datasets mnist, fashion-mnist, cifar10"),
    (["train", "{tmp}/empty", "--out", "{tmp}/r"], "no images found"),
    (["train", "mnist", "--out", "{tmp}/r"], "--anomaly-class"),
    (["train", "mnist", "--anomaly-class", "11", "--out", "{tmp}/r"], "between 0 and 9"),
    (["train", "{tmp}/missing", "--out", "{tmp}/r"], "folder not found"),
    (["train", "{data}", "--anomaly-class", "1", "--out", "{tmp}/r"], "benchmark datasets only"),
    (["train", "{data}", "--image-size", "48", "--out", "{tmp}/r"], "image size must be one of"),
    (["evaluate", "{tmp}/nothing"], "checkpoint not found"),
])
def test_bad_input_gives_one_clear_line(args, message, synthetic_data, tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke(*[a.format(tmp=tmp_path, data=synthetic_data["train"]) for a in args])
    assert result.exit_code in (1, 2), result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.output
    assert "Traceback" not in result.output


def test_help_has_examples():
    result = invoke("train", "--help")
    assert result.exit_code == 0 and "Examples" in result.stdout and "--anomaly-class" in result.stdout


def test_sigint_saves_a_resumable_checkpoint(synthetic_data, tmp_path, sigint_default):
    """A real process and a real SIGINT (Ctrl-C): exit code 130 and a mid-run checkpoint."""
    import signal
    import subprocess
    import sys

    import torch

    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "adegan", "train", str(synthetic_data["train"]), "--out", str(run_dir),
         "--method", "adegan", "--preset", "tiny", "--epochs", "1000", "--batch-size", "32", "--no-progress"],
        stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default,
    )
    for line in process.stderr:  # wait until the first epoch is done
        if line.startswith("epoch 1/"):
            break
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130, rest
    assert "interrupted (Ctrl-C)" in rest and "error:" not in rest
    assert f"continue with: adegan train {synthetic_data['train']} --out {run_dir} --method adegan --preset tiny " \
           "--epochs 1000 --batch-size 32 --no-progress --resume" in rest
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] >= 1 and not state["complete"]

    # Resumed mid-epoch: that epoch's img/s counts only the batches run after the resume.
    total = state["epoch"] + 1
    resumed = invoke("train", synthetic_data["train"], "--out", run_dir, "--resume", "--epochs", total, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["epoch"] == total and last["batches"] == 9 - state["batch_in_epoch"]
