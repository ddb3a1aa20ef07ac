"""The report's page: one self-contained HTML document (styles inline from ``static/report.css``,
a Content-Security-Policy that forbids any network access, every text escaped)."""

from __future__ import annotations

import functools
import os
import string
import time
from typing import Any

from ..integrations.html_page import Markup, render
from .markup import esc

REPORT_FILE = "report.html"
CSS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "report.css")
# The sticky navigation must not hide the heading a link jumps to: sections keep a scroll margin of the
# navigation's height (it wraps onto more lines on narrow windows), measured here.
NAV_OFFSET_SCRIPT = (
    "(function(){var n=document.querySelector('nav.ap-nav');if(!n)return;function f(){"
    "document.documentElement.style.setProperty('--ap-nav-height',n.offsetHeight+'px');}"
    "f();window.addEventListener('resize',f);})();"
)
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
)


# the document around the sections; filled in by the package's one template helper, which escapes
# every value that is not Markup the page built itself
PAGE = string.Template(
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta http-equiv="Content-Security-Policy" content="$csp">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    "<title>attn-plugins report: $model</title><style>\n$css</style></head>\n<body>\n"
    '<header class="ap-header"><h1>Attention report: $model</h1>'
    "<p>$source &middot; $count input(s), the first: &ldquo;$preview&rdquo;</p>"
    "<p>Built by attn-plugins in $total s on $when; works offline.</p>"
    '</header>\n<nav class="ap-nav">$nav</nav>\n<main>\n$sections\n</main>\n'
    '<footer class="ap-footer"><h3>About this report</h3><table class="ap-table"><tr><th>section</th>'
    "<th>status</th><th>time</th></tr>$timings<tr><td>loading the model</td><td></td>"
    "<td>$load_seconds s</td></tr><tr><td>capture</td><td></td>"
    "<td>$capture_seconds s</td></tr></table><p>Files written beside this page: $files</p>"
    "</footer>\n<script>$nav_script</script>\n</body></html>\n"
)


@functools.cache
def stylesheet() -> str:
    """The page's CSS (a static file shipped with the package, so it can be edited as CSS)."""
    with open(CSS_FILE, encoding="utf-8") as handle:
        return handle.read()


def render_page(ctx: Any, sections: list[Any], total: float) -> str:
    """The HTML of the page: header, navigation, the built sections and a footer with timings and files.

    Args:
        ctx: the :class:`~attn_plugins.report.context.ReportContext` the sections were built from.
        sections: the :class:`~attn_plugins.report.markup.Section` results, in page order.
        total: seconds the whole report took.

    Returns:
        The document.
    """
    model_name = type(ctx.model).__name__
    nav = "".join(
        f'<a href="#{s.id}" class="{"" if s.status == "ok" else "ap-off"}">{esc(s.title)}</a>' for s in sections
    )
    body = []
    for s in sections:
        note = f'<p class="ap-note">{esc(s.note)}</p>' if s.note else ""
        body.append(
            f'<section id="{s.id}" class="ap-section ap-{s.status}" data-status="{s.status}">'
            f"<h2>{esc(s.title)}</h2>{note}{s.body}</section>"
        )
    timings = "".join(
        f"<tr><td>{esc(s.title)}</td><td>{esc(s.status)}</td><td>{s.seconds:.1f} s</td></tr>" for s in sections
    )
    files = ", ".join(f'<a href="{esc(f)}">{esc(f)}</a>' for f in sorted(set(ctx.files)))
    first = ctx.texts[0]
    preview = first if len(first) <= 80 else first[:77] + "..."
    return render(
        PAGE,
        csp=Markup(CSP),
        css=Markup(stylesheet()),
        model=model_name,
        source=ctx.source,
        count=len(ctx.texts),
        preview=preview,
        total=f"{total:.1f}",
        when=time.strftime("%Y-%m-%d %H:%M"),
        nav=Markup(nav),
        sections=Markup("\n".join(body)),
        timings=Markup(timings),
        load_seconds=f"{ctx.load_seconds:.1f}",
        capture_seconds=f"{ctx.capture_seconds:.1f}",
        files=Markup(files),
        nav_script=Markup(NAV_OFFSET_SCRIPT),
    )
