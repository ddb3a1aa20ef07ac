"""What a module's forward does, read once from its source (for modeling files we cannot import hooks into)."""

from __future__ import annotations

import functools
import inspect


@functools.lru_cache(maxsize=1024)
def forward_mentions(forward, markers: tuple[str, ...]) -> bool:
    """Whether the source of ``forward`` contains any of ``markers`` (False when it has no source)."""
    try:
        source = inspect.getsource(forward)
    except (OSError, TypeError):
        return False
    return any(marker in source for marker in markers)
