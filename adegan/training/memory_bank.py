"""The memory-bank detector: how far an image, or each patch of it, lies from the nearest
training normals.

Why it exists: on MNIST, Fashion-MNIST and real defect photos, a nearest-neighbour distance on
lightly blurred pixels beats the reconstruction error of the ADe-GAN networks by a wide margin
(see docs/method.md), and it needs no GPU: "training" is storing features of the normal images.

Two feature layouts, chosen from the image size (`MemoryBankConfig.patch_geometry`):

  whole image  (image size <= 64): the blurred image. Two distances to the k nearest bank
               images, 1 - cosine similarity (shape) and Euclidean (brightness and amount count
               too), each standardised on held-out normals and averaged (`distance` mean-z; or
               cosine, l2, max-z). Small images of whole objects are compared as wholes.
               With `image_features` learned (or pixels+learned), the bank also holds features
               of a small CNN trained on the normals to name rotations (learned_features.py):
               their cosine distance alone, or standardised and averaged beside the pixel views.
  patches      (image size >= 128): p x p patches at stride p/2 of the blurred image with each
               patch's mean removed (`patch_features` pixels), of its horizontal and vertical
               differences (gradients), or of a line-evidence map (line: how much each pixel lies
               on a thin line, from averages along 8 orientations); a patch's distance is the
               Euclidean distance to its k nearest bank patches, and an image's is the largest
               over its patches, so a crack covering 1 % of a photo still decides the score.

The detector has the same three outputs as the ADe-GAN `Detector`, so evaluation, export and
the runtime treat both alike:

  recon_error (N,)       the image's distance to the bank (higher = more anomalous)
  pattern_probs (N, K)   pattern 0 with probability 1 (a memory bank has no patterns)
  residual (N, 1, H, W)  where the evidence is: |blurred image - nearest bank image| for whole
                         images, the patch-distance map for patches (0.5 = the threshold)

Everything is Conv, Gemm, MatMul, TopK, ReduceMin, Gather and elementwise math, so the bank travels inside the
one ONNX graph. The one-hot pattern output and the name `recon_error` keep the bundle contract of
the GAN; `recon_error` here is a distance, not a reconstruction error.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from adegan.training.config import MemoryBankConfig, ModelConfig
from adegan.training.learned_features import FEATURES, RotationNet, train_rotation_net

FEATURE_BATCH = 64
MATRIX_BYTES = 256 << 20  # most memory one forward pass's patch-distance matrix may take
CPU_MATRIX_BYTES = 16 << 20  # the same on a CPU, where a cache-sized matrix is faster


LINE_ORIENTATIONS = 8


def line_kernels(length: int, orientations: int = LINE_ORIENTATIONS) -> torch.Tensor:
    """(orientations, 1, L, L) unit-sum kernels, each a 1 px wide segment of length L through the
    centre (round ends), anti-aliased by 8 x 8 sub-pixel samples: averaging along a line."""
    samples = 8
    offsets = (torch.arange(length * samples, dtype=torch.float64) + 0.5) / samples - length / 2
    y, x = torch.meshgrid(offsets, offsets, indexing="ij")
    half = (length - 1) / 2
    kernels = []
    for index in range(orientations):
        angle = math.pi * index / orientations
        along = (x * math.cos(angle) + y * math.sin(angle)).clamp(-half, half)  # nearest point of the segment
        across_x, across_y = x - along * math.cos(angle), y - along * math.sin(angle)
        inside = ((across_x ** 2 + across_y ** 2) <= 0.25).double()
        kernel = inside.reshape(length, samples, length, samples).mean(dim=(1, 3))
        kernels.append(kernel / kernel.sum())
    return torch.stack(kernels).float().unsqueeze(1)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius ceil(2 sigma) (at least 1)."""
    radius = max(1, math.ceil(2 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x * x) / (2 * sigma * sigma))
    return kernel / kernel.sum()


class MemoryBankDetector(nn.Module):
    """[0, 1] images -> (distance, pattern_probs, residual); see the module docstring."""

    def __init__(self, model_config: ModelConfig, config: MemoryBankConfig, bank: torch.Tensor | None = None,
                 feature_net: RotationNet | None = None, learned_bank: torch.Tensor | None = None,
                 learned_basis: torch.Tensor | None = None):
        super().__init__()
        self.model_config, self.config = model_config, config
        size, channels = model_config.image_size, model_config.channels
        self.patch_size, self.stride = config.patch_geometry(size)
        self.whole_image = config.whole_image(size)
        self.reference_name = "nearest normal" if self.whole_image else "blurred input"
        self.evidence_name = "|difference|" if self.whole_image else "patch distance"
        sigma = config.sigma(size)
        kernel = gaussian_kernel(sigma) if sigma > 0 else torch.ones(1)
        self.blur_radius = kernel.numel() // 2  # a plain int: the exported graph has fixed shapes
        self.register_buffer("blur_horizontal", kernel.reshape(1, 1, 1, -1).repeat(channels, 1, 1, 1))
        self.register_buffer("blur_vertical", kernel.reshape(1, 1, -1, 1).repeat(channels, 1, 1, 1))
        self.gradients = not self.whole_image and config.patch_features == "gradients"
        self.lines = not self.whole_image and config.patch_features == "line"
        maps = 1 if self.lines else channels * (2 if self.gradients else 1)  # gradients: 2 maps per channel
        if self.gradients:  # forward differences as one conv: [x, x+1] -> x+1 - x, and the same downwards
            difference = torch.zeros(2 * channels, 1, 2, 2)
            difference[0::2, 0, 0, 0], difference[0::2, 0, 0, 1] = -1.0, 1.0
            difference[1::2, 0, 0, 0], difference[1::2, 0, 1, 0] = -1.0, 1.0
            self.register_buffer("difference_kernel", difference)
        if self.lines:  # oriented means along a segment one pixel shorter than a patch
            self.register_buffer("line_kernel", line_kernels(self.patch_size - 1).repeat(channels, 1, 1, 1))
        if not self.whole_image:  # one-hot kernels: a strided conv that copies each patch into channels
            p = self.patch_size
            extract = torch.eye(maps * p * p).reshape(maps * p * p, maps, p, p)
            self.register_buffer("patch_kernel", extract)
        dim = channels * size * size if self.whole_image else maps * self.patch_size ** 2
        bank = torch.zeros(1, dim) if bank is None else bank
        # Stored as rows, (M, D), and compared by `similarity` (a Gemm that reads it transposed in
        # place: no copy in the bundle) so a neighbour is one contiguous row to gather; a (D, M)
        # bank made each gather a strided walk over the whole bank, the largest cost of a
        # batch-1 frame. A Parameter (frozen) so `next(detector.parameters())` finds the device.
        self.bank = nn.Parameter(bank.float().contiguous(), requires_grad=False)
        self.register_buffer("bank_sq_norm", (bank.float() * bank.float()).sum(1))
        self.register_buffer("map_scale", torch.ones(()))  # patch distance -> residual units
        self.learned = config.learns_features(size)
        if self.learned:  # a network trained on the normals, and its features of every bank image
            self.feature_net = (feature_net or RotationNet(channels)).eval()
            dims = learned_dims(config)
            if dims < FEATURES:  # features projected on the bank's principal directions, (FEATURES, dims)
                basis = torch.zeros(FEATURES, dims) if learned_basis is None else learned_basis
                self.register_buffer("learned_basis", basis.float().contiguous())
            else:
                self.learned_basis = None
            learned_bank = torch.zeros(1, dims) if learned_bank is None else learned_bank
            unit_rows = F.normalize(learned_bank.float(), dim=1)  # compared by cosine only: stored unit length
            self.learned_bank = nn.Parameter(unit_rows.contiguous(), requires_grad=False)
        # Mean and std over held-out normals of each view's distance: cosine, L2 (and learned).
        self.register_buffer("view_mean", torch.zeros(3 if self.learned else 2))
        self.register_buffer("view_std", torch.ones(3 if self.learned else 2))
        # Images per forward pass that keep the (N, L, M) patch-distance matrix near 256 MB (the
        # memory bound), and on a CPU near 16 MB: a matrix that stays in the processor's caches is
        # not written out to main memory and read back (measured on 2 cores with ONNX Runtime: a
        # 128 px patch bank ran 1.7x faster one image per call than 20 on one machine, and 1.12-1.14x
        # faster one per call than two on another).
        per_image = 4 * self.bank_size * (1 if self.whole_image else self.map_shape()[0] ** 2)
        self.max_batch = max(1, min(256, MATRIX_BYTES // per_image))
        self.cpu_batch = max(1, min(self.max_batch, CPU_MATRIX_BYTES // per_image))

    @property
    def bank_size(self) -> int:
        return self.bank.shape[0]

    def bank_rows(self, index: torch.Tensor) -> torch.Tensor:
        """Bank rows at `index` (any shape I) -> (*I, D)."""
        return self.bank[index]

    # ----- features -------------------------------------------------------------------------
    def blur(self, images: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur with edge replication (same size out)."""
        radius, channels = self.blur_radius, self.model_config.channels
        if radius == 0:
            return images
        padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
        blurred = F.conv2d(padded, self.blur_horizontal, groups=channels)
        return F.conv2d(blurred, self.blur_vertical, groups=channels)

    def features(self, images: torch.Tensor, blurred: torch.Tensor | None = None) -> torch.Tensor:
        """[0, 1] images -> whole: (N, D) blurred images; patches: (N, L, D) patch features.
        `blurred` is self.blur(images) where the caller has it already."""
        if self.lines:  # line evidence averages along segments itself: no blur first
            return self.line_features(images)
        return self.features_of_blurred(self.blur(images) if blurred is None else blurred)

    def line_evidence(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W): how much a pixel lies on a thin line or edge. The image is averaged along
        a segment in each of 8 orientations; the mean over the orientations (an isotropic local
        mean) is subtracted, and a pixel's evidence is the largest absolute response over
        orientations and channels. Uncorrelated texture averages out (by about sqrt(L)), a crack
        or scratch along one orientation keeps its full contrast."""
        channels, radius = self.model_config.channels, self.line_kernel.shape[-1] // 2
        padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
        means = F.conv2d(padded, self.line_kernel, groups=channels)  # (N, C x 8, H, W)
        means = means.reshape(images.shape[0], channels, LINE_ORIENTATIONS, *images.shape[-2:])
        responses = (means - means.mean(dim=2, keepdim=True)).abs()
        return responses.flatten(1, 2).max(dim=1, keepdim=True).values

    def line_features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, L, p x p) patches of the line-evidence map, not mean-removed: the amount counts."""
        patches = F.conv2d(self.line_evidence(images), self.patch_kernel, stride=self.stride)
        return patches.flatten(2).transpose(1, 2)

    def features_of_blurred(self, blurred: torch.Tensor) -> torch.Tensor:
        if self.whole_image:
            return blurred.flatten(1)
        if self.gradients:  # same size out: the last column / row repeats its neighbour's difference
            padded = F.pad(blurred, (0, 1, 0, 1), mode="replicate")
            maps = F.conv2d(padded, self.difference_kernel, groups=self.model_config.channels)
            return F.conv2d(maps, self.patch_kernel, stride=self.stride).flatten(2).transpose(1, 2)
        patches = F.conv2d(blurred, self.patch_kernel, stride=self.stride)  # (N, D, h, w)
        patches = patches - patches.mean(dim=1, keepdim=True)
        return patches.flatten(2).transpose(1, 2)  # (N, L, D)

    def map_shape(self) -> tuple[int, int]:
        side = (self.model_config.image_size - self.patch_size) // self.stride + 1
        return side, side

    # ----- distances --------------------------------------------------------------------------
    def explain(self, images: torch.Tensor):
        """(reference image, distance, pattern_probs, residual). The reference is the nearest bank
        image for whole images and the blurred input for patches (there is no single neighbour)."""
        k = min(self.config.k(self.model_config.image_size), self.bank_size)
        blurred = self.blur(images)  # once: the features, the residual and the reference all use it
        features = self.features(images, blurred)
        if self.whole_image:
            distance, index, scale = self.whole_image_distance(features, k, images)
            nearest = (self.bank_rows(index) * scale).reshape(images.shape)
            residual = (blurred - nearest).abs().mean(dim=1, keepdim=True)
            reference = nearest
        else:
            squared = nearest_squared_distance(features, self.bank, self.bank_sq_norm, k)
            patch_distance = squared.clamp_min(0.0).sqrt()  # (N, L)
            distance_map = patch_distance.reshape(images.shape[0], 1, *self.map_shape())
            distance = distance_map.flatten(1).max(dim=1).values
            size = self.model_config.image_size
            residual = F.interpolate(distance_map * self.map_scale, size=(size, size), mode="bilinear",
                                     align_corners=False)
            reference = blurred
        probs = F.pad(torch.ones_like(distance).unsqueeze(1), (0, self.model_config.n_patterns - 1))
        return reference, distance, probs, residual

    def learned_distance(self, images: torch.Tensor, k: int):
        """Whole images: (cosine distance of the learned features, nearest index), the distance the
        mean over the k nearest bank images."""
        features = self.feature_net(images)[1]
        if self.learned_basis is not None:
            features = features @ self.learned_basis
        unit = features / (features.norm(dim=1, keepdim=True) + 1e-6)
        _, index = similarity(unit, self.learned_bank).topk(k, dim=1)
        unit_neighbours = self.learned_bank[index]  # (N, k, D), unit rows
        return 0.5 * ((unit.unsqueeze(1) - unit_neighbours) ** 2).sum(dim=2).mean(dim=1), index[:, 0]

    def view_distances(self, features: torch.Tensor, k: int):
        """Whole images: (cosine distance, L2 distance, cosine-nearest index, L2-nearest index),
        each distance the mean over the k nearest bank images; one matrix product for both."""
        dot = similarity(features, self.bank)  # (N, M): finds the neighbours
        squared_norm = (features * features).sum(dim=1, keepdim=True)
        cosine = dot / (squared_norm.sqrt() * self.bank_sq_norm.sqrt() + 1e-6)
        _, cosine_index = cosine.topk(k, dim=1)
        _, l2_index = (self.bank_sq_norm - 2.0 * dot).topk(k, dim=1, largest=False)
        # The distances themselves from differences with the k neighbours, not from the expansion
        # |a|^2 - 2ab + |b|^2, which cancels for near-duplicates (and then fp32 runtimes disagree).
        unit = features / (squared_norm.sqrt() + 1e-6)
        neighbours = self.bank_rows(cosine_index)  # (N, k, D)
        unit_neighbours = neighbours / (neighbours.norm(dim=2, keepdim=True) + 1e-6)
        cosine_distance = 0.5 * ((unit.unsqueeze(1) - unit_neighbours) ** 2).sum(dim=2).mean(dim=1)
        l2_distance = (features.unsqueeze(1) - self.bank_rows(l2_index)).norm(dim=2).mean(dim=1)
        return cosine_distance, l2_distance, cosine_index[:, 0], l2_index[:, 0]

    def whole_image_distance(self, features: torch.Tensor, k: int, images: torch.Tensor):
        """(distance, nearest bank index, scale of that neighbour to the input) for the configured
        distance: cosine, l2, max-z or mean-z (the larger, or the mean, of the two, each standardised
        by view_mean and view_std measured on held-out normals). With learned features: their cosine
        distance alone, or (pixels+learned) standardised beside the pixel views of `distance`."""
        cosine, l2, cosine_index, l2_index = self.view_distances(features, k)
        scale = features.norm(dim=1, keepdim=True) / (self.bank_sq_norm[cosine_index].sqrt().unsqueeze(1) + 1e-6)
        features_used = self.config.image_features
        if features_used == "learned":
            learned, learned_index = self.learned_distance(images, k)
            scale = features.norm(dim=1, keepdim=True) / (self.bank_sq_norm[learned_index].sqrt().unsqueeze(1) + 1e-6)
            return learned, learned_index, scale
        if self.config.distance == "l2" and features_used == "pixels":
            return l2, l2_index, torch.ones_like(scale)
        if self.config.distance == "cosine" and features_used == "pixels":
            return cosine, cosine_index, scale
        views = [cosine, l2] + ([self.learned_distance(images, k)[0]] if self.learned else [])
        z = (torch.stack(views, dim=1) - self.view_mean) / self.view_std
        chosen = {"cosine": [0], "l2": [1]}.get(self.config.distance, [0, 1]) + ([2] if self.learned else [])
        z = z[:, chosen]
        combined = z.max(dim=1).values if self.config.distance == "max-z" else z.mean(dim=1)
        return combined, (l2_index if self.config.distance == "l2" else cosine_index), scale

    def forward(self, images: torch.Tensor):
        _, distance, probs, residual = self.explain(images)
        return distance, probs, residual


def learned_dims(config: MemoryBankConfig) -> int:
    """How many numbers per image the learned view compares: the network's features, or fewer."""
    return FEATURES if config.learned_dims is None else min(config.learned_dims, FEATURES)


def similarity(rows: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(N, D) rows . (M, D) bank rows -> (N, M) dot products. With a (zero) bias `F.linear`
    exports as one Gemm with transB set, which reads the bank in place; without one the exporter
    writes a MatMul and a transposed copy of the bank into the file (twice the bundle)."""
    return F.linear(rows, bank, bank.new_zeros(bank.shape[0]))


def nearest_squared_distance(features: torch.Tensor, bank: torch.Tensor, bank_sq_norm: torch.Tensor,
                             k: int) -> torch.Tensor:
    """(N, L, D) patch features -> (N, L) mean squared Euclidean distance to their k nearest bank rows.

    The (N, L, M) matrix against every bank row is the largest thing a patch bank computes, so it
    is passed over as few times as possible: one matrix product writes |b|^2 - 2 a.b (the rows
    [-2 a, 1] times the columns [b, |b|^2]: the factor -2 is exact, and the extra column costs
    1/D more arithmetic where a bias would cost a pass of its own), one reduction picks the
    nearest (a minimum when k is 1, the default, cheaper than a sort), and |a|^2, the same for
    every row b of a patch, is added to the k chosen values only. In the exported graph the
    columns are one constant, folded at export (the bank stored once, transposed: a patch bank
    gathers no rows). Spelled out, |a|^2 - 2 a.b + |b|^2 and a TopK took four more passes over the
    matrix: 73 ms of a 256 px image in ONNX Runtime on 2 cores with 16,384 rows, 38 with a bias, 33 so.
    """
    rows = features.flatten(0, 1)
    queries = torch.cat([-2.0 * rows, torch.ones_like(rows[:, :1])], dim=1)  # (N L, D + 1)
    columns = torch.cat([bank, bank_sq_norm.unsqueeze(1)], dim=1).t()  # (D + 1, M)
    partial = (queries @ columns).reshape(*features.shape[:2], -1)
    if k == 1:
        nearest = partial.amin(dim=2)
    else:
        nearest = partial.topk(k, dim=2, largest=False).values.mean(dim=2)
    return nearest + (features * features).sum(dim=2)


# ----- building the bank -----------------------------------------------------------------------
@torch.no_grad()
def bank_features(detector: MemoryBankDetector, images_uint8: np.ndarray, device) -> torch.Tensor:
    """Features of uint8 (N, C, H, W) images, stacked to (rows, D) on `device`."""
    parts = []
    for start in range(0, len(images_uint8), FEATURE_BATCH):
        batch = torch.from_numpy(images_uint8[start:start + FEATURE_BATCH]).to(device).float() / 255.0
        features = detector.features(batch)
        parts.append(features.reshape(-1, features.shape[-1]))
    return torch.cat(parts)


@torch.no_grad()
def learned_features(net: RotationNet, images_uint8: np.ndarray, device) -> torch.Tensor:
    """The network's features of uint8 (N, C, H, W) images, (N, D) on the CPU."""
    parts = []
    for start in range(0, len(images_uint8), 256):
        parts.append(net(torch.from_numpy(images_uint8[start:start + 256]).to(device).float() / 255.0)[1].cpu())
    return torch.cat(parts)


@torch.no_grad()
def greedy_coreset(features: torch.Tensor, size: int, seed: int, projection_dim: int = 64,
                   candidates_per_row: int = 8, picks_per_pass: int | None = None) -> torch.Tensor:
    """Indices of `size` rows chosen by greedy k-centre (PatchCore's coreset): each pick is the
    row farthest from those already picked, so rare normal variations stay in a small bank.

    For speed on a CPU: distances are measured after a seeded random projection
    (Johnson-Lindenstrauss); the picks come from a seeded random pool of at most
    `candidates_per_row` x `size` rows; and each pass over the pool takes the
    `picks_per_pass` farthest rows at once (size / 512 by default, so about 512 passes), which
    turns 16,384 memory-bound matrix-vector products into 512 matrix products.
    """
    generator = torch.Generator().manual_seed(seed)
    pool = None
    if len(features) > candidates_per_row * size:
        pool = torch.randperm(len(features), generator=generator)[:candidates_per_row * size].to(features.device)
        features = features[pool]
    if features.shape[1] > projection_dim:
        projection = torch.randn(features.shape[1], projection_dim, generator=generator) / math.sqrt(projection_dim)
        reduced = features @ projection.to(features.device)
    else:
        reduced = features
    per_pass = picks_per_pass or max(1, size // 512)
    squared_norm = (reduced * reduced).sum(1)
    picks = torch.randint(len(reduced), (1,), generator=generator).to(reduced.device)
    chosen = [picks]
    nearest = torch.full_like(squared_norm, float("inf"))
    # One distance block and one column of minima, reused by every pass: allocated afresh (tens
    # of MB, ~512 passes) they let resident memory grow to 8 GB and took 4-5x as long (a 256 px
    # bank of 200-300 photos on 2 CPU cores), for the same picks.
    block, closest = reduced.new_empty(len(reduced), per_pass), torch.empty_like(squared_norm)
    remaining = size - 1
    while remaining > 0:  # |a - b|^2 = |a|^2 - 2 a.b + |b|^2, against every new pick at once
        distance = block[:, :len(picks)]
        torch.mm(reduced, reduced[picks].t(), out=distance)
        distance.mul_(-2.0).add_(squared_norm[:, None]).add_(squared_norm[picks])
        torch.minimum(nearest, torch.amin(distance, dim=1, out=closest), out=nearest)
        picks = nearest.topk(min(per_pass, remaining)).indices
        chosen.append(picks)
        remaining -= len(picks)
    chosen = torch.cat(chosen).unique()  # sorted
    return chosen if pool is None else pool[chosen].sort().values


@torch.no_grad()
def principal_directions(rows: torch.Tensor, dims: int) -> torch.Tensor:
    """The first `dims` eigenvectors of the rows' uncentred second-moment matrix, (D, dims): the
    projection that keeps the rows' dot products best in least squares. Not centred, because
    the learned view compares directions (cosine), not offsets from a mean."""
    values, vectors = torch.linalg.eigh(rows.double().t() @ rows.double())
    return vectors[:, values.argsort(descending=True)[:dims]].float().contiguous()


def learned_view(net: RotationNet, config: MemoryBankConfig, images_uint8: np.ndarray, device):
    """(learned bank rows, basis or None): the network's features of the bank images, projected
    on their own first principal directions when `learned_dims` asks for fewer."""
    rows, dims = learned_features(net, images_uint8, device), learned_dims(config)
    if dims >= FEATURES:
        return rows, None  # the detector stores them unit length
    rows = F.normalize(rows, dim=1)
    basis = principal_directions(rows, dims)
    return rows @ basis, basis


@dataclass
class BankFacts:
    rows_seen: int
    rows_kept: int
    seconds: float


def build_detector(model_config: ModelConfig, config: MemoryBankConfig, train_uint8: np.ndarray,
                   device, seed: int = 0, held_out_uint8: np.ndarray | None = None,
                   bf16: bool = False) -> tuple[MemoryBankDetector, BankFacts]:
    """Store the features of the training normals (a coreset of them above `rows_kept` rows).
    For the max-z and mean-z distances, `held_out_uint8` (normals not in the bank) standardises
    both views. `bf16` trains the learned view's network under bf16 autocast (its bank features
    are still computed in fp32)."""
    start = time.perf_counter()
    detector = MemoryBankDetector(model_config, config).to(device).eval()
    features = bank_features(detector, train_uint8, device)
    rows_seen, kept, rows_kept = len(features), None, config.rows_kept(model_config.image_size)
    if rows_seen > rows_kept:
        kept = greedy_coreset(features, rows_kept, seed)
        features = features[kept]
    net, learned_bank, basis = None, None, None
    if config.learns_features(model_config.image_size):  # rows are images: the coreset's picks index them
        net = train_rotation_net(train_uint8, device, seed, bf16)
        bank_images = train_uint8 if kept is None else train_uint8[kept.cpu().numpy()]
        learned_bank, basis = learned_view(net, config, bank_images, device)
    detector = MemoryBankDetector(model_config, config, features.cpu(), net, learned_bank, basis).to(device).eval()
    if config.standardises_views(model_config.image_size):
        if held_out_uint8 is None or len(held_out_uint8) < 2:
            raise ValueError(f"the {config.distance} distance needs at least 2 held-out normal images to standardise on")
        standardise_views(detector, held_out_uint8, device)
    return detector, BankFacts(rows_seen, len(features), time.perf_counter() - start)


@torch.no_grad()
def standardise_views(detector: MemoryBankDetector, images_uint8: np.ndarray, device) -> None:
    """view_mean, view_std: mean and std of the cosine and L2 distances (and the learned one) of
    held-out normals."""
    k = min(detector.config.k(detector.model_config.image_size), detector.bank_size)
    views = []
    for start in range(0, len(images_uint8), 256):
        batch = images_uint8[start:start + 256]
        distances = list(detector.view_distances(bank_features(detector, batch, device), k)[:2])
        if detector.learned:
            distances.append(detector.learned_distance(torch.from_numpy(batch).to(device).float() / 255.0, k)[0])
        views.append(torch.stack(distances, 1))
    views = torch.cat(views)
    detector.view_mean.copy_(views.mean(dim=0))
    detector.view_std.copy_(views.std(dim=0).clamp_min(1e-12))


def set_map_scale(detector: MemoryBankDetector, threshold_distance: float) -> None:
    """Scale the patch-distance heat-map so a patch at the threshold's distance reads 0.5."""
    detector.map_scale.fill_(0.5 / max(threshold_distance, 1e-12))


def detector_from_state(model_config: ModelConfig, config: MemoryBankConfig, state: dict) -> MemoryBankDetector:
    """Rebuild the detector saved in a checkpoint (bank shape read from the state)."""
    state = dict(state)
    for old, new in (("bank_t", "bank"), ("learned_bank_t", "learned_bank")):  # checkpoints before 2026-12-03
        if old in state:
            state[new] = state.pop(old).t().contiguous()
    learned_bank = torch.zeros_like(state["learned_bank"]) if "learned_bank" in state else None
    basis = torch.zeros_like(state["learned_basis"]) if "learned_basis" in state else None
    detector = MemoryBankDetector(model_config, config, torch.zeros_like(state["bank"]), learned_bank=learned_bank,
                                  learned_basis=basis)
    detector.load_state_dict(state)
    return detector.eval()


def config_from_state(state: dict, path) -> MemoryBankConfig:
    """The MemoryBankConfig saved in a checkpoint, or a clear error for one that has none."""
    from adegan.errors import AdeganError, UsageError

    try:
        saved = dict(state["memory_bank_config"])
        saved.setdefault("patch_features", "pixels")  # banks saved before gradients existed hold pixels
        saved.setdefault("image_features", "pixels")  # and before learned features existed, pixels too
        saved.setdefault("learned_dims", None)  # and before the projection existed, every learned feature
        return MemoryBankConfig.from_dict(saved)
    except (UsageError, KeyError, TypeError) as exc:
        raise AdeganError(f"{path}: not a memory-bank checkpoint of this adegan version ({exc}); retrain it") from exc


def fit(model_config: ModelConfig, train_config, bank_config: MemoryBankConfig | None, data, run_dir, log):
    """Build the bank from the training normals, calibrate on the held-out normals, checkpoint.

    One pass, no epochs: the checkpoint is complete when written, so `train --resume` on it
    returns the saved run without building again.
    """
    from pathlib import Path

    from adegan.errors import DiskFullError
    from adegan.runtime.files import is_disk_full, write_json
    from adegan.runtime.score import calibrate
    from adegan.training.checkpoint import CHECKPOINT_NAME, save_checkpoint
    from adegan.training.inference import detector_outputs, resolve_device
    from adegan.training.trainer import TrainingInterrupted, TrainResult, calibration_sample

    bank_config = bank_config or MemoryBankConfig()
    run_dir, device = Path(run_dir), resolve_device(train_config.device)
    patch, stride = bank_config.patch_geometry(model_config.image_size)
    layout = "whole image" if bank_config.whole_image(model_config.image_size) else f"{patch} px patches, stride {stride}"
    log(f"memory bank on {device}: {len(data.train)} images, {layout}, blur sigma "
        f"{bank_config.sigma(model_config.image_size):g} px, k = {bank_config.k(model_config.image_size)}")
    try:
        detector, facts = build_detector(model_config, bank_config, data.train, device, train_config.seed,
                                         data.calibration, train_config.uses_bf16(device.type))
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"interrupted while building the memory bank; nothing was saved in {run_dir}: "
                                  f"run the same command again with --force (a build takes one pass)",
                                  resumable=False) from None
    errors, probs = detector_outputs(detector, data.calibration, device)
    calibration = calibrate(errors, probs, train_config.target_fpr, train_config.score_mode)
    threshold_distance = calibration.mu_e + calibration.threshold * calibration.sigma_e \
        if calibration.score_mode == "z" else float(np.quantile(errors, 1.0 - train_config.target_fpr))
    set_map_scale(detector, threshold_distance)
    speed = len(data.train) / max(facts.seconds, 1e-9)
    record = {"epoch": 1, "seconds": round(facts.seconds, 2), "images_per_second": round(speed, 1),
              "bank_rows_seen": facts.rows_seen, "bank_rows": facts.rows_kept,
              "mu_e": calibration.mu_e, "sigma_e": calibration.sigma_e, "threshold": calibration.threshold}
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")
    state = {
        "model_config": model_config.to_dict(), "train_config": train_config.to_dict(),
        "memory_bank_config": bank_config.to_dict(), "memory_bank": detector.cpu().state_dict(),
        "epoch": 1, "batch_in_epoch": 0, "step": 0, "calibration": calibration.to_dict(),
        "calibration_sample": calibration_sample(data.calibration), "data_info": data.info, "complete": True,
    }
    try:
        save_checkpoint(run_dir / CHECKPOINT_NAME, state)
        write_json(run_dir / "config.json", {"model": model_config.to_dict(), "train": train_config.to_dict(),
                                             "memory_bank": bank_config.to_dict()})
    except (OSError, DiskFullError) as error:
        if not is_disk_full(error):
            raise
        raise DiskFullError(f"{run_dir}: no space left on the device while saving the memory bank; free some "
                            f"space and run the same command again with --force") from error
    log(f"bank: {facts.rows_kept} of {facts.rows_seen} feature rows kept, {facts.seconds:.1f} s")
    return TrainResult(run_dir, 1, 0, speed, calibration)
