"""``openjmp data convert|inspect|generate``: read datasets, build training stores, summarise.

- ``convert SRC --format NAME --out DIR``: stream any supported source into a store (sharded
  LMDB + metadata; atomic and resumable; see `openjmp.data.store`).
- ``inspect PATH``: counts and statistics (energy eV, forces eV/Å, targets) of a source or store.
- ``generate``: mini datasets (implemented in ``openjmp.cli.data_generate`` when present).

Reader options go through ``-o KEY=VALUE`` (values parsed as YAML: ``-o level=wb97x_tz``,
``-o split=jmp``, ``-o subsets='[dipeptides]'``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path


def _format_help() -> str:
    from openjmp.data.readers import FORMATS

    return "format name (detected from the path when omitted): " + ", ".join(FORMATS)


def register(subparsers, verb: str, help_text: str) -> None:
    import argparse

    p = subparsers.add_parser(
        verb,
        help=help_text,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="data_verb", metavar="SUBVERB")

    c = sub.add_parser("convert", help="convert a dataset into an openjmp training store")
    c.add_argument("src", type=Path, help="source file or folder")
    c.add_argument("--format", default=None, help=_format_help())
    c.add_argument("--out", type=Path, required=True, help="store folder to create")
    c.add_argument(
        "--skip-bad", action="store_true", help="skip (and count) bad records instead of failing"
    )
    c.add_argument(
        "--shard-size", type=int, default=10_000, help="records per LMDB shard (default 10000)"
    )
    c.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_options(c)
    c.set_defaults(func=run_convert)

    i = sub.add_parser("inspect", help="summarise a dataset or a store")
    i.add_argument("path", type=Path, help="source file or folder, or a store")
    i.add_argument("--format", default=None, help=_format_help())
    i.add_argument("--split", default=None, help="only this split")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.add_argument(
        "--skip-bad", action="store_true", help="skip (and count) bad records instead of failing"
    )
    _add_options(i)
    i.set_defaults(func=run_inspect)

    # Hook for the mini-dataset generator (another module owns it): it registers itself with
    # `register(subparsers, verb, help_text)` like a top-level verb.
    if importlib.util.find_spec("openjmp.cli.data_generate") is not None:
        importlib.import_module("openjmp.cli.data_generate").register(
            sub, "generate", "generate a mini dataset"
        )
    else:
        g = sub.add_parser("generate", help="generate a mini dataset (not available in this build)")
        g.set_defaults(
            func=lambda args: _fail(
                "data generate is not available (openjmp.cli.data_generate missing)"
            )
        )
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _add_options(parser) -> None:
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader option (repeatable), value parsed as YAML, e.g. -o split=jmp",
    )
    parser.add_argument(
        "--no-validate", action="store_true", help="do not run structure checks on records"
    )


def parse_options(items: list[str]) -> dict:
    import yaml

    options = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"reader option {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        options[key.strip().replace("-", "_")] = yaml.safe_load(value) if value else None
    return options


def _fail(message: str) -> int:
    """One line ``openjmp data VERB: message`` on stderr, exit status 2."""
    verb = next((a for a in sys.argv[1:] if a in ("convert", "inspect", "generate", "export")), None)
    label = "openjmp data" + (f" {verb}" if verb else "")
    text = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"{label}: {text}", file=sys.stderr)
    return 2


def _open(args, path: Path):
    from openjmp.data.readers import read

    options = parse_options(args.option)
    if args.no_validate:
        options["validate"] = False
    return read(path, args.format, skip_bad=args.skip_bad, **options)


def run_convert(args) -> int:
    from openjmp.data.readers.base import DataFormatError
    from openjmp.data.store import convert

    try:
        reader = _open(args, args.src)
        meta = convert(
            reader,
            args.out,
            shard_size=args.shard_size,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (DataFormatError, FileNotFoundError, FileExistsError, ValueError, TypeError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print(
            f"interrupted; run the same command again to resume ({args.out}.tmp-convert kept)",
            file=sys.stderr,
        )
        return 130
    rate = meta["records"] / meta["seconds"] if meta["seconds"] > 0 else float("inf")
    skipped = ", ".join(f"{k} {v}" for k, v in meta["skipped"].items()) or "none"
    splits = ", ".join(f"{k} {v}" for k, v in meta["splits"].items()) or "none"
    print(
        f"wrote {meta['records']:,} records ({meta['atoms']:,} atoms) in {len(meta['shards'])} shard(s) to {args.out} "
        f"[{rate:,.0f} records/s]; splits: {splits}; skipped: {skipped}"
    )
    return 0


def inspect_summary(reader, split: str | None = None) -> dict:
    """Summary dict of a reader's records (only ``split`` when given)."""
    from openjmp.data.summary import RecordSummary

    summary = RecordSummary()
    for item_split, record in reader:
        if split is not None and item_split != split:
            continue
        summary.update(record, item_split)
    summary.skipped.update(reader.skipped)
    out = summary.as_dict()
    out["target_units"] = reader.target_units()
    return out


def run_inspect(args) -> int:
    from openjmp.data.readers.base import DataFormatError

    try:
        from openjmp.data.readers import detect_format

        if args.split is not None and (args.format or detect_format(args.path)) == "store":
            args.option = [*args.option, f"split={args.split}"]  # the store selects by index
        reader = _open(args, args.path)
        summary = inspect_summary(reader, args.split)
    except (DataFormatError, FileNotFoundError, ValueError, TypeError, KeyError) as exc:
        return _fail(str(exc).strip("'\""))
    summary = {"path": str(args.path), "format": reader.name, **summary}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    _print_table(summary)
    return 0


def _print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{summary['path']} ({summary['format']})", show_header=False)
    table.add_row("records", f"{summary['records']:,}")
    table.add_row("atoms", f"{summary['atoms']:,}")
    table.add_row("periodic records", f"{summary['periodic_records']:,}")
    table.add_row("elements", ", ".join(f"{k} {v:,}" for k, v in summary["elements"].items()))
    for key, unit in (("energy", "eV"), ("forces", "eV/Å")):
        s = summary[key]
        if s["count"]:
            table.add_row(
                escape(f"{key} [{unit}]"),
                f"n={s['count']:,} mean={s['mean']:.6g} std={s['std']:.6g} min={s['min']:.6g} max={s['max']:.6g}",
            )
    units = summary.get("target_units", {})
    for name, s in summary["targets"].items():
        if s["count"]:
            unit = f" [{units[name]}]" if name in units else ""
            table.add_row(
                f"target {name}{unit}", f"n={s['count']:,} mean={s['mean']:.6g} std={s['std']:.6g}"
            )
    if summary["splits"]:
        table.add_row("splits", ", ".join(f"{k} {v:,}" for k, v in summary["splits"].items()))
    if summary["skipped"]:
        table.add_row("skipped", ", ".join(f"{k} {v:,}" for k, v in summary["skipped"].items()))
    Console().print(table)
