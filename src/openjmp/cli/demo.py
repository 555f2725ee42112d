"""``openjmp demo``: the main job on the embedded default = the miniature JMP study.

Fine-tunes every mini task from the shipped ``openjmp-mini`` backbone and from scratch (same data,
same budget) and writes ``report.md`` with the comparison (see ``openjmp study --help``).
"""

from __future__ import annotations

from pathlib import Path


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__)
    p.add_argument("--out", type=Path, default=Path("study"), help="output folder (default: ./study)")
    p.add_argument("--workers", type=int, default=2, help="fine-tuning runs in parallel")
    p.set_defaults(func=run)


def run(args) -> int:
    from openjmp.cli.main import main

    return main(["study", "--out", str(args.out), "--workers", str(args.workers)])
