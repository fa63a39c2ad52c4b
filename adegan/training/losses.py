"""Latent sampling and the four ADe-GAN losses (paper Eqs. 1, 3, 6, 7).

Each function is pure: it takes tensors (and networks), returns a scalar loss, and is tested
on hand-made inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_patterns(batch: int, n_patterns: int, generator=None, device="cpu") -> torch.Tensor:
    """Pattern indices, uniform over K: (batch,) long."""
    return torch.randint(0, n_patterns, (batch,), generator=generator, device=device)


def sample_noise(batch: int, latent_dim: int, std: float, generator=None, device="cpu") -> torch.Tensor:
    """z_n ~ N(0, std^2): (batch, latent_dim)."""
    return torch.randn(batch, latent_dim, generator=generator, device=device) * std


def same_pattern_interpolation(
    z_n_draws: torch.Tensor, z_c: torch.Tensor, generator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 4-5: z_n = sum_i lambda_i z_n^(i) over t draws that share one pattern.

    z_n_draws: (batch, t, d), z_c: (batch, K); lambda ~ Dirichlet(1) per row.
    Returns (z_n (batch, d), z_c unchanged): interpolating within one pattern keeps z_c.
    """
    batch, draws, _ = z_n_draws.shape
    # Dirichlet(1) = normalized Exp(1) draws; sampled by hand so a torch.Generator applies.
    uniform = torch.rand(batch, draws, generator=generator, device=z_n_draws.device)
    exponential = -torch.log(uniform.clamp_min(1e-12))
    weights = exponential / exponential.sum(dim=1, keepdim=True)  # (batch, t)
    z_n = (weights.unsqueeze(2) * z_n_draws).sum(dim=1)
    return z_n, z_c


def different_pattern_interpolation(
    z_n_a: torch.Tensor,
    z_n_b: torch.Tensor,
    index_a: torch.Tensor,
    index_b: torch.Tensor,
    n_patterns: int,
    generator=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Between two different patterns a != b: z = lambda z^a + (1 - lambda) z^b, lambda ~ U(0.2, 0.8)."""
    assert bool((index_a != index_b).all()), "different-pattern interpolation needs a != b"
    lam = 0.2 + 0.6 * torch.rand(len(index_a), 1, generator=generator, device=z_n_a.device)
    one_hot_a = F.one_hot(index_a, n_patterns).float()
    one_hot_b = F.one_hot(index_b, n_patterns).float()
    z_c = lam * one_hot_a + (1 - lam) * one_hot_b
    z_n = lam * z_n_a + (1 - lam) * z_n_b
    return z_n, z_c


def different_pattern_pairs(batch: int, n_patterns: int, generator=None, device="cpu"):
    """Pairs of pattern indices (a, b) with a != b, uniform over ordered pairs."""
    index_a = sample_patterns(batch, n_patterns, generator, device)
    offset = torch.randint(1, n_patterns, (batch,), generator=generator, device=device)
    return index_a, (index_a + offset) % n_patterns


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 1, D step: BCE(D(X), 1) + BCE(D(G(z)), 0)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 1, G step, non-saturating: BCE(D(G(z)), 1)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def self_supervised_loss(
    pattern_logits: torch.Tensor,
    z_n_hat: torch.Tensor,
    pattern_index: torch.Tensor,
    z_n: torch.Tensor,
    noise_weight: float = 1.0,
) -> torch.Tensor:
    """Eq. 3, L_sl: CE(E's pattern, z_c) + noise_weight * MSE(z_n_hat, z_n) on generated images.

    noise_weight = 1 is the paper's. With sigma(z_n) = 0.1 the MSE term is ~100x smaller than
    ClusterGAN's (which weights it by 10); noise_weight = 1/sigma^2 measures it in units of sigma.
    """
    return F.cross_entropy(pattern_logits, pattern_index) + noise_weight * F.mse_loss(z_n_hat, z_n)


def interpolation_loss(pattern_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 6, L_ip: cross-entropy of E's softmax against the uniform distribution.

    -(1/K) sum_k log softmax_k, averaged over the batch; its minimum, log K, is reached
    exactly when E is uniform.
    """
    return -F.log_softmax(pattern_logits, dim=1).mean(dim=1).mean()


def pattern_code(pattern_logits: torch.Tensor, mode: str) -> torch.Tensor:
    """What G receives from E for L_recon: softmax, or a hard one-hot with a straight-through gradient."""
    probs = F.softmax(pattern_logits, dim=1)
    if mode == "softmax":
        return probs
    hard = F.one_hot(probs.argmax(dim=1), probs.shape[1]).to(probs.dtype)
    return hard + probs - probs.detach()


def reconstruction_loss(images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Eq. 7, L_recon: MSE between X and G(E(X)) (both in [-1, 1])."""
    return F.mse_loss(reconstruction, images)
