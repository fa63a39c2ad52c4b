"""Soak: `adegan watch` on a looping 640x480 video for N minutes, memory sampled every minute.

What "healthy" means: the resident memory after warm-up stays flat (no leak), and neither the
per-frame latency nor the lag between capture and verdict grows over the run. One line per minute
(RSS at the minute's end, frames, FPS, latency p50/p99, lag p99), and a JSON under
benchmarks/results/.

    python benchmarks/watch_soak.py --minutes 30                      # the committed run
    python benchmarks/watch_soak.py --minutes 2 --bundle my_bundle    # a quick look at your own bundle
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_video(path: Path, frames: int = 40) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    rng = np.random.default_rng(0)
    for i in range(frames):
        image = rng.integers(0, 60, (480, 640, 3), dtype=np.uint8)
        cv2.rectangle(image, (100 + 5 * i, 100), (220 + 5 * i, 220), (220, 220, 220), -1)
        writer.write(image)
    writer.release()
    return path


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def watch_sampling_memory(bundle, video: Path, log: Path, seconds: float, interval: float):
    """Run `adegan watch --loop` on `video` for `seconds`, sampling its RSS every `interval` s.
    Returns (exit code, stdout, stderr, [(seconds, MB), ...])."""
    command = [sys.executable, "-m", "adegan", "watch", "--model", str(bundle), "--video", str(video),
               "--loop", "--duration", str(seconds), "--jsonl", str(log), "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start, samples = time.monotonic(), []
    while process.poll() is None:
        value = rss_mb(process.pid)
        if value is not None:
            samples.append((time.monotonic() - start, value))
        time.sleep(interval)
    stdout, stderr = process.communicate()
    return process.returncode, stdout, stderr, samples


def per_minute(log: Path, started: float, minutes: int, rss: list[tuple[float, float]]) -> list[dict]:
    """Stream the JSONL once: frames, latency and lag per minute of wall time."""
    buckets = [{"latency": [], "lag": []} for _ in range(minutes + 1)]
    with open(log, encoding="utf-8") as file:
        for line in file:
            record = json.loads(line)
            minute = min(minutes, int((record["time"] - started) // 60))
            buckets[minute]["latency"].append(record["latency_ms"])
            buckets[minute]["lag"].append(record["lag_ms"])
    rows = []
    for minute in range(minutes):
        latency, lag = np.array(buckets[minute]["latency"] or [0.0]), np.array(buckets[minute]["lag"] or [0.0])
        in_minute = [value for t, value in rss if minute * 60 <= t < (minute + 1) * 60]
        rows.append({"minute": minute + 1, "frames": len(buckets[minute]["latency"]),
                     "fps": round(len(buckets[minute]["latency"]) / 60, 1),
                     "rss_mb": round(max(in_minute), 1) if in_minute else None,
                     "latency_ms_p50": round(float(np.percentile(latency, 50)), 2),
                     "latency_ms_p99": round(float(np.percentile(latency, 99)), 2),
                     "lag_ms_p99": round(float(np.percentile(lag, 99)), 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--bundle", type=Path, default=ROOT / "tests" / "data" / "tiny_bundle")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "watch_soak_30min.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video, log = make_video(Path(tmp) / "line.avi"), Path(tmp) / "soak.jsonl"
        started = time.time()
        code, stdout, stderr, rss = watch_sampling_memory(args.bundle, video, log, 60 * args.minutes, interval=1.0)
        if code != 0:
            sys.exit(f"watch failed: {stderr[-2000:]}")
        rows = per_minute(log, started, args.minutes, rss)
    print(f"{'min':>4}{'frames':>8}{'FPS':>8}{'RSS MB':>9}{'lat p50':>9}{'lat p99':>9}{'lag p99':>9}")
    for row in rows:
        print(f"{row['minute']:>4}{row['frames']:>8}{row['fps']:>8}{row['rss_mb'] or 0:>9}"
              f"{row['latency_ms_p50']:>9}{row['latency_ms_p99']:>9}{row['lag_ms_p99']:>9}")
    warm = [r["rss_mb"] for r in rows[1:] if r["rss_mb"]]
    result = {"command": "python benchmarks/watch_soak.py " + " ".join(sys.argv[1:]), "date": date.today().isoformat(),
              "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, Python {platform.python_version()}",
              "what": f"adegan watch --video (640x480 MJPG, 40 frames) --loop --duration {60 * args.minutes} --jsonl, "
                      f"bundle {args.bundle.name}, ONNX Runtime CPU",
              "summary": json.loads(stdout), "per_minute": rows,
              "rss_growth_after_first_minute_mb": round(max(warm) - min(warm), 1) if warm else None}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if warm:
        print(f"RSS after the first minute: {min(warm):.1f}-{max(warm):.1f} MB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
