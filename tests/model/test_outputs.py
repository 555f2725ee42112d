"""openjmp.models.outputs, the one output path: gradient forces and stress against finite
differences (float64, tiny random model), direct vs gradient forces, the periodicity mask,
normalisation to physical units and per-atom energies, the pre-training router and
``JMPModel.predict`` (a thin wrapper)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from openjmp.data.collate import collate
from openjmp.data.graphs.goc import GOCGraphSettings, build_goc_graphs, collate_goc_graphs
from openjmp.data.record import AtomsRecord
from openjmp.models.heads import direct_forces
from openjmp.models.outputs import (
    EnergySpec,
    PropertySpec,
    compute_outputs,
    from_physical,
    grad_context,
    per_atom_energies,
    reference_energy,
    routed_energy_and_direct_forces,
    to_physical,
)
from openjmp.models.registry import create_model

SETTINGS = GOCGraphSettings.from_constant(5.0, 200)


@pytest.fixture(scope="module")
def model():
    """openjmp-tiny, one block, fine-tuning energy + force heads and one pretrain head, float64."""
    torch.manual_seed(0)
    m = create_model("openjmp-tiny", num_blocks=1, num_mlps=2, num_pretrain_tasks=1,
                     finetune_energy=True, finetune_forces=True).double().eval()
    with torch.no_grad():  # random init gives tiny outputs: scale the heads up
        for name, p in m.named_parameters():
            if name.startswith(("out_energy", "out_forces", "output.")):
                p.mul_(3.0)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _molecule():
    a = molecule("CH3CH2OH")
    a.rattle(0.05, seed=1)
    return a


def _bulk():
    a = bulk("Cu", "fcc", a=3.7).repeat((2, 1, 1))
    a.set_cell(np.array(a.cell) + [[0.0, 0.1, 0.05], [0.2, 0.0, -0.1], [0.1, 0.15, 0.0]],
               scale_atoms=True)
    a.rattle(0.05, seed=3)
    return a


def _inputs(structures):
    records = [AtomsRecord.from_atoms(a) for a in structures]
    data = collate(records, dtype=torch.float64)
    graphs = collate_goc_graphs(
        [build_goc_graphs(r.positions, np.asarray(r.cell, dtype=np.float64), np.asarray(r.pbc),
                          np.full(r.natoms, 2), SETTINGS) for r in records],
        [r.natoms for r in records])
    return data, graphs


def _run(model, data, graphs, pos=None, cell=None, **kw):
    spec = kw.pop("energy", EnergySpec(model.out_energy, model.out_forces, energy_scale=0.7))
    with grad_context(True):
        return compute_outputs(model, data.atomic_numbers, data.pos if pos is None else pos,
                               data.cell if cell is None else cell, data.batch, graphs,
                               data.num_structures, energy=spec, **kw)


def _energy(model, structure, scale=0.7):
    data, graphs = _inputs([structure])
    with torch.no_grad():
        out = compute_outputs(model, data.atomic_numbers, data.pos, data.cell, data.batch, graphs, 1,
                              energy=EnergySpec(model.out_energy, forces=None))
    return float(out.energy[0]) * scale


@pytest.mark.parametrize("make", [_molecule, _bulk])
def test_gradient_forces_equal_central_differences(model, make):
    atoms = make()
    data, graphs = _inputs([atoms])
    forces = _run(model, data, graphs).forces.numpy()
    assert np.abs(forces).max() > 1e-3
    h = 1e-5
    for i, k in [(0, 0), (1, 2), (len(atoms) - 1, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, k] += h
        minus.positions[i, k] -= h
        # the graph is rebuilt for each displaced structure (as the calculator does)
        fd = -(_energy(model, plus) - _energy(model, minus)) / (2 * h)
        assert forces[i, k] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_stress_equals_strain_derivative_and_is_nan_without_periodicity(model, fd_stress):
    crystal, mol = _bulk(), _molecule()
    data, graphs = _inputs([crystal, mol])
    out = _run(model, data, graphs, stress=True, periodic=data.pbc.all(dim=1))
    assert torch.isnan(out.stress[1]).all()  # the molecule: no stress
    stress = out.stress[0].numpy()
    assert np.isfinite(stress).all() and np.abs(stress).max() > 1e-5
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)
    fd = fd_stress(lambda a: _energy(model, a), crystal, h=1e-6)
    voigt = [stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2], stress[0, 2], stress[0, 1]]
    np.testing.assert_allclose(voigt, fd, rtol=1e-5, atol=1e-9)
    # without a periodicity mask every row is computed; the stress of the batch is the stress
    # of each structure alone
    alone = _run(model, *_inputs([crystal]), stress=True)
    torch.testing.assert_close(alone.stress[0], out.stress[0], rtol=1e-10, atol=1e-12)


def test_direct_and_gradient_modes(model):
    data, graphs = _inputs([_molecule(), _bulk()])
    grad = _run(model, data, graphs)
    direct = _run(model, data, graphs, energy=EnergySpec(model.out_energy, model.out_forces,
                                                          forces="direct", force_scale=1.3))
    none = _run(model, data, graphs, energy=EnergySpec(model.out_energy, forces=None))
    assert none.forces is None and none.stress is None
    torch.testing.assert_close(direct.energy, grad.energy)
    torch.testing.assert_close(none.energy, grad.energy)
    bb = direct.backbone
    manual = direct_forces(model.out_forces, bb.x_F, bb.V_st, bb.idx_t, data.num_atoms) * 1.3
    torch.testing.assert_close(direct.forces, manual)
    assert not torch.allclose(direct.forces, grad.forces)
    # gradient forces scale with energy_scale (energy_std -> eV/Å)
    unit = _run(model, data, graphs, energy=EnergySpec(model.out_energy, energy_scale=1.0))
    torch.testing.assert_close(grad.forces, 0.7 * unit.forces, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="direct forces need a force head"):
        EnergySpec(model.out_energy, forces="direct")
    with pytest.raises(ValueError, match="forces must be"):
        EnergySpec(model.out_energy, forces="numerical")


def test_properties_in_the_same_pass(model):
    data, graphs = _inputs([_molecule(), _bulk()])
    props = [PropertySpec("p_sum", model.out_energy, "sum"), PropertySpec("p_max", model.out_energy, "max"),
             PropertySpec("r2", model.out_energy, "spatial_extent")]
    out = _run(model, data, graphs, properties=props)
    torch.testing.assert_close(out.properties["p_sum"], out.energy)
    e_atoms = out.energy_per_atom.detach()
    p_max = float(out.properties["p_max"][0].detach())
    assert p_max == pytest.approx(float(e_atoms[data.batch == 0].max()))
    assert out.properties["r2"].shape == (2,)
    only = compute_outputs(model, data.atomic_numbers, data.pos, data.cell, data.batch, graphs, 2,
                           properties=props)
    assert only.energy is None and only.forces is None
    torch.testing.assert_close(only.properties["p_sum"], out.properties["p_sum"].detach())


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_per_atom_energies_sum_to_the_total(model, reduction):
    data, graphs = _inputs([_molecule(), _bulk()])
    out = _run(model, data, graphs, energy=EnergySpec(model.out_energy, reduction=reduction))
    ref = [0.0] * 120
    ref[1], ref[6], ref[8], ref[29] = -13.6, -1030.0, -2040.0, -45000.0
    total = to_physical(out.energy.detach(), 0.7, -0.3,
                        reference_energy(ref, data.atomic_numbers, data.batch, 2))
    per_atom = per_atom_energies(out.energy_per_atom.detach(), reduction, data.atomic_numbers,
                                 data.batch, data.natoms, 0.7, -0.3, ref)
    assert per_atom.dtype == torch.float64 and per_atom.shape == (data.num_atoms,)
    sums = torch.zeros(2, dtype=torch.float64).index_add_(0, data.batch, per_atom)
    torch.testing.assert_close(sums, total, rtol=1e-12, atol=1e-9)
    assert per_atom_energies(out.energy_per_atom, "max", data.atomic_numbers, data.batch,
                             data.natoms) is None


def test_normalisation_round_trip_and_reference_rows():
    z = torch.tensor([1, 8, 1, 6, 6])
    batch = torch.tensor([0, 0, 0, 1, 1])
    table = torch.zeros(2, 120, dtype=torch.float64)
    table[0, 1], table[0, 8], table[1, 6] = -1.0, -5.0, -7.0
    table[1, 1] = 99.0  # task 1's hydrogen: must not be used for structure 0
    rows = torch.tensor([0, 0, 0, 1, 1])
    ref = reference_energy(table, z, batch, 2, rows=rows)
    torch.testing.assert_close(ref, torch.tensor([-7.0, -14.0], dtype=torch.float64))
    torch.testing.assert_close(reference_energy(table[0], z[:3], batch[:3], 1), ref[:1])
    assert reference_energy(None, z, batch, 2).tolist() == [0.0, 0.0]
    e = torch.tensor([-20.0, -30.0], dtype=torch.float64)
    norm = from_physical(e, 2.0, 0.5, ref)
    torch.testing.assert_close(to_physical(norm, 2.0, 0.5, ref), e)


def test_routed_pretraining_outputs_equal_one_head_per_structure(model):
    data, graphs = _inputs([_molecule(), _bulk()])
    heads = [model.output.out_energy[0], model.out_energy]
    fheads = [model.output.out_forces[0], model.out_forces]
    task = torch.tensor([1, 0])
    with torch.no_grad():
        bb = model(data.atomic_numbers, data.pos, data.cell, data.batch, graphs, 2)
        energy, forces = routed_energy_and_direct_forces(heads, fheads, bb, data.batch, task[data.batch],
                                                         2, torch.float64)
        for s, t in enumerate(task.tolist()):
            one = compute_outputs(model, data.atomic_numbers, data.pos, data.cell, data.batch, graphs, 2,
                                  energy=EnergySpec(heads[t], fheads[t], forces="direct"))
            assert float(energy[s]) == pytest.approx(float(one.energy[s]), rel=1e-12)
            atoms = data.batch == s
            torch.testing.assert_close(forces[atoms], one.forces[atoms], rtol=1e-10, atol=1e-12)


def test_jmp_model_predict_is_the_output_path(model):
    data, graphs = _inputs([_bulk()])
    pred = model.predict(data.atomic_numbers, data.pos, data.cell, data.batch, graphs, 1,
                         gradient=True, stress=True)
    out = _run(model, data, graphs, stress=True,
               energy=EnergySpec(model.out_energy, model.out_forces, energy_scale=1.0))
    torch.testing.assert_close(pred.energy["finetune"], out.energy.detach())
    torch.testing.assert_close(pred.forces_grad["finetune"], out.forces)
    torch.testing.assert_close(pred.stress["finetune"], out.stress)
    assert set(pred.energy) == {"finetune", "pretrain0"}
    assert set(pred.forces_direct) == {"finetune", "pretrain0"}
