"""The ADe-GAN training loop: both stages every iteration, calibration, checkpoints.

Stage 1 (adversarial, Eq. 1): a D step, then a non-saturating G step.
Stage 2 (Eq. 8): G and E jointly on alpha*L_ip + beta*L_sl + gamma*L_recon.
  E sees generated, between-pattern-interpolated and real images in ONE batch, so its
  BatchNorm statistics are those of the mix it sees at training time, and the eval-mode
  running statistics match what it was trained on.

Determinism: the global torch RNG is seeded from TrainConfig.seed and saved in every
checkpoint; the batch order of epoch k is a permutation seeded by (seed, k), so a resumed run
continues exactly where it stopped, mid-epoch included.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from adegan.console import log as default_log, progress_bar
from adegan.errors import AdeganError, DiskFullError, UsageError
from adegan.runtime.score import Calibration, calibrate
from adegan.training import distributed, losses
from adegan.training.allocator import keep_freed_memory
from adegan.runtime.files import is_disk_full, write_json
from adegan.training.checkpoint import CHECKPOINT_NAME, configs_from_state, load_checkpoint, save_checkpoint
from adegan.training.config import ModelConfig, TrainConfig
from adegan.training.data import DataSplit
from adegan.training.inference import detector_outputs, resolve_device
from adegan.training.model import Detector, build_networks, fixed_pattern_code, pattern_grid


CALIBRATION_SAMPLE_BYTES = 4 * 1024 * 1024


class TrainingInterrupted(AdeganError):
    """Ctrl-C during training. `resumable`: a checkpoint was saved, so --resume continues; else
    nothing was kept and the same command (with --force) starts again."""

    exit_code = 130

    def __init__(self, message: str, resumable: bool = True):
        super().__init__(message)
        self.resumable = resumable


def calibration_sample(calibration_images: np.ndarray) -> torch.Tensor:
    """A fixed slice of the calibration set (about 4 MB) that travels in the checkpoint, so that
    export can check ONNX/TensorRT parity on real normal images without the training data."""
    per_image = calibration_images[0].nbytes if len(calibration_images) else 1
    keep = min(len(calibration_images), max(16, CALIBRATION_SAMPLE_BYTES // per_image))
    return torch.from_numpy(np.ascontiguousarray(calibration_images[:keep]))


def grid_noise(model_config: ModelConfig, columns: int = 10) -> torch.Tensor:
    """The fixed z_n columns of every pattern grid (epoch samples, report): seeded, so grids of
    different epochs and runs are comparable."""
    return losses.sample_noise(columns, model_config.latent_dim, model_config.noise_std,
                               generator=torch.Generator().manual_seed(1234))


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    steps: int
    images_per_second: float
    calibration: Calibration | None
    main_process: bool = True  # under torchrun, only rank 0 reports


class Trainer:
    """Holds networks, optimizers and position; `fit()` runs the remaining epochs."""

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig, data: DataSplit,
                 run_dir: Path, log=default_log, progress: bool = True):
        self.model_config, self.train_config = model_config, train_config
        self.run_dir, self.log, self.progress = Path(run_dir), log, progress
        self.dist = distributed.current()
        self.device = torch.device("cuda", self.dist.local_rank) if self.dist.backend == "nccl" \
            else resolve_device(train_config.device)
        torch.manual_seed(train_config.seed)
        self.generator, self.discriminator, self.extractor = (
            net.to(self.device) for net in build_networks(model_config)
        )
        self.dist.broadcast_parameters(self.generator, self.discriminator, self.extractor)
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.reseed_rank()
        betas = train_config.adam_betas
        self.optimizers = {
            name: torch.optim.Adam(getattr(self, name).parameters(), lr=train_config.learning_rate, betas=betas)
            for name in ("generator", "discriminator", "extractor")
        }
        self.alpha, self.beta, self.gamma = train_config.loss_weights(model_config.channels)
        self.data = data
        self.train_images = torch.from_numpy(data.train).to(self.device)  # uint8, resident
        # Each rank takes its own batch of every step: an epoch is len / (batch x ranks) steps.
        self.images_per_step = train_config.batch_size * self.dist.world_size
        self.steps_per_epoch = len(data.train) // self.images_per_step
        if self.steps_per_epoch == 0:
            raise AdeganError(
                f"only {len(data.train)} training images for batch size {train_config.batch_size}"
                + (f" on {self.dist.world_size} processes" if self.dist.enabled else "")
                + "; lower --batch-size or add images"
            )
        self.calibration: Calibration | None = None
        self.calibration_sample = calibration_sample(data.calibration)
        self.sample_noise = grid_noise(model_config).to(self.device)

    def reseed_rank(self) -> None:
        """Under torchrun, give each rank its own latent draws (same weights, different noise);
        a single process keeps the plain seeded stream."""
        if self.dist.enabled:
            torch.manual_seed(self.train_config.seed * 100_003 + 1_000 * self.dist.rank + self.step)

    # ----- sampling -------------------------------------------------------------------------
    def sample_latent(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """z_n (batch, d) and pattern indices (batch,); a share of rows is a same-pattern interpolation."""
        config, train = self.model_config, self.train_config
        index = losses.sample_patterns(batch, config.n_patterns, device=self.device)
        z_n = losses.sample_noise(batch, config.latent_dim, config.noise_std, device=self.device)
        n_interp = round(train.interpolation_fraction * batch) if train.same_pattern_interpolation else 0
        if n_interp:
            draws = losses.sample_noise(n_interp * train.interpolation_draws, config.latent_dim,
                                        config.noise_std, device=self.device)
            draws = draws.view(n_interp, train.interpolation_draws, config.latent_dim)
            z_n[:n_interp], _ = losses.same_pattern_interpolation(draws, index[:n_interp])
        return z_n, index

    def different_pattern_codes(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_n, z_c) of interpolations between two different patterns a != b, for L_ip (Eq. 6)."""
        K, d = self.model_config.n_patterns, self.model_config.latent_dim
        index_a, index_b = losses.different_pattern_pairs(batch, K, device=self.device)
        z_n_a, z_n_b = (losses.sample_noise(batch, d, self.model_config.noise_std, device=self.device)
                        for _ in range(2))
        return losses.different_pattern_interpolation(z_n_a, z_n_b, index_a, index_b, K)

    def one_hot(self, index: torch.Tensor) -> torch.Tensor:
        return F.one_hot(index, self.model_config.n_patterns).float()

    # ----- one iteration ----------------------------------------------------------------------
    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One iteration of both stages on a real batch in [-1, 1]; returns the losses as
        detached tensors (not floats: no host sync per step on a GPU)."""
        if self.train_config.method == "autoencoder":
            return self.autoencoder_step(real)
        return {**self.adversarial_stage(real), **self.joint_stage(real)}

    def autoencoder_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """The baseline: x -> E -> G -> x_hat on L_recon alone, G's pattern input held at pattern 0."""
        G, E, opt = self.generator, self.extractor, self.optimizers
        logits, z_n_hat = E(real)
        recon_loss = losses.reconstruction_loss(real, G(z_n_hat, fixed_pattern_code(logits)))
        opt["generator"].zero_grad(set_to_none=True)
        opt["extractor"].zero_grad(set_to_none=True)
        recon_loss.backward()
        self.dist.average_gradients(G, E)
        opt["generator"].step()
        opt["extractor"].step()
        return {"recon": recon_loss.detach()}

    def adversarial_stage(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage 1 (Eq. 1): a D step, then a non-saturating G step."""
        G, D, opt = self.generator, self.discriminator, self.optimizers
        z_n, index = self.sample_latent(real.shape[0])
        fake = G(z_n, self.one_hot(index))
        d_loss = losses.discriminator_loss(D(real), D(fake.detach()))
        opt["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        self.dist.average_gradients(D)
        opt["discriminator"].step()
        g_adv = losses.generator_adversarial_loss(D(fake))
        opt["generator"].zero_grad(set_to_none=True)
        g_adv.backward()
        self.dist.average_gradients(G)
        opt["generator"].step()
        return {"d": d_loss.detach(), "g_adv": g_adv.detach()}

    def joint_stage(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage 2 (Eq. 8): G and E on alpha*L_ip + beta*L_sl + gamma*L_recon."""
        G, E, opt = self.generator, self.extractor, self.optimizers
        batch = real.shape[0]
        z_n, index = self.sample_latent(batch)
        codes = [(z_n, self.one_hot(index))]
        use_ip = self.train_config.use_ip_loss and self.alpha > 0
        if use_ip:  # between two different patterns a != b (Eq. 6)
            codes.append(self.different_pattern_codes(batch))
        generated = G(torch.cat([c[0] for c in codes]), torch.cat([c[1] for c in codes]))
        fake, interpolated = generated[:batch], generated[batch:]
        # E sees [generated ; interpolated (detached: L_ip penalizes E only) ; real] as one batch.
        logits, z_n_hat = E(torch.cat([fake, interpolated.detach(), real]))
        sl_loss = losses.self_supervised_loss(logits[:batch], z_n_hat[:batch], index, z_n,
                                              self.train_config.noise_loss_weight)
        ip_loss = losses.interpolation_loss(logits[batch:-batch]) if use_ip else real.new_zeros(())
        code = losses.pattern_code(logits[-batch:], self.train_config.pattern_input)
        recon_loss = losses.reconstruction_loss(real, G(z_n_hat[-batch:], code))
        total = self.alpha * ip_loss + self.beta * sl_loss + self.gamma * recon_loss
        opt["generator"].zero_grad(set_to_none=True)
        opt["extractor"].zero_grad(set_to_none=True)
        total.backward()
        self.dist.average_gradients(G, E)
        opt["generator"].step()
        opt["extractor"].step()
        return {"sl": sl_loss.detach(), "ip": ip_loss.detach(), "recon": recon_loss.detach()}

    # ----- epochs, calibration, checkpoints ---------------------------------------------------
    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The batch order of an epoch: a permutation seeded by (seed, epoch)."""
        rng = np.random.default_rng([self.train_config.seed, epoch])
        return torch.from_numpy(rng.permutation(len(self.data.train))).to(self.device)

    def real_batch(self, order: torch.Tensor, batch_index: int) -> torch.Tensor:
        size, slot = self.train_config.batch_size, batch_index * self.dist.world_size + self.dist.rank
        rows = order[slot * size:(slot + 1) * size]
        return self.train_images[rows].float() * (2.0 / 255.0) - 1.0  # uint8 -> [-1, 1]

    def autocast(self):
        """bf16 autocast for the training passes when TrainConfig.uses_bf16 says so (the weights,
        optimizer state and calibration stay fp32)."""
        enabled = self.train_config.uses_bf16(self.device.type)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def detector(self) -> Detector:
        return Detector(self.generator, self.extractor, self.train_config.method == "autoencoder")

    def calibrate(self) -> Calibration:
        """mu_e, sigma_e and the threshold from the calibration hold-out (eval mode)."""
        errors, probs = detector_outputs(self.detector(), self.data.calibration, self.device)
        self.generator.train()
        self.extractor.train()
        return calibrate(errors, probs, self.train_config.target_fpr, self.train_config.score_mode)

    def fit(self) -> TrainResult:
        """Train the remaining epochs; Ctrl-C saves a resumable checkpoint first."""
        config = self.train_config
        total_steps = config.epochs * self.steps_per_epoch
        start_time, start_step = time.perf_counter(), self.step
        for network in (self.generator, self.discriminator, self.extractor):
            network.train()
        try:
            try:
                with progress_bar(total_steps, "training", self.progress, completed=self.step) as bar:
                    while self.epoch < config.epochs:
                        self._run_epoch(bar)
            except KeyboardInterrupt:
                if self.dist.is_main:
                    self.save()
                raise TrainingInterrupted(
                    f"interrupted at epoch {self.epoch + 1}, batch {self.batch_in_epoch}; saved "
                    f"{self.run_dir / CHECKPOINT_NAME}; the same command with --resume continues from there"
                ) from None
        except (OSError, DiskFullError) as error:  # any write of an epoch end, or of the Ctrl-C save
            if not is_disk_full(error):
                raise
            raise DiskFullError(f"{self.run_dir}: no space left on the device; the last checkpoint is intact. Free "
                                f"some space, then continue with `adegan train ... --out {self.run_dir} --resume`") from error
        seconds = time.perf_counter() - start_time
        speed = (self.step - start_step) * self.images_per_step / max(seconds, 1e-9)
        return TrainResult(self.run_dir, self.epoch, self.step, speed, self.calibration, self.dist.is_main)

    def _run_epoch(self, bar) -> None:
        order = self.epoch_order(self.epoch)
        sums, count, shown = {}, 0, 0
        epoch_start = time.perf_counter()
        while self.batch_in_epoch < self.steps_per_epoch:
            with self.autocast():
                step_losses = self.train_step(self.real_batch(order, self.batch_in_epoch))
            for name, value in step_losses.items():
                sums[name] = sums.get(name, 0.0) + value
            count += 1
            self.batch_in_epoch += 1
            self.step += 1
            if bar.active and (count % 10 == 0 or self.batch_in_epoch == self.steps_per_epoch):
                speed = count * self.images_per_step / (time.perf_counter() - epoch_start)
                status = " ".join(f"{k} {float(v) / count:.3f}" for k, v in sums.items())
                bar.advance(count - shown, f"ep {self.epoch + 1} {status} | {speed:.0f} img/s")
                shown = count
            if count % 50 == 0 and not math.isfinite(float(step_losses["recon"])):
                raise AdeganError("training diverged (non-finite loss); lower the learning rate or use another --seed")
        seconds = time.perf_counter() - epoch_start
        self.epoch += 1
        self.batch_in_epoch = 0
        if not self.dist.is_main:  # rank 0 calibrates, logs and checkpoints; the others wait for it
            self.dist.barrier()
            return
        self.calibration = self.calibrate()
        # Speed over the batches this process ran: an epoch resumed mid-way counts only its rest.
        record = {"epoch": self.epoch, "step": self.step, "batches": count, "seconds": round(seconds, 2),
                  "images_per_second": round(count * self.images_per_step / max(seconds, 1e-9), 1),
                  **{f"loss_{k}": round(float(v) / max(count, 1), 5) for k, v in sums.items()},
                  "mu_e": self.calibration.mu_e, "sigma_e": self.calibration.sigma_e,
                  "threshold": self.calibration.threshold}
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
            file.flush()
        self.save_sample_grid()
        self.save()
        self.dist.barrier()
        self.log(f"epoch {self.epoch}/{self.train_config.epochs}: "
                 + " ".join(f"{k} {record[f'loss_{k}']:.4f}" for k in sums)
                 + f" | {record['images_per_second']:.0f} img/s | threshold {self.calibration.threshold:.4f}")

    def save_sample_grid(self) -> Path:
        """samples/epoch_NNN.png: one row per pattern, one column per fixed z_n (paper Fig. 4).
        The autoencoder baseline draws one row: pattern 0, the only code it ever gives G."""
        from adegan.training.plots import save_image_grid

        rows = 1 if self.train_config.method == "autoencoder" else self.model_config.n_patterns
        images = pattern_grid(self.generator, self.sample_noise, self.model_config.n_patterns, rows)
        path = self.run_dir / "samples" / f"epoch_{self.epoch:03d}.png"
        save_image_grid(path, images.cpu().numpy(), rows=rows)
        return path

    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "extractor": self.extractor.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
            "rng": rng,
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "calibration_sample": self.calibration_sample,
            "data_info": self.data.info,
            "distributed": self.dist.describe(),
            "complete": self.epoch >= self.train_config.epochs,
        }

    def save(self) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT_NAME, self.state())

    def restore(self, state: dict) -> None:
        for name in ("generator", "discriminator", "extractor"):
            getattr(self, name).load_state_dict(state[name])
            self.optimizers[name].load_state_dict(state["optimizers"][name])
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        if state["calibration"]:
            self.calibration = Calibration.from_dict(state["calibration"])
        self.reseed_rank()


def train(model_config: ModelConfig, train_config: TrainConfig, run_dir: Path,
          resume: bool = False, force: bool = False, log=default_log, progress: bool = True,
          resume_epochs: int | None = None, bank_config=None) -> TrainResult:
    """Load the data, train (or resume), calibrate and checkpoint; see `adegan train --help`.

    Resuming uses the run's saved configs; `resume_epochs` may set a new total of epochs.
    The memory-bank method is built in one pass (`memory_bank.fit`) instead of trained.
    Under torchrun every rank runs this; rank 0 alone prepares the run folder, writes and logs.
    Memory freed between steps stays in the process for the next one (allocator.py).
    """
    keep_freed_memory()
    dist = distributed.setup(train_config.device)
    try:
        if not dist.is_main:
            log, progress = (lambda message: None), False
        return _train(model_config, train_config, Path(run_dir), resume, force, log, progress, resume_epochs,
                      bank_config, dist)
    finally:
        distributed.shutdown()


def _train(model_config, train_config, run_dir: Path, resume, force, log, progress, resume_epochs, bank_config,
           dist) -> TrainResult:
    from adegan.training.checkpoint import prepare_run_dir
    from adegan.training.data import load_source

    if dist.is_main:
        prepare_run_dir(run_dir, resume, force)
    dist.barrier()  # the others start once the folder is ready (or refused: then rank 0 has raised)
    state = None
    if resume:
        state = load_checkpoint(run_dir / CHECKPOINT_NAME)
        model_config, train_config = configs_from_state(state, run_dir)
        if resume_epochs is not None:
            if resume_epochs < state["epoch"]:
                raise UsageError(f"{run_dir} already trained {state['epoch']} epochs; --epochs must be at least that")
            train_config = train_config.with_changes(epochs=resume_epochs)
        if train_config.method == "memory-bank" and state.get("complete"):  # built in one pass: nothing to resume
            log(f"{run_dir} holds a finished memory bank; nothing to resume (use --force to build it again)")
            return TrainResult(run_dir, state["epoch"], state["step"], 0.0, Calibration.from_dict(state["calibration"]),
                               dist.is_main)
        saved_world = (state.get("distributed") or {}).get("world_size", 1)
        if state["batch_in_epoch"] and saved_world != dist.world_size:
            raise UsageError(f"{run_dir} was stopped mid-epoch while training on {saved_world} process(es); resume it "
                             f"on {saved_world} (torchrun --nproc-per-node {saved_world}), or from an epoch end")
        log(f"resuming {run_dir} at epoch {state['epoch'] + 1}, batch {state['batch_in_epoch']}")
    trainer_class = Trainer
    if train_config.method == "clustergan":
        from adegan.training.clustergan import ClusterGanTrainer, networks_config

        trainer_class, model_config = ClusterGanTrainer, networks_config(model_config)
    data = load_source(train_config, model_config.image_size, model_config.channels, log)
    log(f"data: {json.dumps(data.info)}")
    if train_config.method == "memory-bank":
        from adegan.training import memory_bank

        if not dist.is_main:  # one pass over the data: nothing to share out; rank 0 builds it alone
            return TrainResult(run_dir, 1, 0, 0.0, None, False)
        if dist.enabled:
            log(f"memory bank: built by rank 0 alone (one pass; the other {dist.world_size - 1} process(es) idle)")
        return memory_bank.fit(model_config, train_config, bank_config, data, run_dir, log)
    trainer = trainer_class(model_config, train_config, data, run_dir, log, progress)
    if state is not None:
        trainer.restore(state)
    if dist.is_main:
        write_json(run_dir / "config.json", {
            "model": model_config.to_dict(), "train": train_config.to_dict(),
            "distributed": {**dist.describe(), "batch_per_process": train_config.batch_size,
                            "effective_batch": train_config.batch_size * dist.world_size}})
    device_name = torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else "cpu"
    ranks = f" x {dist.world_size} processes ({dist.backend})" if dist.enabled else ""
    precision = "bf16 autocast" if train_config.uses_bf16(trainer.device.type) else "fp32"
    log(f"training on {device_name}{ranks} ({precision}): {len(data.train)} images, {trainer.steps_per_epoch} "
        f"steps/epoch, {train_config.epochs} epochs")
    result = trainer.fit()
    if result.calibration is None and dist.is_main:  # resumed a run that had already finished
        result.calibration = trainer.calibrate()
    return result
