"""``attn-plugins``: a thin command line over capture, records and the report."""

from __future__ import annotations

import argparse
import os
import sys

MAX_TOKENS_DEFAULT = 512


def load_model(path: str | None):
    """A model and tokenizer from a local directory (default: the bundled MiniLM), never from a hub."""
    from .loading import LoadError, bundled_model_path, load_model_dir

    try:
        return load_model_dir(path or bundled_model_path())
    except LoadError as exc:
        raise SystemExit(f"error: {exc}") from None


def _read_texts(args) -> list[str]:
    texts = list(args.text or [])
    if getattr(args, "text_file", None):
        try:
            with open(args.text_file, encoding="utf-8") as handle:
                texts += [line.strip() for line in handle if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(f"error: cannot read --text-file {args.text_file!r}: {exc}") from None
    if not texts:
        raise SystemExit("error: give at least one --text (or --text-file)")
    if any(not t.strip() for t in texts):
        raise SystemExit("error: --text must not be empty")
    return texts


def capture_texts(model, tokenizer, texts: list[str], max_tokens: int, layers=None, heads=None, *,
                  max_bytes=None, stream_to=None):
    """Run ``texts`` through ``model`` inside a capture; refuse over-long input with a clear message."""
    import torch

    import attn_plugins as ap

    limit = min(max_tokens, getattr(model.config, "max_position_embeddings", max_tokens) or max_tokens)
    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    length = encoded["input_ids"].shape[1]
    if length > limit:
        raise SystemExit(
            f"error: the input is {length} tokens long, over the limit of {limit} for this model; "
            "shorten the text or raise --max-tokens (up to the model's max_position_embeddings)"
        )
    try:
        with torch.no_grad(), ap.capture(model, tokenizer=tokenizer, layers=layers, heads=heads, max_bytes=max_bytes,
                                         stream_to=stream_to) as cap:
            model(**encoded)
    except (ap.MemoryBudgetError, FileExistsError) as exc:
        raise SystemExit(f"error: {exc}") from None
    return cap.record


def _cmd_capture(args) -> int:
    texts = _read_texts(args)
    model, tokenizer = load_model(args.model)
    record = capture_texts(model, tokenizer, texts, args.max_tokens, args.layers, args.heads,
                           max_bytes=args.max_bytes, stream_to=args.out if args.stream else None)
    path = args.out if args.stream else record.save(args.out)
    print(record.summary())
    print(f"saved {path}")
    return 0


def _cmd_info(args) -> int:
    from .errors import RecordFormatError
    from .record import AttentionRecord

    try:
        record = AttentionRecord.load(args.record)
    except (FileNotFoundError, RecordFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(record.summary())
    return 0


def _cmd_report(args) -> int:
    """The report: one offline HTML page plus the plot files (see attn_plugins.report)."""
    from .report import ReportError, build_report, read_text_file

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = list(args.text) if args.text else None
    if args.text_file:
        try:
            texts = (texts or []) + read_text_file(args.text_file)
        except ReportError as exc:
            raise SystemExit(f"error: --text-file: {exc}") from None
    try:
        path = build_report(texts=texts, out_dir=args.out, model_dir=args.model, progress=not args.quiet,
                            max_tokens=args.max_tokens)
    except ReportError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {path}")
    print(f"open it in a browser (works offline); the plots (PNG, SVG) are in {os.path.join(args.out, 'plots')}")
    return 0


def _cmd_demo(args) -> int:
    """The main job on the bundled model and the fixture sentences: the report."""
    args.model, args.text, args.text_file, args.max_tokens = None, None, None, MAX_TOKENS_DEFAULT
    return _cmd_report(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attn-plugins", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    cap = sub.add_parser("capture", help="capture attention for text and save a record")
    cap.add_argument("--text", action="append", help="input text (repeat for a batch)")
    cap.add_argument("--text-file", help="a UTF-8 file with one text per line")
    cap.add_argument("--model", help="a local model directory (default: the bundled MiniLM)")
    cap.add_argument("--out", required=True, help="record file to write (.safetensors; with --stream: a new directory)")
    cap.add_argument("--layers", type=int, nargs="+", help="layer indices to keep (default: all)")
    cap.add_argument("--heads", type=int, nargs="+", help="head indices to keep (default: all)")
    cap.add_argument("--max-tokens", type=int, default=MAX_TOKENS_DEFAULT, help="refuse longer inputs")
    cap.add_argument("--max-bytes", help="memory guard budget, e.g. 2GB (default: half the free memory)")
    cap.add_argument("--stream", action="store_true",
                     help="write each layer to --out (a directory) as it is produced; open it memory-mapped")
    cap.set_defaults(func=_cmd_capture)

    info = sub.add_parser("info", help="print a readable summary of a record file")
    info.add_argument("record")
    info.set_defaults(func=_cmd_info)

    report = sub.add_parser("report", help="write the offline HTML report (BertViz, heatmaps, head statistics, "
                                           "clustering, diagnostics, saliency) and its plot files")
    report.add_argument("--model", help="a local model directory (default: the bundled MiniLM)")
    report.add_argument("--text", action="append", help="input text (repeat for several; default: fixture sentences)")
    report.add_argument("--text-file", help="a UTF-8 file with one text per line")
    report.add_argument("--out", default="out", help="output directory (default: out)")
    report.add_argument("--max-tokens", type=int, default=MAX_TOKENS_DEFAULT, help="refuse longer inputs")
    report.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    report.set_defaults(func=_cmd_report)

    demo = sub.add_parser("demo", help="the report on the bundled model and a few fixture sentences")
    demo.add_argument("--out", default="out", help="output directory")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_cmd_demo)

    from .corpus.command import add_parser as add_corpus_parser

    add_corpus_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # bad selection etc.: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
