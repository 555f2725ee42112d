"""QM9 readers: the original xyz archive/folder (with its pitfalls) and the PyG ``qm9_v3.pt``."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch

from openjmp.data.readers import DataFormatError, detect_format, read
from openjmp.data.readers.qm9 import PROPERTIES, qm9_float
from openjmp.units import BOHR2_TO_ANGSTROM2, BOHR3_TO_ANGSTROM3, DEBYE_TO_E_ANGSTROM, HARTREE_TO_EV

# gdb 1 (methane) as in the archive, with one coordinate in Mathematica notation
METHANE = """5
gdb 1\t157.7118\t157.70997\t157.70699\t0.\t13.21\t-0.3877\t0.1171\t0.5048\t35.3641\t0.044749\t-40.47893\t-40.476062\t-40.475117\t-40.498597\t6.469\t
C\t-0.0126981359\t 1.0858041578\t 0.0080009958\t-0.535689
H\t 0.002150416\t-0.0060313176\t 0.0019761204\t 0.133921
H\t 1.0117308433\t 1.4637511618\t 2.5*^-6\t 0.133922
H\t-0.540815069\t 1.4475266138\t-0.8766437152\t 0.133923
H\t-0.5238136345\t 1.4379326443\t 0.9063972942\t 0.133923
1341.307\t1341.3284\t1341.365\t1562.6731\t1562.7453\t3038.3205\t3151.6034\t3151.6788\t3151.7078
C\tC
InChI=1S/CH4/h1H4\tInChI=1S/CH4/h1H4
"""

WATER = """3
gdb 3\t799.58812\t437.90386\t282.94545\t1.8511\t6.31\t-0.2928\t0.0687\t0.3615\t19.0002\t0.021375\t-76.404702\t-76.401867\t-76.400922\t-76.422349\t6.002\t
O\t-0.0343604951\t 0.9775395708\t 0.0076015923\t-0.589706
H\t 0.0647664456\t 0.0205721419\t 0.0015346341\t 0.294853
H\t 0.8717903737\t 1.3006194807\t 0.0006493744\t 0.294853
1658.5\t3871.5\t3996.8
O\tO
InChI=1S/H2O/h1H2\tInChI=1S/H2O/h1H2
"""

AMMONIA = WATER.replace("gdb 3", "gdb 2").replace("O\t-0.0343", "N\t-0.0343")
BAD_SYMBOL = WATER.replace("gdb 3", "gdb 4").replace("O\t-0.0343", "Xx\t-0.0343")

UNCHARACTERIZED = """ Molecules which failed the geometry consistency check
 (indices as in the xyz archive)

 Index   GDB17   Calc   Energy
 -------------------------------




     2    11   x   -56.5
     7    70   x   -77.2

 end of list
"""


def write_folder(tmp_path, files: dict[str, str]):
    folder = tmp_path / "qm9xyz"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def write_tar(tmp_path, files: dict[str, str], name: str = "dsgdb9nsd.xyz.tar.bz2"):
    path = tmp_path / name
    with tarfile.open(path, "w:bz2") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


FILES = {
    "dsgdb9nsd_000001.xyz": METHANE,
    "dsgdb9nsd_000002.xyz": AMMONIA,
    "dsgdb9nsd_000003.xyz": WATER,
}


def test_mathematica_exponent():
    assert qm9_float("2.5*^-6") == 2.5e-6
    assert qm9_float("-1.25") == -1.25


@pytest.mark.parametrize("kind", ["folder", "tar"])
def test_qm9_properties_units_and_uncharacterized(tmp_path, kind):
    src = write_folder(tmp_path, FILES) if kind == "folder" else write_tar(tmp_path, FILES)
    assert detect_format(src) == "qm9"
    unc = tmp_path / "uncharacterized.txt"
    unc.write_text(UNCHARACTERIZED)
    reader = read(src, uncharacterized=str(unc))
    items = list(reader)
    assert reader.skipped == {
        "uncharacterized": 1
    }  # molecule 2 is listed (7 is not in the archive)
    assert [r.source.split(":")[1] for _, r in items] == [
        "dsgdb9nsd_000001.xyz",
        "dsgdb9nsd_000003.xyz",
    ]
    methane = items[0].record
    assert methane.atomic_numbers.tolist() == [6, 1, 1, 1, 1]
    assert methane.positions[2, 2] == 2.5e-6  # the `*^` exponent was read, in Å
    assert methane.energy is None and methane.forces is None
    t = methane.targets
    assert set(t) == {name for name, _, _ in PROPERTIES}
    assert t["A"] == 157.7118 and t["Cv"] == 6.469  # GHz and cal/(mol K) unchanged
    assert t["mu"] == 0.0
    assert t["alpha"] == 13.21 * BOHR3_TO_ANGSTROM3
    assert t["homo"] == -0.3877 * HARTREE_TO_EV
    assert t["gap"] == 0.5048 * HARTREE_TO_EV
    assert t["r2"] == 35.3641 * BOHR2_TO_ANGSTROM2
    assert t["zpve"] == 0.044749 * HARTREE_TO_EV
    assert t["U0"] == -40.47893 * HARTREE_TO_EV
    assert t["G"] == -40.498597 * HARTREE_TO_EV
    water = items[1].record
    assert water.targets["mu"] == 1.8511 * DEBYE_TO_E_ANGSTROM
    assert abs(water.targets["U0"] - (-2079.09)) < 0.05  # eV, sanity on the magnitude


def test_qm9_unknown_element_and_truncated_archive(tmp_path):
    folder = write_folder(tmp_path, {**FILES, "dsgdb9nsd_000004.xyz": BAD_SYMBOL})
    with pytest.raises(
        DataFormatError, match=r"dsgdb9nsd_000004.xyz: atom 1: unknown element symbol 'Xx'"
    ):
        list(read(folder, "qm9"))
    reader = read(folder, "qm9", skip_bad=True)
    assert len(list(reader)) == 3 and reader.skipped == {"bad_record": 1}
    tar = write_tar(tmp_path, FILES)
    tar.write_bytes(tar.read_bytes()[:200])
    with pytest.raises(DataFormatError, match="dsgdb9nsd.xyz.tar.bz2"):
        list(read(tar, "qm9"))


def test_qm9_pyg_v3(tmp_path):
    y = np.arange(19, dtype=np.float32).reshape(1, 19) + 1
    data = [
        {
            "idx": torch.tensor(0),
            "name": "gdb_1",
            "z": torch.tensor([6, 1, 1, 1, 1]),
            "x": torch.zeros(5, 11),
            "pos": torch.tensor(
                [
                    [0.0, 0, 0],
                    [0.63, 0.63, 0.63],
                    [-0.63, -0.63, 0.63],
                    [-0.63, 0.63, -0.63],
                    [0.63, -0.63, -0.63],
                ]
            ),
            "edge_index": torch.zeros(2, 0, dtype=torch.long),
            "edge_attr": torch.zeros(0, 4),
            "y": torch.tensor(y),
        }
    ]
    path = tmp_path / "qm9_v3.pt"
    torch.save(data, path)
    assert detect_format(path) == "qm9-pyg"
    (rec,) = [r for _, r in read(path)]
    assert rec.source == "qm9_v3.pt:0/gdb_1"
    assert rec.targets["mu"] == 1.0 * DEBYE_TO_E_ANGSTROM
    assert rec.targets["alpha"] == 2.0 * BOHR3_TO_ANGSTROM3
    assert rec.targets["homo"] == 3.0  # already eV in the PyG file: not converted again
    assert rec.targets["r2"] == 6.0 * BOHR2_TO_ANGSTROM2
    assert rec.targets["U0"] == 8.0 and rec.targets["U0_atom"] == 13.0 and rec.targets["C"] == 19.0


def test_qm9_detected_by_content_archive_of_any_name_and_single_file(tmp_path):
    """A renamed archive and a lone QM9 .xyz are QM9 (they used to fall to ASE and a traceback)."""
    renamed = write_tar(tmp_path, FILES, name="my_qm9_copy.tar.bz2")
    assert detect_format(renamed) == "qm9"
    assert len(list(read(renamed))) == 3
    single = tmp_path / "water.xyz"
    single.write_text(WATER)
    assert detect_format(single) == "qm9"
    (record,) = [r for _, r in read(single)]
    assert record.atomic_numbers.tolist() == [8, 1, 1] and "gap" in record.targets
    plain = tmp_path / "plain.xyz"
    plain.write_text("1\nPlain comment\nH 0 0 0\n")
    assert detect_format(plain) == "ase"
    other = write_tar(tmp_path, {"notes.txt": "hello"}, name="other.tar.gz")
    with pytest.raises(DataFormatError, match="not a QM9 xyz file; pass --format"):
        detect_format(other)
