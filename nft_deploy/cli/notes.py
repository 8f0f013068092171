"""``Note`` warnings as one ``Note:`` line each on stderr, printed when they happen.

A ``Note`` says something the user should know about a valid run (fewer workers than asked, what
``--engine torch`` leaves out, a layer whose noise swamps its weights during training); any other warning
raised meanwhile prints as one ``Warning:`` line. No file:line prefix, no source line.
"""

from __future__ import annotations

import contextlib
import warnings

import click


@contextlib.contextmanager
def notes():
    from nft_deploy.errors import Note

    def show(message, category, *args, **kwargs):
        prefix = "Note" if issubclass(category, Note) else "Warning"
        click.echo(f"{prefix}: {message}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always", Note)
        warnings.showwarning = show
        yield


__all__ = ["notes"]
