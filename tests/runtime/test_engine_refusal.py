"""A TensorRT engine is tied to the TensorRT version and the GPU it was built with: one built
elsewhere is refused before TensorRT tries to load it, with the command that rebuilds it.

TensorRT cannot be installed on our CPU machines, so `tensorrt` and cuda-python are replaced by
small fakes that report a version and a GPU name; the checks under test are adegan's own.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("cv2")

from adegan.cli import app
from adegan.runtime import tensorrt_backend
from adegan.runtime.bundle import MANIFEST_NAME, file_entry

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_bundle"
TRTEXEC = "trtexec --onnx=bundle/model.onnx --saveEngine=bundle/model.engine --fp16"


class FakeRuntime:
    loaded = []

    def __init__(self, logger):
        pass

    def deserialize_cuda_engine(self, data: bytes):
        FakeRuntime.loaded.append(data)
        return None  # stops the backend right after the checks


def install_fakes(monkeypatch, version: str, gpu: str) -> None:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.Runtime = FakeRuntime
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    properties = types.SimpleNamespace(name=gpu.encode() + b"\x00\x00")
    cudart = types.SimpleNamespace(cudaGetDeviceProperties=lambda device: (0, properties))
    monkeypatch.setattr(tensorrt_backend, "_cudart", lambda: cudart)
    FakeRuntime.loaded.clear()


@pytest.fixture
def engine_bundle(tmp_path) -> Path:
    """The tiny bundle plus a (fake) engine built with TensorRT 10.3.0 on an Orin, hashes updated."""
    bundle = tmp_path / "bundle"
    shutil.copytree(TINY, bundle)
    (bundle / "model.engine").write_bytes(b"serialized plan")
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["files"]["model.engine"] = file_entry(bundle / "model.engine")
    manifest["tensorrt"] = {"built": True, "version": "10.3.0", "gpu": "Orin", "trtexec": TRTEXEC}
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    return bundle


def score_with_tensorrt(bundle: Path):
    import numpy as np
    import cv2

    image = bundle.parent / "part.png"
    cv2.imwrite(str(image), np.full((32, 32), 128, np.uint8))
    return CliRunner().invoke(app, ["score", str(image), "--model", str(bundle), "--backend", "tensorrt",
                                    "--out", str(bundle.parent / "results.csv"), "--no-progress"])


@pytest.mark.parametrize("version,gpu,message", [
    ("8.6.2", "Orin", "built with TensorRT 10.3.0, this device has 8.6.2"),
    ("10.3.0", "NVIDIA H200", "built for Orin, this GPU is NVIDIA H200"),
])
def test_foreign_engine_is_refused_with_the_rebuild_command(engine_bundle, monkeypatch, version, gpu, message):
    install_fakes(monkeypatch, version, gpu)
    result = CliRunner().invoke(app, ["info", str(engine_bundle)])
    assert result.exit_code == 0, result.output  # the bundle itself is fine
    result = score_with_tensorrt(engine_bundle)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1 and message in errors[0], result.output
    assert "rebuild" in errors[0]
    if "TensorRT 10.3.0" in message:
        assert TRTEXEC in errors[0]  # the exact command from the manifest
    assert FakeRuntime.loaded == []  # refused before TensorRT was asked to load it


def test_matching_engine_goes_on_to_load(engine_bundle, monkeypatch):
    install_fakes(monkeypatch, "10.3.0", "Orin")
    result = score_with_tensorrt(engine_bundle)
    assert FakeRuntime.loaded == [b"serialized plan"]  # the checks passed; the fake then fails to load
    assert result.exit_code == 1 and "TensorRT could not load the engine" in result.output
