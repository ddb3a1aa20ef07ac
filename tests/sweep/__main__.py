"""``python -m tests.sweep --all --out sweep.json``: the whole architecture sweep in one command.

``--types a,b`` or ``--sample`` check fewer types; ``--markdown FILE`` writes the table by family
and the failures by cause; ``--jobs`` (1-2) workers, ``--timeout`` seconds per type.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sweep", description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every type in transformers' auto mappings")
    which.add_argument("--sample", action="store_true", help="the fixed sample the test suite runs")
    which.add_argument("--types", help="comma-separated model types")
    parser.add_argument("--out", help="write every result as JSON here")
    parser.add_argument("--markdown", help="write the table and failure list as markdown here")
    parser.add_argument("--jobs", type=int, default=1, choices=(1, 2))
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    from .builder import model_types
    from .report import headline, markdown
    from .runner import run_all
    from .sample import SAMPLE

    types = model_types() if args.all else list(SAMPLE) if args.sample else args.types.split(",")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    started = time.time()

    def progress(result: dict) -> None:
        print(
            f"{result['status']:<10} {result['type']:<32} {result.get('cause') or ''} "
            f"{(result.get('detail') or '')[:100]}",
            flush=True,
        )

    results = run_all(types, root, timeout=args.timeout, jobs=args.jobs, progress=progress)
    print(headline(results), f"in {time.time() - started:.0f}s")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1, default=str)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
