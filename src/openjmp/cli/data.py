"""``openjmp data convert|inspect|export|generate``: read datasets, build training stores, summarise, export.

- ``convert SRC --format NAME --out DIR``: stream any supported source into a store (sharded
  LMDB + metadata; atomic and resumable; see `openjmp.data.store`).
- ``inspect PATH``: counts and statistics (energy eV, forces eV/Å, targets) of a source or store.
- ``export SRC --out FILE``: records of a source or store (or of one split) as extxyz / ASE db.
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

from openjmp.cli.common import add_reader_arguments, add_split_arguments, open_reader

EXPORT_DOC = """Write records to a plain file any tool reads: extxyz (energy, forces, stress as ASE
results; graph-level targets in info; source ids in info["openjmp_source"], so that a re-read
file keeps its record ids and a run's splits.json still selects it) or an ASE database (.db).

  openjmp data export store/ --split val --out val.extxyz
  openjmp data export --splits runs/ethanol/splits.json --split test --out test.extxyz
"""


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
    c.add_argument("src", type=Path, help="source file or folder (or asset://mini/...)")
    c.add_argument("--out", type=Path, required=True, help="store folder to create")
    c.add_argument(
        "--shard-size", type=int, default=10_000, help="records per LMDB shard (default 10000)"
    )
    c.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_reader_arguments(c)
    c.set_defaults(func=run_convert)

    i = sub.add_parser("inspect", help="summarise a dataset or a store")
    i.add_argument("path", type=Path, help="source file or folder, or a store")
    i.add_argument("--split", default=None, help="only this split")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_reader_arguments(i)
    i.set_defaults(func=run_inspect)

    e = sub.add_parser("export", help="write records of any source or store to extxyz or an ASE database",
                       description=EXPORT_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("src", type=Path, nargs="?", default=None,
                   help="source file or folder, or a store (default: the source named by --splits)")
    e.add_argument("--out", type=Path, required=True, help="output file: .extxyz / .xyz, or .db (ASE database)")
    e.add_argument("--max-records", type=int, default=None, help="only the first N selected records")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_reader_arguments(e)
    add_split_arguments(e)
    e.set_defaults(func=run_export)

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


def _fail(message: str) -> int:
    """One line ``openjmp data VERB: message`` on stderr, exit status 2."""
    verb = next((a for a in sys.argv[1:] if a in ("convert", "inspect", "generate", "export")), None)
    label = "openjmp data" + (f" {verb}" if verb else "")
    text = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"{label}: {text}", file=sys.stderr)
    return 2


def run_convert(args) -> int:
    from openjmp.data.readers.base import DataFormatError
    from openjmp.data.store import convert

    try:
        reader = open_reader(args, args.src)
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
        reader = open_reader(args, args.path)
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


def run_export(args) -> int:
    """``openjmp data export``: selected records → extxyz / ASE db (temp file, then rename)."""
    import os

    import ase.io

    from openjmp.cli.common import select_records
    from openjmp.cli.main import UserError

    suffix = args.out.suffix.lower()
    if suffix not in (".extxyz", ".xyz", ".db"):
        raise UserError(f"--out {args.out}: use .extxyz / .xyz (extended XYZ) or .db (ASE database)")
    if args.out.exists() and not args.overwrite:
        raise UserError(f"--out {args.out} exists (use --overwrite to replace it)")
    records = select_records(args, args.src)
    if args.max_records is not None:
        records = records[: args.max_records]
    if not records:
        raise UserError(f"{args.src or args.splits}: no records to export")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp{suffix}")
    tmp.unlink(missing_ok=True)
    try:
        frames = [record.to_atoms() for record in records]
        ase.io.write(str(tmp), frames, format="db" if suffix == ".db" else "extxyz")
        os.chmod(tmp, 0o644)
        tmp.replace(args.out)
    finally:
        tmp.unlink(missing_ok=True)
    atoms = sum(r.natoms for r in records)
    print(f"wrote {len(records):,} records ({atoms:,} atoms) to {args.out}")
    return 0
