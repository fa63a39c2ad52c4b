"""Frozen configuration for the model and for training (no torch import here).

Both serialize to plain dicts (stored in every checkpoint, so a checkpoint carries its own
config) and refuse unknown keys when read back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from adegan.errors import UsageError
from adegan.runtime.contract import SCORE_MODES

IMAGE_SIZES = (32, 64, 128, 256)
PATTERN_INPUTS = ("softmax", "hard")
METHODS = ("memory-bank", "adegan", "clustergan", "autoencoder")
BENCHMARKS = ("mnist", "fashion-mnist", "cifar10")  # sources read by name, for leave-one-class-out
WHOLE_IMAGE_DISTANCES = ("cosine", "l2", "max-z", "mean-z")
PATCH_FEATURES = ("gradients", "line", "pixels")  # what a patch holds: brightness changes, line evidence, mean-removed pixels
MIXED_PRECISION = ("auto", "bf16", "off")  # auto: bf16 autocast on CUDA, full fp32 on a CPU
IMAGE_FEATURES = ("learned", "pixels", "pixels+learned")  # whole images: blurred pixels, learned features, or both
PRESETS = {"default": {}, "tiny": {"width": 8}}  # model sizes: tiny is for tests and demos
WHOLE_IMAGE_MAX_SIZE = 64  # up to this size a memory bank compares whole images, above it patches
WHOLE_IMAGE_BANK_ROWS = 4096  # default most whole images kept in a bank (greedy coreset above)
PATCH_BANK_ROWS = 4096  # default most patches kept in a bank


def _from_dict(cls, data: dict, what: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"unknown {what} key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of G, D and E. `latent_dim` defaults to 30 (gray) / 64 (colour)."""

    image_size: int = 32
    channels: int = 1
    n_patterns: int = 10
    latent_dim: int | None = None
    width: int = 64
    noise_std: float = 0.1  # sigma of z_n ~ N(0, sigma^2), ClusterGAN's value
    trunk_batchnorm: bool = True  # BatchNorm in D's and E's trunks; ClusterGAN's training has none (WGAN-GP)

    def __post_init__(self):
        if self.image_size not in IMAGE_SIZES:
            raise UsageError(f"image size must be one of {IMAGE_SIZES}, got {self.image_size}")
        if self.channels not in (1, 3):
            raise UsageError(f"channels must be 1 or 3, got {self.channels}")
        if self.n_patterns < 2:
            raise UsageError(f"the number of patterns must be at least 2, got {self.n_patterns}")
        if self.width < 1:
            raise UsageError(f"width must be positive, got {self.width}")
        if self.noise_std <= 0:
            raise UsageError(f"noise_std must be positive, got {self.noise_std}")
        if self.latent_dim is None:
            object.__setattr__(self, "latent_dim", 30 if self.channels == 1 else 64)
        elif self.latent_dim < 1:
            raise UsageError(f"latent_dim must be positive, got {self.latent_dim}")

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """`default` (width 64) or `tiny` (width 8, for tests), with field overrides."""
        if name not in PRESETS:
            raise UsageError(f"unknown model preset {name!r}; choose from {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return _from_dict(cls, data, "model config")


@dataclass(frozen=True)
class MemoryBankConfig:
    """The memory-bank detector (`--method memory-bank`): features, neighbours, bank size.

    `patch_size` None picks from the image size: the whole image up to 64 px, 16 px patches above
    (a small defect on a large photo needs local evidence). `blur` None is 1 px of Gaussian sigma
    per 32 px of patch, so a 32 px digit gets sigma 1 and a 16 px patch 0.5: enough to forgive a
    one-pixel shift, too little to erase a thin crack. `neighbours` None is 5 for whole images
    (an average over a few neighbours is steadier) and 1 for patches (one close normal patch is
    enough to explain a patch). Banks above `bank_size` rows are reduced by greedy coreset; None
    keeps 4,096 whole images (a coreset of that size beat the full bank of 10,000 on the
    leave-one-class-out test splits: it drops near-duplicate normals that pulled unseen classes
    close) and 4,096 patches (as many as whole images: on KolektorSDD's synthetic-defect validation
    4,096, 8,192 and 16,384 rows scored alike, and each row costs every patch of every scored
    image one more dot product; a part with far more varied texture may want more).
    `patch_features` pixels stores the mean-removed patch; gradients stores each patch's
    horizontal and vertical brightness differences (blind to a patch's overall brightness; a thin
    crack is a pair of strong edges); line stores patches of a line-evidence map (averages along
    8 orientations, minus their mean: high on thin cracks and scratches, low on isotropic texture).
    Gradients won on synthetic defects but not on real cracks; line lost on synthetic defects and
    won on real cracks; pixels stay the default (docs/method.md). `learned_dims` keeps the learned
    view's features on their first principal directions over the bank (None, or 3,072 or more:
    all of them): each frame then reads that many numbers per bank image instead of the
    network's 3,072. 64 is the default: it was level with all features on the leave-one-class-out
    test splits (a little above on each) and halves a 32 px frame's time.
    """

    patch_size: int | None = None
    blur: float | None = None
    neighbours: int | None = None
    bank_size: int | None = None  # None: 4,096 rows, whole images or patches
    distance: str = "mean-z"  # whole images: cosine, l2, max-z / mean-z (larger / mean of both, standardised)
    patch_features: str = "pixels"  # patches: mean-removed pixels, brightness differences, or line evidence
    image_features: str = "pixels+learned"  # whole images: blurred pixels, features learned on the normals, or both
    learned_dims: int | None = 64  # whole images: principal directions the learned features keep (None: all)

    def __post_init__(self):
        if self.distance not in WHOLE_IMAGE_DISTANCES:
            raise UsageError(f"distance must be one of {WHOLE_IMAGE_DISTANCES}, got {self.distance!r}")
        if self.patch_features not in PATCH_FEATURES:
            raise UsageError(f"patch features must be one of {PATCH_FEATURES}, got {self.patch_features!r}")
        if self.image_features not in IMAGE_FEATURES:
            raise UsageError(f"image features must be one of {IMAGE_FEATURES}, got {self.image_features!r}")
        if self.patch_size is not None and self.patch_size < 2:
            raise UsageError(f"patch size must be at least 2 px, got {self.patch_size}")
        if self.blur is not None and not self.blur >= 0:
            raise UsageError(f"blur must be >= 0 (Gaussian sigma in pixels), got {self.blur}")
        if self.neighbours is not None and self.neighbours < 1:
            raise UsageError(f"neighbours must be at least 1, got {self.neighbours}")
        if self.bank_size is not None and self.bank_size < 1:
            raise UsageError(f"bank size must be at least 1, got {self.bank_size}")
        if self.learned_dims is not None and self.learned_dims < 1:
            raise UsageError(f"learned dims must be at least 1, got {self.learned_dims}")

    def patch_geometry(self, image_size: int) -> tuple[int, int]:
        """(patch size, stride) for this image size; a patch the size of the image = whole image."""
        if self.patch_size is None:
            patch = image_size if image_size <= WHOLE_IMAGE_MAX_SIZE else 16
        else:
            patch = min(self.patch_size, image_size)
        return patch, (image_size if patch == image_size else max(1, patch // 2))

    def whole_image(self, image_size: int) -> bool:
        return self.patch_geometry(image_size)[0] == image_size

    def learns_features(self, image_size: int) -> bool:
        """True when the bank holds features of a network trained on the normals (whole images)."""
        return self.whole_image(image_size) and self.image_features != "pixels"

    def standardises_views(self, image_size: int) -> bool:
        """True when the distance combines standardised views, which needs held-out normals."""
        return self.whole_image(image_size) and (self.distance in ("max-z", "mean-z")
                                                 or self.image_features == "pixels+learned")

    def sigma(self, image_size: int) -> float:
        return self.patch_geometry(image_size)[0] / 32.0 if self.blur is None else float(self.blur)

    def rows_kept(self, image_size: int) -> int:
        """Most bank rows kept for this image size; more rows are reduced by greedy coreset."""
        if self.bank_size is not None:
            return self.bank_size
        return WHOLE_IMAGE_BANK_ROWS if self.whole_image(image_size) else PATCH_BANK_ROWS

    def k(self, image_size: int) -> int:
        if self.neighbours is not None:
            return self.neighbours
        return 5 if self.whole_image(image_size) else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MemoryBankConfig":
        return _from_dict(cls, data, "memory-bank config")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Loss weights default to (1, 1, 10) gray / (1, 10, 10) colour."""

    source: str = ""
    anomaly_class: int | None = None
    dataset_path: str | None = None
    seed: int = 0
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float | None = None  # None: 2e-4, or ClusterGAN's 1e-4 for --method clustergan
    adam_betas: tuple[float, float] | None = None  # None: (0.5, 0.999), or ClusterGAN's (0.5, 0.9)
    critic_steps: int = 5  # clustergan: critic updates per G/E update
    gradient_penalty: float = 10.0  # clustergan: weight of WGAN-GP's penalty on the critic's gradient norm
    alpha: float | None = None  # weight of L_ip
    beta: float | None = None  # weight of L_sl
    gamma: float | None = None  # weight of L_recon
    calibration_fraction: float = 0.1
    target_fpr: float = 0.01
    use_ip_loss: bool = True
    same_pattern_interpolation: bool = True
    interpolation_fraction: float = 0.5  # share of each generated batch that is interpolated
    interpolation_draws: int = 3  # t >= 2 draws per same-pattern interpolation
    pattern_input: str = "softmax"  # what G receives from E in L_recon: softmax or hard one-hot
    noise_loss_weight: float = 1.0  # weight of MSE(z_n_hat, z_n) inside L_sl (the paper: 1)
    score_mode: str | None = None  # None: "z" for the memory bank, "cdf" (the paper's Eq. 9) otherwise
    # "memory-bank" (default): nearest-normal distance, see memory_bank.py; "adegan": the paper's GAN;
    # "clustergan": the same networks and losses trained as ClusterGAN trains (clustergan.py);
    # "autoencoder": the baseline of the benchmarks. The same E and G trained as a plain
    # autoencoder on L_recon only (no discriminator, no pattern head, no L_sl, no L_ip).
    method: str = "memory-bank"
    max_train_images: int | None = None  # subsample the training normals (CPU budgets)
    device: str = "auto"
    mixed_precision: str = "auto"  # training passes in bf16 autocast: auto (on CUDA only), bf16, off

    def __post_init__(self):
        if self.mixed_precision not in MIXED_PRECISION:
            raise UsageError(f"mixed precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.epochs < 1:
            raise UsageError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise UsageError(f"batch size must be at least 2, got {self.batch_size}")
        if not 0.0 < self.calibration_fraction < 0.5:
            raise UsageError(
                f"calibration fraction must be in (0, 0.5), got {self.calibration_fraction}"
            )
        if not 0.0 < self.target_fpr < 1.0:
            raise UsageError(f"target FPR must be in (0, 1), got {self.target_fpr}")
        if self.pattern_input not in PATTERN_INPUTS:
            raise UsageError(f"pattern_input must be one of {PATTERN_INPUTS}, got {self.pattern_input!r}")
        if self.method not in METHODS:
            raise UsageError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.score_mode is None:
            object.__setattr__(self, "score_mode", "z" if self.method == "memory-bank" else "cdf")
        if self.score_mode not in SCORE_MODES:
            raise UsageError(f"score mode must be one of {SCORE_MODES}, got {self.score_mode!r}")
        if self.interpolation_draws < 2:
            raise UsageError(f"interpolation_draws must be at least 2, got {self.interpolation_draws}")
        if not 0.0 <= self.interpolation_fraction <= 1.0:
            raise UsageError(f"interpolation_fraction must be in [0, 1], got {self.interpolation_fraction}")
        clustergan = self.method == "clustergan"
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", 1e-4 if clustergan else 2e-4)
        if self.adam_betas is None:
            object.__setattr__(self, "adam_betas", (0.5, 0.9) if clustergan else (0.5, 0.999))
        if not self.learning_rate > 0:
            raise UsageError(f"learning rate must be positive, got {self.learning_rate}")
        if self.critic_steps < 1:
            raise UsageError(f"critic_steps must be at least 1, got {self.critic_steps}")
        if self.gradient_penalty < 0:
            raise UsageError(f"gradient_penalty must be >= 0, got {self.gradient_penalty}")
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))

    def loss_weights(self, channels: int) -> tuple[float, float, float]:
        """(alpha, beta, gamma), with the paper's per-dataset defaults filled in; ClusterGAN
        weighs both parts of L_sl by 10 (beta_n = beta_c = 10) on every dataset."""
        if self.method == "clustergan":
            defaults = (1.0, 10.0, 10.0)
        else:
            defaults = (1.0, 1.0, 10.0) if channels == 1 else (1.0, 10.0, 10.0)
        chosen = (self.alpha, self.beta, self.gamma)
        return tuple(float(d if c is None else c) for c, d in zip(chosen, defaults))

    def uses_bf16(self, device_type: str) -> bool:
        """Whether training passes run under bf16 autocast on this device: bf16 keeps fp32's
        exponent range, so no loss scaling is needed; on a CPU it is slower, so auto leaves it off."""
        return self.mixed_precision == "bf16" or (self.mixed_precision == "auto" and device_type == "cuda")

    def with_changes(self, **changes) -> "TrainConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return _from_dict(cls, data, "train config")
