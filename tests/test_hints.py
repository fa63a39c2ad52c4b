"""Every next-step hint the commands print is a command that works as printed: train -> its hints
-> export -> its hints, each run in a real process (a camera hint is only checked for its form)."""

import shlex
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adegan", *command], capture_output=True, text=True, timeout=600)


def hints(stdout: str) -> list[list[str]]:
    """The commands listed under `next:`, split as a shell would."""
    lines = stdout.splitlines()
    start = lines.index("next:") + 1
    commands = []
    for line in lines[start:]:
        if not line.startswith("  adegan "):
            break
        commands.append(shlex.split(line.strip())[1:])
    return commands


def test_without_the_export_extras_the_first_hint_installs_them(synthetic_data, tmp_path):
    """Only `adegan[train]` installed (onnx hidden here): the hints start with the pip line that
    makes the next one work, rather than an export that would stop at a missing module."""
    script = ("import sys; sys.modules['onnx'] = None\n"
              f"sys.argv = ['adegan', 'train', {str(synthetic_data['train'])!r}, '--out', {str(tmp_path / 'r')!r}, "
              "'--no-progress']\nfrom adegan.cli import app\napp()")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    after = result.stdout.split("next:\n", 1)[1].splitlines()
    assert after[0].strip().startswith("pip install") and "[export,cpu]" in after[0]
    assert after[1].strip().startswith("adegan export")


def test_the_hints_after_train_and_export_run_as_printed(synthetic_data, tmp_path):
    run_dir = tmp_path / "my run"  # a space in the path: the hints must quote it
    trained = run(["train", str(synthetic_data["train"]), "--out", str(run_dir), "--no-progress"])
    assert trained.returncode == 0, trained.stderr
    after_train = hints(trained.stdout)
    assert after_train and after_train[0][0] == "export"
    for command in after_train:
        result = run(command)
        assert result.returncode == 0, f"hint `adegan {shlex.join(command)}` failed: {result.stderr}"
    exported = result  # the first hint was the export
    after_export = hints(exported.stdout)
    assert [c[0] for c in after_export] == ["info", "score", "watch"]
    for command in after_export:
        if "--camera" in command:  # no camera here: the options must at least parse and name the bundle
            assert command[command.index("--model") + 1] == str(run_dir / "bundle")
            continue
        result = run(command)
        assert result.returncode == 0, f"hint `adegan {shlex.join(command)}` failed: {result.stderr}"
