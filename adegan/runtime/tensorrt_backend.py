"""Native TensorRT backend: the bundle's engine through the name-based I/O API that exists from
TensorRT 8.5 on (`set_input_shape`, `set_tensor_address`, `execute_async_v3`), with device
buffers from cuda-python. Needs only numpy, the system TensorRT and cuda-python, so it runs on
a Jetson (JetPack 5.1 / 6.x) without torch or onnxruntime.

Not exercised on our CPU machines (no TensorRT can be installed there); its tests are marked
`tensorrt` and skip without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adegan.errors import AdeganError, MissingDependencyError
from adegan.runtime.contract import ENGINE_FILE, INPUT_NAME, MANIFEST_NAME, OUTPUT_NAMES, Outputs, validate_images


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise MissingDependencyError(
                "the TensorRT backend needs cuda-python: pip install cuda-python (matching your CUDA major version)"
            ) from exc
    return cudart


def _check(result):
    """cuda-python returns (error, value...) tuples; raise on an error, return the value(s)."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise AdeganError(f"CUDA call failed: {error}")
    return values[0] if len(values) == 1 else values


class TensorRTBackend:
    name = "tensorrt"
    on_cpu = False
    concurrent_calls = False  # one execution context and stream: calls take turns

    def __init__(self, engine_path: Path, manifest: dict):
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise MissingDependencyError(
                "TensorRT is not installed: on a Jetson use the system TensorRT (python3-libnvinfer) in a venv made "
                "with --system-site-packages; elsewhere use --backend onnxruntime"
            ) from exc
        self.cudart, self.manifest, self.trt = _cudart(), manifest, trt
        self._refuse_foreign_engine(engine_path)
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise AdeganError(f"{engine_path}: TensorRT could not load the engine (built by another TensorRT version "
                              f"or GPU?); rebuild it here: adegan export RUN_DIR --engine, or the trtexec line in "
                              f"{MANIFEST_NAME}")
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart.cudaStreamCreate())
        self.max_batch = int(self.engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0])
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            shape = list(self.engine.get_tensor_shape(name))
            shape[0] = self.max_batch
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            self.buffers[name] = (_check(self.cudart.cudaMalloc(nbytes)), nbytes)
            self.context.set_tensor_address(name, int(self.buffers[name][0]))
        self.provider = f"TensorRT {trt.__version__}"

    def _refuse_foreign_engine(self, engine_path: Path) -> None:
        recorded = self.manifest.get("tensorrt") or {}
        version = recorded.get("version")
        if version and version != self.trt.__version__:
            raise AdeganError(
                f"{engine_path}: built with TensorRT {version}, this device has {self.trt.__version__}; engines are "
                f"not portable: rebuild it here with `adegan export RUN_DIR --engine` or: {recorded.get('trtexec', 'trtexec')}"
            )
        gpu = recorded.get("gpu")
        if gpu:
            properties = _check(self.cudart.cudaGetDeviceProperties(0))
            here = properties.name.decode() if isinstance(properties.name, bytes) else str(properties.name)
            if here.strip("\x00") != gpu:
                raise AdeganError(f"{engine_path}: built for {gpu}, this GPU is {here}; rebuild the engine on this device")

    def infer(self, images: np.ndarray) -> Outputs:
        images = validate_images(images, self.manifest)
        parts = [self._infer_chunk(images[i:i + self.max_batch]) for i in range(0, len(images), self.max_batch)]
        return Outputs(*(np.concatenate([p[k] for p in parts]) for k in range(len(OUTPUT_NAMES))))

    def _infer_chunk(self, images: np.ndarray) -> list[np.ndarray]:
        cudart, trt = self.cudart, self.trt
        self.context.set_input_shape(INPUT_NAME, images.shape)
        pointer, _ = self.buffers[INPUT_NAME]
        _check(cudart.cudaMemcpyAsync(pointer, images.ctypes.data, images.nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise AdeganError("TensorRT inference failed (see the TensorRT log)")
        results = []
        for name in OUTPUT_NAMES:
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.empty(shape, dtype=np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, self.buffers[name][0], host.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
            results.append(host)
        _check(cudart.cudaStreamSynchronize(self.stream))
        return [r.astype(np.float32, copy=False) for r in results]

    def describe(self) -> str:
        return f"tensorrt ({self.provider}, {ENGINE_FILE}, max batch {self.max_batch})"

    def close(self) -> None:
        for pointer, _ in self.buffers.values():
            self.cudart.cudaFree(pointer)
        self.buffers.clear()
        self.cudart.cudaStreamDestroy(self.stream)
