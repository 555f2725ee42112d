"""Helpers shared by the verbs."""

from __future__ import annotations

from pathlib import Path


def check_device(device: str) -> None:
    """A ``--device`` this machine has, else a one-line user error (exit status 2)."""
    from openjmp.cli.main import UserError

    text = str(device)
    try:
        import torch

        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {text}: not a torch device (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {text}: CUDA is not available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UserError(f"--device {text}: MPS is not available on this machine (use --device cpu)")


# ---------------------------------------------------------------------------- reading records
def add_reader_arguments(parser, *, skip_bad: bool = True) -> None:
    """The reader options every verb that reads a data source takes (as ``data convert``)."""
    from openjmp.data.readers import FORMATS

    parser.add_argument("--format", default=None,
                        help="reader format (detected from the path when omitted): " + ", ".join(FORMATS))
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="reader option (repeatable), value parsed as YAML, e.g. -o split=jmp, "
                             "-o energy_key=REF_energy (docs/data.md)")
    if skip_bad:
        parser.add_argument("--skip-bad", action="store_true",
                            help="skip (and count) bad records instead of failing")
    parser.add_argument("--no-validate", action="store_true", help="do not run structure checks on records")


def add_split_arguments(parser, *, model_relative: bool = False) -> None:
    """``--split NAME`` and ``--splits FILE`` (see `select_records`)."""
    where = " (default: the splits.json next to the model file, when the source defines no splits)" \
        if model_relative else ""
    parser.add_argument("--split", default=None,
                        help="only the records of this split: the split the source defines (rMD17 -o split=jmp, "
                             "MatBench folds, a store), else the one listed in --splits" + where)
    parser.add_argument("--splits", type=Path, default=None, metavar="SPLITS.json",
                        help="splits file written by openjmp finetune (RUN/splits.json): select --split by its "
                             "record ids; without a data source, read the source it names")


def parse_reader_options(items: list[str]) -> dict:
    """``["split=jmp", "train_size=100"]`` → ``{"split": "jmp", "train_size": 100}`` (YAML values)."""
    import yaml

    options = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"reader option {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        options[key.strip().replace("-", "_")] = yaml.safe_load(value) if value else None
    return options


def open_reader(args, path, format: str | None = None, options: dict | None = None):
    """The reader of ``path`` with the verb's reader arguments (``-o`` over ``options``)."""
    from openjmp.cli.main import UserError
    from openjmp.data.readers import read

    try:
        options = {**(options or {}), **parse_reader_options(args.option)}
    except ValueError as exc:
        raise UserError(f"-o: {exc}") from None
    if args.no_validate:
        options["validate"] = False
    try:
        return read(path, format or args.format, skip_bad=getattr(args, "skip_bad", False), **options)
    except TypeError as exc:  # an option this reader does not take
        raise UserError(f"{path}: {exc}") from None


def select_records(args, data: Path | None, default_splits: Path | None = None, log=print) -> list:
    """The records a verb works on: every record of ``data``, or of ``--split``.

    ``--split NAME`` takes the records the source labels NAME; when the source labels none,
    the records that a splits file (``--splits``, else ``default_splits`` when it exists)
    lists under NAME. ``--splits`` given explicitly always selects by its ids. Without
    ``data`` the splits file's own source is read (with its format and reader options).
    """
    from collections import Counter

    from openjmp.cli.main import UserError
    from openjmp.data.split_file import SplitFile

    if args.splits is not None and args.split is None:
        raise UserError("--splits needs --split NAME (train, val or test)")
    split_file = SplitFile.read(args.splits) if args.splits is not None else None
    if data is None:
        if split_file is None and default_splits is not None and default_splits.exists():
            split_file = SplitFile.read(default_splits)
            log(f"data: the source of {default_splits} ({split_file.source_path})")
        if split_file is None:
            raise UserError("no data source: give --data (or --splits RUN/splits.json)")
        reader = open_reader(args, split_file.source, args.format or split_file.source_format,
                             split_file.reader_options)
        data = split_file.source
    else:
        reader = open_reader(args, data)
    if args.split is None:
        return [record for _, record in reader]
    if split_file is not None:
        return split_file.select((record for _, record in reader), args.split, where=str(data))
    items = list(reader)
    labelled = [record for split, record in items if split == args.split]
    if labelled:
        return labelled
    found = Counter(split for split, _ in items if split is not None)
    if found:
        raise UserError(f"{data}: no records in split {args.split!r} (its splits: "
                        f"{', '.join(f'{k} {v}' for k, v in sorted(found.items()))})")
    if default_splits is not None and default_splits.exists():
        log(f"{data} defines no splits: selecting {args.split!r} by the record ids in {default_splits}")
        return SplitFile.read(default_splits).select((r for _, r in items), args.split, where=str(data))
    raise UserError(f"{data} defines no splits (so no {args.split!r} split); pass --splits RUN/splits.json "
                    "(written by openjmp finetune) "
                    "or a reader option that assigns them (e.g. -o split=jmp for rMD17)")
