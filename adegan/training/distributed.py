"""Data-parallel training under `torchrun`: which process this is, and averaging gradients.

`torchrun --nproc-per-node N -m adegan train ...` starts N copies of the same command with
RANK, LOCAL_RANK and WORLD_SIZE in their environment (env:// rendezvous). Each rank trains on its
own slice of every batch order; after each backward pass the gradients of the networks about to
step are averaged over the ranks (all-reduce), so every rank takes the same optimizer step and the
weights stay identical, exactly what DistributedDataParallel does.

Why not the DistributedDataParallel wrapper: one ADe-GAN iteration runs G forward several times
before one backward (the fake batch, the interpolations and the reconstruction in the joint stage)
and backs up D and G separately in the adversarial stage; the wrapper's reducer expects one backward
per forward. Averaging the gradients by hand right before each optimizer step is the same
arithmetic without that constraint, and the saved state has no `module.` prefixes.

BatchNorm is not synchronised: each rank normalises its own batch (64 images per rank by default,
enough for stable statistics), and rank 0's running statistics are the ones saved and calibrated.
SyncBatchNorm would add an all-reduce to every BatchNorm layer of every forward pass (several per
iteration here) for no measured gain.

NCCL on GPUs, gloo on CPUs. Rank 0 alone writes checkpoints, samples, logs and the calibration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Distributed:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend}

    def average_gradients(self, *modules: torch.nn.Module) -> None:
        """Replace each parameter's gradient by its mean over the ranks (one all-reduce per module)."""
        if not self.enabled:
            return
        import torch.distributed as dist

        for module in modules:
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            if not grads:
                continue
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for grad in grads:
                grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
                offset += grad.numel()

    def broadcast_parameters(self, *modules: torch.nn.Module) -> None:
        """Make every rank start from rank 0's weights and buffers."""
        if not self.enabled:
            return
        import torch.distributed as dist

        for module in modules:
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


_CURRENT = Distributed()


def setup(device_name: str) -> Distributed:
    """Join the process group when torchrun started us (WORLD_SIZE > 1); otherwise one process.
    Idempotent: a second call returns the same context."""
    global _CURRENT
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or _CURRENT.enabled:
        return _CURRENT
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    _CURRENT = Distributed(world_size, dist.get_rank(), local_rank, backend)
    return _CURRENT


def current() -> Distributed:
    return _CURRENT


def shutdown() -> None:
    global _CURRENT
    if _CURRENT.enabled:
        import torch.distributed as dist

        dist.destroy_process_group()
    _CURRENT = Distributed()
