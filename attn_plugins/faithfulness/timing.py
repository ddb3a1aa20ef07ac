"""Progress of long faithfulness runs: each stage reported with its seconds once it is done."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def stage(log: Callable[[str], None] | None, what: str) -> Iterator[None]:
    """Report ``what`` and its seconds through ``log`` once it is done (nothing when ``log`` is None).

    Args:
        log: where the line goes (``print``, a logger's method), or None.
        what: the stage, as the line starts.

    Returns:
        A context manager timing its body.
    """
    start = time.perf_counter()
    yield
    if log is not None:
        log(f"{what}: {time.perf_counter() - start:.1f} s")
