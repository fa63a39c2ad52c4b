"""The leave-one-class-out summary: full variants in the tables, probes beside the default."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _summarize_module():
    spec = importlib.util.spec_from_file_location("summarize_loco", ROOT / "benchmarks" / "summarize_loco.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_row(results: Path, variant: str, anomaly_class: int, auc: float, n_patterns: int = 10,
               seed: int = 0) -> None:
    row = {"dataset": "mnist", "tier": "cpu", "variant": variant, "seed": seed, "anomaly_class": anomaly_class,
           "command": f"python benchmarks/leave_one_class_out.py mnist --variant {variant}",
           "model_config": {"width": 32, "n_patterns": n_patterns},
           "train_config": {"max_train_images": 10000, "epochs": 5, "method": "adegan"},
           "auc": {"combined": auc, "reconstruction": auc - 0.1, "pattern": 0.5, "combined_two-sided": auc - 0.2}}
    path = results / "mnist" / "cpu" / variant / f"seed{seed}_class{anomaly_class}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row))


def test_summary_tables_and_probes(tmp_path):
    results = tmp_path / "loco"
    for anomaly_class in range(10):
        _write_row(results, "default", anomaly_class, 0.6 + 0.02 * anomaly_class)  # mean 0.69
        _write_row(results, "patterns-4", anomaly_class, 0.6, n_patterns=4)
    _write_row(results, "sigma-0.3", 1, 0.9)
    _write_row(results, "sigma-0.3", 9, 0.7)
    summarize = _summarize_module()
    table = summarize.load(results)
    ablation = "\n".join(summarize.ablation_table(table))
    assert "| mnist | cpu | default | 0 | 0.690 | 0.590 | 0.500 | 0.490 |" in ablation
    assert "| mnist | cpu | sigma-0.3 | 0 | (2/10) |" in ablation
    patterns = "\n".join(summarize.patterns_table(table))
    assert "| ours, combined | — | 0.600 | — | — | 0.690 | — | — |" in patterns
    # The probe is compared with the default on classes 1 and 9 only: (0.62 + 0.78) / 2 = 0.70.
    probes = summarize.probe_table(table)
    assert probes[2:] == ["| mnist | cpu | sigma-0.3 | 1 9 | default | 0.800 / 0.700 | 0.700 / 0.600 | 0.500 / 0.500 |"]


def test_summary_over_seeds_ignores_a_seed_still_running(tmp_path):
    results = tmp_path / "loco"
    for anomaly_class in range(10):
        _write_row(results, "default", anomaly_class, 0.60, seed=0)
        _write_row(results, "default", anomaly_class, 0.70, seed=1)
        _write_row(results, "patterns-4", anomaly_class, 0.50, n_patterns=4, seed=0)
    for anomaly_class in range(3):
        _write_row(results, "default", anomaly_class, 0.10, seed=2)  # still running: not in the means
    summarize = _summarize_module()
    table = summarize.load(results)
    ablation = "\n".join(summarize.ablation_table(table))
    assert "| mnist | cpu | default | 0 1 (2: 3/10 classes, not in the means) | 0.650 ± 0.071 |" in ablation
    # Table 2 compares every n_c over the seeds they all have (seed 0), not 2 seeds against 1.
    patterns = "\n".join(summarize.patterns_table(table))
    assert "seeds 0:" in patterns and "| ours, combined | — | 0.500 | — | — | 0.600 | — | — |" in patterns


def test_baselines_of_the_same_runs_sit_beside_the_method(tmp_path):
    results = tmp_path / "loco"
    for anomaly_class in range(10):
        _write_row(results, "memory-bank", anomaly_class, 0.9)
        path = results / "mnist" / "cpu" / "memory-bank" / f"seed0_class{anomaly_class}.json"
        row = json.loads(path.read_text())
        row["baselines"] = {"knn-cos-5": 0.8 if anomaly_class else 0.95, "pca-8": 0.7}
        path.write_text(json.dumps(row))
    summarize = _summarize_module()
    lines = summarize.baselines_table(summarize.load(results))
    assert any(line.startswith("| memory-bank (as deployed) | 0.900 |") and "| 0.900 | 0.900 |" in line for line in lines)
    assert any(line.startswith("| knn-cos-5 | 0.950 | 0.800 |") and "| 0.815 | 0.800 |" in line for line in lines)
    oracle = next(line for line in lines if line.startswith("| best baseline per class"))
    assert "| 0.950 | 0.800 |" in oracle and "| 0.815 |" in oracle
