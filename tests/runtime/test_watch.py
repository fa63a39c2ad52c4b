"""`adegan watch` with real OpenCV I/O: video files, image sequences, a folder that receives
files, a stream that ends and is reopened, and sources that do not exist."""

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from adegan.cli import app  # noqa: E402
from adegan.errors import UsageError  # noqa: E402
from adegan.runtime.watch import _crop, parse_roi  # noqa: E402

TINY = str(Path(__file__).resolve().parents[1] / "data" / "tiny_bundle")
runner = CliRunner()


def frame(i: int) -> np.ndarray:
    image = np.full((48, 64, 3), 20, np.uint8)
    image[10 + i % 20:24 + i % 20, 8 + i % 30:22 + i % 30] = 220
    return image


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for i in range(25):
        writer.write(frame(i))
    writer.release()
    return path


def test_video_file_every_frame_with_jsonl_and_saved_anomalies(video, tmp_path):
    log, saved = tmp_path / "watch.jsonl", tmp_path / "flagged"
    result = runner.invoke(app, ["watch", "--model", TINY, "--video", str(video), "--jsonl", str(log),
                                 "--save-anomalies", str(saved), "--threshold", "0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 25 and summary["anomalies"] == 25
    assert summary["latency_ms_p50"] <= summary["latency_ms_p95"] <= summary["latency_ms_p99"]
    plain = runner.invoke(app, ["watch", "--model", TINY, "--video", str(video), "--max-frames", "5"])
    assert "latency p50" in plain.output and "/ p99 " in plain.output
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(25))
    assert {"score", "verdict", "recon_error", "pattern", "latency_ms"} <= set(lines[0])
    assert len(list(saved.glob("anomaly_*.png"))) == 25


def test_image_sequence_and_roi(tmp_path):
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"{i:04d}.png"), frame(i))
    result = runner.invoke(app, ["watch", "--model", TINY, "--video", str(tmp_path / "%04d.png"),
                                 "--roi", "0,0,40,40", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["frames"] == 6
    bad = runner.invoke(app, ["watch", "--model", TINY, "--video", str(tmp_path / "%04d.png"), "--roi", "60,0,40,40"])
    assert bad.exit_code == 2 and "outside the 64x48 frame" in bad.output
    assert parse_roi("1,2,3,4") == (1, 2, 3, 4)
    with pytest.raises(UsageError):
        parse_roi("1,2,3")
    assert _crop(np.zeros((10, 10, 3)), (2, 3, 4, 5)).shape == (5, 4, 3)


def test_folder_that_receives_files_while_watched(tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()

    def drop_files():
        for i in range(4):
            time.sleep(0.3)
            cv2.imwrite(str(incoming / f"part_{i}.png"), frame(i))
        (incoming / "part_x.png").write_bytes(b"corrupt")  # reported and skipped

    writer = threading.Thread(target=drop_files)
    writer.start()
    log = tmp_path / "w.jsonl"
    result = runner.invoke(app, ["watch", "--model", TINY, "--folder", str(incoming), "--max-frames", "4",
                                 "--jsonl", str(log)])
    writer.join()
    assert result.exit_code == 0, result.output
    sources = [json.loads(line)["source"] for line in log.read_text().splitlines()]
    assert [Path(s).name for s in sources] == [f"part_{i}.png" for i in range(4)]


def test_stream_that_ends_is_reopened(video):
    result = runner.invoke(app, ["watch", "--model", TINY, "--url", str(video), "--max-frames", "60", "--json"])
    assert result.exit_code == 0, result.output
    assert "stream lost; reconnecting" in result.output and "reconnected" in result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["frames"] == 60


def test_missing_sources_fail_fast_and_clearly(tmp_path):
    start = time.monotonic()
    result = runner.invoke(app, ["watch", "--model", TINY, "--camera", "7"])
    assert result.exit_code == 1 and "camera 7: could not be opened" in result.output
    assert time.monotonic() - start < 10
    missing = runner.invoke(app, ["watch", "--model", TINY, "--video", str(tmp_path / "nope.mp4")])
    assert missing.exit_code == 2 and "video file not found" in missing.output
    both = runner.invoke(app, ["watch", "--model", TINY, "--camera", "0", "--folder", str(tmp_path)])
    assert both.exit_code == 2 and "exactly one source" in both.output
    looping = runner.invoke(app, ["watch", "--model", TINY, "--folder", str(tmp_path), "--loop"])
    assert looping.exit_code == 2 and "--loop replays a --video file" in looping.output
    never = runner.invoke(app, ["watch", "--model", TINY, "--folder", str(tmp_path), "--duration", "0"])
    assert never.exit_code == 2 and "must be a positive number" in never.output


def test_show_checks_for_a_display_first(video, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = runner.invoke(app, ["watch", "--model", TINY, "--video", str(video), "--show"])
    assert result.exit_code == 2 and "--show:" in result.output
    assert "no GUI support" in result.output or "no display" in result.output


def test_gstreamer_needs_an_opencv_built_with_it():
    if "YES" in [line for line in cv2.getBuildInformation().splitlines() if "GStreamer" in line][0]:
        pytest.skip("this OpenCV has GStreamer")
    result = runner.invoke(app, ["watch", "--model", TINY, "--gst", "videotestsrc ! appsink"])
    assert result.exit_code == 1 and "GStreamer" in result.output


def test_ctrl_c_stops_cleanly_with_a_summary(tmp_path, sigint_default):
    import signal
    import subprocess
    import sys

    cv2.imwrite(str(tmp_path / "a.png"), frame(0))
    process = subprocess.Popen([sys.executable, "-m", "adegan", "watch", "--model", TINY, "--folder", str(tmp_path),
                                "--jsonl", str(tmp_path / "w.jsonl")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=sigint_default)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not ((tmp_path / "w.jsonl").exists() and (tmp_path / "w.jsonl").read_text()):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopping (Ctrl-C)" in err and "1 frame(s)" in out


def test_duration_ends_a_watch_that_never_gets_a_frame(tmp_path):
    """An empty folder sends nothing: --duration still ends it on time, with a summary."""
    (tmp_path / "empty").mkdir()
    start = time.monotonic()
    result = runner.invoke(app, ["watch", "--model", TINY, "--folder", str(tmp_path / "empty"), "--duration", "1",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["frames"] == 0 and time.monotonic() - start < 5


def test_folder_files_deleted_or_still_written_do_not_stop_the_watch(tmp_path):
    from adegan.runtime.sources import FolderSource

    folder = tmp_path / "in"
    folder.mkdir()
    source = FolderSource(str(folder), poll=0.05)
    cv2.imwrite(str(folder / "a.png"), frame(1))
    growing = folder / "b.png"
    ok, encoded = cv2.imencode(".png", frame(2))
    growing.write_bytes(encoded.tobytes()[:40])  # half written
    iterator = iter(source)
    source._stable(folder / "a.png")  # first look at a.png
    (folder / "gone.png").write_bytes(encoded.tobytes())
    original_list = source._list
    source._list = lambda: original_list() + [folder / "vanished.png"]  # listed, then deleted before read
    first = next(iterator)
    assert first.name.endswith("a.png")
    growing.write_bytes(encoded.tobytes())  # finished: taken once its size and mtime hold still
    names = [next(iterator).name for _ in range(2)]
    assert sorted(Path(n).name for n in names) == ["b.png", "gone.png"]
    source.close()


def test_a_stream_that_accepts_but_sends_nothing_times_out(monkeypatch):
    """A host that accepts the TCP connection and stays silent: refused after the stream timeout,
    not OpenCV's 30 s."""
    import socket

    from adegan.runtime import sources

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    monkeypatch.setattr(sources, "STREAM_TIMEOUT_MS", 1500)
    start = time.monotonic()
    with pytest.raises(sources.SourceError, match="could not be opened"):
        sources.open_source(url=f"http://127.0.0.1:{port}/stream.mjpg")
    assert time.monotonic() - start < 10
    server.close()
