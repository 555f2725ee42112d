"""``openjmp inspect FILE``: summarise any structure file ASE reads."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from openjmp.data.readers.ase import iter_ase_records  # noqa: F401  (moved there; re-exported)


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__)
    p.add_argument("file", type=Path, help="extxyz, ASE db, traj, cif, ... (anything ase.io reads)")
    p.add_argument("--format", default=None, help="ASE format name (detected when omitted)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from openjmp.data.summary import summarize

    summary = summarize(iter_ase_records(args.file, args.format)).as_dict()
    summary["file"] = str(args.file)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    console = Console()
    table = Table(title=f"{args.file}", show_header=False)
    table.add_row("structures", str(summary["records"]))
    table.add_row("atoms", str(summary["atoms"]))
    table.add_row("periodic structures", str(summary["periodic_records"]))
    table.add_row("elements", ", ".join(f"{k} {v}" for k, v in summary["elements"].items()))
    for key, unit in (("energy", "eV"), ("forces", "eV/Å")):
        s = summary[key]
        if s["count"]:
            table.add_row(
                f"{key} [{unit}]",
                f"n={s['count']} mean={s['mean']:.6g} std={s['std']:.6g} min={s['min']:.6g} max={s['max']:.6g}",
            )
    for name, s in summary["targets"].items():
        if s["count"]:
            table.add_row(f"target {name}", f"n={s['count']} mean={s['mean']:.6g} std={s['std']:.6g}")
    console.print(table)
    return 0
