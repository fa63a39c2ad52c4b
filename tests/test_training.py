"""End-to-end training on tiny synthetic folders (tiny preset, seconds each)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from adegan.errors import UsageError  # noqa: E402
from adegan.training.checkpoint import load_checkpoint  # noqa: E402
from adegan.training.config import ModelConfig, TrainConfig  # noqa: E402
from adegan.training.evaluate import evaluate_run  # noqa: E402
from adegan.training.model import build_networks  # noqa: E402
from adegan.training.trainer import TrainingInterrupted, Trainer, train  # noqa: E402

TINY = ModelConfig.preset("tiny", n_patterns=4)


def config_for(folder: Path, epochs: int, **changes) -> TrainConfig:
    return TrainConfig(source=str(folder), epochs=epochs, batch_size=32, seed=0, **{"method": "adegan", **changes})


@pytest.fixture(scope="module")
def trained_run(synthetic_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = train(TINY, config_for(synthetic_data["train"], epochs=8), run_dir, progress=False, log=lambda m: None)
    return run_dir, result


def test_tiny_run_separates_easy_anomalies(trained_run, synthetic_data):
    run_dir, result = trained_run
    assert result.epochs == 8 and result.steps == 8 * (288 // 32)
    metrics = evaluate_run(run_dir, str(synthetic_data["test"]), log=lambda m: None)
    assert metrics["auc"]["combined"] > 0.9, metrics["auc"]
    assert metrics["auc"]["reconstruction"] > 0.9, metrics["auc"]
    for name in ("metrics.json", "scores.csv", "roc.png", "score_histogram.png"):
        assert (run_dir / "evaluation" / name).stat().st_size > 0
    assert len(list((run_dir / "samples").glob("epoch_*.png"))) == 8
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 8


def test_report_is_self_contained_and_shows_the_worst_cases(trained_run, synthetic_data, tmp_path):
    import base64
    import csv
    import re

    run_dir, _ = trained_run
    metrics = evaluate_run(run_dir, str(synthetic_data["test"]), out_dir=tmp_path, log=lambda m: None,
                           report=tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    for section in ("ROC curves", "Score distributions", "Learned patterns", "Worst false positives",
                    "Worst false negatives", f"{metrics['auc']['combined']:.4f}"):
        assert section in page, section
    sources = re.findall(r'src="([^"]*)"', page)
    # ROC + 3 histograms + the pattern grid + 8 false positives and 8 false negatives x 3 tiles
    assert len(sources) == 1 + 3 + 1 + 2 * 8 * 3
    assert all(s.startswith("data:image/png;base64,") for s in sources)  # nothing external
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for s in sources)
    assert "http" not in page and "<script" not in page
    rows = list(csv.DictReader((tmp_path / "scores.csv").open()))
    normals = sorted((r for r in rows if r["label"] == "0"), key=lambda r: -float(r["score"]))
    anomalies = sorted((r for r in rows if r["label"] == "1"), key=lambda r: float(r["score"]))
    false_positives, false_negatives = page.split("Worst false negatives")
    assert normals[0]["path"] in false_positives and normals[0]["path"] not in false_negatives
    assert anomalies[0]["path"] in false_negatives


def test_checkpoint_round_trip_with_weights_only(trained_run):
    run_dir, result = trained_run
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)  # plain torch, no adegan code
    assert ModelConfig.from_dict(state["model_config"]) == TINY
    assert state["calibration"]["threshold"] == pytest.approx(result.calibration.threshold)
    assert state["calibration"]["n_images"] == 32  # 10 % of 320
    assert state["complete"] and state["epoch"] == 8
    from adegan.training.model import Generator

    generator = Generator(TINY)
    generator.load_state_dict(state["generator"])


def test_checkpoint_carrying_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "adegan-checkpoint", "payload": Evil()}, path)
    with pytest.raises(Exception, match="refused"):
        load_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(Exception, match="corrupt"):
        load_checkpoint(path)


def test_interrupt_then_resume_matches_an_uninterrupted_run(synthetic_data, tmp_path, monkeypatch):
    quiet = dict(progress=False, log=lambda m: None)
    config = config_for(synthetic_data["train"], epochs=2)
    reference = train(TINY, config, tmp_path / "reference", **quiet)

    original_step = Trainer.train_step
    calls = {"n": 0}

    def interrupting_step(self, real):
        calls["n"] += 1
        if calls["n"] == 13:  # mid-way through epoch 2 (9 steps per epoch)
            raise KeyboardInterrupt
        return original_step(self, real)

    monkeypatch.setattr(Trainer, "train_step", interrupting_step)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(TINY, config, tmp_path / "resumed", **quiet)
    saved = load_checkpoint(tmp_path / "resumed")
    assert (saved["epoch"], saved["batch_in_epoch"], saved["step"]) == (1, 3, 12)
    assert not saved["complete"]
    monkeypatch.setattr(Trainer, "train_step", original_step)

    with pytest.raises(UsageError, match="already holds a run"):
        train(TINY, config, tmp_path / "resumed", **quiet)
    resumed = train(None, config, tmp_path / "resumed", resume=True, **quiet)  # saved config: 2 epochs
    assert resumed.steps == reference.steps == 18
    final, expected = load_checkpoint(tmp_path / "resumed"), load_checkpoint(tmp_path / "reference")
    for name, tensor in expected["generator"].items():
        assert torch.allclose(final["generator"][name].float(), tensor.float(), atol=1e-5), name
    assert resumed.calibration.threshold == pytest.approx(reference.calibration.threshold, abs=1e-5)


def test_run_dir_rules(synthetic_data, tmp_path):
    quiet = dict(progress=False, log=lambda m: None)
    config = config_for(synthetic_data["train"], epochs=1)
    with pytest.raises(UsageError, match="no checkpoint.pt to resume"):
        train(None, config, tmp_path / "new", resume=True, **quiet)
    train(TINY, config, tmp_path / "run", **quiet)
    first = (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns
    train(TINY, config, tmp_path / "run", force=True, **quiet)
    assert (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns != first
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1  # cleared by --force
    with pytest.raises(UsageError, match="pick one"):
        train(TINY, config, tmp_path / "run", force=True, resume=True, **quiet)


def test_channel_mismatch_on_evaluate_is_refused(trained_run, tmp_path):
    from conftest import normal_image, write_images

    rng = np.random.default_rng(0)
    colour = lambda: np.stack([normal_image(rng), normal_image(rng), np.zeros((32, 32), np.uint8)], axis=2)
    write_images(tmp_path / "test" / "good", [colour() for _ in range(5)])
    write_images(tmp_path / "test" / "bad", [colour() for _ in range(5)])
    run_dir, _ = trained_run
    with pytest.raises(UsageError, match="colour but the model expects gray"):
        evaluate_run(run_dir, str(tmp_path / "test"), out_dir=tmp_path / "eval", log=lambda m: None)
    metrics = evaluate_run(run_dir, str(tmp_path / "test"), out_dir=tmp_path / "eval", convert_channels=True,
                           plots=False, log=lambda m: None)
    assert metrics["n_normal"] == 5


def test_autoencoder_baseline_trains_on_reconstruction_only(synthetic_data, tmp_path):
    run_dir = tmp_path / "ae"
    config = config_for(synthetic_data["train"], epochs=3, method="autoencoder")
    train(TINY, config, run_dir, progress=False, log=lambda m: None)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    torch.manual_seed(0)  # the trainer's seed: the discriminator keeps its initial weights
    _, initial_discriminator, _ = build_networks(TINY)
    for name, value in initial_discriminator.state_dict().items():
        assert torch.equal(state["discriminator"][name], value), name
    record = [line for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert '"loss_recon"' in record and '"loss_sl"' not in record and '"loss_d"' not in record
    # Its sample grid shows the one pattern code it uses: one row of 10 columns, not K rows.
    grid = cv2.imread(str(run_dir / "samples" / "epoch_003.png"), cv2.IMREAD_GRAYSCALE)
    assert grid.shape == (2 * (1 * 34 + 2), 2 * (10 * 34 + 2))
    metrics = evaluate_run(run_dir, str(synthetic_data["test"]), log=lambda m: None)
    # The pattern output is constant (pattern 0, probability 1), so the combined score is a
    # monotone function of the reconstruction error: the same ranking, the same AUC. The
    # meaningless pattern numbers (AUC 0.5, confidence 1.0) are left out.
    assert "mean_pattern_confidence" not in metrics and set(metrics["auc"]) == {"combined", "reconstruction"}
    assert metrics["auc"]["combined"] == pytest.approx(metrics["auc"]["reconstruction"], abs=1e-12)
    assert metrics["auc"]["reconstruction"] > 0.9


def test_unknown_method_is_refused():
    with pytest.raises(UsageError, match="method must be one of"):
        TrainConfig(source="x", method="vae")


@pytest.mark.parametrize("setting, expected", [("bf16", True), ("auto", False), ("off", False)])
def test_mixed_precision_setting_decides_autocast_of_the_training_passes(synthetic_data, tmp_path, monkeypatch,
                                                                         setting, expected):
    seen = []
    original = Trainer.train_step

    def spy(self, real):
        seen.append(torch.is_autocast_enabled("cpu"))
        return original(self, real)

    monkeypatch.setattr(Trainer, "train_step", spy)
    config = config_for(synthetic_data["train"], epochs=1, mixed_precision=setting, device="cpu")
    result = train(TINY, config, tmp_path / "run", progress=False, log=lambda m: None)
    assert set(seen) == {expected}  # auto is fp32 on a CPU: bf16 autocast is for GPUs
    assert np.isfinite(result.calibration.mu_e)
    with pytest.raises(UsageError, match="mixed precision must be one of"):
        TrainConfig(source="x", mixed_precision="fp8")


def test_learned_view_network_trains_under_bf16(synthetic_data):
    from adegan.training.learned_features import train_rotation_net

    images = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)[None] for p in
                       sorted(synthetic_data["train"].glob("*.png"))[:64]])
    net = train_rotation_net(images, "cpu", seed=0, bf16=True)
    logits, features = net(torch.from_numpy(images[:8]).float() / 255.0)
    assert logits.dtype == torch.float32 and torch.isfinite(features).all()
