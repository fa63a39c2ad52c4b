import pytest

torch = pytest.importorskip("torch")

from adegan.training.config import ModelConfig, TrainConfig  # noqa: E402
from adegan.errors import UsageError  # noqa: E402
from adegan.training.model import Detector, build_networks  # noqa: E402


@pytest.mark.parametrize("size,channels", [(32, 1), (64, 3), (128, 1)])
def test_shapes(size, channels):
    config = ModelConfig.preset("tiny", image_size=size, channels=channels, n_patterns=4)
    G, D, E = build_networks(config)
    z_n = torch.randn(3, config.latent_dim)
    z_c = torch.eye(4)[:3]
    with torch.no_grad():
        images = G(z_n, z_c)
    assert images.shape == (3, channels, size, size)
    assert float(images.abs().max()) <= 1.0
    assert D(images).shape == (3,)
    logits, z_hat = E(images)
    assert logits.shape == (3, 4) and z_hat.shape == (3, config.latent_dim)
    recon_error, probs, residual = Detector(G, E).eval()(torch.rand(5, channels, size, size))
    assert recon_error.shape == (5,) and probs.shape == (5, 4) and residual.shape == (5, 1, size, size)
    assert torch.allclose(probs.sum(dim=1), torch.ones(5))


def test_config_defaults_and_validation():
    assert ModelConfig(channels=1).latent_dim == 30 and ModelConfig(channels=3).latent_dim == 64
    assert TrainConfig().loss_weights(1) == (1.0, 1.0, 10.0)
    assert TrainConfig().loss_weights(3) == (1.0, 10.0, 10.0)
    assert TrainConfig(alpha=0).loss_weights(1) == (0.0, 1.0, 10.0)
    with pytest.raises(UsageError, match="image size"):
        ModelConfig(image_size=48)
    with pytest.raises(UsageError, match="unknown model config key"):
        ModelConfig.from_dict({"image_size": 32, "nz": 3})
    round_trip = TrainConfig.from_dict(TrainConfig(source="x", seed=3).to_dict())
    assert round_trip == TrainConfig(source="x", seed=3)
