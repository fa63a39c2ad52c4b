"""ONNX -> TensorRT engine, written against the TensorRT Python API from 8.5 (JetPack 5.1) to 10.x.

Version differences handled here (pure functions, unit-tested without TensorRT):
- before 10: networks need the EXPLICIT_BATCH creation flag; from 10 it is implicit (flag 0);
- workspace through `set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)` (8.4+);
- fp16: the FP16 builder flag on the fp32 ONNX up to 10.11; from 10.12 (deprecated there, removed
  in 11) the fp16 ONNX is built as a STRONGLY_TYPED network instead, so precision comes from the
  graph itself;
- `build_serialized_network` (`build_engine` is gone in 10).
The engine is a plain plan file (nothing prepended), readable by trtexec, Triton and DeepStream.
Engines are not portable across GPU models or TensorRT versions: build on the target device.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from adegan.errors import AdeganError
from adegan.runtime.contract import ENGINE_FILE, MODEL_FILE, MODEL_FP16_FILE

DEFAULT_WORKSPACE_BYTES = 1 << 30


class TensorRTUnavailable(AdeganError):
    """No usable TensorRT (or no GPU) here."""


def parse_version(version: str) -> tuple[int, int]:
    major, minor = (version.split(".") + ["0"])[:2]
    return int(major), int(minor)


@dataclass(frozen=True)
class BuildPlan:
    """What to build, decided from the TensorRT version alone."""

    onnx_file: str  # which ONNX of the bundle to parse
    explicit_batch_flag: bool  # pass 1 << EXPLICIT_BATCH to create_network (TensorRT < 10)
    strongly_typed: bool  # pass 1 << STRONGLY_TYPED (fp16 from the graph, TensorRT >= 10.12)
    fp16_builder_flag: bool  # set BuilderFlag.FP16


def build_plan(trt_version: str, fp16: bool) -> BuildPlan:
    version = parse_version(trt_version)
    if version < (8, 5):
        raise TensorRTUnavailable(f"TensorRT {trt_version} is too old: adegan needs 8.5 or newer (JetPack 5.1+)")
    strongly_typed = fp16 and version >= (10, 12)
    return BuildPlan(
        onnx_file=MODEL_FP16_FILE if strongly_typed else MODEL_FILE,
        explicit_batch_flag=version < (10, 0),
        strongly_typed=strongly_typed,
        fp16_builder_flag=fp16 and not strongly_typed,
    )


def profile_shapes(channels: int, image_size: int, max_batch: int, opt_batch: int | None = None):
    """(min, opt, max) input shapes of the single optimization profile: batch 1..max_batch."""
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    opt = min(max(opt_batch or max_batch, 1), max_batch)
    shape = (channels, image_size, image_size)
    return (1, *shape), (opt, *shape), (max_batch, *shape)


def trtexec_command(bundle: Path, channels: int, image_size: int, max_batch: int, fp16: bool,
                    trt_version: str = "10.3", workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> str:
    """The equivalent trtexec command line, for building the engine on the target device."""
    plan = build_plan(trt_version, fp16)
    low, opt, high = (f"images:{'x'.join(map(str, s))}" for s in profile_shapes(channels, image_size, max_batch))
    parts = ["trtexec", f"--onnx={bundle / plan.onnx_file}", f"--saveEngine={bundle / ENGINE_FILE}",
             f"--minShapes={low}", f"--optShapes={opt}", f"--maxShapes={high}",
             f"--memPoolSize=workspace:{workspace_bytes // (1 << 20)}",
             f"--timingCacheFile={bundle / 'timing.cache'}"]
    if plan.fp16_builder_flag:
        parts.append("--fp16")
    if plan.strongly_typed:
        parts.append("--stronglyTyped")
    return " ".join(shlex.quote(part) for part in parts)


def import_tensorrt():
    """The tensorrt module, if it is real and a CUDA GPU is visible; else TensorRTUnavailable."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable("TensorRT is not installed here") from exc
    if not hasattr(trt, "Builder"):  # e.g. the empty namespace that tensorrt-stubs installs
        raise TensorRTUnavailable("the installed `tensorrt` package has no Builder (stubs only)")
    return trt


def onnx2engine(bundle: Path, channels: int, image_size: int, max_batch: int, fp16: bool,
                timing_cache: Path | None = None, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
                log=print) -> dict:
    """Build `bundle/model.engine` from the bundle's ONNX; returns facts for the manifest."""
    trt = import_tensorrt()
    plan = build_plan(trt.__version__, fp16)
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except Exception as exc:  # no GPU: CUDA initialization fails here
        raise TensorRTUnavailable(f"TensorRT could not start ({exc}); is a CUDA GPU visible?") from exc
    flags = 0
    if plan.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse((bundle / plan.onnx_file).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise AdeganError(f"TensorRT could not parse {bundle / plan.onnx_file}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if plan.fp16_builder_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape("images", *profile_shapes(channels, image_size, max_batch))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=True)
    log(f"building TensorRT {trt.__version__} engine from {plan.onnx_file} (this takes a minute)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise AdeganError("TensorRT failed to build the engine (see the TensorRT log above)")
    (bundle / ENGINE_FILE).write_bytes(bytes(serialized))
    if timing_cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"version": trt.__version__, "onnx": plan.onnx_file, "fp16": fp16,
            "strongly_typed": plan.strongly_typed, "max_batch": max_batch, **gpu_facts()}


def gpu_facts() -> dict:
    """GPU name and compute capability (through torch, which the export side has)."""
    import torch

    if not torch.cuda.is_available():
        return {"gpu": None, "compute_capability": None}
    major, minor = torch.cuda.get_device_capability(0)
    return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
