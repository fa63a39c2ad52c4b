"""ClusterGAN's training of ADe-GAN's networks: the WGAN-GP pieces, which network each update
moves, and the whole path through the command line."""

import csv
import json

import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from adegan.cli import app  # noqa: E402
from adegan.training.clustergan import ClusterGanTrainer, critic_loss, gradient_penalty, networks_config  # noqa: E402
from adegan.training.config import ModelConfig, TrainConfig  # noqa: E402
from adegan.training.data import load_source  # noqa: E402

TINY = networks_config(ModelConfig.preset("tiny", n_patterns=4))


def test_gradient_penalty_and_critic_loss_on_hand_made_critics():
    weights = torch.zeros(1, 1, 2, 2)
    weights[0, 0, 0, 0] = 2.0  # D(x) = 2 * x[0, 0, 0, 0]: gradient norm 2 everywhere
    critic = lambda images: (images * weights).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(8, 1, 2, 2), torch.randn(8, 1, 2, 2)
    assert float(gradient_penalty(critic, real, fake)) == pytest.approx(1.0)  # (2 - 1)^2
    assert float(gradient_penalty(lambda images: images.flatten(1).sum(1) * 0.5, real, fake)) == pytest.approx(0.0)
    assert float(critic_loss(torch.tensor([3.0, 5.0]), torch.tensor([1.0]))) == pytest.approx(-3.0)


def test_networks_have_no_batchnorm_in_critic_and_extractor_and_defaults_are_clustergans():
    from adegan.training.model import build_networks

    generator, critic, extractor = build_networks(TINY)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in (*critic.modules(), *extractor.modules()))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in generator.modules())
    config = TrainConfig(method="clustergan")
    assert (config.learning_rate, config.adam_betas, config.loss_weights(1)) == (1e-4, (0.5, 0.9), (1.0, 10.0, 10.0))
    assert TrainConfig(method="adegan").learning_rate == 2e-4


def test_each_update_moves_only_its_networks(synthetic_data, tmp_path):
    config = TrainConfig(source=str(synthetic_data["train"]), epochs=1, batch_size=32, method="clustergan")
    data = load_source(config, TINY.image_size, TINY.channels, lambda message: None)
    trainer = ClusterGanTrainer(TINY, config, data, tmp_path, log=lambda message: None, progress=False)
    real = trainer.real_batch(trainer.epoch_order(0), 0)

    def snapshot():
        return {name: [p.detach().clone() for p in getattr(trainer, name).parameters()]
                for name in ("generator", "discriminator", "extractor")}

    def moved(before):
        return {name for name, params in before.items()
                if any(not torch.equal(a, b) for a, b in zip(params, getattr(trainer, name).parameters()))}

    before = snapshot()
    trainer.critic_step(real)
    assert moved(before) == {"discriminator"}
    before = snapshot()
    trainer.generator_extractor_step(real.shape[0])
    assert moved(before) == {"generator", "extractor"}
    before, running_mean = snapshot(), [b.clone() for b in trainer.generator.buffers()]
    trainer.extractor_reconstruction_step(real)
    assert moved(before) == {"extractor"}  # G frozen in L_recon
    assert all(torch.equal(a, b) for a, b in zip(running_mean, trainer.generator.buffers()))  # and in eval mode


def test_clustergan_trains_exports_and_scores_through_the_cli(synthetic_data, tmp_path):
    runner = CliRunner()
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", str(synthetic_data["train"]), "--out", str(run_dir), "--method", "clustergan",
                                 "--preset", "tiny", "--patterns", "4", "--epochs", "2", "--batch-size", "32",
                                 "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["model"]["trunk_batchnorm"] is False and saved["train"]["method"] == "clustergan"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"loss_d", "loss_gp", "loss_g_adv", "loss_sl", "loss_recon"} <= set(records[-1])
    result = runner.invoke(app, ["evaluate", str(run_dir), str(synthetic_data["test"]), "--json"])
    assert result.exit_code == 0, result.output
    assert {"combined", "reconstruction", "pattern"} <= set(json.loads(result.stdout)["auc"])
    result = runner.invoke(app, ["export", str(run_dir)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["score", str(synthetic_data["test"]), "--model", str(run_dir / "bundle"),
                                 "--out", str(tmp_path / "scores.csv"), "--no-progress"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "scores.csv", newline="") as file:
        assert len(list(csv.DictReader(file))) == 120
