"""openjmp.sim.torchsim: the torch_sim ModelInterface adapter."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ts = pytest.importorskip("torch_sim", reason="torch-sim not installed: pip install 'openjmp[torchsim]'")

from openjmp.sim.torchsim import OpenJMPModel, autobatcher  # noqa: E402

from .conftest import small_crystals, uncap  # noqa: E402

FMAX = 1e-3


def _models(model_path):
    from openjmp import JMPCalculator

    # torch_sim needs conservative forces; the calculator's default is the head's trained
    # convention (a pre-training head: direct), so ask for -dE/dx explicitly
    calc = JMPCalculator(model_path, dtype="float64", unknown_elements="ignore", forces="gradient")
    model = OpenJMPModel(model_path, device="cpu", dtype=torch.float64, unknown_elements="ignore")
    uncap(calc.predictor)
    uncap(model.predictor)
    return calc, model


def _state(atoms):
    return ts.io.atoms_to_state(atoms, device=torch.device("cpu"), dtype=torch.float64)


def test_batched_outputs_equal_calculator(model_path):
    """One batched forward of 3 systems = 3 ASE calculator calls (energy, forces, stress)."""
    import warnings

    warnings.simplefilter("ignore")
    calc, model = _models(model_path)
    atoms = small_crystals(3, seed=7)
    out = model(_state(atoms))
    start = 0
    for b, x in enumerate(atoms):
        x.calc = calc
        n = len(x)
        assert abs(x.get_potential_energy() - out["energy"][b].item()) < 1e-9
        np.testing.assert_allclose(out["forces"][start:start + n].numpy(), x.get_forces(), atol=1e-9)
        np.testing.assert_allclose(out["stress"][b].numpy(), x.get_stress(voigt=False), atol=1e-10)
        start += n
    assert out["energy"].shape == (3,) and out["forces"].shape == (start, 3)


def test_nonperiodic_state_has_no_stress(model_path):
    from ase.build import molecule

    _, model = _models(model_path)
    mol = molecule("H2O")
    mol.cell = [10, 10, 10]
    mol.pbc = False
    out = model(_state([mol, mol.copy()]))
    assert "stress" not in out and out["forces"].shape == (6, 3)
    assert abs(out["energy"][0] - out["energy"][1]) < 1e-10


def _relax_compare(model_path, n, steps=500):
    """ASE FIRE per structure vs one batched torch_sim FIRE (ase_fire flavour, same parameters).

    Every structure that ASE relaxes to ``FMAX`` must end at the same minimum in torch_sim. With
    a smooth model (``rbf_cutoffs``: the re-trained openjmp-mini) all must converge; with the
    original basis the ideal fcc sites are cusps of the energy (collinear triples, where the
    dihedral basis is discontinuous: docs/forces.md), so FIRE may stall above ``FMAX`` for some
    of them: at least half must converge, and the rest are not compared."""
    import warnings

    from ase.optimize import FIRE

    warnings.simplefilter("ignore")
    calc, model = _models(model_path)
    smooth = bool(getattr(model.predictor.model.config, "rbf_cutoffs", None))
    atoms = small_crystals(n, seed=3)
    ase_pos, ase_e, ok = [], [], []
    for x in atoms:
        y = x.copy()
        y.calc = calc
        ok.append(bool(FIRE(y, logfile=None).run(fmax=FMAX, steps=steps)))
        ase_pos.append(y.get_positions())
        ase_e.append(y.get_potential_energy())
    assert all(ok) if smooth else sum(ok) >= n / 2, ok
    conv = ts.generate_force_convergence_fn(force_tol=FMAX, include_cell_forces=False)
    final = ts.optimize(system=_state(atoms), model=model, optimizer=ts.optimizers.fire,
                        convergence_fn=conv, autobatcher=autobatcher(model, max_memory_scaler=1e9),
                        max_steps=steps, steps_between_swaps=5)
    out = model(final)
    start = 0
    for b, x in enumerate(atoms):
        k = len(x)
        sl = slice(start, start + k)
        start += k
        if not ok[b]:
            continue
        fmax = np.linalg.norm(out["forces"][sl].numpy(), axis=1).max()
        assert fmax < FMAX, (b, fmax)
        d = final.positions[sl].numpy() - ase_pos[b]
        # same atoms, possibly wrapped into the cell by one side only: minimum image
        frac = np.linalg.solve(x.cell.array.T, d.T).T
        d = (frac - np.round(frac)) @ x.cell.array
        assert np.abs(d).max() < 1e-3, (b, np.abs(d).max())
        assert abs(out["energy"][b].item() - ase_e[b]) / k < 1e-4, b


@pytest.mark.xfail(strict=False, reason=(
    "with the smooth openjmp-mini every system reaches fmax < 1e-3 eV/Å in both ASE and TorchSim, "
    "but a 2-atom Al cell ends 2.2e-3 Å apart along a soft mode (limit 1e-3 Å): the tolerance "
    "must follow the curvature; open item of issue 19"))
def test_batched_fire_equals_ase_fire_small(model_path):
    """4 systems (~15 s): batched torch_sim FIRE finds the ASE FIRE minima."""
    _relax_compare(model_path, 4, steps=300)


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=(
    "with the smooth openjmp-mini every system reaches fmax < 1e-3 eV/Å in both ASE and TorchSim, "
    "but a 2-atom Al cell ends 2.2e-3 Å apart along a soft mode (limit 1e-3 Å): the tolerance "
    "must follow the curvature; open item of issue 19"))
def test_batched_fire_equals_ase_fire_32(model_path):
    """32 rattled crystals: one torch_sim FIRE batch = 32 ASE FIRE runs (positions 1e-3 Å,
    energies 1e-4 eV/atom)."""
    _relax_compare(model_path, 32)


def test_nvt_langevin_and_npt_run(model_path):
    """torch_sim's NVT Langevin and NPT Langevin integrators run a batch of 2 for a few steps
    (NPT uses the stress; 16-atom cells)."""
    import warnings

    warnings.simplefilter("ignore")
    _, model = _models(model_path)
    atoms = small_crystals(2, seed=11, rattle=0.01)
    s = ts.integrate(system=_state(atoms), model=model, integrator=ts.nvt_langevin, n_steps=3,
                     temperature=300, timestep=0.001)
    assert torch.isfinite(s.positions).all() and s.n_systems == 2
    big = [a.repeat((2, 2, 2)) for a in atoms]
    s = ts.integrate(system=_state(big), model=model, integrator=ts.npt_langevin, n_steps=3,
                     temperature=300, timestep=0.001,
                     external_pressure=torch.tensor(0.0, dtype=torch.float64))
    assert torch.isfinite(s.cell).all() and torch.isfinite(s.positions).all()
    assert not torch.allclose(s.cell, _state(big).cell)  # the barostat moved the cells
