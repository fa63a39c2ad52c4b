"""Atomic file writes: a temp file beside the target, fsync, then rename.

A crash or a full disk mid-write leaves the previous file intact and no half-written one.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from adegan.errors import DiskFullError

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error` or an exception it was raised from is 'no space left' (or quota, or
    file-size limit). Libraries wrap it: torch.save raises a RuntimeError whose context is it."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full_error(path: Path, kept: str) -> DiskFullError:
    """The one-line message for a full disk: what was being written, what is kept, the fix."""
    return DiskFullError(f"{path}: no space left on the device; {kept}. Free some space (or write to "
                         f"another disk) and run the command again")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_staging_dir(target: Path) -> Path:
    """An empty folder beside `target` (same file system, so a rename is atomic), with the
    usual permissions."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    os.chmod(staging, 0o777 & ~_umask())
    return staging


def atomic_write_bytes(path: Path, write) -> None:
    """Call write(file_object) on a temp file beside `path`, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(temp_name, path)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        if is_disk_full(error):
            raise disk_full_error(path, "nothing was written and the previous file, if any, is unchanged") from error
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda file: file.write(text.encode("utf-8")))


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
