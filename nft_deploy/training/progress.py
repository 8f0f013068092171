"""Progress bars on stderr for long work; silent when disabled or when stderr is not a terminal."""

from __future__ import annotations

import sys


class Progress:
    """A thin context manager over ``rich.progress``: ``task(label, total)`` then ``advance(task)``."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty()
        self._bar = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def task(self, label: str, total: int):
        if self._bar is None:
            return None
        return self._bar.add_task(label, total=total)

    def advance(self, task, n: int = 1) -> None:
        if self._bar is not None and task is not None:
            self._bar.advance(task, n)

    def done(self, task) -> None:
        if self._bar is not None and task is not None:
            self._bar.remove_task(task)


__all__ = ["Progress"]
