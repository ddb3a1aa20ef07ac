"""Outbound plugins: exporters that turn a record into a view or another library's format.

``export(record, target, path=None, **options)`` is the one entry point. An exporter factory is
called as ``factory(record, **options)`` and returns an object that displays in a notebook
(``_repr_html_``) and has ``save(path)``. Third parties add exporters through the entry point
group ``attn_plugins.exporters``.
"""

from __future__ import annotations

import os

from ..registry import Registry

EXPORTERS = Registry("exporter", "attn_plugins.exporters")


def export(record, target: str, path: str | os.PathLike | None = None, **options):
    """Export ``record`` to ``target`` (a registered exporter name); with ``path=``, also write it."""
    factory = EXPORTERS.get(target)
    result = factory(record, **options)
    if path is not None:
        result.save(path)
    return result
