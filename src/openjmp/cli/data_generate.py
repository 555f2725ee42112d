"""``openjmp data generate --suite mini``: regenerate the real-physics mini datasets.

EMT for metals, adsorbates and bulk alloys; GFN2-xTB (tblite) for organic molecules. Files are
written in the on-disk layouts of the original datasets, one folder per dataset with a
``CARD.md``. Seeded and deterministic (same seed → identical files), parallel over processes,
resumable (per-chunk results are cached under ``OUT/.cache`` until a dataset is complete).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

SUITES = ("mini",)


def register(subparsers, verb: str, help_text: str) -> None:
    from openjmp.data.generate.suite import DOMAINS, SIZES

    p = subparsers.add_parser(verb, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, DOMAINS, SIZES)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser, domains, sizes) -> None:
    p.add_argument("--suite", choices=SUITES, default="mini", help="dataset suite (only 'mini')")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--size", choices=sizes, default="small",
                   help="small (the shipped one, minutes), medium (tens of thousands of "
                        "structures per pre-training domain, hours), tiny (tests)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (1 thread each)")
    p.add_argument("--domains", nargs="+", choices=sorted(domains), default=None,
                   metavar="DOMAIN", help=f"subset of {', '.join(domains)} (default: all)")
    p.add_argument("--seed", type=int, default=0, help="suite seed (default 0)")
    p.add_argument("--keep-cache", action="store_true",
                   help="keep OUT/.cache (per-chunk results) after a dataset is written")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from openjmp.data.generate.common import force_single_thread_env

    force_single_thread_env()  # before tblite is imported anywhere in this process
    from openjmp.data.generate.suite import generate_suite

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.workers < 1:
        raise SystemExit("--workers must be >= 1")
    infos = generate_suite(args.out, size=args.size, seed=args.seed, workers=args.workers,
                           domains=args.domains, progress=not args.no_progress,
                           keep_cache=args.keep_cache)
    table = Table(title=f"mini suite ({args.size}, seed {args.seed}) in {args.out}")
    for col in ("dataset", "counts", "skipped", "CPU s", "wall s"):
        table.add_column(col)
    for name, info in infos.items():
        counts = ", ".join(f"{k} {v}" for k, v in info["counts"].items())
        skipped = ", ".join(f"{k} {v}" for k, v in info["skipped"].items()) or "-"
        table.add_row(name, counts, skipped, str(info["generation"]["compute_seconds"]),
                      str(info["generation"]["wall_seconds"]))
    Console().print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m openjmp.cli.data_generate``) until ``openjmp data`` is
    wired to this module."""
    from openjmp.data.generate.suite import DOMAINS, SIZES

    parser = argparse.ArgumentParser(prog="openjmp data generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, DOMAINS, SIZES)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
