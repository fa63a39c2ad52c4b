"""ADe-GAN networks: generator G, discriminator D, extractor E, and the detector.

DCGAN-style: one strided 4x4 conv (down) or transposed conv (up) per factor of 2 between
4x4 and the image size. Channels double per block towards the 4x4 end, capped at 8x width.
Only export-friendly ops: Conv, ConvTranspose, BatchNorm, LeakyReLU/ReLU, Tanh, Linear,
Softmax, reshape, concat and elementwise math.

Images live in [-1, 1] inside the networks (G ends in tanh); the detector takes [0, 1] input
like the runtime, and normalizes inside the graph.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from adegan.training.config import ModelConfig


def block_channels(config: ModelConfig) -> list[int]:
    """Feature channels from the image-size end to the 4x4 end, e.g. [64, 128, 256] for 32 px."""
    n_blocks = config.image_size.bit_length() - 3  # 32 -> 3 blocks (32->16->8->4)
    return [config.width * min(2**i, 8) for i in range(n_blocks)]


def _init_weights(module: nn.Module) -> None:
    """DCGAN initialization: N(0, 0.02) convs, N(1, 0.02) BatchNorm scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """G(z_n, z_c): (N, d + K) -> image (N, C, H, W) in [-1, 1]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        channels = block_channels(config)[::-1]  # 4x4 end first: [256, 128, 64]
        layers: list[nn.Module] = [
            # (N, d+K, 1, 1) -> (N, channels[0], 4, 4)
            nn.ConvTranspose2d(config.latent_dim + config.n_patterns, channels[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(channels[:-1], channels[1:]):  # each doubles H and W
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(channels[-1], config.channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, z_n: torch.Tensor, z_c: torch.Tensor) -> torch.Tensor:
        z = torch.cat([z_n, z_c], dim=1)  # (N, d + K)
        return self.net(z.reshape(z.shape[0], -1, 1, 1))  # (N, C, H, W)


class _DownTrunk(nn.Module):
    """Image (N, C, H, W) -> features (N, channels[-1] * 16): the shared body of D and E."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        channels = block_channels(config)
        norm = config.trunk_batchnorm  # off for WGAN-GP: its penalty needs a critic of each image alone
        layers: list[nn.Module] = [
            nn.Conv2d(config.channels, channels[0], 4, 2, 1),  # no BatchNorm on the first block
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not norm), *([nn.BatchNorm2d(c_out)] if norm else []),
                       nn.LeakyReLU(0.2, inplace=True)]
        self.net = nn.Sequential(*layers)
        self.out_features = channels[-1] * 4 * 4

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten(1)  # (N, channels[-1] * 16)


class Discriminator(nn.Module):
    """D(x): image -> one real/fake logit (N,)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.trunk = _DownTrunk(config)
        self.head = nn.Linear(self.trunk.out_features, 1)
        self.apply(_init_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(images)).squeeze(1)


class Extractor(nn.Module):
    """E(x): image -> (pattern_logits (N, K), z_n_hat (N, d))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.trunk = _DownTrunk(config)
        self.pattern_head = nn.Linear(self.trunk.out_features, config.n_patterns)
        self.noise_head = nn.Linear(self.trunk.out_features, config.latent_dim)
        self.apply(_init_weights)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(images)
        return self.pattern_head(features), self.noise_head(features)


class Detector(nn.Module):
    """The inference graph: images in [0, 1] -> (recon_error, pattern_probs, residual).

    recon_error (N,)         mean squared error between x and G(E(x)), in [0, 1] pixel units
    pattern_probs (N, K)     softmax of E's pattern logits
    residual (N, 1, H, W)    per-pixel |x - x_hat|, averaged over channels (for heat-maps)

    Evaluation and export both use this module, so they compute the same thing.
    With `fixed_pattern` (the autoencoder baseline) the pattern head is ignored and every image
    gets pattern 0 with probability 1, so the abnormality score ranks by reconstruction alone.
    """

    def __init__(self, generator: Generator, extractor: Extractor, fixed_pattern: bool = False):
        super().__init__()
        self.generator = generator
        self.extractor = extractor
        self.fixed_pattern = fixed_pattern

    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[0, 1] images -> (reconstruction in [0, 1], pattern_probs)."""
        logits, z_n_hat = self.extractor(images * 2.0 - 1.0)
        if self.fixed_pattern:
            pattern_probs = fixed_pattern_code(logits)
        else:
            pattern_probs = F.softmax(logits, dim=1)
        reconstruction = (self.generator(z_n_hat, pattern_probs) + 1.0) * 0.5
        return reconstruction, pattern_probs

    def explain(self, images: torch.Tensor):
        """(reconstruction, recon_error, pattern_probs, residual): forward's outputs plus the
        reconstruction itself, for reports that show it beside the residual."""
        reconstruction, pattern_probs = self.reconstruct(images)
        difference = images - reconstruction
        recon_error = (difference * difference).mean(dim=(1, 2, 3))
        residual = difference.abs().mean(dim=1, keepdim=True)
        return reconstruction, recon_error, pattern_probs, residual

    def forward(self, images: torch.Tensor):
        _, recon_error, pattern_probs, residual = self.explain(images)
        return recon_error, pattern_probs, residual


@torch.no_grad()
def pattern_grid(generator: Generator, noise: torch.Tensor, n_patterns: int, rows: int | None = None) -> torch.Tensor:
    """G's learned patterns (the paper's Fig. 4) in [0, 1]: row k is pattern k, column j uses
    noise row j, so (rows * len(noise), C, H, W), rows = n_patterns unless fewer are asked for
    (the autoencoder baseline uses pattern 0 only). Runs G in eval mode, then restores it."""
    was_training = generator.training
    generator.eval()
    columns, rows = noise.shape[0], rows or n_patterns
    z_n = noise.repeat(rows, 1)  # (rows*columns, d)
    index = torch.arange(rows, device=noise.device).repeat_interleave(columns)
    images = (generator(z_n, F.one_hot(index, n_patterns).float()) + 1.0) * 0.5
    generator.train(was_training)
    return images


def fixed_pattern_code(logits: torch.Tensor) -> torch.Tensor:
    """One-hot pattern 0 for every row, shaped like `logits` (the autoencoder's constant z_c)."""
    return F.pad(torch.ones_like(logits[:, :1]), (0, logits.shape[1] - 1))  # (N, K)


def build_networks(config: ModelConfig) -> tuple[Generator, Discriminator, Extractor]:
    return Generator(config), Discriminator(config), Extractor(config)
