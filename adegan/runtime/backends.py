"""Inference backends behind one small interface (`contract.Backend`): ONNX Runtime here, native
TensorRT in tensorrt_backend.py.

A backend takes float32 images (N, C, H, W) in [0, 1] and returns the graph's three outputs.
Inputs are validated against the manifest first, with a message that says what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from adegan.errors import MissingDependencyError, UsageError
from adegan.runtime.bundle import BundleError, require_listed
from adegan.runtime.contract import BACKENDS, ENGINE_FILE, INPUT_NAME, OUTPUT_NAMES, Outputs, onnx_file, validate_images


class OnnxRuntimeBackend:
    """ONNX Runtime with the best installed provider: TensorRT EP -> CUDA EP -> CPU.

    ORT lists GPU providers even when no GPU works and then silently falls back to CPU, so the
    provider reported is the one the session actually got, not the one asked for.
    """

    name = "onnxruntime"
    concurrent_calls = True  # a session may run in several threads at once

    def __init__(self, bundle: Path, manifest: dict, precision: str = "fp32", providers: list | None = None,
                 threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError(
                "ONNX Runtime is not installed: pip install 'adegan[cpu]' (or 'adegan[gpu]' on a CUDA machine)"
            ) from exc
        self.manifest = manifest
        model = Path(bundle) / onnx_file(precision)
        if not model.is_file():
            raise UsageError(f"{model}: not in the bundle; export with --fp16 or use --precision fp32")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # `threads` intra-op threads per call, by default one per CPU this process may run on
        # (taskset, cgroups, a container's cpuset); ORT's own default pins one thread per physical
        # core of the machine, which oversubscribes a process that was given fewer cores.
        options.intra_op_num_threads = threads or usable_cpus()
        options.inter_op_num_threads = 1
        requested = providers or choose_providers(ort.get_available_providers(), Path(bundle), precision == "fp16")
        self.session = ort.InferenceSession(str(model), options, providers=requested)
        self.provider = self.session.get_providers()[0]
        self.on_cpu = self.provider == "CPUExecutionProvider"
        self.model_file = model.name
        check_graph_io(model, self.session, manifest)

    def infer(self, images: np.ndarray) -> Outputs:
        images = validate_images(images, self.manifest)
        return Outputs(*self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images}))

    def describe(self) -> str:
        return f"onnxruntime ({self.provider}, {self.model_file})"

    def close(self) -> None:
        self.session = None  # ORT frees the session (and its threads) when the last reference goes


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def check_graph_io(model: Path, session, manifest: dict) -> None:
    """The graph's input and output names, and its input shape, must be the bundle contract's."""
    inputs, outputs = session.get_inputs(), [o.name for o in session.get_outputs()]
    spec = manifest["input"]
    expected = [spec["channels"], spec["image_size"], spec["image_size"]]
    problems = []
    if [i.name for i in inputs] != [INPUT_NAME]:
        problems.append(f"inputs {[i.name for i in inputs]} instead of ['{INPUT_NAME}']")
    elif [d if isinstance(d, int) else None for d in inputs[0].shape[1:]] != expected:
        problems.append(f"input shape {inputs[0].shape[1:]} instead of {expected} from the manifest")
    if sorted(outputs) != sorted(OUTPUT_NAMES):
        problems.append(f"outputs {outputs} instead of {list(OUTPUT_NAMES)}")
    if problems:
        raise BundleError(f"{model}: does not match its manifest ({'; '.join(problems)}); re-export the bundle")


def choose_providers(available: list[str], bundle: Path, fp16: bool) -> list:
    """Provider list in order of preference, limited to what this ORT build has."""
    chosen: list = []
    if "TensorrtExecutionProvider" in available:
        cache = bundle / "ort_trt_cache"
        chosen.append(("TensorrtExecutionProvider", {
            "trt_fp16_enable": fp16, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache),
        }))
    if "CUDAExecutionProvider" in available:
        chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


def tensorrt_available() -> bool:
    try:
        import tensorrt as trt
        from cuda import cudart  # noqa: F401  (cuda-python)
    except ImportError:
        return False
    return hasattr(trt, "Runtime")


def open_backend(bundle: Path, manifest: dict, kind: str = "auto", precision: str = "fp32", verify: bool = True,
                 threads: int | None = None):
    """The backend to score with: `auto` takes the bundle's TensorRT engine when TensorRT and
    cuda-python are importable, else ONNX Runtime (`threads` intra-op threads per call, default
    one per usable CPU). With `verify`, the file it loads must be one the manifest hashes
    (load_manifest has checked those hashes)."""
    if kind not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {kind!r}")
    engine = Path(bundle) / ENGINE_FILE
    if kind == "tensorrt" or (kind == "auto" and engine.is_file() and tensorrt_available()):
        from adegan.runtime.tensorrt_backend import TensorRTBackend

        require_listed(bundle, manifest, ENGINE_FILE, verify)
        return TensorRTBackend(engine, manifest)
    model_file = onnx_file(precision)
    if (Path(bundle) / model_file).is_file():  # a missing file gets the backend's own message
        require_listed(bundle, manifest, model_file, verify)
    return OnnxRuntimeBackend(bundle, manifest, precision, threads=threads)
