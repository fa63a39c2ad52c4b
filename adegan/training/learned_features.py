"""Features learned on the normals themselves, for the whole-image memory bank.

Blurred pixels carry no invariance: a shirt and a pullover differ in a few pixels, a cat and a
truck differ in every pixel of the background. A small CNN trained on the training normals to
name how an image was rotated (0, 90, 180 or 270 degrees, a self-supervised task that needs the
object's shape; nothing is downloaded) learns features in which normal images of the line lie
close together. The bank stores those features of every training normal beside their pixels.

Network: three conv stages (32, 64, 128 channels, 3 x 3, BatchNorm, ReLU; 2 x 2 max-pool
between stages), a linear head on the last stage's global average (training only). Features:
stages 2 and 3 averaged on a 4 x 4 grid, each stage's grid unit length, concatenated (3,072
values): where in the image which learned pattern appears. (The global averages of the three
stages, 224 values, scored lower on validation and their cosine distances are too small for an
fp16 bundle.) Trained with Adam (lr 1e-3) on
batches of 128 images shown at all four rotations, for one pass over the normals and at least
MIN_STEPS steps (a small folder is shown several times), seeded.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

WIDTHS = (32, 64, 128)
GRID = 4
FEATURES = sum(WIDTHS[1:]) * GRID * GRID
BATCH = 128
MIN_STEPS = 64  # one pass over 8,192 images or more; a folder of 1,000 is shown eight times
LEARNING_RATE = 1e-3


class RotationNet(nn.Module):
    """[0, 1] images (N, C, H, W) -> (rotation logits (N, 4), grid features (N, FEATURES))."""

    def __init__(self, channels: int):
        super().__init__()
        stages, previous = [], channels
        for width in WIDTHS:
            stages.append(nn.Sequential(nn.Conv2d(previous, width, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(width), nn.ReLU()))
            previous = width
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(previous, 4)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, grids = images, []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index > 0:
                grid = F.adaptive_avg_pool2d(x, GRID).flatten(1)
                grids.append(grid / (grid.norm(dim=1, keepdim=True) + 1e-6))
            if index < len(self.stages) - 1:
                x = F.max_pool2d(x, 2)
        return self.head(x.mean(dim=(2, 3))), torch.cat(grids, dim=1)


def rotated(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch at 0, 90, 180 and 270 degrees, and the index of each copy's rotation."""
    copies = torch.cat([torch.rot90(batch, turns, dims=(2, 3)) for turns in range(4)])
    return copies, torch.arange(4, device=batch.device).repeat_interleave(len(batch))


def train_rotation_net(images_uint8: np.ndarray, device, seed: int = 0, bf16: bool = False) -> RotationNet:
    """A RotationNet trained on uint8 (N, C, H, W) normals, in eval mode. The normals are copied
    to `device` once (uint8: 30 MB for 10,000 colour 32 px images), so a step does no host work;
    `bf16` runs the training passes under bf16 autocast (for GPUs)."""
    device = torch.device(device)
    steps_per_pass = math.ceil(len(images_uint8) / BATCH)
    passes = max(1, math.ceil(MIN_STEPS / steps_per_pass))
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's random state
        torch.manual_seed(seed)
        net = RotationNet(images_uint8.shape[1]).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        order = torch.Generator().manual_seed(seed)
        resident = torch.from_numpy(np.ascontiguousarray(images_uint8)).to(device)
        net.train()
        for _ in range(passes):
            for index in torch.randperm(len(images_uint8), generator=order).split(BATCH):
                batch = resident[index.to(device)].float() / 255.0
                copies, targets = rotated(batch)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(net(copies)[0].float(), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net.eval()
