"""Runtime tests against the committed tiny bundle: no torch anywhere (CI also runs these in a
venv with only `adegan[cpu,dev]` installed)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from adegan.cli import app  # noqa: E402
from adegan.runtime.backends import choose_providers  # noqa: E402
from adegan.runtime.contract import InputError  # noqa: E402
from adegan.runtime.bundle import BundleError, load_manifest  # noqa: E402
from adegan.runtime.model import BundleModel  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_bundle"
runner = CliRunner()


def bright_square(rng, shape: tuple, side: int, last_corner: int, value: int) -> np.ndarray:
    """A dark gray image with one bright square whose corner is drawn from [4, last_corner)."""
    image = np.full(shape, 20, np.uint8)
    top, left = rng.integers(4, last_corner, size=2)
    image[top:top + side, left:left + side] = value
    return image


@pytest.fixture
def images(tmp_path):
    """good/ (bright squares), odd/ (rings), and a corrupt file."""
    rng = np.random.default_rng(3)
    for i in range(12):
        (tmp_path / "imgs" / "good").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "imgs" / "good" / f"g{i:02d}.png"), bright_square(rng, (32, 32), 12, 16, 220))
    for i in range(4):
        image = np.full((48, 48, 3), 30, np.uint8)
        cv2.circle(image, (24, 24), 14, (0, 200, 255), 3)
        (tmp_path / "imgs" / "odd").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "imgs" / "odd" / f"o{i}.jpg"), image)
    (tmp_path / "imgs" / "odd" / "broken.png").write_bytes(b"\x89PNG garbage")
    return tmp_path / "imgs"


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_manifest_is_verified_and_tampering_refused(bundle):
    manifest = load_manifest(bundle)
    assert manifest["input"]["channels"] == 1 and manifest["n_patterns"] == 4
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 does not match"):
        BundleModel(bundle)
    result = runner.invoke(app, ["info", str(bundle)])
    assert result.exit_code == 1 and "sha256 does not match" in result.output
    with pytest.raises(BundleError, match="no adegan.json"):
        load_manifest(bundle.parent)


def test_inputs_are_validated_against_the_manifest(bundle):
    model = BundleModel(bundle)
    with pytest.raises(InputError, match="expects 1 channel"):
        model.backend.infer(np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(InputError, match="32x32"):
        model.backend.infer(np.zeros((2, 1, 64, 64), np.float32))
    with pytest.raises(InputError, match="float32"):
        model.backend.infer(np.zeros((2, 1, 32, 32), np.float64))
    batch = np.random.default_rng(0).integers(0, 256, (5, 1, 32, 32), dtype=np.uint8)
    together = model.score_uint8(batch).score
    alone = np.concatenate([model.score_uint8(batch[i:i + 1]).score for i in range(5)])
    assert np.allclose(together, alone, atol=1e-6)
    assert "CPUExecutionProvider" in model.backend.describe()


def test_ctrl_c_while_scoring_prints_the_resume_command(bundle, images, tmp_path, ctrl_c_inside):
    out = tmp_path / "results.csv"
    result = ctrl_c_inside("adegan.runtime.file_scoring", "score_files",
                           ["score", images, "--model", bundle, "--out", out])
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr
    assert f"interrupted (Ctrl-C): the rows of every finished batch are in {out}" in result.stderr
    assert f"continue with: adegan score {images} --model {bundle} --out {out} --resume" in result.stderr


def test_score_writes_rows_with_error_rows_and_exit_codes(bundle, images, tmp_path):
    out = tmp_path / "results.csv"
    result = runner.invoke(app, ["score", str(images), "--model", str(bundle), "--out", str(out), "--no-progress"])
    assert result.exit_code == 5, result.output  # one unreadable file
    rows = rows_of(out)
    assert len(rows) == 17
    broken = [r for r in rows if r["path"].endswith("broken.png")]
    assert broken[0]["verdict"] == "error" and "not a readable image" in broken[0]["error"]
    scored = [r for r in rows if r["verdict"] != "error"]
    assert all(0 <= float(r["score"]) <= 1 - 1 / 4 + 1e-9 for r in scored)
    assert "scored 17 image(s)" in result.stdout and "1 unreadable" in result.stdout

    every = runner.invoke(app, ["score", str(images / "good"), "--model", str(bundle), "--out", str(tmp_path / "a.jsonl"),
                                "--threshold", "0", "--fail-on-anomaly", "--overlays", str(tmp_path / "ov")])
    assert every.exit_code == 4, every.output
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and all(line["verdict"] == "anomaly" for line in lines)
    assert len(list((tmp_path / "ov").glob("*.png"))) == 12
    none = runner.invoke(app, ["score", str(images / "good" / "g00.png"), str(images / "good" / "g0*.png"),
                               "--model", str(bundle), "--out", str(tmp_path / "b.csv"), "--threshold", "1"])
    assert none.exit_code == 0, none.output
    assert len(rows_of(tmp_path / "b.csv")) == 10  # the file and the glob overlap: each path once


def test_one_or_several_scoring_threads_write_the_same_rows_and_summary(bundle, images, tmp_path):
    """--workers 0 and 1 score in one thread; 2 and 3 score batches side by side (batches of 2:
    more batches than the threads keep in flight), rows still in the files' order."""
    written, summaries = {}, {}
    for workers in ("0", "1", "2", "3"):
        out = tmp_path / f"w{workers}.csv"
        result = runner.invoke(app, ["score", str(images), "--model", str(bundle), "--out", str(out),
                                     "--batch-size", "2", "--workers", workers, "--no-progress", "--json"])
        assert result.exit_code == 5, result.output  # the one unreadable file gets its error row either way
        written[workers] = out.read_text()
        summary = json.loads(result.output.strip().splitlines()[-1])
        summaries[workers] = {key: summary[key] for key in ("images", "anomalies", "errors")}
    assert written["0"] == written["1"] == written["2"] == written["3"] and len(written["0"].splitlines()) == 18
    assert summaries["0"] == summaries["1"] == summaries["2"] == summaries["3"]
    assert summaries["0"]["images"] == 17 and summaries["0"]["errors"] == 1


def test_scoring_threads_share_the_cpus_and_a_single_context_backend_takes_turns(bundle, images, tmp_path,
                                                                                 monkeypatch):
    """ONNX Runtime gets usable CPUs / threads intra-op threads per call; a backend that cannot
    run two calls at once (TensorRT's one context) is never entered by two threads together, and
    score keeps a GPU's batches whole."""
    import threading
    import time

    from adegan.runtime import backends, model as model_module
    from adegan.runtime.contract import Outputs
    from adegan.runtime.file_scoring import expand_inputs, score_files

    monkeypatch.setattr(backends, "usable_cpus", lambda: 4)
    monkeypatch.setattr(model_module, "usable_cpus", lambda: 4)
    for calls, threads in ((1, 4), (2, 2), (4, 1), (8, 1)):
        with BundleModel(bundle, parallel_calls=calls) as opened:
            assert opened.backend.session.get_session_options().intra_op_num_threads == threads

    class OneContext:
        name, on_cpu, concurrent_calls = "fake", False, False
        inside = most = 0
        lock = threading.Lock()
        sizes: list = []

        def infer(self, batch):
            with self.lock:
                OneContext.inside += 1
                OneContext.most = max(OneContext.most, OneContext.inside)
            time.sleep(0.01)
            with self.lock:
                OneContext.inside -= 1
            count = len(batch)
            OneContext.sizes.append(count)
            return Outputs(np.zeros(count, np.float32), np.full((count, 4), 0.25, np.float32),
                           np.zeros((count, 1, 32, 32), np.float32))

        def describe(self):
            return "fake"

        def close(self):
            pass

    monkeypatch.setattr(model_module, "open_backend", lambda *args: OneContext())
    with BundleModel(bundle, parallel_calls=3) as opened:
        batch = np.zeros((2, 1, 32, 32), np.uint8)
        callers = [threading.Thread(target=opened.score_uint8, args=(batch,)) for _ in range(3)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert OneContext.most == 1
        # score on such a (GPU) backend: whole batches per call, decoded ahead by the threads
        OneContext.sizes.clear()
        summary = score_files(opened, expand_inputs([str(images)]), tmp_path / "turns.csv", batch_size=5,
                              progress=False, log=lambda m: None)
    assert summary.images == 17 and summary.errors == 1 and OneContext.most == 1
    assert len(rows_of(tmp_path / "turns.csv")) == 17 and max(OneContext.sizes) == 5


def test_score_resumes_without_repeating_rows(bundle, images, tmp_path):
    out = tmp_path / "results.csv"
    args = ["score", str(images / "good"), "--model", str(bundle), "--out", str(out), "--batch-size", "4"]
    assert runner.invoke(app, args).exit_code == 0
    full = rows_of(out)
    text = out.read_text().splitlines()
    out.write_text("\n".join(text[:6]) + "\n" + text[6][:10])  # 5 rows, then a line cut by a crash
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--resume" in refused.output
    resumed = runner.invoke(app, args + ["--resume"])
    assert resumed.exit_code == 0 and "already done" in resumed.stdout
    rows = [r for r in rows_of(out) if r.get("verdict")]
    assert sorted(r["path"] for r in rows) == sorted(r["path"] for r in full)
    by_path = {r["path"]: r["score"] for r in full}
    assert all(by_path[r["path"]] == r["score"] for r in rows)


def test_calibrate_on_site_updates_the_manifest_and_keeps_the_previous(bundle, images, tmp_path):
    before = load_manifest(bundle)
    few = runner.invoke(app, ["calibrate", str(bundle), str(images / "good")])
    assert few.exit_code == 2 and "at least 20" in few.output
    rng = np.random.default_rng(9)
    site = tmp_path / "site"
    site.mkdir()
    for i in range(40):
        cv2.imwrite(str(site / f"s{i}.png"), bright_square(rng, (32, 32), 10, 16, 200))
    result = runner.invoke(app, ["calibrate", str(bundle), str(site), "--target-fpr", "0.05"])
    assert result.exit_code == 0, result.output
    after = load_manifest(bundle)  # hashes still valid: model files untouched
    assert after["score"]["n_images"] == 40 and after["score"]["target_fpr"] == 0.05
    assert after["score"]["threshold"] != before["score"]["threshold"]
    assert json.loads((bundle / "adegan.previous.json").read_text())["score"] == before["score"]
    scores = BundleModel(bundle)
    flagged = runner.invoke(app, ["score", str(site), "--model", str(bundle), "--out", str(tmp_path / "s.csv")])
    assert flagged.exit_code == 0
    share = sum(r["verdict"] == "anomaly" for r in rows_of(tmp_path / "s.csv")) / 40
    assert share <= 0.05 + 1e-9 and scores.threshold == after["score"]["threshold"]
    info = runner.invoke(app, ["info", str(bundle)])
    assert info.exit_code == 0 and "on-site" in info.stdout

    # A second calibration loses nothing: both replaced manifests stay in calibrations/, in order.
    again = runner.invoke(app, ["calibrate", str(bundle), str(site), "--target-fpr", "0.1"])
    assert again.exit_code == 0, again.output
    history = sorted((bundle / "calibrations").iterdir())
    assert [json.loads(p.read_text())["score"]["target_fpr"] for p in history] == [before["score"]["target_fpr"], 0.05]
    assert load_manifest(bundle)["score"]["target_fpr"] == 0.1

    # Colour photos for a gray model: refused, or converted with a notice when asked.
    colour = tmp_path / "colour"
    colour.mkdir()
    for i in range(25):
        image = np.full((32, 32, 3), (20, 60, 20), np.uint8)
        image[8:18, 8:18] = (30, 200, 240)
        cv2.imwrite(str(colour / f"c{i}.png"), image)
    refused = runner.invoke(app, ["calibrate", str(bundle), str(colour)])
    assert refused.exit_code == 2 and "is colour but the bundle's model is gray" in refused.output
    converted = runner.invoke(app, ["calibrate", str(bundle), str(colour), "--convert-channels"])
    assert converted.exit_code == 0 and "converted 25 colour image(s) to gray" in converted.output


def test_calibrate_loads_photos_in_threads_with_the_same_result(bundle, tmp_path, monkeypatch):
    """Good photos larger than small images are loaded by threads; the new calibration is the one
    a single thread gives, and files stored as gray (decoded straight to gray) or as colour with
    gray pixels both count as gray for a gray model."""
    import threading

    from adegan.runtime import calibrate as calibrate_module
    from adegan.runtime.calibrate import calibrate_bundle

    rng = np.random.default_rng(4)
    site = tmp_path / "site"
    site.mkdir()
    for i in range(30):
        image = bright_square(rng, (80, 72), 24, 40, 210)
        stored = [image, image, cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)][i % 3]
        cv2.imwrite(str(site / f"s{i:02d}.{'jpg' if i % 3 == 1 else 'png'}"), stored)
    (site / "s99.png").write_bytes(b"\x89PNG garbage")
    sections, threads = [], []
    load_files, good_image = calibrate_module.load_files, calibrate_module._good_image
    monkeypatch.setattr(calibrate_module, "_good_image",
                        lambda model, path: threads.append(threading.get_ident()) or good_image(model, path))
    for workers in (1, 2):
        monkeypatch.setattr(calibrate_module, "load_files",
                            lambda load, paths, workers=workers: load_files(load, paths, workers))
        messages = []
        sections.append(calibrate_bundle(bundle, [str(site)], log=messages.append)[1])
        assert any("skipped" in message and "s99.png" in message for message in messages)
    one, two = ({key: value for key, value in section.items() if key != "calibrated"} for section in sections)
    assert one == two and one["n_images"] == 30 and one["skipped_images"] == 1
    assert len(set(threads[31:])) > 1  # the second calibration's files after the first: more than one thread


def test_bench_and_info(bundle):
    result = runner.invoke(app, ["bench", str(bundle), "-b", "1", "-b", "4", "--seconds", "0.05", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {(r["precision"], r["batch"]) for r in rows} == {("fp32", 1), ("fp32", 4), ("fp16", 1), ("fp16", 4)}
    assert all(r["images_per_second"] > 0 for r in rows)
    info = runner.invoke(app, ["info", str(bundle)])
    assert "1x32x32 gray" in info.stdout and "model.fp16.onnx" in info.stdout


def test_provider_preference():
    assert choose_providers(["CPUExecutionProvider"], Path("b"), False) == ["CPUExecutionProvider"]
    chosen = choose_providers(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                              Path("b"), True)
    assert chosen[0][0] == "TensorrtExecutionProvider" and chosen[0][1]["trt_fp16_enable"] is True
    assert chosen[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_scoring_never_imports_torch(bundle, images, tmp_path):
    script = f"""
import sys
from adegan.runtime.file_scoring import expand_inputs, score_files
from adegan.runtime.model import BundleModel
model = BundleModel({str(bundle)!r})
summary = score_files(model, expand_inputs([{str(images)!r}]), {str(tmp_path / 'x.csv')!r}, progress=False, log=lambda m: None)
print(summary.images, 'torch' in sys.modules)
"""
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert output.stdout.split() == ["17", "False"]


@pytest.mark.tensorrt
def test_native_tensorrt_backend_matches_onnxruntime(tmp_path):
    """Needs TensorRT, cuda-python and a GPU, plus a bundle exported there with --engine
    (ADEGAN_ENGINE_BUNDLE); skips cleanly elsewhere."""
    import os

    from adegan.runtime.backends import tensorrt_available

    if not tensorrt_available() or not os.environ.get("ADEGAN_ENGINE_BUNDLE"):
        pytest.skip("needs TensorRT + cuda-python and ADEGAN_ENGINE_BUNDLE=<bundle with model.engine>")
    bundle = Path(os.environ["ADEGAN_ENGINE_BUNDLE"])
    images = np.random.default_rng(0).integers(0, 256, (9, 1, 32, 32), dtype=np.uint8)
    native = BundleModel(bundle, backend="tensorrt").score_uint8(images).score
    reference = BundleModel(bundle, backend="onnxruntime").score_uint8(images).score
    assert np.abs(native - reference).max() < 1e-2


def test_rows_are_flushed_every_batch_and_forced_to_disk_at_most_once_a_second(tmp_path, monkeypatch):
    import os

    from adegan.runtime import file_scoring

    synced, clock = [], [100.0]
    monkeypatch.setattr(file_scoring.os, "fsync", lambda fd: synced.append(fd))
    monkeypatch.setattr(file_scoring.time, "monotonic", lambda: clock[0])
    out = tmp_path / "results.csv"
    writer = file_scoring.ResultWriter(out, resume=False)
    row = {"path": "a.png", "score": 0.1, "verdict": "normal"}
    for _ in range(5):  # five batches within one second: readable at once, not one fsync each
        writer.write([row])
    assert len(rows_of(out)) == 5 and synced == []
    clock[0] += file_scoring.SYNC_SECONDS
    writer.write([row])
    assert len(synced) == 1  # a second later the rows are forced to the disk
    writer.write([row])
    writer.close()
    assert len(synced) == 2 and len(rows_of(out)) == 7  # and once more at the end
    assert os.path.getsize(out) > 0


def test_scoring_threads_default_to_one_per_usable_cpu(monkeypatch):
    from adegan.runtime import backends
    from adegan.runtime.file_scoring import default_workers

    for cpus in (1, 2, 16):
        monkeypatch.setattr(backends, "usable_cpus", lambda cpus=cpus: cpus)
        assert default_workers() == cpus


def _score_counting(bundle, paths, out, monkeypatch, **options) -> tuple[list[int], list[int], str]:
    """score_files with two scoring threads' share of the CPUs: (images per decode call, images per
    inference call, the results file's text)."""
    from adegan.runtime import file_scoring

    decoded, calls = [], []
    load_all = file_scoring._load_all
    monkeypatch.setattr(file_scoring, "_load_all", lambda model, paths, *rest, **options: decoded.append(len(paths))
                        or load_all(model, paths, *rest, **options))
    with BundleModel(bundle, parallel_calls=2) as model:
        infer = model.backend.infer
        model.backend.infer = lambda batch: calls.append(len(batch)) or infer(batch)
        file_scoring.score_files(model, paths, out, progress=False, **options)
    return decoded, calls, out.read_text()


def test_small_batches_go_to_a_thread_as_runs_decoded_in_one_go(bundle, images, tmp_path, monkeypatch):
    """Batches smaller than RUN_IMAGES, no overlays: a scoring thread (or the only one) decodes a
    run of whole batches at once (warm caches), then makes one inference call per batch; larger
    batches in a short job, and any batch when overlays keep the decoded images, are cut into a
    piece per thread. The rows are the same either way."""
    from adegan.runtime.file_scoring import RUN_IMAGES, RUNS_PER_WORKER, expand_inputs

    paths = expand_inputs([str(images)]) * 4  # 68 rows, 4 of them errors
    assert (RUN_IMAGES, RUNS_PER_WORKER) == (16, 8)  # one thread: runs of 16 batches of 1; two threads: a job
    # this short is cut into runs of at most 68 // (8 * 2) = 4 batches of 1, or 23 // 16 = 1 batch of 3
    # (batch size, workers, overlays): images decoded per call, largest first
    cases = {(1, 0, False): [16] * 4 + [4], (1, 2, False): [4] * 17, (3, 2, False): [3] * 22 + [2],
             (17, 2, False): [9] * 4 + [8] * 4, (1, 2, True): [1] * 68, (17, 0, False): [17] * 4}
    written = set()
    for (batch_size, workers, overlays), expected in cases.items():
        decoded, calls, text = _score_counting(bundle, paths, tmp_path / f"b{batch_size}w{workers}{overlays}.csv",
                                               monkeypatch, batch_size=batch_size, workers=workers,
                                               overlays=tmp_path / "overlays" if overlays else None)
        written.add(text)
        assert sorted(decoded, reverse=True) == expected, (batch_size, workers, overlays, decoded)
        assert sum(calls) == 64 and max(calls) <= min(batch_size, 9 if workers else 17)  # per batch or piece, not run
    assert len(written) == 1


def test_a_long_jobs_batches_go_to_the_threads_whole(bundle, images, tmp_path, monkeypatch):
    """Batches of RUN_IMAGES or more, in a job with at least RUNS_PER_WORKER of them per thread: each
    thread decodes and scores whole batches, in calls as large as the batch (not a piece per
    thread), but for the batches left over after an even share per thread, which are cut into
    pieces; the rows are those of one thread to the bit."""
    from adegan.runtime.file_scoring import RUN_IMAGES, RUNS_PER_WORKER, expand_inputs

    paths = expand_inputs([str(images)]) * 16  # 272 rows, 16 of them errors: 17 batches of 16
    assert RUN_IMAGES == 16 and len(paths) // RUN_IMAGES >= RUNS_PER_WORKER * 2
    written = set()
    for workers in (2, 0):
        decoded, calls, text = _score_counting(bundle, paths, tmp_path / f"w{workers}.csv", monkeypatch,
                                               batch_size=16, workers=workers)
        written.add(text)
        # two threads: 16 whole batches, 8 each, and the 17th cut into a piece per thread, so both finish together
        assert decoded == ([16] * 16 + [8, 8] if workers else [16] * 17), (workers, decoded)
        assert sum(calls) == 256 and max(calls) == 16 and 15 in calls  # a batch holding an error file scores 15
    assert len(written) == 1


def test_small_images_are_decoded_by_one_scoring_thread_at_a_time(tmp_path, monkeypatch):
    """Small images are decoded holding the shared turn (two threads decoding tiny files side by
    side are slower than one), from the first small image on, and from a piece's first image
    once the last image decoded was small; large ones never wait for it."""
    import threading

    from adegan.runtime import file_scoring
    from adegan.runtime.file_scoring import SMALL_IMAGE_PIXELS, DecodingTurns, _load_all

    side = int(SMALL_IMAGE_PIXELS ** 0.5)
    for name, size in (("small", 28), ("large", side + 8)):
        for i in range(3):
            (tmp_path / name).mkdir(exist_ok=True)
            cv2.imwrite(str(tmp_path / name / f"{i}.png"), np.full((size, size), 40 * i, np.uint8))
    decoded = []
    load = file_scoring._load
    monkeypatch.setattr(file_scoring, "_load", lambda model, path: decoded.append(path) or load(model, path))
    with BundleModel(TINY) as model:
        turns = DecodingTurns()
        # (folder, waits for the turn, images decoded while it waits)
        for name, waits, before in (("large", False, 3), ("small", True, 1), ("small", True, 0)):
            paths = sorted(str(p) for p in (tmp_path / name).glob("*.png"))
            loaded = []
            decoded.clear()
            turns.lock.acquire()  # another thread is decoding small images
            worker = threading.Thread(target=lambda: loaded.extend(_load_all(model, paths, turns)))
            worker.start()
            worker.join(timeout=1.0)
            assert worker.is_alive() == waits and len(decoded) == before
            turns.lock.release()
            worker.join(timeout=10)
            assert len(loaded) == 3 and all(error is None for _, _, error in loaded)
            assert turns.lock.acquire(blocking=False)  # handed back after the piece
            turns.lock.release()
