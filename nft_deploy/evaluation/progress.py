"""Progress bars on stderr: quiet when asked, or when stderr is not a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextmanager
def chip_progress(total: int, label: str, quiet: bool = False) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``; draws a bar of ``total`` chips on stderr unless quiet or not a TTY."""
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield lambda n: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chips"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
