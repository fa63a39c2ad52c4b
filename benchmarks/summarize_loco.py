"""Tables from the leave-one-class-out results: per-class AUC per dataset and tier (MNIST beside
the paper's Table 1), the ablations side by side, and the n_c sweep beside the paper's Table 2.

    python benchmarks/summarize_loco.py            # writes benchmarks/results/loco/SUMMARY.md

Means are over the anomaly classes of one seed, then mean ± std over seeds (std only with ≥ 2
seeds). A variant whose classes are not all done is marked with how many are.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from adegan.runtime.files import atomic_write_text

PAPER_TABLE_1 = [0.971, 0.768, 0.967, 0.923, 0.888, 0.941, 0.928, 0.886, 0.947, 0.852]  # MNIST, mean 0.907
PAPER_TABLE_2 = {2: 0.801, 4: 0.856, 6: 0.876, 8: 0.883, 10: 0.907, 12: 0.899, 14: 0.880}
PARTS = {"combined": "combined (as deployed)", "reconstruction": "reconstruction only",
         "pattern": "pattern only (1 − m)", "combined_two-sided": "combined, two-sided Eq. 9"}
VARIANT_ORDER = ["memory-bank", "memory-bank-cosine", "memory-bank-pixels+learned", "memory-bank-learned", "default",
                 "no-ip", "no-interpolation", "autoencoder"]


def _value(row: dict, part: str) -> float:
    """An AUC of a row: a score part ("combined") or a baseline ("baselines/knn-cos-5")."""
    if part.startswith("baselines/"):
        return row.get("baselines", {}).get(part.split("/", 1)[1])
    return row["auc"].get(part)  # None: a run that did not record this part


def load(results: Path) -> dict:
    """{(dataset, tier, variant): {seed: {class: row}}}"""
    table: dict = defaultdict(lambda: defaultdict(dict))
    for path in sorted(results.glob("*/*/*/seed*_class*.json")):
        row = json.loads(path.read_text())
        table[(row["dataset"], row["tier"], row["variant"])][row["seed"]][row["anomaly_class"]] = row
    return table


def _complete(seeds: dict) -> dict:
    """The seeds with all 10 classes done, or every seed when none is complete yet."""
    complete = {seed: runs for seed, runs in seeds.items() if len(runs) == 10}
    return complete or seeds


def _mean_over_seeds(seeds: dict, part: str) -> tuple[list[float | None], str, int]:
    """Per-class AUC averaged over the complete seeds, the 'mean ± std' cell, and how many
    classes are done (10 once any seed is complete; a seed still running does not hide it)."""
    seeds = _complete(seeds)
    per_class = []
    for anomaly_class in range(10):
        values = [_value(runs[anomaly_class], part) for runs in seeds.values() if anomaly_class in runs]
        values = [v for v in values if v is not None]
        per_class.append(statistics.mean(values) if values else None)
    seed_values = [[_value(r, part) for r in runs.values()] for runs in seeds.values() if len(runs) == 10]
    seed_means = [statistics.mean(values) for values in seed_values if None not in values]
    done = max(len(runs) for runs in seeds.values())
    if not seed_means:
        return per_class, "—", done
    cell = f"{statistics.mean(seed_means):.3f}"
    if len(seed_means) > 1:
        cell += f" ± {statistics.stdev(seed_means):.3f}"
    return per_class, cell, done


def _cells(values) -> str:
    return " | ".join("—" if v is None else f"{v:.3f}" for v in values)


def per_class_tables(table: dict) -> list[str]:
    lines = []
    for (dataset, tier, variant), seeds in _in_order(table):
        rows = _first_row(seeds)
        lines += [f"### {dataset}, {tier} tier, {variant}", "",
                  f"Seeds {_seed_note(seeds)}; {_budget(rows)}. Command: `{rows['command']}`", "",
                  "| score | " + " | ".join(str(c) for c in range(10)) + " | mean |",
                  "|---|" + "---|" * 11]
        for part, label in PARTS.items():
            per_class, cell, done = _mean_over_seeds(seeds, part)
            note = "" if done == 10 else f" ({done}/10 classes)"
            lines.append(f"| {label} | {_cells(per_class)} | {cell}{note} |")
        if dataset == "mnist":
            lines.append(f"| paper, Table 1 | {_cells(PAPER_TABLE_1)} | {statistics.mean(PAPER_TABLE_1):.3f} |")
        lines.append("")
    return lines


def _first_row(seeds: dict) -> dict:
    """One result row of a variant (its budget, command and configs are the same in every row)."""
    return next(iter(next(iter(seeds.values())).values()))


def _seed_note(seeds: dict) -> str:
    """'0 1 2', or '0 1 (2: 4/10 classes, not in the means)' while a seed is still running."""
    complete = _complete(seeds)
    note = " ".join(map(str, sorted(complete)))
    running = [f"{seed}: {len(runs)}/10 classes" for seed, runs in sorted(seeds.items()) if seed not in complete]
    return note + (f" ({', '.join(running)}, not in the means)" if running else "")


def _in_order(table: dict) -> list:
    """(key, seeds) by dataset, tier, then variant: named variants first, then n_c ascending."""
    return sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1], _order(kv[0][2])))


def _order(variant: str) -> tuple:
    if variant in VARIANT_ORDER:
        return (0, VARIANT_ORDER.index(variant), "")
    if variant.startswith("patterns-"):
        return (1, int(variant.split("-")[1]), "")
    return (2, 0, variant)


def _budget(row: dict) -> str:
    train = row["train_config"]
    images = train["max_train_images"] or "all"
    return (f"{images} training normals, {train['epochs']} epochs, width {row['model_config']['width']}, "
            f"K = {row['model_config']['n_patterns']}, method {train.get('method', 'adegan')}")


def ablation_table(table: dict) -> list[str]:
    lines = ["| dataset | tier | variant | seeds | combined | reconstruction only | pattern only | two-sided |",
             "|---|---|---|---|---|---|---|---|"]
    for (dataset, tier, variant), seeds in _in_order(table):
        cells = []
        for part in PARTS:
            _, cell, done = _mean_over_seeds(seeds, part)
            cells.append(cell if done == 10 else f"({done}/10)")
        lines.append(f"| {dataset} | {tier} | {variant} | {_seed_note(seeds)} | " + " | ".join(cells) + " |")
    return lines


def probe_table(table: dict) -> list[str]:
    """Variants run on only some classes (quick probes), each beside the full variant of the same
    method (default, or autoencoder) on the same classes and seeds, so that a probe is never
    compared with a mean over other classes."""
    lines = ["| dataset | tier | variant | classes | compared with | combined: probe / that | "
             "reconstruction: probe / that | pattern: probe / that |", "|---|---|---|---|---|---|---|---|"]
    for (dataset, tier, variant), seeds in _in_order(table):
        classes = sorted(set.intersection(*(set(runs) for runs in seeds.values())))
        if len(classes) == 10 or variant in ("default", "autoencoder"):
            continue
        method = _first_row(seeds)["train_config"].get("method", "adegan")
        compared = "autoencoder" if method == "autoencoder" else "default"
        baseline = table.get((dataset, tier, compared), {})
        cells = []
        for part in ("combined", "reconstruction", "pattern"):
            probe = [seeds[s][c]["auc"][part] for s in seeds for c in classes]
            base = [baseline[s][c]["auc"][part] for s in seeds if s in baseline for c in classes
                    if c in baseline[s]]
            base_cell = f"{statistics.mean(base):.3f}" if len(base) == len(probe) else "—"
            cells.append(f"{statistics.mean(probe):.3f} / {base_cell}")
        lines.append(f"| {dataset} | {tier} | {variant} | {' '.join(map(str, classes))} | {compared} | "
                     + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def patterns_table(table: dict) -> list[str]:
    """n_c beside the paper's Table 2, each point over the seeds that every n_c has complete
    (so that a point with more seeds is not compared with one-seed points)."""
    lines = []
    for tier in sorted({key[1] for key in table if key[0] == "mnist"}):
        runs_by_n = {n: table.get(("mnist", tier, "default" if n == 10 else f"patterns-{n}"))
                     for n in PAPER_TABLE_2}
        shared = set.intersection(*(set(_complete(seeds)) for seeds in runs_by_n.values() if seeds) or [set()])
        row = ["| ours, combined |"]
        for seeds in runs_by_n.values():
            cell = "—"
            if seeds and shared:
                _, cell, done = _mean_over_seeds({s: seeds[s] for s in shared if s in seeds}, "combined")
                cell = cell if done == 10 else f"({done}/10)"
            row.append(f" {cell} |")
        lines += [f"MNIST, {tier} tier, seeds {' '.join(map(str, sorted(shared)))}:", "",
                  "| n_c | " + " | ".join(map(str, PAPER_TABLE_2)) + " |",
                  "|---|" + "---|" * len(PAPER_TABLE_2), "".join(row),
                  "| paper, Table 2 | " + " | ".join(f"{v:.3f}" for v in PAPER_TABLE_2.values()) + " |", ""]
    return lines


def baselines_table(table: dict) -> list[str]:
    """Per class: the simple baselines (computed on the same split in the same run as a variant)
    beside that variant's deployed score and the best baseline per class."""
    lines = []
    for (dataset, tier, variant), seeds in _in_order(table):
        rows = _first_row(seeds)
        if "baselines" not in rows:
            continue
        names = list(rows["baselines"])
        lines += [f"### {dataset}, {tier} tier: {variant} beside the baselines of its runs", "",
                  f"Seeds {_seed_note(seeds)}. Command: `{rows['command']}`", "",
                  "| score | " + " | ".join(str(c) for c in range(10)) + " | mean | min |", "|---|" + "---|" * 12]
        best_per_class = [None] * 10
        for part in ["combined"] + [f"baselines/{name}" for name in names]:
            per_class, cell, done = _mean_over_seeds(seeds, part)
            if part != "combined":
                best_per_class = [v if b is None or (v is not None and v > b) else b
                                  for v, b in zip(per_class, best_per_class)]
            label = f"{variant} (as deployed)" if part == "combined" else part.split("/", 1)[1]
            low = min((v for v in per_class if v is not None), default=None)
            note = "" if done == 10 else f" ({done}/10 classes)"
            lines.append(f"| {label} | {_cells(per_class)} | {cell}{note} | {_cells([low])} |")
        lines += [f"| best baseline per class (an oracle: picked on the test split, not a method) | {_cells(best_per_class)} | "
                  f"{_cells([statistics.mean(v for v in best_per_class if v is not None)])} | |", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/loco"))
    parser.add_argument("--out", type=Path, help="default: RESULTS/SUMMARY.md")
    args = parser.parse_args()
    table = load(args.results)
    probes = probe_table(table)
    lines = ["# Leave-one-class-out results (generated by `python benchmarks/summarize_loco.py`)", "",
             "Image-level ROC AUC, anomaly class 0–9, evaluated once after a fixed number of epochs "
             "(`model.eval()`, no model selection). Raw per-run files: `<dataset>/<tier>/<variant>/`.", "",
             "## Means: ablations side by side", "", *ablation_table(table), "",
             "## Beside the simple baselines (same split, same run)", "", *baselines_table(table),
             "## Number of patterns n_c (paper's Table 2)", "", *patterns_table(table),
             *(["## Probes on some classes (mean over those classes, beside the same method's full run on the "
                 "same ones)", "",
                *probes, ""] if probes else []),
             "## Per class", "", *per_class_tables(table)]
    out = args.out or args.results / "SUMMARY.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
