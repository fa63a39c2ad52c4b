"""ADe-GAN's networks and losses trained the way ClusterGAN, which ADe-GAN builds on, trains.

What differs from the paper's loop (trainer.py), and why:
- The adversarial game is WGAN-GP: a critic D scores images (higher = more real), trained on
  E[D(fake)] - E[D(real)] + lambda * (||grad D(x_mix)|| - 1)^2 at random mixes of real and fake
  images. D and E have no BatchNorm (`ModelConfig.trunk_batchnorm` off): the penalty is a
  property of each image's critic value, which batch statistics would tie to its batch.
- The critic takes `critic_steps` (5) updates per update of G and E; lr 1e-4, betas (0.5, 0.9),
  beta_n = beta_c = 10 (TrainConfig's defaults for this method).
- G and E are updated together on -E[D(G(z))] + beta * L_sl (+ alpha * L_ip for E), as ClusterGAN
  does; L_recon = MSE(x, G(E(x))) on real images trains **E only**: G stays frozen (and in eval
  mode, as the detector runs it) in that pass, so G remains a generator of normal images and
  does not learn to reconstruct whatever E hands it, anomalies included.
"""

from __future__ import annotations

import torch

from adegan.training import losses
from adegan.training.config import ModelConfig
from adegan.training.trainer import Trainer


def networks_config(model_config: ModelConfig) -> ModelConfig:
    """The model config this method trains: the same sizes, no BatchNorm in D and E."""
    from dataclasses import replace

    return replace(model_config, trunk_batchnorm=False)


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss without the penalty: E[D(fake)] - E[D(real)] (D: higher = more real)."""
    return fake_scores.mean() - real_scores.mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: mean over random mixes x = t*real + (1-t)*fake of (||dD/dx||_2 - 1)^2."""
    t = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    mixed = (t * real + (1 - t) * fake).requires_grad_(True)
    gradients, = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((gradients.flatten(1).norm(dim=1) - 1) ** 2).mean()


class ClusterGanTrainer(Trainer):
    """The paper's networks on ClusterGAN's training schedule; checkpoints, resume and
    calibration are the base trainer's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        decay = 2.5e-5  # ClusterGAN's weight decay on G and E (not on the critic)
        for name in ("generator", "extractor"):
            for group in self.optimizers[name].param_groups:
                group["weight_decay"] = decay
        self.latest: dict[str, torch.Tensor] = {}

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """A critic update every step; G and E every `critic_steps` steps (the losses of the
        latest G/E update are reported in between)."""
        step_losses = self.critic_step(real)
        if self.step % self.train_config.critic_steps == 0 or not self.latest:
            self.latest = {**self.generator_extractor_step(real.shape[0]), **self.extractor_reconstruction_step(real)}
        return {**step_losses, **self.latest}

    def critic_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        G, D, opt = self.generator, self.discriminator, self.optimizers["discriminator"]
        z_n, index = self.sample_latent(real.shape[0])
        with torch.no_grad():
            fake = G(z_n, self.one_hot(index))
        wasserstein = critic_loss(D(real), D(fake))
        penalty = gradient_penalty(D, real, fake)
        loss = wasserstein + self.train_config.gradient_penalty * penalty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self.dist.average_gradients(D)
        opt.step()
        return {"d": wasserstein.detach(), "gp": penalty.detach()}

    def generator_extractor_step(self, batch: int) -> dict[str, torch.Tensor]:
        """G and E on -E[D(G(z))] + beta * L_sl, and E alone on alpha * L_ip (interpolations detached)."""
        G, D, E, opt = self.generator, self.discriminator, self.extractor, self.optimizers
        z_n, index = self.sample_latent(batch)
        fake = G(z_n, self.one_hot(index))
        adversarial = -D(fake).mean()
        logits, z_n_hat = E(fake)
        sl_loss = losses.self_supervised_loss(logits, z_n_hat, index, z_n, self.train_config.noise_loss_weight)
        total = adversarial + self.beta * sl_loss
        ip_loss = fake.new_zeros(())
        if self.train_config.use_ip_loss and self.alpha > 0:
            with torch.no_grad():
                interpolated = G(*self.different_pattern_codes(batch))
            ip_loss = losses.interpolation_loss(E(interpolated)[0])
            total = total + self.alpha * ip_loss
        D.requires_grad_(False)  # the critic is only read here
        opt["generator"].zero_grad(set_to_none=True)
        opt["extractor"].zero_grad(set_to_none=True)
        total.backward()
        D.requires_grad_(True)
        self.dist.average_gradients(G, E)
        opt["generator"].step()
        opt["extractor"].step()
        return {"g_adv": adversarial.detach(), "sl": sl_loss.detach(), "ip": ip_loss.detach()}

    def extractor_reconstruction_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """E alone on gamma * MSE(x, G(E(x))): G frozen and in eval mode, so only E moves."""
        G, E, opt = self.generator, self.extractor, self.optimizers["extractor"]
        logits, z_n_hat = E(real)
        G.eval()
        G.requires_grad_(False)
        try:
            reconstruction = G(z_n_hat, losses.pattern_code(logits, self.train_config.pattern_input))
            recon_loss = losses.reconstruction_loss(real, reconstruction)
            opt.zero_grad(set_to_none=True)
            (self.gamma * recon_loss).backward()
        finally:
            G.requires_grad_(True)
            G.train()
        self.dist.average_gradients(E)
        opt.step()
        return {"recon": recon_loss.detach()}
