"""A self-contained HTML page that displays in a notebook and saves to a file, and the escaping every
page of the package goes through.

User text (tokens, texts, labels, model names) reaches pages in three places, each with its own
escape: element text and attribute values (:func:`escape`), JSON inside a ``<script>`` element
(:func:`safe_json`), and script source inlined into a page (:func:`script_text`).
"""

from __future__ import annotations

import html
import json
import os
import re
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
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def script_text(js: str) -> str:
    """Script source made safe to inline in a ``<script>`` element (no ``</script`` or ``<!--`` in it).

    Library code holds no ``</script`` today; this keeps it that way should a new version bring one.
    """
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.I).replace("<!--", "<\\!--")


class HtmlExport:
    """An exported page: ``save(path)`` writes the full document, notebooks show ``_repr_html_``."""

    def __init__(self, body: str, title: str = "attn-plugins", head: str = "") -> None:
        self.body = body
        self.title = title
        self.head = head

    def document(self) -> str:
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(self.title)}</title>{self.head}</head>\n<body>\n{self.body}\n</body></html>\n"
        )

    def _repr_html_(self) -> str:
        return self.head + self.body

    def save(self, path: str | os.PathLike[str]) -> str:
        return write_text(path, self.document())

    def __repr__(self) -> str:
        return f"HtmlExport({self.title!r}, {len(self.body)} characters)"
