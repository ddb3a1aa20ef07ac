"""The report's page: one self-contained HTML document (styles inline from ``static/report.css``,
a Content-Security-Policy that forbids any network access, every text escaped)."""

from __future__ import annotations

import functools
import os
import time

from .markup import esc

REPORT_FILE = "report.html"
CSS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "report.css")
# The sticky navigation must not hide the heading a link jumps to: sections keep a scroll margin of the
# navigation's height (it wraps onto more lines on narrow windows), measured here.
NAV_OFFSET_SCRIPT = ("(function(){var n=document.querySelector('nav.ap-nav');if(!n)return;function f(){"
                     "document.documentElement.style.setProperty('--ap-nav-height',n.offsetHeight+'px');}"
                     "f();window.addEventListener('resize',f);})();")
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'")


@functools.cache
def stylesheet() -> str:
    """The page's CSS (a static file shipped with the package, so it can be edited as CSS)."""
    with open(CSS_FILE, encoding="utf-8") as handle:
        return handle.read()


def render_page(ctx, sections: list, total: float) -> str:
    """The HTML of the page: header, navigation, the built sections and a footer with timings and files.

    Args:
        ctx: the :class:`~attn_plugins.report.context.ReportContext` the sections were built from.
        sections: the :class:`~attn_plugins.report.markup.Section` results, in page order.
        total: seconds the whole report took.

    Returns:
        The document.
    """
    model_name = type(ctx.model).__name__
    nav = "".join(f'<a href="#{s.id}" class="{"" if s.status == "ok" else "ap-off"}">{esc(s.title)}</a>'
                  for s in sections)
    body = []
    for s in sections:
        note = f'<p class="ap-note">{esc(s.note)}</p>' if s.note else ""
        body.append(f'<section id="{s.id}" class="ap-section ap-{s.status}" data-status="{s.status}">'
                    f"<h2>{esc(s.title)}</h2>{note}{s.body}</section>")
    timings = "".join(f"<tr><td>{esc(s.title)}</td><td>{esc(s.status)}</td><td>{s.seconds:.1f} s</td></tr>"
                      for s in sections)
    files = ", ".join(f'<a href="{esc(f)}">{esc(f)}</a>' for f in sorted(set(ctx.files)))
    first = ctx.texts[0]
    preview = first if len(first) <= 80 else first[:77] + "..."
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>attn-plugins report: {esc(model_name)}</title><style>\n{stylesheet()}</style></head>\n<body>\n"
        f'<header class="ap-header"><h1>Attention report: {esc(model_name)}</h1>'
        f"<p>{esc(ctx.source)} &middot; {len(ctx.texts)} input(s), the first: &ldquo;{esc(preview)}&rdquo;</p>"
        f"<p>Built by attn-plugins in {total:.1f} s on {time.strftime('%Y-%m-%d %H:%M')}; works offline.</p>"
        f'</header>\n<nav class="ap-nav">{nav}</nav>\n<main>\n' + "\n".join(body) + "\n</main>\n"
        f'<footer class="ap-footer"><h3>About this report</h3><table class="ap-table"><tr><th>section</th>'
        f"<th>status</th><th>time</th></tr>{timings}<tr><td>loading the model</td><td></td>"
        f"<td>{ctx.load_seconds:.1f} s</td></tr><tr><td>capture</td><td></td>"
        f"<td>{ctx.capture_seconds:.1f} s</td></tr></table><p>Files written beside this page: {files}</p>"
        "</footer>\n<script>" + NAV_OFFSET_SCRIPT + "</script>\n</body></html>\n"
    )
