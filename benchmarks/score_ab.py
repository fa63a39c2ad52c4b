"""`adegan score` from two source trees, side by side: is a change faster, and are its rows the same?

Each repeat runs the command from tree A, then from tree B (the order alternates between
repeats), then bare ONNX Runtime on the same images (as speed.py measures it), so a slow spell
of a shared machine touches all three alike. Reports images/s per repeat, their medians, the
ratio of each tree to bare ORT, how many repeats B was faster in, and whether the two trees
wrote byte-identical results files (CSV, and JSONL when --jsonl).

    git worktree add /tmp/before HEAD~1
    python benchmarks/score_ab.py /tmp/before . BUNDLE FOLDER --batch 1 32 --repeats 9 --out results/x.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmark_results import save_results
from speed import bare_onnxruntime, model_inputs


def score_in(tree: Path, bundle: Path, folder: Path, out: Path, batch: int) -> float:
    """images/s from `python -m adegan score` run in `tree` (its adegan package comes first)."""
    result = subprocess.run([sys.executable, "-m", "adegan", "score", str(folder.resolve()), "--model",
                             str(bundle.resolve()), "--out", str(out), "--batch-size", str(batch), "--json",
                             "--no-progress"], cwd=tree, capture_output=True, text=True)
    if result.returncode not in (0, 4):  # 4: anomalies found, still a full run
        raise SystemExit(f"{tree}: adegan score failed ({result.returncode}): {result.stderr.strip()[-400:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["images_per_second"]


def compare(trees: tuple[Path, Path], bundle: Path, folder: Path, batch: int, repeats: int, jsonl: bool) -> dict:
    from adegan.runtime.images import list_image_names
    from adegan.runtime.model import inference_batch

    manifest = json.loads((bundle / "adegan.json").read_text())
    preloaded = model_inputs(list_image_names(folder), manifest["input"]["image_size"], manifest["input"]["channels"])
    rates: dict[str, list[float]] = {"a": [], "b": [], "bare_ort": []}
    identical = True
    with tempfile.TemporaryDirectory() as work:
        for repeat in range(repeats):
            written = {}
            for name in ("a", "b") if repeat % 2 == 0 else ("b", "a"):
                suffix = ".jsonl" if jsonl and repeat == 0 else ".csv"
                out = Path(work) / f"{name}{repeat}{suffix}"
                rates[name].append(score_in(trees[0 if name == "a" else 1], bundle, folder, out, batch))
                written[name] = out.read_bytes()
            identical &= written["a"] == written["b"]
            rates["bare_ort"].append(bare_onnxruntime(bundle, preloaded, batch, inference_batch(manifest, True)))
    medians = {name: float(np.median(values)) for name, values in rates.items()}
    row = {"batch": batch, "identical_rows": identical,
           "median_images_per_second": {name: round(value, 1) for name, value in medians.items()},
           "a_over_bare_ort": round(medians["a"] / medians["bare_ort"], 3),
           "b_over_bare_ort": round(medians["b"] / medians["bare_ort"], 3),
           "b_faster_in": f"{sum(b > a for a, b in zip(rates['a'], rates['b']))} of {repeats}",
           "each_repeat": {name: [round(value, 1) for value in values] for name, values in rates.items()}}
    print(json.dumps({key: row[key] for key in row if key != "each_repeat"}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("tree_a", type=Path, help="source tree of the version before (a git worktree)")
    parser.add_argument("tree_b", type=Path, help="source tree of the version after")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("folder", type=Path, help="images to score")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="--batch-size values to measure")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--jsonl", action="store_true", help="the first repeat writes JSONL instead of CSV")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args()
    rows = [compare((args.tree_a, args.tree_b), args.bundle, args.folder, batch, args.repeats, args.jsonl)
            for batch in args.batch]
    save_results(args.out, args, {"rows": rows})


if __name__ == "__main__":
    main()
