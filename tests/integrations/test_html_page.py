"""The one template helper: every value escaped unless the page marked it as its own markup."""

from __future__ import annotations

import html
import string

import pytest

from attn_plugins.integrations.html_page import DOCUMENT, HtmlExport, Markup, render

HOSTILE = "</title><script>alert(\"x\")</script> & 'q' $body ${title}"


def test_render_escapes_values_and_keeps_markup_as_is():
    out = render(string.Template("<p>$text</p>$html"), text=HOSTILE, html=Markup("<b>kept</b>"))
    assert "<script>" not in out and "</title>" not in out
    assert out == f"<p>{html.escape(HOSTILE, quote=True)}</p><b>kept</b>"
    # a value is inserted once: a "$name" inside it is not filled in again
    assert "$body ${title}" in html.unescape(out)


def test_render_refuses_a_missing_slot():
    with pytest.raises(KeyError):
        render(DOCUMENT, title="t", head=Markup(""))


def test_document_escapes_the_title_and_keeps_the_page():
    page = HtmlExport("<div id='v'>$x</div>", title=HOSTILE, head="<style>p{}</style>")
    doc = page.document()
    assert doc.startswith('<!DOCTYPE html>\n<html lang="en">')
    title = doc[doc.index("<title>") + 7 : doc.index("</title>")]
    assert html.unescape(title) == HOSTILE and "<" not in title
    assert "<style>p{}</style></head>" in doc and "<div id='v'>$x</div>" in doc
