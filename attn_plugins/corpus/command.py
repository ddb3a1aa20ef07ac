"""The ``attn-plugins corpus`` subcommand (its arguments and what it prints)."""

from __future__ import annotations

from ..inputs import MAX_TOKENS_DEFAULT


def add_parser(sub) -> None:
    """Add ``corpus`` to the subparsers ``sub`` of the ``attn-plugins`` command line."""
    corpus = sub.add_parser(
        "corpus",
        help="per-head attention statistics over many texts (JSONL), resumable, written as Parquet",
        description="Per-head statistics (entropy, distance, special/previous/next/self shares...) of every text "
        "of a JSONL file, one row per (text, layer, head) in Parquet parts plus a per-head summary. "
        "Rerunning the same command after an interruption reuses the finished chunks.",
    )
    corpus.add_argument(
        "--data", required=True, help="JSONL file: one object per line with a text field and an optional 'id'"
    )
    corpus.add_argument("--out", required=True, help="output directory (manifest.json, parts/, summary.parquet)")
    corpus.add_argument("--model", help="a local model directory (default: the bundled MiniLM)")
    corpus.add_argument("--engine", default="local", help="local (default, in this process) or ray (Ray Data)")
    corpus.add_argument("--batch-size", type=int, default=16, help="texts per model batch (default: 16)")
    corpus.add_argument(
        "--chunk-size", type=int, default=256, help="texts per Parquet part, the unit of resumption (default: 256)"
    )
    corpus.add_argument(
        "--max-tokens",
        type=int,
        default=MAX_TOKENS_DEFAULT,
        help=f"refuse longer texts (default: {MAX_TOKENS_DEFAULT}, at most the model's max_position_embeddings)",
    )
    corpus.add_argument("--truncate", action="store_true", help="cut over-long texts to --max-tokens instead")
    corpus.add_argument("--layers", type=int, nargs="+", help="layer indices to keep (default: all)")
    corpus.add_argument("--heads", type=int, nargs="+", help="head indices to keep (default: all)")
    corpus.add_argument("--text-field", default="text", help="the JSON field holding the text (default: text)")
    corpus.add_argument("--overwrite", action="store_true", help="discard a previous run in --out")
    corpus.add_argument(
        "--workers", type=int, help="ray: actors in the pool (default: one per GPU, else one per CPU up to 8)"
    )
    corpus.add_argument(
        "--address", help="ray: address of an existing cluster (default: a private local instance on 127.0.0.1)"
    )
    corpus.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    corpus.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal (default: only on a terminal)",
    )
    corpus.set_defaults(func=run_command)


def run_command(args) -> int:
    from .run import run_corpus

    result = run_corpus(
        args.data,
        args.out,
        args.model,
        engine=args.engine,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        max_tokens=args.max_tokens,
        truncate=args.truncate,
        layers=args.layers,
        heads=args.heads,
        text_field=args.text_field,
        overwrite=args.overwrite,
        progress=False if args.quiet else (True if args.progress else None),
        workers=args.workers,
        address=args.address,
    )
    print(result.message())
    return 0
