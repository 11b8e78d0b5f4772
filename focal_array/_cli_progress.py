"""Progress of ``focal-array inspect``: a rich bar with rate and ETA on a terminal's stderr.

Kept apart so that rich is imported only when a bar is actually drawn: ``--json`` into a
pipe, tests and small files never pay for it.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = ["PROGRESS_MIN_IMAGES", "Progress"]

#: The progress bar appears for more images than this (and only on a terminal).
PROGRESS_MIN_IMAGES = 5


class Progress:
    """A one-line bar on a terminal's stderr: done/total, images/s, elapsed time, ETA.

    Silent when the stream is not a terminal (a log file, a pipe, a test's capture) or the
    job is small, so it never mixes into redirected output — stdout (``--json``) is never
    written to. The bar is erased when it closes, so the report starts on a clean line.

    Args:
        total: number of images to match.
        stream: where to draw; ``sys.stderr`` if None.
        enabled: force the bar on or off; by default on only for a terminal and more than
            :data:`PROGRESS_MIN_IMAGES` images.
        label: text before the bar.
    """

    def __init__(self, total: int, stream: TextIO | None = None, *,
                 enabled: bool | None = None, label: str = "matching images") -> None:
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty()) and total > PROGRESS_MIN_IMAGES
        self.enabled = enabled
        self.label = label
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, done: int) -> None:
        """Show ``done`` of ``total``; the bar redraws itself ~10 times a second."""
        if not self.enabled:
            return
        if self._bar is None:
            self._start()
            if self._bar is None:
                return
        self._bar.update(self._task, completed=done)

    def _start(self) -> None:
        try:
            bar = _rich_bar(self.stream, self.label)
        except ImportError:
            # rich is a dependency; a stripped install only loses the bar, not the report
            self.enabled = False
            return
        self._task = bar.add_task(self.label, total=self.total)
        bar.start()
        self._bar = bar

    def close(self) -> None:
        """Stop the bar and erase its line (safe to call twice, or without a bar)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _rich_bar(stream: TextIO, label: str) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Images per second over rich's sliding window (the recent rate, not the mean)."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("… images/s" if speed is None else f"{speed:,.0f} images/s")

    # force_terminal: the caller already decided to draw (a tty, or enabled=True)
    console = Console(file=stream, force_terminal=True)
    return RichProgress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, transient=True, redirect_stdout=False, redirect_stderr=False)
