"""`adegan export`: a trained run -> a deployable bundle, written atomically.

The bundle is assembled in a temporary folder beside the target and renamed into place only
when complete, so an interrupted export never leaves a half-written bundle that looks complete.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


from adegan import __version__
from adegan.console import log as default_log
from adegan.errors import MissingDependencyError, UsageError
from adegan.export import onnx as onnx_export
from adegan.export import tensorrt as trt_export
from adegan.export.parity import check_parity
from adegan.runtime.bundle import file_entry, is_bundle
from adegan.runtime.contract import ENGINE_FILE, MANIFEST_KIND, MANIFEST_NAME, METADATA_KEY, MODEL_FILE, MODEL_FP16_FILE, SCHEMA_VERSION
from adegan.runtime.files import disk_full_error, is_disk_full, make_staging_dir, write_json

PARITY_IMAGES = 256  # calibration images used for the parity tables


@dataclass(frozen=True)
class ExportOptions:
    out: Path | None = None  # default: RUN_DIR/bundle
    fp16: bool = False
    engine: bool = False
    max_batch: int = 32
    opset: int = onnx_export.DEFAULT_OPSET
    triton: Path | None = None
    force: bool = False

    def __post_init__(self):
        if self.max_batch < 1:
            raise UsageError(f"--max-batch must be at least 1, got {self.max_batch}")
        if not 13 <= self.opset <= 20:
            raise UsageError(f"--opset must be between 13 and 20 (TensorRT 8.5 reads up to 17), got {self.opset}")


@dataclass
class ExportResult:
    bundle: Path
    manifest: dict
    engine_note: str | None = None
    triton_dir: Path | None = None

    @property
    def files(self) -> dict[str, int]:
        """Bundle file name -> size in bytes, from the manifest."""
        return {name: entry["bytes"] for name, entry in self.manifest["files"].items()}


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()) and not force:
        what = "another bundle" if is_bundle(out) else "other files"
        raise UsageError(f"{out} already holds {what}; pass --force to replace it, or choose another --out")


def _versions() -> dict:
    import onnx
    import torch

    versions = {"adegan": __version__, "torch": torch.__version__, "onnx": onnx.__version__}
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        versions["onnxruntime"] = None
    return versions


def build_manifest(run_dir: Path, state: dict, model_config, train_config, calibration, options: ExportOptions) -> dict:
    C, H = model_config.channels, model_config.image_size
    return {
        "kind": MANIFEST_KIND, "schema_version": SCHEMA_VERSION, "name": run_dir.resolve().name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": {"name": onnx_export.INPUT_NAME, "shape": ["batch", C, H, H], "dtype": "float32",
                  "layout": "NCHW", "range": [0.0, 1.0], "channels": C, "image_size": H,
                  "colour_order": "gray" if C == 1 else "RGB",
                  "normalization": "pixel / 255; the graph maps [0, 1] to [-1, 1] itself",
                  "resize": "long side to image_size keeping the aspect ratio, short side centred and padded "
                            "with 0; cv2.INTER_AREA when shrinking, cv2.INTER_LINEAR when enlarging"},
        "method": train_config.method,
        "outputs": {"recon_error": ["batch"], "pattern_probs": ["batch", model_config.n_patterns],
                    "residual": ["batch", 1, H, H]},
        "n_patterns": model_config.n_patterns,
        "score": calibration.to_dict(),
        "opset": options.opset, "max_batch": options.max_batch,
        "versions": {**_versions(), "tensorrt": None, "gpu": None},
        "training": {"source": train_config.source, "anomaly_class": train_config.anomaly_class,
                     "seed": train_config.seed, "epochs": state["epoch"], "complete": bool(state.get("complete"))},
        "model_config": model_config.to_dict(),
    }


def missing_export_libraries() -> list[str]:
    """Which of onnx (writes the graph) and onnxruntime (checks it against torch) are not installed."""
    import importlib.util

    return [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]


def require_export_libraries() -> None:
    """Both export libraries, or one clear line naming the extras that bring them."""
    missing = missing_export_libraries()
    if missing:
        raise MissingDependencyError(f"adegan export needs {' and '.join(missing)}: pip install 'adegan[export,cpu]' "
                                     f"(or 'adegan[export,gpu]' on a CUDA machine)")


def export_run(run_dir: Path, options: ExportOptions, log=default_log) -> ExportResult:
    from adegan.training.inference import load_detector

    require_export_libraries()
    run_dir = Path(run_dir)
    out = Path(options.out) if options.out else run_dir / "bundle"
    _check_target(out, options.force)
    log(f"1/{5 if options.engine else 4} loading the checkpoint")
    detector, model_config, train_config, calibration, state = load_detector(run_dir, "cpu")
    sample = state.get("calibration_sample")
    if sample is None or len(sample) == 0:
        raise UsageError(f"{run_dir}: the checkpoint holds no calibration images for the parity check; "
                         f"retrain it with adegan {__version__}")
    images = sample[:PARITY_IMAGES].numpy()  # uint8, as the runtime reads them
    manifest = build_manifest(run_dir, state, model_config, train_config, calibration, options)
    manifest["max_inference_batch"] = getattr(detector, "max_batch", None)  # memory bank: bounded memory
    manifest["cpu_inference_batch"] = getattr(detector, "cpu_batch", None)  # the same, cache-sized for a CPU

    staging = make_staging_dir(out)
    total = 5 if options.engine else 4
    try:
        C, H = model_config.channels, model_config.image_size
        log(f"2/{total} exporting ONNX (opset {options.opset})")
        onnx_export.torch2onnx(detector, staging / MODEL_FILE, C, H, options.opset)
        if options.fp16:
            log("    converting to fp16 (fp32 inputs/outputs, reductions and softmax in fp32)")
            onnx_export.onnx_fp32_to_fp16(staging / MODEL_FILE, staging / MODEL_FP16_FILE)
        log(f"3/{total} parity check on {len(images)} calibration images")
        manifest["parity"] = check_parity(detector, staging, images, calibration, options.fp16)
        log(f"4/{total} writing the manifest")
        onnx_names = [MODEL_FILE] + ([MODEL_FP16_FILE] if options.fp16 else [])
        for name in onnx_names:  # the manifest, less the file hashes, travels inside each ONNX file
            onnx_export.embed_metadata(staging / name, METADATA_KEY, manifest)
        engine_note = None
        if options.engine:
            log(f"5/{total} building the TensorRT engine")
            engine_note = _build_engine(staging, out, manifest, options, C, H, log)
        manifest["files"] = {name: file_entry(staging / name) for name in onnx_names}
        if (staging / ENGINE_FILE).exists():
            manifest["files"][ENGINE_FILE] = file_entry(staging / ENGINE_FILE)
        write_json(staging / MANIFEST_NAME, manifest)
        _move_into_place(staging, out)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(error):
            kept = "the previous bundle there is unchanged" if out.exists() else "no partial bundle was left"
            raise disk_full_error(out, f"the export was abandoned and {kept}") from error
        raise
    result = ExportResult(out, manifest, engine_note)
    if options.triton:
        from adegan.export.triton import write_triton_repository

        result.triton_dir = write_triton_repository(options.triton, manifest["name"], out / MODEL_FILE,
                                                    manifest, options.max_batch, options.fp16)
    return result


def _build_engine(staging: Path, out: Path, manifest: dict, options: ExportOptions, channels: int, size: int,
                  log) -> str | None:
    """Build the engine where TensorRT and a GPU exist; otherwise say how to build it on the target."""
    try:
        facts = trt_export.onnx2engine(staging, channels, size, options.max_batch, options.fp16,
                                       timing_cache=staging / "timing.cache", log=log)
    except trt_export.TensorRTUnavailable as exc:
        command = trt_export.trtexec_command(out, channels, size, options.max_batch, options.fp16)
        manifest["tensorrt"] = {"built": False, "reason": str(exc), "trtexec": command}
        return (f"no TensorRT engine: {exc}. Run the same `adegan export ... --engine` on the target device "
                f"(a Jetson or the GPU server), or build it there with:\n  {command}")
    manifest["tensorrt"] = {"built": True, **facts}
    manifest["versions"].update({"tensorrt": facts["version"], "gpu": facts["gpu"]})
    return None


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished bundle over `out`; an old bundle is moved aside first, then deleted."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{datetime.now().strftime('%Y%m%d%H%M%S%f')}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
