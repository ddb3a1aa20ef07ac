"""The one error type of the corpus job (a ``ValueError``, so the CLI prints it as ``error: ...``)."""

from __future__ import annotations

from typing import Any

from ..errors import CorpusError


def need_pyarrow() -> Any:
    """The pyarrow module, or a :class:`CorpusError` naming the extra that provides it."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise CorpusError(
            'the corpus command writes Parquet and needs pyarrow: pip install "attn-plugins[corpus]"'
        ) from None
    return pyarrow
