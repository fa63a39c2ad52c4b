"""`adegan watch`: score frames live, one at a time (batch 1), with overlay, alarms and logs."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adegan.console import log as default_log
from adegan.errors import DiskFullError, UsageError
from adegan.runtime.deps import require_cv2
from adegan.runtime.files import is_disk_full
from adegan.runtime.model import BundleModel
from adegan.runtime.overlay import render_overlay, save_png

WINDOW = "adegan watch (q to quit)"


def parse_roi(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--roi {text!r}: expected x,y,w,h in pixels, e.g. 100,50,320,240") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise UsageError(f"--roi {text!r}: x and y must be >= 0, w and h > 0")
    return x, y, w, h


def check_display() -> None:
    """Refuse --show where a window cannot open. Checked before any imshow, because the GUI
    OpenCV wheel aborts the whole process (SIGABRT) on imshow when there is no display."""
    cv2 = require_cv2()
    gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if gui and "NONE" in gui[0]:
        raise UsageError("--show: this OpenCV has no GUI support (opencv-python-headless); install the system "
                         "OpenCV or `pip install opencv-python` in place of the headless wheel, or drop --show")
    if os.name != "nt" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UsageError("--show: no display (DISPLAY is not set); drop --show, or use --save-anomalies / --jsonl")


LATENCY_WINDOW = 10_000  # the latency percentiles cover the most recent frames: bounded memory


@dataclass
class WatchStats:
    frames: int = 0
    anomalies: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> dict:
        seconds = time.monotonic() - self.started
        latency = np.array(self.latencies_ms or [0.0])
        return {"frames": self.frames, "anomalies": self.anomalies, "seconds": round(seconds, 2),
                "fps": round(self.frames / seconds, 2) if seconds else 0.0,
                "latency_ms_p50": round(float(np.percentile(latency, 50)), 2),
                "latency_ms_p95": round(float(np.percentile(latency, 95)), 2),
                "latency_ms_p99": round(float(np.percentile(latency, 99)), 2)}


def watch(model: BundleModel, source, roi=None, show: bool = False, save_anomalies: Path | None = None,
          jsonl: Path | None = None, max_frames: int | None = None, log=default_log,
          duration: float | None = None) -> dict:
    """Score frames from `source` until it ends, `max_frames`, `duration` seconds, `q` in the
    window, or Ctrl-C."""
    cv2 = require_cv2()
    log_file, stats, fps, window = None, WatchStats(), 0.0, False
    stop_at = None if duration is None else time.monotonic() + duration
    timer = None
    if duration is not None:  # ends on time even when no frame ever arrives (dead stream, empty folder)
        import threading

        timer = threading.Timer(duration, source.stop)
        timer.daemon = True
        timer.start()
    try:
        if show:
            check_display()
        if save_anomalies:
            save_anomalies.mkdir(parents=True, exist_ok=True)
        log_file = open(jsonl, "a", encoding="utf-8") if jsonl else None
        for frame in source:
            tick = time.monotonic()
            image = _crop(frame.image, roi)
            scores = model.score_uint8(model.preprocess(image)[np.newaxis])
            row = scores.rows()[0]
            latency = (time.monotonic() - tick) * 1000
            stats.frames += 1
            stats.latencies_ms.append(latency)
            anomalous = bool(scores.anomalous[0])
            stats.anomalies += anomalous
            fps = 1000 / max(latency, 1e-3) if stats.frames == 1 else 0.9 * fps + 0.1 * (1000 / max(latency, 1e-3))
            record = {"frame": frame.index, "source": frame.name, "time": time.time(), **row,
                      "latency_ms": round(latency, 2), "lag_ms": round((time.monotonic() - frame.captured) * 1000, 2)}
            if log_file:
                log_file = _append_line(log_file, json.dumps(record), log)
            if anomalous:
                log(f"ANOMALY {frame.name}: score {row['score']:.4f} (threshold {model.threshold:.4f})")
            if show or (anomalous and save_anomalies):
                overlay = render_overlay(image, scores.outputs.residual[0, 0], row["score"], anomalous,
                                         f"{fps:.1f} FPS")
                if anomalous and save_anomalies:
                    save_anomalies = _save_anomaly(save_anomalies, frame.index, overlay, log)
                if show:
                    cv2.imshow(WINDOW, overlay)
                    window = True
                    if cv2.waitKey(1) & 0xFF == ord("q"):
                        break
            if max_frames is not None and stats.frames >= max_frames:
                break
            if stop_at is not None and time.monotonic() >= stop_at:
                break
    except KeyboardInterrupt:
        log("stopping (Ctrl-C)")
    finally:
        if timer is not None:
            timer.cancel()
        source.close()
        if log_file:
            log_file.close()
        if window:
            cv2.destroyAllWindows()
    return stats.summary()


def _append_line(log_file, line: str, log):
    """Append one JSONL record; on a full disk, say so once and stop logging (keep watching:
    the live verdicts matter more than the log). Returns the file, or None once given up."""
    try:
        log_file.write(line + "\n")
        log_file.flush()
        return log_file
    except OSError as error:
        if not is_disk_full(error):
            raise
        log(f"warning: {log_file.name}: no space left on the device; stopped the JSONL log "
            f"(the records before are kept), still watching")
        try:
            log_file.close()
        except OSError:
            pass
        return None


def _save_anomaly(folder: Path, index: int, overlay, log) -> Path | None:
    """Save an anomaly overlay; on a full disk, say so once and stop saving (keep watching)."""
    try:
        save_png(folder / f"anomaly_{index:07d}.png", overlay)
        return folder
    except DiskFullError:
        log(f"warning: {folder}: no space left on the device; stopped saving anomaly images, still watching")
        return None


def _crop(image: np.ndarray, roi):
    if roi is None:
        return image
    x, y, w, h = roi
    height, width = image.shape[:2]
    if x + w > width or y + h > height:
        raise UsageError(f"--roi {x},{y},{w},{h} lies outside the {width}x{height} frame")
    return image[y:y + h, x:x + w]
