"""Atomic output files: the one way every command writes what it produces.

A file is written to a temporary file in its own folder (``.<name>.<random>.tmp``), flushed and fsync'd,
then renamed onto its path with ``os.replace`` (and the folder fsync'd): a reader, a crash, Ctrl-C or a
full disk leaves either the complete new file, the old file, or nothing; never half a file and never the
temporary file. Missing parent folders are created (as ``mkdir -p``). Every ``OSError`` (not writable,
read-only file system, no space left, a folder where the file should be...) becomes one ``OutputError``
line that names the path and what to do.

``check_writable`` does the same checks before a long run (training, an export, a Monte Carlo run), so a
bad output path fails in a second instead of after the work, without creating anything.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from nft_deploy.errors import OutputError

_RECORDING: contextvars.ContextVar[list[Path] | None] = contextvars.ContextVar("nft_deploy_atomic_recording",
                                                                               default=None)
"""The list ``recording()`` collects into, in this context; None: nothing records (a library call)."""


@contextlib.contextmanager
def recording() -> Iterator[list[Path]]:
    """Collect every path completed (renamed into place) while the block runs, in order: the CLI names them
    when a command is interrupted. Context-local: nothing accumulates outside the block."""
    paths: list[Path] = []
    token = _RECORDING.set(paths)
    try:
        yield paths
    finally:
        _RECORDING.reset(token)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            _write(f, data)

    return atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """``atomic_write_bytes`` of ``text`` encoded (UTF-8 by default)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_with(path: str | Path, dump: Callable[[io.BytesIO], object]) -> Path:
    """``dump(buffer)`` into memory (``torch.save``, ``fig.savefig``...), then ``atomic_write_bytes``.

    The serialiser never sees the disk, so a full disk is an ``OSError`` here, not a library's own error type.
    """
    buf = io.BytesIO()
    dump(buf)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file next to ``path``, fsync it, then rename it onto
    ``path``. Any failure removes the temporary file and leaves ``path`` as it was; an ``OSError`` (of
    ``write`` too) becomes one ``OutputError`` line, anything else propagates unchanged."""
    path = _target(path)
    fd, tmp = _open_temp(path)
    os.close(fd)
    try:
        write(tmp)
        _fsync_file(tmp)
        _replace(tmp, path)
    except BaseException as e:
        _discard(tmp)
        if isinstance(e, OSError):
            raise output_error(path, e) from None
        raise
    return path


def check_writable(path: str | Path, *, folder: bool = False) -> None:
    """Raise ``OutputError`` now if ``path`` (a file, or with ``folder`` a folder to write files into)
    could not be written later: a folder where a file goes, a file where a folder goes (or in the parent
    path), a folder that is not writable or is on a read-only file system. Creates and leaves nothing."""
    path = Path(path)
    if not folder:
        path = _target(path, create=False)
    elif path.exists() and not path.is_dir():
        raise OutputError(path, "exists and is not a folder; give a folder for these files (it is created if missing)")
    start = path if folder else path.parent
    existing = start
    while not existing.exists():  # the nearest folder that exists: missing ones are created when writing
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(path, f"{existing} exists and is not a folder, so the output cannot be created under it; "
                                "give another path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".nft-deploy-check.", suffix=".tmp", dir=existing)
    except OSError as e:
        raise output_error(path, e, folder=existing) from None
    os.close(fd)
    _discard(tmp)


def output_error(path: Path, e: OSError, folder: Path | None = None) -> OutputError:
    """The one line of an ``OSError`` while writing ``path``: what happened and what to do."""
    folder = folder or path.parent
    code = e.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        what = "no space left on the device (or quota exceeded)"
        todo = f"free space there or write to another disk; nothing was written to {path.name}"
    elif code == errno.EROFS:
        what = f"{_folder_name(folder)} is on a read-only file system"
        todo = "write to a writable folder (give the output path explicitly)"
    elif code in (errno.EACCES, errno.EPERM):
        what = f"{_folder_name(folder)} is not writable (permission denied)"
        todo = "choose a folder you can write to, or fix its permissions"
    elif code == errno.EISDIR:
        return OutputError(path, "is an existing folder; give a file path (a name inside it, for example)")
    elif code in (errno.ENOTDIR, errno.EEXIST):
        what = "a file is in the way of its folder"
        todo = "give a path whose parents are folders"
    else:
        what = e.strerror or type(e).__name__
        todo = "check the path and the disk"
    return OutputError(path, f"cannot write: {what}; {todo}")


def _folder_name(folder: Path) -> str:
    return f"the folder {os.path.abspath(folder)}"


def _target(path: str | Path, create: bool = True) -> Path:
    """The file to replace (a symlink's target), checked not to be a folder; its parents made with ``create``."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.is_dir():
        raise OutputError(path, "is an existing folder; give a file path (a name inside it, for example)")
    if str(path) == "" or path.name in ("", ".", ".."):
        raise OutputError(path, "is not a file name; give a file path")
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_error(path, e, folder=_existing_parent(path.parent)) from None
    return path


def _existing_parent(folder: Path) -> Path:
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _open_temp(path: Path) -> tuple[int, str]:
    """A new temporary file next to ``path`` with the permissions a plain ``open`` would give."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise output_error(path, e) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:
        pass
    return fd, tmp


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write(f, data: bytes) -> None:
    f.write(data)


def _fsync_file(tmp: str) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(tmp: str, path: Path) -> None:
    os.replace(tmp, path)
    paths = _RECORDING.get()
    if paths is not None:
        paths.append(path)
    try:  # make the rename itself durable; some file systems cannot fsync a folder
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_with", "check_writable",
           "output_error", "recording"]
