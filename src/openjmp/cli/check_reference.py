"""``openjmp check-reference DIR``: compare our GemNet-OC with a reference fixture directory.

Reads everything from ``DIR/case.json`` (see ``openjmp.models.gemnet_oc.reference``), prints
the max absolute and relative error of every output, and exits 0 only when all are within the
fixture's recommended tolerances. The last line is a one-line summary.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", help="fixture directory holding case.json")
    p.add_argument("--dtype", choices=["float64", "float32", "both"], default="both")
    p.add_argument("--graphs", choices=["stored", "own", "both"], default="both",
                   help="use the stored graphs, openjmp-built graphs, or both (default)")
    p.add_argument("--no-batch", action="store_true", help="skip batch_all.npz")
    p.add_argument("--failures-only", action="store_true", help="print only failed rows")
    p.add_argument("--device", default="cpu", help="torch device the model runs on (cpu, cuda, cuda:1)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from openjmp.models.gemnet_oc.reference import check_reference

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print(f"check-reference: error: --device {args.device}: CUDA is not available here",
              file=sys.stderr)
        print("check-reference: FAIL: could not run (no CUDA)")
        return 2
    dtypes = ("float64", "float32") if args.dtype == "both" else (args.dtype,)
    modes = ("stored", "own") if args.graphs == "both" else (args.graphs,)
    try:
        report = check_reference(args.directory, dtypes=dtypes, graph_modes=modes,
                                 include_batch=not args.no_batch, device=args.device)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"check-reference: error: {exc}", file=sys.stderr)
        print(f"check-reference: FAIL: could not run ({type(exc).__name__})")
        return 2
    table = report.format_table()
    if args.failures_only:
        lines = table.splitlines()
        table = "\n".join([lines[0]] + [ln for ln in lines[1:] if "FAIL" in ln])
    print(table)
    print(report.summary())
    return 0 if report.passed else 1
