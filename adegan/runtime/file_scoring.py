"""`adegan score`: batch-score image files into CSV or JSONL, resumably.

Scoring threads (one per CPU by default) each take whole batches in turn (a short job: a piece
of each batch), decode them and run them through the model, so decoding on one core overlaps
inference on another (on a GPU, where a batch stays one call, they decode the next batch
meanwhile). Batches of fewer than 16 images go to a thread as runs of whole batches, decoded in
one go while the caches are warm. Small images are decoded by one thread at a time, which is
faster than side by side. Rows are written in the order of the files, and at most two pieces or
runs per thread (two batches on a GPU) are in flight, so memory stays bounded whatever the
number of images. Each batch's rows are appended and flushed to the operating system before the
next batch, so a killed or interrupted run loses nothing and `--resume` skips what is already
written; they are forced to the disk (fsync) at most once per second and at the end, so a slow
disk does not set the pace (a power cut can cost the last second of rows, which `--resume` then
scores again).
A file that cannot be read gets an error row, never a crash.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adegan.console import log as default_log, progress_bar
from adegan.errors import DiskFullError, UsageError
from adegan.runtime.files import atomic_write_text, is_disk_full
from adegan.runtime.images import IMAGE_EXTENSIONS, SMALL_IMAGE_PIXELS, ImageDecodeError, list_image_names
from adegan.runtime.model import BundleModel

COLUMNS = ("path", "score", "recon_error", "pattern", "pattern_prob", "verdict", "error")


def expand_inputs(inputs: list[str]) -> list[str]:
    """Folders (recursive), files and glob patterns -> image paths, in order, without repeats.
    Plain strings, not Paths: memory per image is what bounds a million-image job."""
    found: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found += list_image_names(item)
        elif os.path.isfile(item):
            found.append(os.path.normpath(item))
        elif glob.has_magic(item):
            matches = sorted(os.path.normpath(p) for p in glob.glob(item, recursive=True))
            found += [p for p in matches if os.path.isfile(p) and os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS]
        else:
            raise UsageError(f"{item}: no such file or folder")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise UsageError(f"no images found in {' '.join(inputs)} (png, jpg, jpeg, bmp, tif)")
    return unique


SYNC_SECONDS = 1.0  # the longest stretch of rows that are flushed but not yet forced to the disk


class ResultWriter:
    """Rows to .csv or .jsonl, appended and flushed per batch, fsynced at most every SYNC_SECONDS.

    Beside the output, `OUT.adegan.json` records which bundle (and threshold) wrote the rows, so
    `--resume` can refuse to mix rows of two models. File names that are not valid UTF-8 are
    kept losslessly: their original bytes in CSV (surrogateescape), \\udcXX escapes in JSONL.
    """

    def __init__(self, path: Path, resume: bool, identity: dict | None = None):
        self.path = Path(path)
        if self.path.suffix.lower() not in (".csv", ".jsonl"):
            raise UsageError(f"--out {path}: use a .csv or .jsonl file name")
        if self.path.is_dir():
            raise UsageError(f"--out {path} is a folder; give a file name such as {self.path / 'results.csv'}")
        self.jsonl = self.path.suffix.lower() == ".jsonl"
        self.identity_path = self.path.with_name(self.path.name + ".adegan.json")
        existing = self.path.exists() and self.path.stat().st_size > 0
        if existing and not resume:
            raise UsageError(f"{path} already exists; pass --resume to continue it, or choose another --out")
        if existing:
            self._check_same_writer(identity)
            self._drop_partial_last_line()
        self.done = self._read_done() if existing else set()
        self.rows_written = 0
        self.synced = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if identity is not None and not existing:
                atomic_write_text(self.identity_path, json.dumps(identity, indent=1, sort_keys=True) + "\n")
            self.file = open(self.path, "a", encoding="utf-8", errors="surrogateescape", newline="")
        except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            raise UsageError(f"--out {path}: cannot write there ({exc.strerror}); choose a folder you can write "
                             f"to") from exc
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise DiskFullError(f"--out {path}: no space left on the device; free some space and run the same "
                                f"command again") from exc
        self.csv = None if self.jsonl else csv.writer(self.file)
        if self.csv and not existing:
            self.csv.writerow(COLUMNS)

    def _check_same_writer(self, identity: dict | None) -> None:
        """Refuse to resume a file another bundle (or something else entirely) wrote."""
        if not self.jsonl:
            with open(self.path, encoding="utf-8", errors="surrogateescape", newline="") as file:
                header = next(csv.reader(file), [])
            if tuple(header) != COLUMNS:
                raise UsageError(f"{self.path}: not a results file of adegan score (its columns are "
                                 f"{','.join(header)[:80]}); choose another --out")
        if identity is None:
            return
        try:
            recorded = json.loads(self.identity_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UsageError(f"{self.path}: cannot tell which bundle wrote it ({self.identity_path.name} is missing "
                             f"or unreadable), so its rows cannot be resumed; choose another --out") from None
        changed = sorted(key for key in identity if recorded.get(key) != identity[key])
        if changed:
            raise UsageError(f"{self.path} was written with another bundle or threshold ({', '.join(changed)} "
                             f"differ, see {self.identity_path.name}); resume with that bundle, or choose another --out")

    def _drop_partial_last_line(self) -> None:
        """A crash mid-write can leave a last line without its newline: cut it off."""
        with open(self.path, "rb+") as file:
            data = file.read()
            if data and not data.endswith(b"\n"):
                file.truncate(data.rfind(b"\n") + 1)

    def _read_done(self) -> set[str]:
        """Paths already written; a last line cut off by a crash is ignored (and rewritten)."""
        done = set()
        with open(self.path, encoding="utf-8", errors="surrogateescape", newline="") as file:
            if self.jsonl:
                for line in file:
                    try:
                        done.add(json.loads(line)["path"])
                    except (ValueError, KeyError):
                        continue
            else:
                done = {row["path"] for row in csv.DictReader(file) if row.get("verdict")}
        return done

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            if self.jsonl:
                self.file.write(json.dumps(row) + "\n")
            else:
                self.csv.writerow(["" if row.get(key) is None else row[key] for key in COLUMNS])
        self.file.flush()
        if time.monotonic() - self.synced >= SYNC_SECONDS:
            os.fsync(self.file.fileno())
            self.synced = time.monotonic()
        self.rows_written += len(rows)

    def close(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        except OSError:  # the buffer could not be flushed (disk full): the error was reported already
            pass



@dataclass
class Summary:
    images: int = 0
    anomalies: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    backend: str = ""

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "images_per_second": round(self.images_per_second, 1)}


def _load(model: BundleModel, path: Path):
    try:
        return (*model.load(path), None)
    except ImageDecodeError as exc:
        return None, None, str(exc)


class DecodingTurns:
    """Shared by the scoring threads: one of them at a time decodes small images. Decoding a
    small image is a handful of short OpenCV and file calls, each of which lets go of Python's
    interpreter lock, and two threads doing that at once pass the lock back and forth more than
    they decode: on 2 cores two threads decoded 28 x 28 PNGs 1.6x slower than one, 48 x 48 no
    faster, 96 x 96 1.9x faster. One small-image decoder at a time overlaps with the other
    threads' inference instead; larger images (longer decode calls) are decoded side by side.
    The turn remembers whether the last image decoded was small, so a piece of a job of small
    images takes it before its first image (a batch of one image is a piece of one image)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.small = False  # the last image decoded was small (a stale value costs only speed)


def _is_small(image: np.ndarray | None) -> bool:
    return image is not None and image.shape[0] * image.shape[1] <= SMALL_IMAGE_PIXELS


def _load_all(model: BundleModel, paths: list[str], turns: DecodingTurns | None = None,
              keep_images: bool = True) -> list:
    """(image, model input, error) per path; small images decoded holding `turns`, if given.
    Without `keep_images` the decoded image (wanted only for overlays) is not kept: None."""
    loaded = []
    held = turns is not None and turns.small and turns.lock.acquire()
    try:
        for path in paths:
            image, tensor, error = _load(model, path)
            loaded.append((image if keep_images else None, tensor, error))
            if turns is not None:
                turns.small = _is_small(image)
                if turns.small and not held:
                    held = turns.lock.acquire()
    finally:
        if held:
            turns.lock.release()
    return loaded


def _decode_and_score(model: BundleModel, batch: list[str], overlays: Path | None,
                      turns: DecodingTurns | None = None) -> list[dict]:
    """Rows for a batch or a piece of one; the decoded images are kept only for overlays."""
    return _score_batch(model, batch, _load_all(model, batch, turns, keep_images=overlays is not None), overlays)


# Without overlays, a scoring thread given batches smaller than this takes runs of consecutive
# batches of about this many images, and larger batches whole (see _runs and _decode_and_score_run).
RUN_IMAGES = 16
RUNS_PER_WORKER = 8  # a short job is cut into at least this many runs per scoring thread


def _decode_and_score_run(model: BundleModel, batches: list[list[str]],
                          turns: DecodingTurns | None) -> list[list[dict]]:
    """Rows per batch for a run of consecutive small batches: every image decoded first, then one
    inference call per batch. Decoding between inference calls finds the caches cold (at 32 px,
    batch 1: 0.4 ms per image against 0.06 in a run), so a run decodes in one go. Only the model
    inputs are kept, so a run of large photos costs no more memory than a batch of them."""
    loaded = _load_all(model, [path for batch in batches for path in batch], turns, keep_images=False)
    rows, start = [], 0
    for batch in batches:
        rows.append(_score_batch(model, batch, loaded[start:start + len(batch)], None))
        start += len(batch)
    return rows


def _submit_pieces(pool: ThreadPoolExecutor, task, model: BundleModel, batch: list[str], workers: int,
                   *extra) -> list:
    """task(model, piece, *extra) for one batch cut into `workers` pieces of consecutive files:
    one task per file costs more in Python bookkeeping than decoding a small image does."""
    step = -(-len(batch) // workers)
    return [pool.submit(task, model, batch[start:start + step], *extra) for start in range(0, len(batch), step)]


def _decoded_ahead(model: BundleModel, batches: list[list[str]], workers: int):
    """(batch, decoded images) in order, decoded by `workers` threads one batch ahead."""
    turns = DecodingTurns()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = _submit_pieces(pool, _load_all, model, batches[0], workers, turns) if batches else []
        for index, batch in enumerate(batches):
            loaded = [item for future in pending for item in future.result()]
            pending = (_submit_pieces(pool, _load_all, model, batches[index + 1], workers, turns)
                       if index + 1 < len(batches) else [])
            yield batch, loaded


def _scored_batches(model: BundleModel, batches: list[list[str]], overlays: Path | None, workers: int):
    """(batch, rows) in order. With more than one worker on a CPU and without overlays, the
    threads take runs of whole batches in turn (see _runs); with overlays, or in a job too short
    to give every thread several runs, each batch is cut into one piece per worker (consecutive
    files) and each of `workers` threads decodes and scores a piece, so even a single batch keeps
    every core busy. At most two pieces or runs
    per worker are in flight, so memory stays bounded whatever the number of images. On a GPU a
    batch stays one call (the device wants large ones) and the threads decode the next batch
    meanwhile."""
    if workers <= 1:
        runs = _runs(batches, overlays) or []
        for run in runs:
            yield from zip(run, _decode_and_score_run(model, run, None))
        for batch in batches[sum(len(run) for run in runs):]:  # those no run holds, as in _cpu_work
            yield batch, _decode_and_score(model, batch, overlays)
        return
    if not model.backend.on_cpu:
        with closing(_decoded_ahead(model, batches, workers)) as decoded:
            for batch, loaded in decoded:
                yield batch, _score_batch(model, batch, loaded, overlays)
        return
    turns = DecodingTurns()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()  # (batches, futures, whether the one future is a run of batches)
        try:
            in_flight = 0
            for unit in _cpu_work(pool, model, batches, overlays, workers, turns):
                pending.append(unit)
                in_flight += len(unit[1])
                while in_flight >= 2 * workers:
                    done = pending.popleft()
                    in_flight -= len(done[1])
                    yield from _rows_of(*done)
            while pending:
                yield from _rows_of(*pending.popleft())
        finally:  # stopped early (an error, Ctrl-C): pieces not started are dropped
            for _, futures, _ in pending:
                for future in futures:
                    future.cancel()


def _cpu_work(pool: ThreadPoolExecutor, model: BundleModel, batches: list[list[str]], overlays: Path | None,
              workers: int, turns: DecodingTurns):
    """(batches, futures, run) submitted as they are asked for: runs of whole batches (one future
    each) where _runs gives them, then every batch they leave out cut into pieces."""
    runs = _runs(batches, overlays, workers) or []
    for run in runs:
        yield run, [pool.submit(_decode_and_score_run, model, run, turns)], True
    for batch in batches[sum(len(run) for run in runs):]:
        yield [batch], _submit_pieces(pool, _decode_and_score, model, batch, workers, overlays, turns), False


def _runs(batches: list[list[str]], overlays: Path | None, workers: int = 1) -> list[list[list[str]]] | None:
    """Consecutive batches, from the first, gathered into runs of RUN_IMAGES images or a little
    more, without overlays (they keep every decoded image); else None. Batches of RUN_IMAGES or
    more are runs of their own, when the job has at least RUNS_PER_WORKER of them per thread:
    each thread then scores whole batches in calls as large as the user asked for, not half-batch
    pieces (at 32 px, batch 32, score went from 0.77 to 0.89 of bare ONNX Runtime's rate, and
    from 1.08 to 1.27 at 128 px), and their rows are those one thread writes. The batches left
    over when they do not divide evenly among the threads are no runs: they are cut into pieces,
    so the threads finish together (a 256 px job of 17 batches on 2 threads lost 4.5 % waiting
    for the last whole batch on one thread). A short job gets shorter runs, at least
    RUNS_PER_WORKER per thread, so that no thread is left alone with the last long run (48 camera
    photos in 3 runs of 16 on 2 threads ran 20 % slower than without runs), and a short job of
    large batches is cut into pieces, so even one batch keeps every core busy."""
    size = max((len(batch) for batch in batches), default=0)
    if not size or overlays is not None:
        return None
    if size >= RUN_IMAGES:
        if workers > 1 and len(batches) < RUNS_PER_WORKER * workers:
            return None
        return [[batch] for batch in batches[:len(batches) - len(batches) % workers]]
    per_run = -(-RUN_IMAGES // size)
    if workers > 1:
        per_run = max(1, min(per_run, len(batches) // (RUNS_PER_WORKER * workers)))
    return [batches[start:start + per_run] for start in range(0, len(batches), per_run)]


def _rows_of(batches: list[list[str]], futures: list, run: bool):
    """(batch, rows) for a finished unit of _cpu_work."""
    if run:
        yield from zip(batches, futures[0].result())
    else:
        yield batches[0], [row for future in futures for row in future.result()]


def default_workers() -> int:
    """Scoring threads when none are asked for: one per CPU this process may use. On a CPU each
    decodes its piece of a batch and runs it through the model with its share of the CPUs (one
    ONNX Runtime thread each when there are as many threads as CPUs), so one core decodes while
    the other infers instead of the two taking turns: on 2 cores 4-14 % faster at 128-256 px
    than one scoring thread whose calls use both cores, and a little faster at 32 px batch 32
    since small images take turns decoding (benchmarks/score_overhead_probe.py,
    decoding_turns_probe.py, RESULTS.md). On a GPU they decode ahead of inference."""
    from adegan.runtime.backends import usable_cpus

    return usable_cpus()


def score_files(model: BundleModel, paths: list[str], out: Path, batch_size: int = 32, resume: bool = False,
                overlays: Path | None = None, workers: int | None = None, progress: bool = True,
                log=default_log) -> Summary:
    """Score `paths` with `model`, writing one row per image to `out` with `workers` scoring
    threads (0 or 1: this thread alone; None: the parallel_calls `model` was opened for, so the
    threads share the CPUs instead of each call taking them all)."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    workers = model.parallel_calls if workers is None else workers
    if workers < 0:
        raise UsageError(f"--workers must be 0 or more (0 and 1: one scoring thread), got {workers}")
    writer = ResultWriter(out, resume, model.identity())
    todo = [p for p in paths if str(p) not in writer.done]
    summary = Summary(skipped=len(paths) - len(todo), backend=model.backend.describe())
    if summary.skipped:
        log(f"resuming: {summary.skipped} image(s) already in {out}")
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    start = time.perf_counter()
    try:
        with progress_bar(len(todo), "scoring", progress) as bar, \
                closing(_scored_batches(model, batches, overlays, workers)) as scored:
            for batch, rows in scored:
                writer.write(rows)
                summary.images += len(batch)
                summary.errors += sum(1 for row in rows if row["verdict"] == "error")
                summary.anomalies += sum(1 for row in rows if row["verdict"] == "anomaly")
                bar.advance(len(batch), f"{summary.anomalies} anomalies, {summary.errors} errors")
    except (OSError, DiskFullError) as error:  # rows or an overlay: one message that says how to go on
        if not is_disk_full(error):
            raise
        raise DiskFullError(f"{out}: no space left on the device; the {len(writer.done) + writer.rows_written} "
                            f"row(s) written before are kept. Free some space, then run the same command "
                            f"with --resume") from error
    finally:
        writer.close()
        summary.seconds = time.perf_counter() - start
    return summary


def _score_batch(model: BundleModel, paths: list[str], loaded: list, overlays: Path | None) -> list[dict]:
    good = [i for i, (_, tensor, error) in enumerate(loaded) if error is None]
    rows: list[dict] = [{"path": str(p), "verdict": "error", "error": loaded[i][2]} for i, p in enumerate(paths)]
    if good:
        scores = model.score_uint8(np.stack([loaded[i][1] for i in good]))
        for k, (i, row) in enumerate(zip(good, scores.rows())):
            rows[i] = {"path": str(paths[i]), **row, "error": None}
            if overlays is not None and scores.anomalous[k]:
                _write_overlay(overlays, paths[i], loaded[i][0], scores.outputs.residual[k, 0], row["score"])
    return rows


def _write_overlay(folder: Path, path: Path, image: np.ndarray, residual: np.ndarray, score: float) -> None:
    from adegan.runtime.overlay import render_overlay, save_png

    folder.mkdir(parents=True, exist_ok=True)
    name = "_".join(Path(path).with_suffix("").parts[-3:]).replace(os.sep, "_") + ".png"
    save_png(folder / name, render_overlay(image, residual, score, True))
