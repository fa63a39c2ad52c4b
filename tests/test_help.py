"""`--help` of every command reads whole at 80 columns: no cut option names, no markup eaten,
options in panels, examples that name real options."""

import os
import re
import subprocess
import sys

import pytest
import typer.main

from adegan.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)


def help_text(command: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": "80", "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-m", "adegan", command, "--help"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns_with_every_option_whole(command):
    text = help_text(command)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text, f"something was cut:\n{text}"
    click_command = typer.main.get_command(app).commands[command]
    for parameter in click_command.params:
        for name in parameter.opts + parameter.secondary_opts:
            if name.startswith("--"):
                assert re.search(rf"{re.escape(name)}\b", text), f"{name} is missing from `{command} --help`"
    for example in re.findall(r"^\s*adegan (.+)$", text, flags=re.M):  # examples use options that exist
        for option in re.findall(r"(?<=\s)--[a-z0-9-]+", " " + example):
            known = {n for p in click_command.params for n in p.opts + p.secondary_opts}
            if example.split()[0] == command:
                assert option in known, f"example `adegan {example}` uses unknown {option}"


def test_train_help_groups_options_and_keeps_bracketed_text():
    text = help_text("train")
    for panel in ("Data", "Detector", "ADe-GAN and autoencoder training", "Score", "Options"):
        assert f"─ {panel} ─" in text
    flat = " ".join(text.replace("│", " ").split())
    assert "(default: 15; with --resume" in flat
    assert "cuda[:N]" in flat  # square brackets in help are not eaten as markup


@pytest.mark.parametrize("args,option", [
    (["score", "x", "--model", "b", "--workers", "-1"], "--workers"),
    (["score", "x", "--model", "b", "--batch-size", "-1"], "--batch-size"),
    (["score", "x", "--model", "b", "--threshold", "nan"], "--threshold"),
    (["calibrate", "b", "good", "--target-fpr", "2"], "--target-fpr"),
    (["train", "d", "--out", "r", "--target-fpr", "0"], "--target-fpr"),
    (["train", "d", "--out", "r", "--calibration-fraction", "1.5"], "--calibration-fraction"),
    (["train", "d", "--out", "r", "--blur", "-1"], "--blur"),
    (["train", "d", "--out", "r", "--bank-size", "0"], "--bank-size"),
    (["watch", "--model", "b", "--video", "v.mp4", "--duration", "-5"], "--duration"),
    (["watch", "--model", "b", "--video", "v.mp4", "--max-frames", "0"], "--max-frames"),
    (["bench", "b", "-b", "0"], "--batch-size"),
    (["export", "r", "--max-batch", "0"], "--max-batch"),
])
def test_options_are_checked_at_the_command_line_edge(args, option):
    """A bad value is refused before any work starts: exit code 2 and a message naming the option."""
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output
