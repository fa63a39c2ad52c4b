"""One way for every benchmark script to record its results: the exact command as typed, the
arguments in effect (defaults included), the date and the machine, then the payload."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path


def _plain(value):
    """An argument as JSON can hold it: paths (also inside lists) as strings."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def cpu_model() -> str:
    """The processor's name (/proc/cpuinfo on Linux, else what the platform says): the same
    script runs at different speeds on different machines of one kind."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "(processor unknown)"


def save_results(path: Path, args, payload: dict, machine_detail: str = "") -> None:
    result = {
        "command": shlex.join(["python", *sys.argv]),
        "arguments": {key: _plain(value) for key, value in vars(args).items()},
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {cpu_model()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
                   + (f", {machine_detail}" if machine_detail else ""),
        **payload,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def probe_trained_runs(doc: str, probe) -> None:
    """The command line of a probe over trained leave-one-class-out runs: `probe(run_dir) -> dict`
    for every seed*_class* run with a checkpoint in the given variant folders, one JSON line per
    run, and with --out the rows in one results file."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    parser.add_argument("variants", nargs="+", type=Path, help="folders of runs (seed*_class*) of one variant each")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = []
    for folder in args.variants:
        for run_dir in sorted(folder.glob("seed*_class*")):
            if (run_dir / "checkpoint.pt").exists():
                rows.append({"variant": folder.name, **probe(run_dir)})
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        save_results(args.out, args, {"rows": rows})
