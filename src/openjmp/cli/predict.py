"""openjmp predict: energies, forces, stress and properties of every structure of a file.

Reads any supported format (``openjmp.data.readers``: extxyz, ASE db, LMDB, HDF5, ...), predicts
with one head of an openjmp model file in batches bounded by ``--max-atoms``, and writes extxyz
(or an ASE database when OUTPUT ends in .db): predictions are the structure's calculator
results (energy, free_energy, per-atom energies, forces, stress for fully periodic structures),
properties of scalar / classification heads go to ``atoms.info[name]``. A model file without an
energy head (fine-tuned on properties only) writes its properties alone. Forces follow the
head's own convention (as the ASE calculator) unless ``--forces`` says otherwise. Labels the input carried are kept as
``ref_energy`` / ``ref_stress`` (info) and ``ref_forces`` (per-atom array). The output is written
to a temporary file and moved into place.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="structures (any openjmp reader format)")
    p.add_argument("--model", "--checkpoint", dest="model", required=True, metavar="NAME|PATH",
                   help="registered model name (openjmp-mini; openjmp models list) or openjmp model file "
                        "(e.g. runs/finetune-mini/rmd17_ethanol/model.pt); --checkpoint is an alias")
    p.add_argument("--out", type=Path, help="output .extxyz / .xyz or .db "
                   "(default: <input name>.pred.extxyz in the current folder)")
    p.add_argument("--head", help="energy head name (default: fine-tuned energy head, else the "
                   "first pre-training head)")
    p.add_argument("--max-atoms", type=int, default=2000, help="atoms per batch (memory bound)")
    p.add_argument("--forces", choices=["gradient", "direct"], default=None,
                   help="force mode: gradient (-dE/dx, conservative) or direct (the head's force MLP, not conservative); default: the head's trained convention (pre-training heads: direct), as the calculator")
    p.add_argument("--no-stress", action="store_true", help="skip stress of periodic structures")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="compute precision")
    p.add_argument("--unknown-elements", choices=["warn", "error", "ignore"], default="warn",
                   help="elements the head was not trained on")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from openjmp.cli.common import add_reader_arguments, add_split_arguments

    add_reader_arguments(p)
    add_split_arguments(p)
    p.set_defaults(func=run)


def prediction_atoms(record, item: dict):
    """An ``ase.Atoms`` of ``record`` carrying the predictions of ``item`` (see module doc)."""
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.stress import full_3x3_to_voigt_6_stress

    atoms = record.to_atoms()
    atoms.calc = None
    if record.energy is not None:
        atoms.info["ref_energy"] = float(record.energy)
    if record.forces is not None:
        atoms.arrays["ref_forces"] = np.asarray(record.forces, dtype=np.float64)
    if record.stress is not None:
        atoms.info["ref_stress"] = np.asarray(record.stress, dtype=np.float64).reshape(-1)
    for name, value in item["properties"].items():
        if name in atoms.info:
            atoms.info[f"ref_{name}"] = atoms.info.pop(name)
        atoms.info[name] = value
    results = {}
    if "energy" in item:
        results = {"energy": item["energy"], "free_energy": item["energy"]}
    for key in ("energies", "forces"):
        if key in item:
            results[key] = item[key]
    if "stress" in item:
        results["stress"] = full_3x3_to_voigt_6_stress(item["stress"])
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


class _Writer:
    """extxyz (streamed) or ASE db, written to a temporary file then moved into place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.is_db = path.suffix.lower() == ".db"
        fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".extxyz",
                                        dir=path.parent)
        os.close(fd)
        from openjmp.checkpoints.format import public_file_mode

        os.chmod(self.tmp, public_file_mode())  # mkstemp makes 0600
        if self.is_db:
            import ase.db

            os.unlink(self.tmp)
            self.db = ase.db.connect(self.tmp, type="db")
        else:
            self.fh = open(self.tmp, "w")  # noqa: SIM115 (closed in close())

    def write(self, atoms) -> None:
        if self.is_db:
            kv = {k: v for k, v in atoms.info.items()
                  if isinstance(v, (int, float, str, bool)) and k.isidentifier()}
            self.db.write(atoms, key_value_pairs=kv)
        else:
            import ase.io

            ase.io.write(self.fh, atoms, format="extxyz")

    def close(self, ok: bool) -> None:
        if not self.is_db:
            self.fh.close()
        if ok:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.unlink(self.tmp)


def run(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from openjmp.cli.common import check_device, open_reader, select_records
    from openjmp.inference import load_predictor, split_results

    console = Console(stderr=True)
    check_device(args.device)
    predictor = load_predictor(args.model, head=args.head, device=args.device,
                               dtype=args.dtype, forces=args.forces, stress=not args.no_stress,
                               unknown_elements=args.unknown_elements)
    out = args.out or Path(f"{args.input.name.split('.')[0] or 'structures'}.pred.extxyz")
    if args.splits is not None:  # select by the ids of a run's splits file (needs the whole source)
        selected = select_records(args, args.input)
        total = len(selected)

        def records():
            yield from selected
    else:  # streamed: a source of any size
        reader = open_reader(args, args.input)
        try:
            total = len(reader) if args.split is None else None  # type: ignore[arg-type]
        except TypeError:
            total = None

        def records():
            for item in reader:
                if args.split is None or item.split == args.split:
                    yield item.record

    writer = _Writer(out)
    count = atoms_done = 0
    ok = False
    try:
        with Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[atoms]} atoms"), TimeElapsedColumn(),
                      console=console, disable=args.no_progress or not console.is_terminal) as progress:
            task = progress.add_task("predict", total=total, atoms=0)
            for group, result in predictor.predict(records(), max_atoms=args.max_atoms):
                for record, item in zip(group, split_results(group, result)):
                    writer.write(prediction_atoms(record, item))
                count += len(group)
                atoms_done += sum(r.natoms for r in group)
                progress.update(task, advance=len(group), atoms=atoms_done)
        ok = True
    finally:
        writer.close(ok)
    console.print(f"{count} structures ({atoms_done} atoms) -> {out} "
                  f"[head {predictor.head_name or 'none (properties only)'}, forces {predictor.forces}]")
    return 0
