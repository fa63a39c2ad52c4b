"""Export: ONNX fp32/fp16 bundles with manifest and parity; Triton; TensorRT logic."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from adegan.cli import app  # noqa: E402
from adegan.errors import AdeganError, UsageError  # noqa: E402
from adegan.export import tensorrt as trt_export  # noqa: E402
from adegan.export.exporter import ExportOptions, export_run  # noqa: E402
from adegan.runtime.bundle import BundleError, load_manifest, sha256_file  # noqa: E402
from adegan.training.config import ModelConfig, TrainConfig  # noqa: E402
from adegan.training.inference import load_detector  # noqa: E402
from adegan.training.trainer import train  # noqa: E402

QUIET = dict(log=lambda m: None)


@pytest.fixture(scope="module")
def run_dir(synthetic_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "run"
    config = TrainConfig(source=str(synthetic_data["train"]), epochs=2, batch_size=32, method="adegan")
    train(ModelConfig.preset("tiny", n_patterns=4), config, path, progress=False, **QUIET)
    return path


@pytest.fixture(scope="module")
def bundle(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "b"
    export_run(run_dir, ExportOptions(out=out, fp16=True), **QUIET)
    return out


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_bundle_files_pass_the_checker_and_run(bundle):
    for name in ("model.onnx", "model.fp16.onnx"):
        onnx.checker.check_model(str(bundle / name), full_check=True)
        model = onnx.load(str(bundle / name))
        assert [i.name for i in model.graph.input] == ["images"]
        assert [o.name for o in model.graph.output] == ["recon_error", "pattern_probs", "residual"]
        assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O
        assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
        assert not list(bundle.glob("*.data"))  # self-contained: no external-data side file
    half = onnx.load(str(bundle / "model.fp16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in half.graph.initializer)
    outputs = session(bundle / "model.fp16.onnx").run(None, {"images": np.random.rand(3, 1, 32, 32).astype(np.float32)})
    assert [o.shape for o in outputs] == [(3,), (3, 4), (3, 1, 32, 32)]


def test_onnx_matches_torch_and_batch_is_dynamic(bundle, run_dir):
    detector, *_ = load_detector(run_dir, "cpu")
    images = np.random.default_rng(0).random((7, 1, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in detector(torch.from_numpy(images))]
    fp32 = session(bundle / "model.onnx")
    batch7 = fp32.run(None, {"images": images})
    for got, want in zip(batch7, expected):
        assert np.abs(got - want).max() < 1e-5
    singles = [fp32.run(None, {"images": images[i:i + 1]}) for i in range(7)]
    for k in range(3):
        assert np.allclose(np.concatenate([s[k] for s in singles]), batch7[k], atol=1e-6)


def test_manifest_fields_hashes_and_metadata(bundle, run_dir):
    manifest = load_manifest(bundle)  # verifies every sha256
    assert manifest["input"] == {**manifest["input"], "name": "images", "channels": 1, "image_size": 32,
                                 "colour_order": "gray", "range": [0.0, 1.0]}
    assert manifest["n_patterns"] == 4 and manifest["opset"] == 17
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert manifest["score"] == state["calibration"]
    assert set(manifest["files"]) == {"model.onnx", "model.fp16.onnx"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(bundle / name)
    assert {"adegan", "torch", "onnx", "tensorrt", "gpu"} <= set(manifest["versions"])
    parity = manifest["parity"]
    assert parity["fp32_vs_torch"]["max_rel_recon_error"] < 1e-4
    assert parity["fp32_vs_torch"]["verdict_changes"] == 0
    # fp16 tolerance we state in the docs: score within 1e-2, recon_error within 1e-3 absolute
    assert parity["fp16_vs_fp32"]["max_abs_score"] < 1e-2
    assert parity["fp16_vs_fp32"]["max_abs_recon_error"] < 1e-3
    assert "verdict_changes" in parity["fp16_vs_fp32"]
    embedded = {p.key: p.value for p in onnx.load(str(bundle / "model.onnx")).metadata_props}
    inside = json.loads(embedded["adegan"])
    assert "files" not in inside and inside["score"] == manifest["score"]


def test_tampered_bundle_is_refused(bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 does not match"):
        load_manifest(copy)


def test_existing_bundle_needs_force_and_interrupted_export_leaves_nothing(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "bundle"
    export_run(run_dir, ExportOptions(out=out), **QUIET)
    before = sha256_file(out / "adegan.json")
    with pytest.raises(UsageError, match="already holds another bundle"):
        export_run(run_dir, ExportOptions(out=out), **QUIET)

    import adegan.export.exporter as exporter

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "check_parity", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_run(run_dir, ExportOptions(out=out, force=True), **QUIET)
    assert sha256_file(out / "adegan.json") == before  # the old bundle is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging folder left
    with pytest.raises(KeyboardInterrupt):
        export_run(run_dir, ExportOptions(out=tmp_path / "fresh"), **QUIET)
    assert not (tmp_path / "fresh").exists()


def test_bad_checkpoints(tmp_path, run_dir):
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "checkpoint.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(AdeganError, match="corrupt"):
        export_run(tmp_path / "corrupt", ExportOptions(out=tmp_path / "b1"), **QUIET)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    (tmp_path / "old").mkdir()
    torch.save({**state, "format_version": 99}, tmp_path / "old" / "checkpoint.pt")
    with pytest.raises(AdeganError, match="not supported"):
        export_run(tmp_path / "old", ExportOptions(out=tmp_path / "b2"), **QUIET)
    torch.save({**state, "model_config": {**state["model_config"], "wings": 2}}, tmp_path / "old" / "checkpoint.pt")
    with pytest.raises(AdeganError, match="incompatible adegan version"):
        export_run(tmp_path / "old", ExportOptions(out=tmp_path / "b3"), **QUIET)


def _triton_model_config():
    spec = importlib.util.find_spec("tritonclient")
    if spec is None:
        pytest.skip("tritonclient (dev extra) not installed")
    path = Path(spec.submodule_search_locations[0]) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.ModelConfig


def test_triton_repository_parses_and_names_the_tensors(run_dir, tmp_path):
    from google.protobuf import text_format

    result = export_run(run_dir, ExportOptions(out=tmp_path / "b", fp16=True, max_batch=8,
                                               triton=tmp_path / "repo"), **QUIET)
    model_dir = tmp_path / "repo" / result.manifest["name"]
    assert (model_dir / "1" / "model.onnx").read_bytes() == (tmp_path / "b" / "model.onnx").read_bytes()
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), _triton_model_config()())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 8
    assert [i.name for i in config.input] == ["images"] and list(config.input[0].dims) == [1, 32, 32]
    assert [o.name for o in config.output] == ["recon_error", "pattern_probs", "residual"]
    assert list(config.output[1].dims) == [4] and list(config.output[0].reshape.shape) == []
    assert config.HasField("dynamic_batching")
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    manifest = json.loads(config.parameters["adegan_manifest"].string_value)
    assert manifest["score"] == result.manifest["score"]


@pytest.mark.parametrize("version,fp16,expected", [
    ("8.5.2", False, ("model.onnx", True, False, False)),
    ("8.5.2", True, ("model.onnx", True, False, True)),
    ("8.6.2", True, ("model.onnx", True, False, True)),
    ("10.3.0", True, ("model.onnx", False, False, True)),
    ("10.12.0", True, ("model.fp16.onnx", False, True, False)),
    ("11.0", True, ("model.fp16.onnx", False, True, False)),
    ("11.0", False, ("model.onnx", False, False, False)),
])
def test_tensorrt_flags_by_version(version, fp16, expected):
    plan = trt_export.build_plan(version, fp16)
    assert (plan.onnx_file, plan.explicit_batch_flag, plan.strongly_typed, plan.fp16_builder_flag) == expected


def test_tensorrt_profile_and_trtexec_command():
    assert trt_export.profile_shapes(3, 64, 16) == ((1, 3, 64, 64), (16, 3, 64, 64), (16, 3, 64, 64))
    assert trt_export.profile_shapes(1, 32, 16, opt_batch=4)[1] == (4, 1, 32, 32)
    with pytest.raises(trt_export.TensorRTUnavailable, match="too old"):
        trt_export.build_plan("8.4.1", False)
    command = trt_export.trtexec_command(Path("/b"), 1, 32, 8, fp16=True, trt_version="10.3")
    assert command.startswith("trtexec --onnx=/b/model.onnx --saveEngine=/b/model.engine")
    assert "--minShapes=images:1x1x32x32" in command and "--maxShapes=images:8x1x32x32" in command
    assert command.endswith("--fp16")
    typed = trt_export.trtexec_command(Path("/b"), 1, 32, 8, fp16=True, trt_version="10.13")
    assert "--onnx=/b/model.fp16.onnx" in typed and "--stronglyTyped" in typed and "--fp16" not in typed


def test_tensorrt_stubs_are_detected(monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # like tensorrt-stubs
    with pytest.raises(trt_export.TensorRTUnavailable, match="no Builder"):
        trt_export.import_tensorrt()


@pytest.mark.tensorrt
def test_tensorrt_engine_builds(run_dir, tmp_path):
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    result = export_run(run_dir, ExportOptions(out=tmp_path / "b", fp16=True, engine=True, max_batch=4), **QUIET)
    assert result.manifest["tensorrt"]["built"]
    assert (tmp_path / "b" / "model.engine").stat().st_size > 0
    assert "model.engine" in result.manifest["files"]


def test_cli_export_without_tensorrt_still_writes_the_bundle(run_dir, tmp_path):
    result = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(tmp_path / "b"), "--fp16", "--engine"])
    assert result.exit_code == 0, result.output
    assert "fp32_vs_torch" in result.stdout and "fp16_vs_fp32" in result.stdout
    assert "model.fp16.onnx" in result.stdout and "adegan score" in result.stdout and "adegan watch" in result.stdout
    assert "trtexec --onnx=" in result.output
    manifest = load_manifest(tmp_path / "b")
    assert manifest["tensorrt"]["built"] is False and "trtexec" in manifest["tensorrt"]["trtexec"]
    again = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(tmp_path / "b")])
    assert again.exit_code == 2 and "--force" in again.output


def test_runtime_scores_match_the_torch_evaluation(run_dir, bundle, synthetic_data, tmp_path):
    """`adegan score` with the fp32 ONNX gives the scores `adegan evaluate` computes in torch."""
    import csv

    from adegan.training.evaluate import evaluate_run

    evaluate_run(run_dir, str(synthetic_data["test"]), out_dir=tmp_path / "eval", plots=False, **QUIET)
    with open(tmp_path / "eval" / "scores.csv", newline="") as file:
        torch_scores = {row["path"]: float(row["score"]) for row in csv.DictReader(file)}
    result = CliRunner().invoke(app, ["score", str(synthetic_data["test"]), "--model", str(bundle),
                                      "--out", str(tmp_path / "runtime.csv"), "--backend", "onnxruntime"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "runtime.csv", newline="") as file:
        runtime_scores = {row["path"]: float(row["score"]) for row in csv.DictReader(file)}
    assert set(runtime_scores) == set(torch_scores) and len(runtime_scores) == 120
    worst = max(abs(runtime_scores[p] - torch_scores[p]) for p in torch_scores)
    assert worst <= 1e-4, worst


def test_export_without_onnx_names_the_extras_to_install(run_dir, tmp_path):
    """Only `adegan[train]` installed: one line naming the extras, exit code 3, no traceback."""
    import subprocess
    import sys

    script = ("import sys; sys.modules['onnx'] = None\n"
              f"sys.argv = ['adegan', 'export', {str(run_dir)!r}, '--out', {str(tmp_path / 'b')!r}]\n"
              "from adegan.cli import app\napp()")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert "pip install 'adegan[export,cpu]'" in result.stderr
