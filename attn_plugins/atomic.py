"""Atomic file writes: a file we write is either complete or absent, never half-written.

Every file attn-plugins writes (records, shards, ``record.json``, exported pages) goes through
:func:`atomic_path`: the content is written to a temporary file in the target's own directory
(so the final rename never crosses a file system), synced, then renamed over the target. If
anything fails on the way (a full disk, a serializer that raises, Ctrl-C) the temporary file is
removed and the target is left as it was. The temporary file is created with mode ``0o666``
filtered by the process umask, exactly like ``open(path, "w")``, so the result has the user's
usual permissions (``tempfile.mkstemp`` would give ``0o600``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

__all__ = ["atomic_path", "write_text"]


def _missing_parents(directory: str) -> list[str]:
    """The folders of ``directory`` that do not exist yet, outermost first."""
    missing = []
    while directory and not os.path.exists(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return missing[::-1]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, sync: bool = True, suffix: str = "") -> Iterator[str]:
    """A temporary path to write ``path``'s content to; renamed over ``path`` when the block succeeds.

    Args:
        path: the file to write. Missing parent folders are created (and removed again on failure).
        sync: ``fsync`` the content before the rename, so a crash right after never leaves an
            empty file under the final name (and a full disk is reported here, not later).
        suffix: the end of the temporary file's name, for writers that pick the format from it
            (``".gif"`` for Pillow).

    Returns:
        A context manager yielding the temporary file's path (an empty file that already exists,
        created with the user's umask). Write it by name, in any way; on a clean exit it replaces
        ``path``; on an exception it is deleted and the exception propagates.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    created = _missing_parents(directory)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp{suffix}")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        mode = os.stat(tmp).st_mode & 0o777  # 0o666 less the umask, as the kernel applied it
        yield tmp
        if os.stat(tmp).st_mode & 0o777 != mode:  # a writer that replaced the file (safetensors does: 0o600)
            os.chmod(tmp, mode)
        if sync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only succeeds while empty: never removes anything but what we made
        raise


def write_text(path: str | os.PathLike[str], text: str) -> str:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_path`).

    Args:
        path: the file to write; its folder is created when missing.
        text: the content.

    Returns:
        ``path`` as a string.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
    return os.fspath(path)
