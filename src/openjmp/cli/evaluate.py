"""``openjmp evaluate --model NAME|PATH [--data SRC] [--split test]``: metrics, parity plots and a
force-error histogram of a model file on any supported source. A pre-training model file is
evaluated zero-shot with one of its own heads (``--head``).

``--split test`` after ``openjmp finetune`` evaluates exactly the run's test records: those the
source labels ``test``, or, when the source defines no splits, those listed in the run's
``splits.json`` (next to the model file, or ``--splits FILE``); without ``--data`` the source
named in that file is read. Reader options as ``openjmp data convert`` (``-o KEY=VALUE``)."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers, verb: str, help_text: str) -> None:
    import argparse

    from openjmp.cli.common import add_reader_arguments, add_split_arguments

    p = subparsers.add_parser(verb, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "--checkpoint", dest="model", required=True, metavar="NAME|PATH",
                   help="registered model name (openjmp-mini; openjmp models list) or openjmp model file "
                        "(e.g. runs/finetune-mini/rmd17_ethanol/model.pt); --checkpoint is an alias")
    p.add_argument("--data", type=Path, default=None,
                   help="data source (any supported format, or asset://mini/...; default: the source in the "
                        "splits.json next to the model file)")
    add_reader_arguments(p)
    add_split_arguments(p, model_relative=True)
    p.add_argument("--head", default=None, help="energy head name (default: the model's own)")
    p.add_argument("--forces", choices=["gradient", "direct"], default=None,
                   help="force mode (default: gradient, -dE/dx, as predict and the calculator)")
    p.add_argument("--max-records", type=int, default=None, help="only the first N records (default: all)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="compute precision")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from openjmp.cli.common import check_device, select_records
    from openjmp.cli.main import UserError
    from openjmp.models.registry import resolve_model
    from openjmp.training.evaluate import evaluate_records

    check_device(args.device)
    args.model = resolve_model(args.model)  # an unknown name or missing file fails before reading data

    records = select_records(args, args.data, default_splits=Path(args.model).parent / "splits.json")
    if args.max_records:
        records = records[: args.max_records]
    if not records:
        raise UserError(f"{args.data}: no records" + (f" in split {args.split!r}" if args.split else ""))
    result = evaluate_records(args.model, records, args.out, head=args.head, dtype=args.dtype,
                              forces=args.forces, device=args.device)
    print(json.dumps(result["metrics"], indent=2))
    print(f"metrics and plots in {args.out}")
    return 0
