"""``attn-plugins``: a thin command line over capture, records and the report.

A user error (a bad option value, a missing or damaged file, an output path that is taken) ends
the command with one line on stderr and exit status 2, never a traceback; stdout closed early
(``attn-plugins info rec | head``) ends it quietly.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import AttnPluginsError
from .inputs import MAX_TOKENS_DEFAULT

USAGE_ERROR = 2  # argparse's exit status for a bad command line; used for every user error


class CommandError(Exception):
    """A user error the command line found itself (printed as ``error: ...``)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad command line reported in one line (``attn-plugins capture: error: ...``)
    rather than the usage text and the error."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _size(text: str) -> str:
    """``--max-bytes``: checked while parsing the command line, passed on as written."""
    from .budget import parse_bytes

    try:
        parse_bytes(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _figure_formats(text: str) -> tuple[str, ...]:
    from .report.context import FIGURE_FORMATS

    chosen = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()))
    wrong = [f for f in chosen if f not in FIGURE_FORMATS]
    if wrong or not chosen:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(FIGURE_FORMATS)}, got {text!r}"
        )
    return chosen


def _read_texts(args, required: bool = True) -> list[str] | None:
    """The texts of ``--text`` (repeated) and ``--text-file``; ``None`` when neither is given and
    they are optional (the report then uses its fixture sentences)."""
    from .errors import InputError
    from .inputs import check_texts, read_text_file

    texts = list(args.text or [])
    if getattr(args, "text_file", None):
        try:
            texts += read_text_file(args.text_file)
        except InputError as exc:
            raise CommandError(f"cannot read --text-file: {exc}") from None
    if not texts:
        if not required:
            return None
        raise CommandError("give at least one --text (or --text-file)")
    return check_texts(texts)


def _cmd_capture(args) -> int:
    from .inputs import capture_texts
    from .loading import bundled_model_path, load_model_dir

    texts = _read_texts(args)
    if not args.stream and os.path.isdir(args.out):
        raise CommandError(
            f"--out {args.out!r} is a directory; give a record file name (or add --stream to write a "
            "new record directory)"
        )
    model, tokenizer = load_model_dir(args.model or bundled_model_path())
    record = capture_texts(
        model,
        tokenizer,
        texts,
        args.max_tokens,
        layers=args.layers,
        heads=args.heads,
        max_bytes=args.max_bytes,
        stream_to=args.out if args.stream else None,
    )
    path = args.out if args.stream else record.save(args.out)
    print(record.summary())
    print(f"saved {path}")
    return 0


def _cmd_info(args) -> int:
    from .record import AttentionRecord

    print(AttentionRecord.load(args.record).summary())
    return 0


def _cmd_report(args) -> int:
    """The report: one offline HTML page plus the plot files (see attn_plugins.report)."""
    from .report import build_report

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = build_report(
        texts=_read_texts(args, required=False),
        out_dir=args.out,
        model_dir=args.model,
        progress=_progress(args),
        max_tokens=args.max_tokens,
        layers=args.layers,
        heads=args.heads,
        figures=args.figures,
    )
    print(f"wrote {path}")
    where = (
        f"; the figures ({', '.join(args.figures).upper()}) are in {os.path.join(args.out, 'plots')}"
        if args.figures
        else ""
    )
    print(f"open it in a browser (works offline){where}")
    return 0


def _progress(args) -> bool | None:
    """``--progress`` forces the bar on, ``-q`` off; by default (``None``) it shows only when stderr
    is a terminal (tqdm's ``disable=None`` convention), so redirected logs get no bars."""
    if args.quiet:
        return False
    return True if args.progress else None


def _cmd_demo(args) -> int:
    """The main job on the bundled model and the fixture sentences: the report."""
    args.model, args.text, args.text_file, args.max_tokens = None, None, None, MAX_TOKENS_DEFAULT
    args.layers = args.heads = None
    args.figures = getattr(args, "figures", ())
    return _cmd_report(args)


def _add_progress_options(parser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal (default: only on a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="attn-plugins", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    cap = sub.add_parser("capture", help="capture attention for text and save a record")
    cap.add_argument("--text", action="append", help="input text (repeat for a batch)")
    cap.add_argument("--text-file", help="a UTF-8 file with one text per line")
    cap.add_argument("--model", help="a local model directory (default: the bundled MiniLM)")
    cap.add_argument("--out", required=True, help="record file to write (.safetensors; with --stream: a new directory)")
    cap.add_argument("--layers", type=int, nargs="+", help="layer indices to keep (default: all)")
    cap.add_argument("--heads", type=int, nargs="+", help="head indices to keep (default: all)")
    cap.add_argument("--max-tokens", type=_positive, default=MAX_TOKENS_DEFAULT, help="refuse longer inputs")
    cap.add_argument("--max-bytes", type=_size, help="memory guard budget, e.g. 2GB (default: half the free memory)")
    cap.add_argument(
        "--stream",
        action="store_true",
        help="write each layer to --out (a directory) as it is produced; open it memory-mapped",
    )
    cap.set_defaults(func=_cmd_capture)

    info = sub.add_parser("info", help="print a readable summary of a record file")
    info.add_argument("record")
    info.set_defaults(func=_cmd_info)

    report = sub.add_parser(
        "report",
        help="write the offline HTML report (BertViz, heatmaps, head statistics, "
        "clustering, diagnostics, saliency) and its plot files",
    )
    report.add_argument("--model", help="a local model directory (default: the bundled MiniLM)")
    report.add_argument("--text", action="append", help="input text (repeat for several; default: fixture sentences)")
    report.add_argument("--text-file", help="a UTF-8 file with one text per line")
    report.add_argument("--out", default="out", help="output directory (default: out)")
    report.add_argument("--max-tokens", type=_positive, default=MAX_TOKENS_DEFAULT, help="refuse longer inputs")
    report.add_argument(
        "--layers", type=int, nargs="+", help="layer indices to capture and show (negative from the end; default: all)"
    )
    report.add_argument("--heads", type=int, nargs="+", help="head indices to capture and show (default: all)")
    report.add_argument(
        "--figures",
        type=_figure_formats,
        default=(),
        metavar="png,svg,pdf",
        help="also write every figure to OUT/plots in these print formats (PNG at 300 dpi); "
        "default: none, the page shows them at screen resolution",
    )
    _add_progress_options(report)
    report.set_defaults(func=_cmd_report)

    demo_help = (
        "the report on the bundled model and a few fixture sentences, written to OUT (default ./out): "
        "OUT/report.html (open it in a browser, works offline; every figure is in the page), "
        "OUT/head_stats.csv and OUT/record.safetensors"
    )
    demo = sub.add_parser("demo", help=demo_help, description=demo_help[0].upper() + demo_help[1:] + ".")
    demo.add_argument("--out", default="out", help="output directory (default: out, in the current directory)")
    _add_progress_options(demo)
    demo.set_defaults(func=_cmd_demo)

    from .corpus.command import add_parser as add_corpus_parser

    add_corpus_parser(sub)
    from .faithfulness.command import add_parser as add_faithfulness_parser

    add_faithfulness_parser(sub)
    return parser


def _os_message(exc: OSError) -> str:
    """An OSError in words: ``'out/x': Is a directory`` rather than ``[Errno 21] Is a directory: 'out/x'``."""
    if exc.strerror and exc.filename is not None:
        return f"{exc.filename!r}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for a user error)."""
    try:
        args = build_parser().parse_args(argv)
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return status
    except BrokenPipeError:
        # Python's documented recipe: stdout's reader went away (``| head``); point stdout at devnull
        # so the interpreter's own flush at exit does not fail again, and stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        message = _os_message(exc)
    except (AttnPluginsError, CommandError) as exc:
        message = str(exc)
    except ValueError as exc:  # capture's selection checks (layers, heads) are ValueErrors, not InputErrors
        message = str(exc)
    print(f"error: {message}", file=sys.stderr)
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
