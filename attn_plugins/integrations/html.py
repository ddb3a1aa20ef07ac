"""A self-contained HTML document that displays in a notebook and saves to a file."""

from __future__ import annotations

import html as _html
import os

from ..atomic import write_text  # every exporter saves through this (atomic: no half-written page)


class HtmlExport:
    """An exported page: ``save(path)`` writes the full document, notebooks show ``_repr_html_``."""

    def __init__(self, body: str, title: str = "attn-plugins", head: str = "") -> None:
        self.body = body
        self.title = title
        self.head = head

    def document(self) -> str:
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_html.escape(self.title)}</title>{self.head}</head>\n<body>\n{self.body}\n</body></html>\n"
        )

    def _repr_html_(self) -> str:
        return self.head + self.body

    def save(self, path: str | os.PathLike) -> str:
        return write_text(path, self.document())

    def __repr__(self) -> str:
        return f"HtmlExport({self.title!r}, {len(self.body)} characters)"
