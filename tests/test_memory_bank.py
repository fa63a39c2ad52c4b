"""The memory-bank detector: bank building, both feature layouts, the CLI path to a deployed
bundle, and agreement between evaluate (torch) and the torch-free runtime."""

import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from adegan.cli import app  # noqa: E402
from adegan.errors import UsageError  # noqa: E402
from adegan.runtime.model import BundleModel  # noqa: E402
from adegan.runtime.images import read_image  # noqa: E402
from adegan.training.config import MemoryBankConfig, ModelConfig  # noqa: E402
from adegan.training.memory_bank import (MemoryBankDetector, build_detector, greedy_coreset,  # noqa: E402
                                         nearest_squared_distance)
from adegan.training.inference import detector_outputs  # noqa: E402

runner = CliRunner()


def texture(rng, height: int, width: int) -> np.ndarray:
    """A 'good surface': smooth grain, a few shades of gray."""
    noise = rng.normal(128, 18, (height // 4, width // 4)).astype(np.float32)
    return np.clip(cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def cracked(rng, height: int, width: int) -> np.ndarray:
    """The same surface with a thin dark scratch covering about 1 % of it."""
    image = texture(rng, height, width)
    y, x = int(rng.integers(20, height - 20)), int(rng.integers(5, width - 40))
    cv2.line(image, (x, y), (x + 30, y + int(rng.integers(-3, 4))), 20, 2)
    return image


def test_greedy_coreset_keeps_the_rare_rows():
    common = torch.zeros(500, 4) + torch.randn(500, 4) * 0.01
    rare = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0]])
    chosen = greedy_coreset(torch.cat([common, rare]), 3, seed=0, candidates_per_row=1000)
    assert {500, 501} <= set(chosen.tolist())


@pytest.mark.parametrize("per_pass", [1, 4])
def test_greedy_coreset_takes_the_farthest_rows_each_pass(per_pass):
    """k-centre by the book (exact distances, no pool, no projection at 8 values per row): each
    pass takes the `per_pass` rows farthest from every row picked before, the last pass fewer."""
    rows = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    chosen = greedy_coreset(rows, 19, seed=0, candidates_per_row=100, picks_per_pass=per_pass)
    picked = torch.randint(300, (1,), generator=torch.Generator().manual_seed(0)).tolist()
    nearest = ((rows - rows[picked[0]]) ** 2).sum(1)
    while len(picked) < 19:
        new = nearest.topk(min(per_pass, 19 - len(picked))).indices.tolist()
        picked += new
        for index in new:
            nearest = torch.minimum(nearest, ((rows - rows[index]) ** 2).sum(1))
    assert chosen.tolist() == sorted(picked)


def test_whole_image_layout_finds_the_nearest_normal():
    config = ModelConfig(image_size=32, channels=1)
    rng = np.random.default_rng(0)
    normals = rng.integers(0, 255, (20, 1, 32, 32), dtype=np.uint8)
    pixels_cosine = MemoryBankConfig(neighbours=1, distance="cosine", image_features="pixels")
    detector, facts = build_detector(config, pixels_cosine, normals, "cpu")
    assert detector.whole_image and facts.rows_kept == 20
    images = torch.from_numpy(normals[:3]).float() / 255
    reference, distance, probs, residual = detector.explain(images)
    assert distance.abs().max() < 1e-5  # a bank image is at distance 0 from itself
    assert torch.allclose(probs, torch.nn.functional.one_hot(torch.zeros(3, dtype=torch.long), 10).float())
    assert residual.shape == (3, 1, 32, 32) and float(residual.max()) < 1e-3


def test_the_default_bank_keeps_4096_whole_images_and_4096_patches():
    rng = np.random.default_rng(2)
    whole = ModelConfig(image_size=32, channels=1)
    normals = rng.integers(0, 255, (4200, 1, 32, 32), dtype=np.uint8)
    pixels = MemoryBankConfig(distance="cosine", image_features="pixels")
    detector, facts = build_detector(whole, pixels, normals, "cpu")
    assert (facts.rows_seen, facts.rows_kept, detector.bank_size) == (4200, 4096, 4096)
    assert MemoryBankConfig().rows_kept(128) == 4096 and MemoryBankConfig(bank_size=100).rows_kept(28) == 100


@pytest.mark.parametrize("features", ["gradients", "line", "pixels"])
def test_patch_layout_localises_a_small_defect(features):
    rng = np.random.default_rng(1)
    config = ModelConfig(image_size=128, channels=1)
    normals = np.stack([texture(rng, 128, 128)[None] for _ in range(24)])
    detector, facts = build_detector(config, MemoryBankConfig(bank_size=2000, patch_features=features), normals, "cpu")
    assert not detector.whole_image and facts.rows_seen == 24 * 15 * 15 and facts.rows_kept == 2000
    good = np.stack([texture(rng, 128, 128)[None] for _ in range(10)])
    bad = np.stack([cracked(rng, 128, 128)[None] for _ in range(10)])
    distance, _ = detector_outputs(detector, np.concatenate([good, bad]), "cpu")
    assert distance[10:].min() > distance[:10].max()


def test_gradient_patches_ignore_brightness_and_hold_both_directions():
    config = ModelConfig(image_size=128, channels=1)
    detector = MemoryBankDetector(config, MemoryBankConfig(blur=0.0, patch_features="gradients"),
                                  torch.zeros(1, 2 * 16 * 16))
    ramp = torch.linspace(0.1, 0.6, 128).repeat(128, 1)[None, None]  # brightness rising to the right
    features = detector.features(ramp)
    assert features.shape == (1, 15 * 15, 2 * 16 * 16)
    assert torch.allclose(features, detector.features(ramp + 0.2), atol=1e-6)  # an offset changes nothing
    horizontal, vertical = features[0, 0].reshape(2, 16, 16)  # the horizontal map's patch, then the vertical's
    assert vertical.abs().max() < 1e-6  # nothing changes downwards
    assert horizontal.abs().min() == pytest.approx(0.5 / 127, rel=1e-3)  # the ramp's step, everywhere


def test_a_bank_saved_before_gradients_existed_still_reads_pixels():
    from adegan.training.memory_bank import config_from_state

    old = {"patch_size": None, "blur": None, "neighbours": None, "bank_size": 16384, "distance": "mean-z"}
    assert config_from_state({"memory_bank_config": old}, "run").patch_features == "pixels"


def test_the_bank_bounds_its_batch_by_memory_and_on_a_cpu_by_cache():
    config = ModelConfig(image_size=256, channels=1)
    detector = MemoryBankDetector(config, MemoryBankConfig(), torch.zeros(16384, 256))
    assert detector.max_batch * 31 * 31 * 16384 * 4 <= 256 << 20 and detector.max_batch >= 1
    assert detector.cpu_batch == 1  # one 256 px image's matrix is already above 16 MB
    small_bank = MemoryBankDetector(ModelConfig(image_size=128, channels=1), MemoryBankConfig(), torch.zeros(4096, 256))
    per_image = small_bank.map_shape()[0] ** 2 * 4096 * 4
    assert small_bank.cpu_batch * per_image <= 16 << 20 < (small_bank.cpu_batch + 1) * per_image
    assert 1 < small_bank.cpu_batch < small_bank.max_batch


def test_the_runtime_splits_batches_by_the_bound_of_its_device():
    from adegan.runtime.model import inference_batch

    manifest = {"max_inference_batch": 20, "cpu_inference_batch": 2}
    assert inference_batch(manifest, on_cpu=True) == 2 and inference_batch(manifest, on_cpu=False) == 20
    # calls running at once share the cache budget; a GPU's bound is not shared
    wide = {"max_inference_batch": 20, "cpu_inference_batch": 8}
    assert [inference_batch(wide, True, calls) for calls in (1, 2, 3, 16)] == [8, 4, 2, 1]
    assert inference_batch(wide, on_cpu=False, parallel_calls=4) == 20
    assert inference_batch({"max_inference_batch": 20}, on_cpu=True) == 20  # a bundle exported before
    assert inference_batch({}, on_cpu=True) is None and inference_batch({"max_inference_batch": None}, True) is None



def test_the_exported_whole_image_graph_reads_each_bank_once_as_rows(tmp_path, monkeypatch):
    """A whole-image bank is stored once, as rows, and compared by a Gemm with transB: no
    transposed copy in the file (twice the bundle) and neighbours gathered as contiguous rows (a
    strided gather over a (D, M) bank was the largest cost of a batch-1 frame)."""
    import onnx

    from adegan.export.onnx import torch2onnx
    from adegan.training import learned_features

    monkeypatch.setattr(learned_features, "MIN_STEPS", 2)
    rng, image_size = np.random.default_rng(0), 32
    config = ModelConfig(image_size=image_size, channels=1)
    detector, _ = build_detector(config, MemoryBankConfig(), rng.integers(0, 255, (30, 1, image_size, image_size),
                                                                          dtype=np.uint8), "cpu",
                                 held_out_uint8=rng.integers(0, 255, (8, 1, image_size, image_size), dtype=np.uint8))
    path = tmp_path / "model.onnx"
    torch2onnx(detector, path, 1, image_size)
    graph = onnx.load(str(path)).graph
    shapes = [tuple(t.dims) for t in graph.initializer]
    assert detector.learned
    for name in ("bank", "learned_bank"):
        rows = tuple(getattr(detector, name).shape)
        assert shapes.count(rows) == 1 and rows[::-1] not in shapes, name
        gemms = [n for n in graph.node if n.op_type == "Gemm" and name in n.input]
        assert gemms and all(any(a.name == "transB" and a.i == 1 for a in n.attribute) for n in gemms), name
        assert not [n for n in graph.node if n.op_type == "Gather" and name in n.input
                    and any(a.name == "axis" and a.i != 0 for a in n.attribute)], name


@pytest.mark.parametrize("k", [1, 3])
def test_patch_distance_is_the_mean_over_the_k_nearest_bank_rows(k):
    """The one-product form ([-2 a, 1] times [b, |b|^2], |a|^2 added to the chosen values) gives
    the distances of the k nearest rows by the book."""
    generator = torch.Generator().manual_seed(0)
    features, bank = torch.randn(2, 7, 16, generator=generator), torch.randn(50, 16, generator=generator)
    expected = torch.cdist(features, bank.expand(2, -1, -1)).pow(2).topk(k, dim=2, largest=False).values.mean(2)
    got = nearest_squared_distance(features, bank, (bank * bank).sum(1), k)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_the_exported_patch_graph_passes_over_the_distance_matrix_once(tmp_path):
    """A patch bank's (N, L, M) matrix is the largest thing it computes: one MatMul writes it,
    against the bank and its squared norms folded into one (D + 1, M) constant (the bank stored
    once), and one ReduceMin reads it (k = 1). A bias, a TopK and elementwise passes over the
    matrix took most of a 256 px image's time in ONNX Runtime."""
    import onnx

    from adegan.export.onnx import torch2onnx

    rng = np.random.default_rng(0)
    config = ModelConfig(image_size=128, channels=1)
    detector, _ = build_detector(config, MemoryBankConfig(), rng.integers(0, 255, (6, 1, 128, 128), dtype=np.uint8),
                                 "cpu")
    path = tmp_path / "model.onnx"
    torch2onnx(detector, path, 1, 128)
    graph = onnx.load(str(path)).graph
    rows, dims = detector.bank.shape
    matrices = [tuple(weight.dims) for weight in graph.initializer if len(weight.dims) == 2]
    assert matrices == [(dims + 1, rows)]
    products = [node for node in graph.node if node.op_type in ("MatMul", "Gemm")]
    assert len(products) == 1 and products[0].op_type == "MatMul"
    readers = [node for node in graph.node if products[0].output[0] in node.input]
    while readers and readers[0].op_type == "Reshape":  # shape only: no pass over the values
        readers = [node for node in graph.node if readers[0].output[0] in node.input]
    assert [node.op_type for node in readers] == ["ReduceMin"]
    assert not [node for node in graph.node if node.op_type == "TopK"]


def test_a_checkpoint_with_the_transposed_banks_still_loads(monkeypatch):
    """Checkpoints written before the banks were stored as rows held them transposed (bank_t,
    learned_bank_t)."""
    from adegan.training import learned_features
    from adegan.training.memory_bank import detector_from_state

    monkeypatch.setattr(learned_features, "MIN_STEPS", 2)
    rng = np.random.default_rng(1)
    config, bank_config = ModelConfig(image_size=32, channels=1), MemoryBankConfig(image_features="pixels+learned")
    detector, _ = build_detector(config, bank_config, rng.integers(0, 255, (30, 1, 32, 32), dtype=np.uint8), "cpu",
                                 held_out_uint8=rng.integers(0, 255, (8, 1, 32, 32), dtype=np.uint8))
    state = detector.state_dict()
    for name in ("bank", "learned_bank"):
        state[f"{name}_t"] = state.pop(name).t().contiguous()
    loaded = detector_from_state(config, bank_config, state)
    images = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images)[0], detector(images)[0])

def test_a_checkpoint_saved_before_the_projection_keeps_every_learned_feature():
    """Banks saved before learned_dims existed compared all 3,072 features; they must load so,
    not with the 64-direction default (their state has no basis)."""
    from adegan.training.memory_bank import config_from_state

    saved = {key: value for key, value in asdict(MemoryBankConfig()).items() if key != "learned_dims"}
    assert config_from_state({"memory_bank_config": saved}, "old.pt").learned_dims is None
    assert MemoryBankConfig().learned_dims == 64


def test_bad_memory_bank_options_are_refused():
    for options in ({"patch_size": 1}, {"blur": -1.0}, {"neighbours": 0}, {"bank_size": 0}, {"patch_features": "edges"},
                    {"learned_dims": 0}):
        with pytest.raises(UsageError):
            MemoryBankConfig(**options)


@pytest.fixture(scope="module")
def photo_folders(tmp_path_factory):
    """Non-square 'photos' (200 x 80): train/ good surfaces, test/good and test/crack."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(2)
    for folder, maker, count in (("train", texture, 100), ("test/good", texture, 12), ("test/crack", cracked, 12)):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(root / folder / f"{i:03d}.png"), maker(rng, 200, 80))
    return root


def test_cli_train_export_score_on_photos(photo_folders, tmp_path):
    run, bundle, results = tmp_path / "run", tmp_path / "bundle", tmp_path / "scores.csv"
    trained = runner.invoke(app, ["train", str(photo_folders / "train"), "--out", str(run), "--method",
                                  "memory-bank", "--bank-size", "3000", "--no-progress", "--json"])
    assert trained.exit_code == 0, trained.output
    config = (run / "config.json").read_text()
    assert '"image_size": 256' in config  # chosen from the 200 px long side
    evaluated = runner.invoke(app, ["evaluate", str(run), str(photo_folders / "test"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    exported = runner.invoke(app, ["export", str(run), "--out", str(bundle), "--fp16"])
    assert exported.exit_code == 0, exported.output
    scored = runner.invoke(app, ["score", str(photo_folders / "test"), "--model", str(bundle), "--out",
                                 str(results), "--no-progress", "--overlays", str(tmp_path / "overlays")])
    assert scored.exit_code == 0, scored.output
    import csv
    import json

    metrics = json.loads(evaluated.output[evaluated.output.index("{"):])
    assert metrics["auc"]["combined"] > 0.95 and metrics["score_mode"] == "z"
    rows = list(csv.DictReader(open(results)))
    runtime = {Path(r["path"]).name + Path(r["path"]).parent.name: float(r["score"]) for r in rows}
    flagged = [r for r in rows if r["verdict"] == "anomaly"]
    from adegan.training.metrics import roc_auc

    assert sum("crack" in r["path"] for r in flagged) >= 10  # most cracks pass the calibrated threshold
    labels = np.array(["crack" in r["path"] for r in rows])
    assert roc_auc(labels, np.array([float(r["score"]) for r in rows])) > 0.95
    evaluated_rows = list(csv.DictReader(open(run / "evaluation" / "scores.csv")))
    torch_scores = np.array([float(r["score"]) for r in evaluated_rows])
    onnx_scores = np.array([runtime[Path(r["path"]).name + Path(r["path"]).parent.name] for r in evaluated_rows])
    assert [r["verdict"] for r in evaluated_rows] == ["anomaly" if s > float(json.loads(trained.stdout)["calibration"]
                                                      ["threshold"]) else "normal" for s in torch_scores]
    assert np.abs(torch_scores - onnx_scores).max() < 1e-3  # the runtime reproduces evaluate's score
    plain = runner.invoke(app, ["evaluate", str(run), str(photo_folders / "test")])
    assert "AUC  " in plain.output and "AUC pattern" not in plain.output  # no meaningless 0.5 line
    assert set(metrics["auc"]) == {"combined"} and "mean_pattern_confidence" not in metrics
    assert metrics["per_kind"]["crack"]["images"] == sum(r["kind"] == "crack" for r in evaluated_rows)
    overlay = read_image(next((tmp_path / "overlays").iterdir()))
    assert overlay.shape[0] > overlay.shape[1]  # the overlay keeps the photo's tall shape


def test_line_features_train_export_and_score_through_the_cli(photo_folders, tmp_path):
    import csv

    from adegan.training.metrics import roc_auc

    run, bundle, results = tmp_path / "run", tmp_path / "bundle", tmp_path / "scores.csv"
    trained = runner.invoke(app, ["train", str(photo_folders / "train"), "--out", str(run), "--patch-features", "line",
                                  "--bank-size", "3000", "--no-progress"])
    assert trained.exit_code == 0, trained.output
    assert '"patch_features": "line"' in (run / "config.json").read_text()
    exported = runner.invoke(app, ["export", str(run), "--out", str(bundle)])  # export checks ORT against torch
    assert exported.exit_code == 0, exported.output
    scored = runner.invoke(app, ["score", str(photo_folders / "test"), "--model", str(bundle), "--out", str(results),
                                 "--no-progress"])
    assert scored.exit_code == 0, scored.output
    rows = list(csv.DictReader(open(results)))
    labels = np.array(["crack" in r["path"] for r in rows])
    assert roc_auc(labels, np.array([float(r["score"]) for r in rows])) > 0.95


def test_line_evidence_is_high_on_a_thin_line_and_low_on_flat_texture():
    config = ModelConfig(image_size=128, channels=1)
    detector = MemoryBankDetector(config, MemoryBankConfig(patch_features="line"), torch.zeros(1, 16 * 16))
    rng = np.random.default_rng(0)
    surface = texture(rng, 128, 128).astype(np.float32)
    lined = surface.copy()
    lined[64, 20:100] -= 25  # a faint horizontal crack, about one texture standard deviation deep
    evidence = detector.line_evidence(torch.from_numpy(np.stack([surface, lined])[:, None]) / 255)
    on_line = float(evidence[1, 0, 64, 30:90].mean())
    assert on_line > 2 * float(evidence[0, 0, 64, 30:90].mean())  # the same row without the crack
    assert on_line > float(np.percentile(evidence[0].numpy(), 95))  # above nearly all of the texture


def test_runtime_model_reads_a_memory_bank_bundle(photo_folders, tmp_path):
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert runner.invoke(app, ["train", str(photo_folders / "train"), "--out", str(run), "--method", "memory-bank",
                               "--image-size", "128", "--no-progress"]).exit_code == 0
    assert runner.invoke(app, ["export", str(run), "--out", str(bundle)]).exit_code == 0
    model = BundleModel(bundle)
    image = read_image(next((photo_folders / "test" / "crack").iterdir()))
    scores = model.score_uint8(model.preprocess(image)[None])
    assert scores.outputs.residual.shape == (1, 1, 128, 128) and np.isfinite(scores.score).all()
    # Large batches are split to bound memory (on a CPU, to a cache-sized matrix), with the same
    # scores as one call.
    manifest = json.loads((bundle / "adegan.json").read_text())
    assert 1 <= manifest["cpu_inference_batch"] < manifest["max_inference_batch"]
    assert model.max_inference_batch == manifest["cpu_inference_batch"]
    batch = np.stack([model.preprocess(read_image(p)) for p in sorted((photo_folders / "test" / "good").iterdir())])
    model.max_inference_batch = 5
    split = model.score_uint8(batch)
    model.max_inference_batch = None
    whole = model.score_uint8(batch)
    assert np.allclose(split.score, whole.score, atol=1e-5) and split.outputs.residual.shape == whole.outputs.residual.shape


@pytest.mark.parametrize("distance", ["max-z", "mean-z"])
def test_standardised_views_combine_cosine_and_l2(distance):
    rng = np.random.default_rng(3)
    config = ModelConfig(image_size=32, channels=1)
    normals = rng.integers(0, 255, (60, 1, 32, 32), dtype=np.uint8)
    pixel_views = MemoryBankConfig(distance=distance, image_features="pixels")
    with pytest.raises(ValueError, match="held-out normal"):
        build_detector(config, pixel_views, normals[:40], "cpu")
    detector, _ = build_detector(config, pixel_views, normals[:40], "cpu", held_out_uint8=normals[40:])
    with torch.no_grad():
        features = detector.features(torch.from_numpy(normals[40:]).float() / 255)
        views = torch.stack(detector.view_distances(features, 5)[:2], 1)
    z = (views - detector.view_mean) / detector.view_std
    assert torch.allclose(z.mean(0), torch.zeros(2), atol=1e-4) and torch.allclose(z.std(0), torch.ones(2), atol=1e-4)
    distance_out, _ = detector_outputs(detector, normals[40:], "cpu")
    expected = z.max(1).values if distance == "max-z" else z.mean(1)
    assert np.allclose(distance_out, expected.numpy(), atol=1e-4)


def test_cli_mean_z_run_exports_with_parity(synthetic_data, tmp_path):
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(synthetic_data["train"]), "--out", str(run), "--distance", "mean-z",
                                  "--no-progress"])
    assert trained.exit_code == 0, trained.output
    exported = runner.invoke(app, ["export", str(run), "--fp16", "--json"])
    assert exported.exit_code == 0, exported.output
    import json

    manifest = json.loads(exported.output[exported.output.index("{"):])
    assert manifest["method"] == "memory-bank" and manifest["score"]["score_mode"] == "z"
    assert manifest["parity"]["fp32_vs_torch"]["verdict_changes"] == 0


def test_ctrl_c_during_a_build_says_how_to_start_again(synthetic_data, tmp_path, ctrl_c_inside):
    """A Ctrl-C inside the build, in a real process: exit code 130, no traceback, and the exact
    command that starts again."""
    run = tmp_path / "run"
    result = ctrl_c_inside("adegan.training.memory_bank", "build_detector",
                           ["train", synthetic_data["train"], "--out", run, "--no-progress"])
    assert result.returncode == 130 and "interrupted while building the memory bank" in result.stderr
    assert "Traceback" not in result.stderr
    assert f"continue with: adegan train {synthetic_data['train']} --out {run} --no-progress --force" in result.stderr


def test_resume_on_a_finished_bank_does_not_build_it_again(synthetic_data, tmp_path):
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", str(synthetic_data["train"]), "--out", str(run), "--no-progress"]).exit_code == 0
    before = (run / "checkpoint.pt").stat().st_mtime_ns
    again = runner.invoke(app, ["train", str(synthetic_data["train"]), "--out", str(run), "--resume", "--no-progress"])
    assert again.exit_code == 0, again.output
    assert "nothing to resume" in again.output
    assert (run / "checkpoint.pt").stat().st_mtime_ns == before
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_learned_features_standardise_beside_the_pixel_views(monkeypatch):
    """pixels+learned: three views, each standardised on held-out normals, averaged."""
    from adegan.training import learned_features

    monkeypatch.setattr(learned_features, "MIN_STEPS", 2)
    rng = np.random.default_rng(4)
    config = ModelConfig(image_size=32, channels=1)
    normals = rng.integers(0, 255, (60, 1, 32, 32), dtype=np.uint8)
    detector, _ = build_detector(config, MemoryBankConfig(image_features="pixels+learned"), normals[:40], "cpu",
                                 held_out_uint8=normals[40:])
    assert detector.learned and detector.learned_bank.shape == (40, 64)  # the default projection
    held_out = torch.from_numpy(normals[40:]).float() / 255
    with torch.no_grad():
        pixel_views = detector.view_distances(detector.features(held_out), 5)[:2]
        views = torch.stack([*pixel_views, detector.learned_distance(held_out, 5)[0]], 1)
        bank_image = torch.from_numpy(normals[:1]).float() / 255
        assert float(detector.learned_distance(bank_image, 1)[0]) < 1e-5  # a bank image is its own neighbour
    z = (views - detector.view_mean) / detector.view_std
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-4) and torch.allclose(z.std(0), torch.ones(3), atol=1e-4)
    distance_out, _ = detector_outputs(detector, normals[40:], "cpu")
    assert np.allclose(distance_out, z.mean(1).numpy(), atol=1e-4)


def test_projected_learned_features_compare_directions_on_the_bank_principal_axes(monkeypatch):
    """learned_dims: the bank keeps d numbers per image, the query is projected on the same
    orthonormal basis, and the distance is the cosine distance there; a checkpoint restores it."""
    from adegan.training import learned_features
    from adegan.training.memory_bank import detector_from_state

    monkeypatch.setattr(learned_features, "MIN_STEPS", 2)
    rng = np.random.default_rng(5)
    config, bank_config = ModelConfig(image_size=32, channels=1), MemoryBankConfig(learned_dims=8)
    normals = rng.integers(0, 255, (60, 1, 32, 32), dtype=np.uint8)
    detector, _ = build_detector(config, bank_config, normals[:40], "cpu", held_out_uint8=normals[40:])
    basis = detector.learned_basis
    assert detector.learned_bank.shape == (40, 8) and basis.shape == (learned_features.FEATURES, 8)
    assert torch.allclose(basis.t() @ basis, torch.eye(8), atol=1e-5)
    images = torch.from_numpy(normals[38:44]).float() / 255
    with torch.no_grad():
        projected = torch.nn.functional.normalize(detector.feature_net(images)[1] @ basis, dim=1)
        expected = 0.5 * torch.cdist(projected, detector.learned_bank).pow(2).topk(5, dim=1, largest=False).values
        distance, _ = detector.learned_distance(images, 5)
        assert torch.allclose(distance, expected.mean(1), atol=1e-5)
        assert float(distance[:2].min()) >= 0 and float(detector.learned_distance(images[:2], 1)[0].max()) < 1e-5
        loaded = detector_from_state(config, bank_config, detector.state_dict())
        assert torch.equal(loaded(images)[0], detector(images)[0])


@pytest.mark.parametrize("options", [[], ["--learned-dims", "3072"]], ids=["default-64-dims", "all-features"])
def test_learned_features_train_export_and_score_through_the_cli(options, synthetic_data, tmp_path, monkeypatch):
    """The learned network (and its projection) travels in the checkpoint and in the one ONNX
    graph: the bundle scores what evaluate scores, every fp32 verdict kept and fp16 scores within
    1e-2 z."""
    import csv
    import json

    from adegan.training import learned_features

    monkeypatch.setattr(learned_features, "MIN_STEPS", 4)
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(synthetic_data["train"]), "--out", str(run), "--image-features",
                                  "pixels+learned", *options, "--no-progress"])
    assert trained.exit_code == 0, trained.output
    saved = json.loads((run / "config.json").read_text())["memory_bank"]
    assert saved["image_features"] == "pixels+learned" and saved["learned_dims"] == (3072 if options else 64)
    exported = runner.invoke(app, ["export", str(run), "--fp16", "--json"])
    assert exported.exit_code == 0, exported.output
    manifest = json.loads(exported.output[exported.output.index("{"):])
    assert manifest["parity"]["fp32_vs_torch"]["verdict_changes"] == 0
    # fp16 moves scores by about 1e-3 z: an image that close to the threshold may flip, so the
    # score difference is what is checked, as for the pixel bank
    assert manifest["parity"]["fp16_vs_fp32"]["max_abs_score"] < 1e-2, manifest["parity"]
    import onnx

    weights = {w.name: w.data_type for w in onnx.load(str(run / "bundle" / "model.fp16.onnx")).graph.initializer}
    if options:  # every feature: no projection in the graph
        assert "learned_basis" not in weights
    else:  # a projected view's basis and small bank stay fp32 in the fp16 graph
        assert weights["learned_basis"] == weights["learned_bank"] == onnx.TensorProto.FLOAT
    evaluated = runner.invoke(app, ["evaluate", str(run), str(synthetic_data["test"]), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    scores = tmp_path / "scores.csv"
    scored = runner.invoke(app, ["score", str(synthetic_data["test"]), "--model", str(run / "bundle"), "--out",
                                 str(scores), "--no-progress"])
    assert scored.exit_code in (0, 1), scored.output

    def by_name(rows):
        return {Path(r["path"]).parts[-2:]: float(r["score"]) for r in rows}

    runtime = by_name(csv.DictReader(scores.open()))
    trained_side = by_name(csv.DictReader((run / "evaluation" / "scores.csv").open()))
    assert sorted(runtime) == sorted(trained_side) and len(runtime) == 120
    names = sorted(runtime)
    assert np.allclose([runtime[n] for n in names], [trained_side[n] for n in names], atol=1e-3)
