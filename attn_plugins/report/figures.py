"""Rendering the report's figures beside the sections that make them.

Drawing a figure to PNG is pure matplotlib work that no section waits for, and it was half of the
report's time. On Linux each figure is rendered in a forked child process (it sees the figure as it
was when drawn, copy-on-write; no pickling, no second import of matplotlib) while the report goes on
with the next section; the page is assembled once every child is done. Elsewhere (no ``fork``), or
if a child fails, the figure is rendered in the report's own process: the PNG is the same.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import struct
import sys
import tempfile
import warnings
from collections.abc import Iterator

from .markup import esc

PLOT_DIR = "plots"
SCREEN_DPI = 100  # figures in the page: one CSS pixel per pixel
FIGURE_FORMATS = ("png", "svg", "pdf")  # print versions written to plots/ when asked for


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes, from the header; (0, 0) for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return (0, 0)


def screen_png(fig) -> bytes:
    """The figure as the page shows it: PNG at :data:`SCREEN_DPI`, in the paper style, white, tight box."""
    from ..plots.canvas import png_bytes

    return png_bytes(fig, SCREEN_DPI, pad_inches=0.02)


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers() -> int:
    """How many figures may render at once in child processes: 0 (render in-process) without a
    safe ``fork`` (only Linux: macOS system frameworks are not fork-safe), else the usable CPUs (at most 4)."""
    if not (sys.platform.startswith("linux") and hasattr(os, "fork")):
        return 0
    return max(1, min(4, usable_cpus()))


class FigureRenderer:
    """Renders figures for one report: :meth:`submit` returns a placeholder for the page at once,
    :meth:`fill` puts the finished ``<figure>`` in its place, :meth:`close` reaps every child.

    Args:
        out_dir: the report's directory (print versions go to its ``plots/``).
        formats: print formats to write as well (``"png"`` at 300 dpi, ``"svg"``, ``"pdf"``).
        workers: child processes at once (default :func:`default_workers`; 0 renders in-process).
    """

    def __init__(self, out_dir: str, formats=(), workers: int | None = None) -> None:
        self.out_dir = out_dir
        self.plot_dir = os.path.join(out_dir, PLOT_DIR)
        self.formats = tuple(formats)
        self.workers = default_workers() if workers is None else max(0, int(workers))
        self.files: list[str] = []
        self._jobs: list[dict] = []  # name, fig, caption, alt, pid (None: rendered here), data
        self._tmp: str | None = None

    # ----- the parent's side -------------------------------------------------------------------------
    @contextlib.contextmanager
    def sharing_cores(self) -> Iterator[None]:
        """Around one section: while figures render in children, run this process's torch work
        (the saliency sections' forward and backward passes) on the cores the running children
        leave (at least one thread), and restore torch's thread count after. torch's worker threads
        spin while they wait for each other; on a core a child is drawing on, that spinning costs as
        much CPU as the work (on 2 CPUs it made the saliency section cost 3x its CPU time). Once
        every child is done, sections get all of torch's threads again."""
        torch = sys.modules.get("torch")
        if not self.workers or torch is None:
            yield
            return
        self._pump()  # reap the children that are done, start waiting figures
        busy = sum(1 for job in self._jobs if job["pid"] is not None)
        before = torch.get_num_threads()
        wanted = max(1, min(before, usable_cpus() - busy)) if busy else before
        if wanted != before:
            torch.set_num_threads(wanted)
        try:
            yield
        finally:
            if wanted != before:
                torch.set_num_threads(before)

    def submit(self, name: str, fig, caption: str, alt: str | None = None, screen: bool = True) -> str:
        """Start rendering ``fig`` (in a child when one is free, else later); returns a placeholder
        that :meth:`fill` replaces by its ``<figure>``.

        Args:
            name: the figure's file name in ``plots/`` (no extension).
            fig: a matplotlib Figure, or a function of no arguments that makes one: then the figure
                is drawn in the child too (setting hundreds of token tick labels is as slow as rendering them).
            caption, alt: the caption under the figure and the image's alt text (default: the caption).
            screen: show the figure in the page; ``False``: only write its print versions (when formats
                were asked for) and link them, for content the page shows otherwise (a shaded table).

        Returns:
            The placeholder.
        """
        if not screen and not self.formats:
            return ""  # nothing to draw
        for fmt in self.formats:
            self.files.append(os.path.join(PLOT_DIR, f"{name}.{fmt}"))
        job = {
            "screen": screen,
            "name": name,
            "fig": fig,
            "caption": caption,
            "alt": alt,
            "pid": None,
            "data": None,
            "key": len(self._jobs),
            "started": False,
        }
        self._jobs.append(job)
        if self.workers:
            import matplotlib.figure  # noqa: F401 - imported once here, not in every child

            self._pump()
        else:
            self._render_here(job)
        return self._placeholder(job["key"])

    def _pump(self) -> None:
        """Reap the children that are done and start waiting figures while child slots are free (never blocks)."""
        for job in self._jobs:
            if job["pid"] is None:
                continue
            try:
                done, status = os.waitpid(job["pid"], os.WNOHANG)
            except ChildProcessError:
                done, status = job["pid"], 1
            if done:
                self._collect(job, status)
        for job in self._jobs:
            if job["started"] or job["data"] is not None:
                continue
            if sum(1 for j in self._jobs if j["pid"] is not None) >= self.workers:
                break
            job["started"] = True
            job["pid"] = self._fork(job)
            if job["pid"] is None:  # no fork possible: render here
                self._render_here(job)

    def fill(self, html: str) -> str:
        """``html`` with every placeholder replaced by its figure (waiting for the children first).

        Raises:
            Exception: whatever drawing a figure raised (its child failed, so it was drawn here again).
        """
        if "<!--ap-figure:" not in html:
            return html
        for job in self._jobs:
            marker = self._placeholder(job["key"])
            if marker in html:
                html = html.replace(marker, self._markup(self._finished(job)))
        return html

    def _finished(self, job: dict) -> dict:
        """``job`` rendered: by its child, or here (the report has nothing else to do by now: the
        figures still waiting for a child slot are started in children or rendered here meanwhile)."""
        while job["data"] is None:
            if job["pid"] is not None:
                self._reap(job)
            elif not job["started"]:
                job["started"] = True
                self._render_here(job)
            else:  # its child failed: render here (its print versions too)
                self._render_here(job)
            self._pump()
        job["fig"] = None
        return job

    def close(self) -> None:
        """Reap every child (a report that failed half way leaves none behind) and remove the scratch folder."""
        for job in self._jobs:
            if job["pid"] is not None:
                self._reap(job)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @staticmethod
    def _placeholder(key: int) -> str:
        # a comment the escaped page text can never contain (every "<" in it is escaped)
        return f"<!--ap-figure:{key}-->"

    def _links(self, name: str) -> str:
        """Links to a figure's print versions in ``plots/``."""
        return ", ".join(
            f'<a href="{esc(PLOT_DIR)}/{esc(name)}.{esc(fmt)}">{esc(fmt.upper())}</a>' for fmt in self.formats
        )

    def _markup(self, job: dict) -> str:
        if not job["screen"]:
            return f'<p class="ap-files">{esc(job["caption"])}: {self._links(job["name"])}</p>'
        data = job["data"]
        width, _ = png_size(data)
        css_width = f' width="{width}"' if width else ""
        encoded = base64.b64encode(data).decode("ascii")
        files = f' <span class="ap-files">({self._links(job["name"])})</span>' if self.formats else ""
        return (
            f'<figure class="ap-fig" data-plot="{esc(job["name"])}"><img src="data:image/png;base64,{encoded}"'
            f'{css_width} alt="{esc(job["alt"] or job["caption"])}"><figcaption>{esc(job["caption"])}{files}'
            "</figcaption></figure>"
        )

    def _render_here(self, job: dict) -> None:
        from ..plots import save

        fig = job["fig"]() if callable(job["fig"]) else job["fig"]  # a factory is drawn where it renders
        for fmt in self.formats:
            save(fig, os.path.join(self.plot_dir, f"{job['name']}.{fmt}"))
        job["data"] = screen_png(fig) if job["screen"] else b""

    def _reap(self, job: dict) -> None:
        """Wait for ``job``'s child and read its PNG (left ``None`` if the child failed)."""
        try:
            _, status = os.waitpid(job["pid"], 0)
        except ChildProcessError:
            status = 1
        self._collect(job, status)

    def _collect(self, job: dict, status: int) -> None:
        job["pid"] = None
        path = self._png_path(job)
        if status == 0 and os.path.exists(path):
            with open(path, "rb") as handle:
                job["data"] = handle.read()

    def _png_path(self, job: dict) -> str:
        return os.path.join(self._tmp or "", f"{job['key']}.png")

    def _fork(self, job: dict) -> int | None:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="attn-report-figures-")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork with threads running
                pid = os.fork()
        except OSError:
            return None
        if pid == 0:  # the child: render, write, and leave without running the parent's exit handlers
            code = 1
            try:
                code = self._child(job)
            finally:
                os._exit(code)
        return pid

    def _child(self, job: dict) -> int:
        torch = sys.modules.get("torch")
        if torch is not None:
            # the parent's OpenMP thread team does not exist here: a parallel torch op (a figure
            # factory's tensor maths) would wait for it forever; one thread runs ops inline, as in
            # PyTorch's own forked DataLoader workers
            torch.set_num_threads(1)
        devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - the process ends right after
        sys.stdout = sys.stderr = devnull  # a notebook's output streams belong to the parent
        warnings.simplefilter("ignore")
        try:
            self._render_here(job)
            path = self._png_path(job)
            with open(path + ".part", "wb") as handle:
                handle.write(job["data"])
            os.replace(path + ".part", path)
            return 0
        except BaseException:  # noqa: BLE001 - the parent renders the figure itself
            return 1
