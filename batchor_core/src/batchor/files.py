"""Writing a user's files so that no failure destroys what was there before.

Every file batchor writes for a user (result exports, artifact exports and their
manifest) goes through :func:`replaced_atomically`: the content is written to a
temporary file beside the target, flushed to disk, and renamed over the target
only once complete. An error, Ctrl-C or a kill at any point leaves the previous
file untouched (and no temporary file behind, except after a kill).

Appending cannot be done by renaming without copying the whole file, so
:func:`appending` truncates the file back to where it was when the append fails,
and, before appending, removes a partial last line a killed process may have left.
This module imports nothing of batchor.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_TAIL_PROBE_BYTES = 64 * 1024


def _temporary_beside(target: Path) -> tuple[int, Path]:
    """A new file beside ``target`` (same directory, so the rename stays atomic),
    created with the permissions a plain ``open(target, "w")`` would give."""
    for _ in range(100):
        candidate = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside {target}")


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def replaced_atomically(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``target``'s new content to; when the block
    ends without an exception, that file is synced and renamed over ``target``.

    Whatever happens inside the block, ``target`` either keeps its previous content
    or has all of the new one. The parent directory must exist.
    """
    path = Path(target)
    fd, temporary = _temporary_beside(path)
    os.close(fd)
    try:
        yield temporary
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        if path.exists():
            with contextlib.suppress(OSError):
                os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


@contextmanager
def written_atomically(target: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """``open(target, "w")`` (UTF-8 text) with :func:`replaced_atomically`'s promise."""
    with (
        replaced_atomically(target) as temporary,
        temporary.open("w", encoding="utf-8", newline="\n") as handle,
    ):
        yield handle


@contextmanager
def appending(target: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """``open(target, "a")`` for JSON Lines: if the block raises (an error, Ctrl-C),
    the file is truncated back to its size before, so it never ends in half a line.

    A last line without its newline is dealt with first: kept (and ended) when it is
    a complete JSON value, removed when it is not, which is what a killed append
    leaves behind.
    """
    path = Path(target)
    with path.open("a+b") as raw:
        _end_last_line(raw)
        raw.flush()  # before the text handle below writes to the same file descriptor
        start = os.fstat(raw.fileno()).st_size
        try:
            with open(raw.fileno(), "a", encoding="utf-8", newline="\n", closefd=False) as text:
                yield text
            raw.flush()
            os.fsync(raw.fileno())
        except BaseException:
            raw.truncate(start)
            raise


def _end_last_line(raw: IO[bytes]) -> None:
    """Make the file end with a newline (see :func:`appending`)."""
    size = raw.seek(0, os.SEEK_END)
    if size == 0:
        return
    raw.seek(size - 1)
    if raw.read(1) == b"\n":
        return
    start = max(0, size - _TAIL_PROBE_BYTES)
    while True:
        raw.seek(start)
        tail = raw.read(size - start)
        newline = tail.rfind(b"\n")
        if newline >= 0 or start == 0:
            break
        start = max(0, start - _TAIL_PROBE_BYTES * 16)
    line_start = start + newline + 1
    raw.seek(line_start)
    last_line = raw.read(size - line_start)
    try:
        json.loads(last_line)
    except ValueError:
        raw.truncate(line_start)
        return
    raw.seek(0, os.SEEK_END)
    raw.write(b"\n")
