"""A self-contained HTML page that displays in a notebook and saves to a file, and the escaping every
page of the package goes through.

User text (tokens, texts, labels, model names) reaches pages in three places, each with its own
escape: element text and attribute values (:func:`escape`), JSON inside a ``<script>`` element
(:func:`safe_json`), and script source inlined into a page (:func:`script_text`).

Documents are filled in from templates by :func:`render`: the standard library's
:class:`string.Template` with the escaping in that one function. Every value is escaped unless the
caller marks it as HTML it built itself (:class:`Markup`), so a forgotten escape shows as visible
markup, never as a live tag. Why not Jinja2 (with autoescape): our page shells are fixed documents
with a handful of slots and no loops or conditions (the fragments that repeat are built in Python,
each through :func:`escape`); Jinja2 comes only with the ``bertviz`` extra, and the core package
(the report, the saliency and comparison pages) should not need it for a few ``$slots``.
"""

from __future__ import annotations

import html
import json
import os
import re
import string
from typing import Any

from ..atomic import write_text  # every exporter saves through this (atomic: no half-written page)


def escape(value: Any) -> str:
    """``str(value)`` safe as HTML element text or a quoted attribute value (``<``, ``>``, ``&`` and
    both quote characters replaced by entities)."""
    return html.escape(str(value), quote=True)


def safe_json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element: ``<``, ``>``, ``&`` and the JavaScript
    line separators are written as ``\\u`` escapes, so no string in it can end the script."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def script_text(js: str) -> str:
    """Script source made safe to inline in a ``<script>`` element (no ``</script`` or ``<!--`` in it).

    Library code holds no ``</script`` today; this keeps it that way should a new version bring one.
    """
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.I).replace("<!--", "<\\!--")


class Markup(str):
    """HTML the package built itself (every user value in it already escaped): :func:`render` inserts
    it as it is. Everything else :func:`render` receives is escaped."""


def render(template: string.Template, **values: Any) -> str:
    """Fill ``template``'s ``$name`` slots: :class:`Markup` values as they are, every other value
    through :func:`escape`.

    Args:
        template: the page's template (``$name`` / ``${name}`` slots; ``$$`` is a literal ``$``).
        **values: one value per slot; a missing slot raises ``KeyError``.

    Returns:
        The filled-in HTML.
    """
    return template.substitute({k: v if isinstance(v, Markup) else escape(v) for k, v in values.items()})


DOCUMENT = string.Template(
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    "<title>$title</title>$head</head>\n<body>\n$body\n</body></html>\n"
)


class HtmlExport:
    """An exported page: ``save(path)`` writes the full document, notebooks show ``_repr_html_``."""

    def __init__(self, body: str, title: str = "attn-plugins", head: str = "") -> None:
        self.body = body
        self.title = title
        self.head = head

    def document(self) -> str:
        """The full HTML document (:data:`DOCUMENT` around the page's head and body).

        Returns:
            The document, as :meth:`save` writes it.
        """
        return render(DOCUMENT, title=self.title, head=Markup(self.head), body=Markup(self.body))

    def _repr_html_(self) -> str:
        return self.head + self.body

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the document to ``path`` atomically.

        Args:
            path: the file to write.

        Returns:
            The path written.
        """
        return write_text(path, self.document())

    def __repr__(self) -> str:
        return f"HtmlExport({self.title!r}, {len(self.body)} characters)"
