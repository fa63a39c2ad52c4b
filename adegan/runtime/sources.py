"""Frame sources for `adegan watch`: live streams, video files and watched folders.

Live sources (camera index, RTSP/HTTP URL, GStreamer pipeline) are read by a capture thread that
keeps only the newest frame, so a slow model never builds up lag. A stream that drops is reopened
with exponential back-off, each attempt reported. Video files and folders are read in order,
every frame / file once (they are not live, so nothing is dropped).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from adegan.console import log as default_log
from adegan.errors import AdeganError, UsageError
from adegan.runtime.deps import require_cv2
from adegan.runtime.images import ImageDecodeError, list_image_names, read_image


class SourceError(AdeganError):
    """A source that cannot be opened."""


@dataclass
class Frame:
    index: int
    name: str  # where it came from: "camera 0 #12", a file path, ...
    image: np.ndarray  # BGR uint8 (H, W, 3)
    captured: float  # time.monotonic() at capture


STREAM_TIMEOUT_MS = 5000  # a URL that connects but sends nothing fails after this, not OpenCV's 30 s


def _open_capture(target, api: int | None = None):
    cv2 = require_cv2()
    if isinstance(target, str) and "://" in target and api is None:  # network stream: bounded open and read
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
        capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, timeouts)
    else:
        capture = cv2.VideoCapture(target, api) if api is not None else cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        return None
    return capture


class LiveSource:
    """The newest frame of a live stream, captured in a background thread."""

    def __init__(self, target, label: str, api: int | None = None, log=default_log,
                 max_backoff: float = 10.0, give_up_after: float | None = None):
        self.target, self.label, self.api, self.log = target, label, api, log
        self.max_backoff, self.give_up_after = max_backoff, give_up_after
        capture = _open_capture(target, api)
        if capture is None:
            raise SourceError(f"{label}: could not be opened (no such device, refused, or unsupported by this "
                              f"OpenCV build); check the index/URL, or list cameras with `ls /dev/video*`")
        self._capture = capture
        self._latest: Frame | None = None
        self._condition = threading.Condition()
        self._stopped = threading.Event()
        self._failure: str | None = None
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name=f"capture {label}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        index = 0
        while not self._stopped.is_set():
            ok, image = self._capture.read()
            if not ok or image is None:
                if not self._reconnect():
                    break
                continue
            with self._condition:
                self._latest = Frame(index, f"{self.label} #{index}", image, time.monotonic())
                self._condition.notify_all()
            index += 1
        with self._condition:
            self._condition.notify_all()

    def _reconnect(self) -> bool:
        """Reopen with back-off 0.5, 1, 2, ... max_backoff seconds; False when stopped or given up."""
        self._capture.release()
        delay, started = 0.5, time.monotonic()
        while not self._stopped.is_set():
            self.log(f"{self.label}: stream lost; reconnecting in {delay:.1f} s")
            if self._stopped.wait(delay):
                return False
            capture = _open_capture(self.target, self.api)
            if capture is not None:
                self._capture = capture
                self.reconnects += 1
                self.log(f"{self.label}: reconnected")
                return True
            if self.give_up_after is not None and time.monotonic() - started > self.give_up_after:
                self._failure = f"{self.label}: lost and not back after {self.give_up_after:.0f} s"
                self._stopped.set()
                return False
            delay = min(delay * 2, self.max_backoff)
        return False

    def __iter__(self) -> Iterator[Frame]:
        last_index = -1
        while True:
            with self._condition:
                while not self._stopped.is_set() and (self._latest is None or self._latest.index == last_index):
                    self._condition.wait(timeout=0.5)
                if self._stopped.is_set():
                    break
                frame = self._latest
            last_index = frame.index
            yield frame
        if self._failure:
            raise SourceError(self._failure)

    def stop(self) -> None:
        """End the iteration soon (within half a second), from any thread."""
        self._stopped.set()

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._capture.release()


class VideoFileSource:
    """Every frame of a video file (or an image sequence like frames/%04d.png), in order; with
    `loop`, from the start again at the end (demos, soak tests), frame numbers counting on."""

    def __init__(self, path: str, loop: bool = False):
        if "%" not in path and not Path(path).is_file():
            raise UsageError(f"{path}: video file not found")
        self.path, self.loop = path, loop
        self._stopped = threading.Event()
        self._capture = _open_capture(path)
        if self._capture is None:
            raise SourceError(f"{path}: OpenCV cannot read this video (unsupported codec or corrupt file)")

    def __iter__(self) -> Iterator[Frame]:
        index, in_pass = 0, 0
        while not self._stopped.is_set():
            ok, image = self._capture.read()
            if not ok or image is None:
                if not (self.loop and in_pass):  # the end (or an empty video: no endless loop)
                    return
                self._capture.release()  # reopening is what works for every backend and image sequences
                self._capture = _open_capture(self.path)
                if self._capture is None:
                    raise SourceError(f"{self.path}: could not reopen the video to loop it")
                in_pass = 0
                continue
            yield Frame(index, f"{self.path} #{index}", image, time.monotonic())
            index += 1
            in_pass += 1

    def stop(self) -> None:
        self._stopped.set()

    def close(self) -> None:
        self._capture.release()


class FolderSource:
    """Images as they arrive in a folder (and those already there, unless `only_new`).

    A file is taken once its size and modification time have stayed the same over one poll
    (so a half-copied image is not read), then scored once; a file renamed into place is
    taken at the next poll. A file deleted before it is read is forgotten; an unreadable or
    still-empty one is reported and skipped.
    """

    def __init__(self, folder: str, only_new: bool = False, poll: float = 0.25, log=default_log):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UsageError(f"{folder}: folder not found")
        self.poll, self.log = poll, log
        self._seen: set[Path] = set(self._list()) if only_new else set()
        self._states: dict[Path, tuple[int, int]] = {}
        self._stopped = threading.Event()

    def _list(self) -> list[Path]:
        return [Path(name) for name in list_image_names(self.folder)]

    def _stable(self, path: Path) -> bool | None:
        """True when the file has not changed since the last poll; None when it is gone."""
        try:
            status = path.stat()
        except OSError:
            self._states.pop(path, None)
            return None
        state = (status.st_size, status.st_mtime_ns)
        stable = self._states.get(path) == state
        self._states[path] = state
        return stable

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while not self._stopped.is_set():
            for path in self._list():
                if path in self._seen or not self._stable(path):
                    continue
                self._seen.add(path)
                self._states.pop(path, None)
                try:
                    image = read_image(path)
                except ImageDecodeError as exc:
                    self.log(f"skipped: {exc}")
                    continue
                yield Frame(index, str(path), image, time.monotonic())
                index += 1
                if self._stopped.is_set():
                    return
            self._stopped.wait(self.poll)

    def stop(self) -> None:
        self._stopped.set()

    def close(self) -> None:
        self._stopped.set()


def open_source(camera: int | None = None, video: str | None = None, url: str | None = None,
                folder: str | None = None, gst: str | None = None, log=default_log, loop: bool = False):
    """Exactly one of the options must be given; `loop` only with a video."""
    given = {k: v for k, v in dict(camera=camera, video=video, url=url, folder=folder, gst=gst).items() if v is not None}
    if len(given) != 1:
        raise UsageError("give exactly one source: --camera INDEX, --video FILE, --url URL, --folder DIR or --gst PIPELINE")
    if loop and video is None:
        raise UsageError("--loop replays a --video file; live sources and folders do not end")
    if camera is not None:
        return LiveSource(camera, f"camera {camera}", log=log)
    if url is not None:
        return LiveSource(url, url, log=log)
    if gst is not None:
        cv2 = require_cv2()
        if "YES" not in _gstreamer_line(cv2.getBuildInformation()):
            raise SourceError("--gst needs an OpenCV built with GStreamer (the Jetson system OpenCV is; pip wheels "
                              "are not): use the system OpenCV in a venv made with --system-site-packages")
        return LiveSource(gst, "gstreamer", api=cv2.CAP_GSTREAMER, log=log)
    if video is not None:
        return VideoFileSource(video, loop)
    return FolderSource(folder, log=log)


def _gstreamer_line(build_information: str) -> str:
    for line in build_information.splitlines():
        if "GStreamer" in line:
            return line
    return "GStreamer: NO"
