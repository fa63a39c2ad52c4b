"""Progress bars and messages for long work (rich, which typer already brings)."""

from __future__ import annotations

import sys
from contextlib import contextmanager


_live_console = None  # the rich console of the progress bar on screen, if any


def log(message: str) -> None:
    """A status line on stderr, so stdout stays clean for `--json`; printed above a live
    progress bar rather than through it."""
    if _live_console is not None:
        _live_console.print(message, markup=False, highlight=False)
    else:
        print(message, file=sys.stderr, flush=True)


class _Bar:
    def __init__(self, progress, task):
        self._progress = progress
        self._task = task

    @property
    def active(self) -> bool:
        """Whether anything is shown (callers can skip building a status, e.g. a GPU sync)."""
        return self._progress is not None

    def advance(self, amount: int = 1, status: str | None = None) -> None:
        if self._progress is None:
            return
        fields = {} if status is None else {"status": status}
        self._progress.update(self._task, advance=amount, **fields)


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True, completed: int = 0):
    """A transient progress bar with a free-text status column; a no-op when disabled
    or when stderr is not a terminal (logs stay readable in CI)."""
    if not enabled or not sys.stderr.isatty():
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("<"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
        console=Console(stderr=True), transient=True,
    )
    global _live_console
    with progress:
        task = progress.add_task(description, total=total, completed=completed, status="")
        _live_console = progress.console
        try:
            yield _Bar(progress, task)
        finally:
            _live_console = None
