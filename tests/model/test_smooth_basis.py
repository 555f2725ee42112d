"""The smooth GemNet-OC variant (docs/forces.md): its dihedral basis is the original one times
(sin a sin b)^k, it is continuous where the original is not, each graph's radial basis ends at that
graph's cutoff so the energy is continuous as atoms cross it, and graphs must match the model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from openjmp.models.gemnet_oc.bases import (
    cos_dihedral,
    legendre_harmonics,
    smooth_dihedral_harmonics,
)
from openjmp.models.gemnet_oc.config import GemNetOCConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from physics_helpers import calculator, mini_smooth_backbone, write_random_model_file  # noqa: E402

RNG = np.random.default_rng(5)


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def test_smooth_harmonics_equal_sine_weighted_legendre_of_the_dihedral():
    v_ca, v_ba, v_db = (unit(torch.tensor(RNG.normal(size=(50, 3)))) for _ in range(3))
    u, w = torch.linalg.cross(v_ca, v_ba), torch.linalg.cross(v_db, v_ba)
    sin_sin = u.norm(dim=-1) * w.norm(dim=-1)
    expected = legendre_harmonics(cos_dihedral(u, w), 7) * sin_sin[:, None] ** torch.arange(7)
    torch.testing.assert_close(smooth_dihedral_harmonics(u, w, 7), expected, rtol=1e-10, atol=1e-12)


def test_smooth_harmonics_are_continuous_through_collinearity_the_original_is_not():
    """Approach u = 0 from two directions: the original's cos(phi) differs (+1 vs -1 at k = 1),
    the smooth basis tends to the same value (only the k = 0 term survives)."""
    w = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    for eps in (1e-3, 1e-6):
        plus, minus = torch.tensor([[0.0, 0.0, eps]]), torch.tensor([[0.0, 0.0, -eps]])
        plus, minus = plus.double(), minus.double()
        assert abs(float(cos_dihedral(plus, w)) - float(cos_dihedral(minus, w))) > 1.9
        diff = smooth_dihedral_harmonics(plus, w, 7) - smooth_dihedral_harmonics(minus, w, 7)
        assert float(diff.abs().max()) < 2 * eps


def test_cos_dihedral_degenerate_value_and_gradient():
    u = torch.zeros(1, 3, dtype=torch.float32, requires_grad=True)
    w = torch.tensor([[0.3, -0.2, 0.9]], requires_grad=True)
    c = cos_dihedral(u, w)
    c.sum().backward()
    assert float(c.detach()) == 0.0 and float(u.grad.abs().max()) == 0.0 and float(w.grad.abs().max()) == 0.0


def test_graph_cutoffs_must_match_a_smooth_model():
    smooth = GemNetOCConfig(**mini_smooth_backbone())
    smooth.check_graph_cutoffs({"main": 4.0, "a2ee2a": 4.0, "qint": 3.0, "a2a": 6.0})
    with pytest.raises(ValueError, match=r"main 6 Å \(model: 4 Å\)"):
        smooth.check_graph_cutoffs({"main": 6.0, "a2ee2a": 4.0, "qint": 3.0, "a2a": 6.0}, "data.graph")
    GemNetOCConfig().check_graph_cutoffs({"main": 6.0})  # the original accepts any cutoffs


def dimer_energies(path: Path, distances: np.ndarray) -> np.ndarray:
    from ase import Atoms

    calc = calculator(path, dtype="float64")
    out = []
    for d in distances:
        atoms = Atoms("CO", positions=[[0, 0, 0], [d, 0, 0]])
        atoms.calc = calc
        out.append(atoms.get_potential_energy())
    return np.asarray(out)


@pytest.mark.parametrize("smooth", [True, False], ids=["smooth", "original"])
def test_energy_is_continuous_across_the_graph_cutoffs_only_when_smooth(tmp_path, smooth):
    """A C-O pair pulled through the main/a2ee2a cutoff (4 Å) and the a2a cutoff (6 Å): the
    smooth model's energy changes by no more than its neighbours' steps; the original's (radial
    basis ending at 12 Å) jumps."""
    original = {"sbf": {"name": "legendre_outer"}, "rbf_cutoffs": None}
    backbone = dict(mini_smooth_backbone()) if smooth else original
    path = write_random_model_file(tmp_path / "m.pt", preset="openjmp-mini", seed=1, **backbone)
    jumps = []
    for cutoff in (4.0, 6.0):
        d = np.array([cutoff - 2e-6, cutoff - 1e-6, cutoff + 1e-6, cutoff + 2e-6])
        e = dimer_energies(path, d)
        steps = np.abs(np.diff(e))
        jumps.append(steps[1] / max(steps[0], steps[2], 1e-12))
    if smooth:
        assert max(jumps) < 10, jumps  # no jump: the step across the cutoff is like its neighbours
    else:
        assert min(jumps) > 1e3, jumps


def test_calculator_warns_once_with_numbers_when_a_cap_cuts(tmp_path):
    """The old mini graph (6 Å, main cap 20) cuts fcc Cu's third shell: one warning, numbers in it."""
    import warnings

    from ase.build import bulk

    original = {"sbf": {"name": "legendre_outer"}, "rbf_cutoffs": None}
    path = write_random_model_file(tmp_path / "capped.pt", preset="openjmp-mini",
                                   graph={"cutoff": 6.0, "max_neighbors": 20}, **original)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.calc = calculator(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atoms.get_forces()
        atoms.positions[0, 0] += 0.01
        atoms.get_forces()
    cap_warnings = [str(w.message) for w in caught if "neighbour caps cut" in str(w.message)]
    assert len(cap_warnings) == 1, cap_warnings
    assert "main graph: 32 atom(s) have more than 20 neighbours within 6 Å (up to 78)" in cap_warnings[0]
