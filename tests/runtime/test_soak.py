"""`adegan watch` on a looping video for a while: memory stays flat and the frame rate steady.

The default run soaks for 30 s; `ADEGAN_SOAK_SECONDS=300 pytest -m slow tests/runtime/test_soak.py`
runs a longer version, and `benchmarks/watch_soak.py --minutes 30` the committed soak with memory,
latency and lag per minute (results in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from adegan.runtime.watch import LATENCY_WINDOW, WatchStats  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from watch_soak import make_video, watch_sampling_memory  # noqa: E402  (shared with the 30-minute soak script)

TINY = str(Path(__file__).resolve().parents[1] / "data" / "tiny_bundle")


def soak(tmp_path: Path, seconds: float) -> dict:
    video, log = make_video(tmp_path / "line.avi"), tmp_path / "soak.jsonl"
    code, stdout, stderr, samples = watch_sampling_memory(TINY, video, log, seconds, interval=0.25)
    assert code == 0, stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return {"summary": json.loads(stdout), "records": records, "rss": samples, "seconds": seconds}


def check_flat_and_steady(result: dict) -> dict:
    records, rss, seconds = result["records"], result["rss"], result["seconds"]
    assert [r["frame"] for r in records] == list(range(len(records)))  # every frame, numbers counting on
    assert len(records) > 3 * 40, "the video should have looped several times"
    # Memory: after a warm-up (first 20 %), the peak of the last half is within 15 MB of the warm level.
    warm = max(v for t, v in rss if 0.2 * seconds <= t <= 0.3 * seconds)
    late = max(v for t, v in rss if t >= 0.5 * seconds)
    # Frame rate: frames per tenth of the run, each at least half the median (a 2-core CI box is noisy).
    times = np.array([r["time"] for r in records])
    edges = np.linspace(times[0], times[-1], 11)
    per_window = np.histogram(times, edges)[0]
    measured = {"frames": len(records), "rss_warm_mb": round(warm, 1), "rss_late_mb": round(late, 1),
                "fps_per_window": [round(float(n) / (edges[1] - edges[0]), 1) for n in per_window]}
    assert late - warm < 15, measured
    assert per_window.min() >= 0.5 * statistics.median(per_window), measured
    return measured


def test_watch_soak_short(tmp_path):
    check_flat_and_steady(soak(tmp_path, 30))


@pytest.mark.slow
def test_watch_soak_long(tmp_path):
    measured = check_flat_and_steady(soak(tmp_path, float(os.environ.get("ADEGAN_SOAK_SECONDS", 300))))
    print(json.dumps(measured))


def test_latency_statistics_have_bounded_memory():
    stats = WatchStats()
    for i in range(LATENCY_WINDOW + 500):
        stats.latencies_ms.append(float(i))
    assert len(stats.latencies_ms) == LATENCY_WINDOW
    assert stats.summary()["latency_ms_p50"] > 500  # the oldest were dropped, not the newest
