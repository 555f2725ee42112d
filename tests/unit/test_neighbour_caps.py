"""Neighbour caps of the shipped mini graphs never cut: not on the mini suite, not on ordinary
bulk crystals and molecules (issue 15). Where a cap does cut, the graphs say so, with numbers."""

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import bulk, molecule

from openjmp.data.graphs.goc import GOCGraphSettings, build_goc_graphs
from openjmp.data.readers import read

ROOT = Path(__file__).resolve().parents[2]
MINI = Path(str(resources.files("openjmp") / "assets" / "mini"))


def mini_settings() -> GOCGraphSettings:
    config = yaml.safe_load((ROOT / "configs" / "pretrain" / "mini.yaml").read_text())
    graphs = [d["graph"] for d in config["datasets"]]
    assert all(g == graphs[0] for g in graphs)
    return GOCGraphSettings.from_graph_dict(graphs[0])


def truncations(atoms, settings):
    tags = np.full(len(atoms), 2)
    g = build_goc_graphs(atoms.positions, atoms.cell.array, atoms.pbc, tags, settings)
    return g.truncations


def test_mini_settings_equal_the_model_radial_cutoffs():
    config = yaml.safe_load((ROOT / "configs" / "pretrain" / "mini.yaml").read_text())
    assert mini_settings().cutoffs == config["model"]["backbone"]["rbf_cutoffs"]


@pytest.mark.parametrize("atoms", [
    bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2),
    bulk("W", "bcc", a=3.16, cubic=True).repeat(2),
    bulk("Si", "diamond", a=5.43, cubic=True),
    bulk("NaCl", "rocksalt", a=5.64, cubic=True),
    bulk("Mg", "hcp", a=3.21, c=5.21).repeat(2),
    bulk("Pt", "fcc", a=3.92 * 0.92, cubic=True),  # 22 % denser than Pt at rest
    molecule("C6H6"), molecule("CH3CH2OH"),
], ids=["Cu", "W", "Si", "NaCl", "Mg", "Pt-compressed", "benzene", "ethanol"])
def test_no_cap_cuts_ordinary_systems(atoms):
    assert truncations(atoms, mini_settings()) == ()


@pytest.mark.parametrize("source, fmt", [
    ("mini-oc20/train/data.0000.aselmdb", "aselmdb"),
    ("mini-ani1x/ani1x-release.h5", "ani1x"),
    ("mini-transition1x/transition1x-release.h5", "transition1x"),
    ("mini-md22/md22_Ac-Ala3-NHMe.npz", "md22"),
])
def test_no_cap_cuts_the_mini_suite(source, fmt):
    settings = mini_settings()
    cut = []
    for i, r in enumerate(read(MINI / source, format=fmt).records()):
        if i % 5:  # every fifth record: the suite in seconds
            continue
        found = build_goc_graphs(r.positions, r.cell, r.pbc, np.full(r.natoms, 2), settings).truncations
        cut += found
    assert cut == []


def test_a_cutting_cap_is_reported_with_numbers():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    old = GOCGraphSettings.from_graph_dict({"cutoff": 6.0, "max_neighbors": 20})  # the old mini
    found = {t.graph: t for t in truncations(cu, old)}
    assert found["main"].atoms == 32 and found["main"].most == 78 and found["main"].cap == 20
    assert found["qint"].cap == 5
    assert "32 atom(s) have more than 20 neighbours within 6 Å (up to 78)" in found["main"].describe()
