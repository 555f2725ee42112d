import json

import ase.io
from ase.build import molecule
from ase.calculators.emt import EMT

from openjmp.cli.main import main


def test_inspect_json(tmp_path, capsys):
    frames = []
    for name in ("H2O", "CH4", "NH3"):
        atoms = molecule(name)
        atoms.calc = EMT()
        atoms.get_potential_energy()
        atoms.get_forces()
        frames.append(atoms)
    path = tmp_path / "mols.extxyz"
    ase.io.write(path, frames)
    assert main(["inspect", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 3
    assert out["atoms"] == 3 + 5 + 4
    assert out["elements"] == {"C": 1, "H": 9, "N": 1, "O": 1}
    energies = [f.get_potential_energy() for f in frames]
    assert abs(out["energy"]["mean"] - sum(energies) / 3) < 1e-9
    assert out["forces"]["count"] == 12 * 3
    assert main(["inspect", str(path)]) == 0  # table form


def test_inspect_missing_file(tmp_path, capsys):
    # a user error: one line naming the file, exit status 2 (the traceback with --debug)
    assert main(["inspect", str(tmp_path / "nope.xyz")]) == 2
    assert "no such file" in capsys.readouterr().err
