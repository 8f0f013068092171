"""The project's one progress helper: rich bars on stderr, drawn only when enabled and stderr is a terminal.

Training (``nft_deploy.training.progress.Progress``) and evaluation
(``nft_deploy.evaluation.progress.chip_progress``) both draw through ``Progress`` here; rich is imported
only when a bar is actually drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


def stderr_is_terminal() -> bool:
    """True when stderr is a terminal (rich's test: a TTY, or one forced by ``FORCE_TERMINAL``)."""
    from rich.console import Console

    return Console(stderr=True).is_terminal


class Progress:
    """A context manager over ``rich.progress``: ``task(label, total)`` then ``advance(task, n)``; every
    method is a no-op when disabled or when stderr is not a terminal. ``unit`` is shown after the count."""

    def __init__(self, enabled: bool = True, unit: str | None = None, bold: bool = False):
        self.enabled = enabled and stderr_is_terminal()
        self.unit, self.bold = unit, bold
        self._bar = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            columns = [TextColumn("[bold]{task.description}" if self.bold else "{task.description}"), BarColumn(),
                       MofNCompleteColumn(), *([TextColumn(self.unit)] if self.unit else []), TimeRemainingColumn()]
            self._bar = RichProgress(*columns, console=Console(stderr=True), transient=True)
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


@contextmanager
def chip_progress(total: int, label: str, quiet: bool = False) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``; draws a bar of ``total`` chips on stderr unless quiet or not a terminal."""
    with Progress(enabled=not quiet, unit="chips", bold=True) as bar:
        task = bar.task(label, total)
        yield lambda n: bar.advance(task, n)


__all__ = ["Progress", "chip_progress", "stderr_is_terminal"]
