"""Physical checks of the GemNet-OC model on structures built here (float64, fixture weights):
invariance of energies, equivariance of forces, gradient forces and stress vs finite
differences, batch == single."""

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from openjmp.data.graphs.goc import GOCGraphSettings, build_goc_graphs, collate_goc_graphs


def _molecule():
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    atoms.cell = np.eye(3) * 1000.0
    return (atoms.numbers, atoms.positions.copy(), np.array(atoms.cell), np.zeros(3, bool),
            GOCGraphSettings.from_constant(5.0, 9))


def _crystal():
    atoms = bulk("NaCl", "rocksalt", a=5.64) * (1, 1, 1)
    atoms.rattle(0.08, seed=2)
    # no max-neighbour cut here: an atom's own images at +n and -n are exact distance ties,
    # which a cut could resolve differently after a rotation (as in the original)
    settings = GOCGraphSettings(cutoff_main=5.0, cutoff_aeaint=4.5, cutoff_qint=4.0,
                                cutoff_aint=5.5, max_neighbors_main=1000,
                                max_neighbors_aeaint=1000, max_neighbors_qint=1000,
                                max_neighbors_aint=1000)
    return (atoms.numbers, atoms.positions.copy(), np.array(atoms.cell), np.ones(3, bool),
            settings)


def _predict(model, numbers, pos, cell, pbc, settings, stress=False, tags=None):
    tags = np.full(len(numbers), 2) if tags is None else tags
    graphs = build_goc_graphs(pos, cell, pbc, tags, settings)
    return model.predict(torch.as_tensor(numbers), torch.as_tensor(pos),
                         torch.as_tensor(cell)[None], torch.zeros(len(numbers), dtype=torch.long),
                         graphs, 1, gradient=True, stress=stress)


def _random_rotation(seed):
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@pytest.mark.parametrize("make", [_molecule, _crystal])
def test_rotation_translation_invariance(small_model, make):
    numbers, pos, cell, pbc, settings = make()
    ref = _predict(small_model, numbers, pos, cell, pbc, settings)
    rot = _random_rotation(3)
    shift = np.array([0.3, -1.2, 2.5])
    moved = _predict(small_model, numbers, pos @ rot.T + shift, cell @ rot.T, pbc, settings)
    for head, e in ref.energy.items():
        assert torch.allclose(moved.energy[head], e, rtol=1e-10, atol=1e-10)
        rot_t = torch.as_tensor(rot)
        f_g = ref.forces_grad[head] @ rot_t.T
        assert torch.allclose(moved.forces_grad[head], f_g, atol=1e-9 * (1 + float(f_g.detach().abs().max())))
    for head, f in ref.forces_direct.items():
        f_r = f @ torch.as_tensor(rot).T
        assert torch.allclose(moved.forces_direct[head], f_r, atol=1e-10 * (1 + float(f_r.detach().abs().max())))
    # a wrong rotation of the forces would not match (the test is not vacuous)
    f = ref.forces_direct["finetune"]
    assert not torch.allclose(moved.forces_direct["finetune"], f, atol=1e-6)


@pytest.mark.parametrize("make", [_molecule, _crystal])
def test_permutation_invariance(small_model, make):
    numbers, pos, cell, pbc, settings = make()
    perm = np.random.default_rng(4).permutation(len(numbers))
    ref = _predict(small_model, numbers, pos, cell, pbc, settings)
    out = _predict(small_model, numbers[perm], pos[perm], cell, pbc, settings)
    for head, e in ref.energy.items():
        assert torch.allclose(out.energy[head], e, rtol=1e-10, atol=1e-10)
        assert torch.allclose(out.forces_grad[head], ref.forces_grad[head][perm], atol=1e-9)
        assert torch.allclose(out.energy_per_atom[head], ref.energy_per_atom[head][perm],
                              atol=1e-10)
    for head, f in ref.forces_direct.items():
        assert torch.allclose(out.forces_direct[head], f[perm], atol=1e-10)


@pytest.mark.parametrize("make", [_molecule, _crystal])
def test_gradient_forces_match_finite_differences(small_model, make):
    numbers, pos, cell, pbc, settings = make()
    ref = _predict(small_model, numbers, pos, cell, pbc, settings)
    graphs = build_goc_graphs(pos, cell, pbc, np.full(len(numbers), 2), settings)
    z = torch.as_tensor(numbers)
    b = torch.zeros(len(numbers), dtype=torch.long)
    c = torch.as_tensor(cell)[None]
    h = 1e-5

    def energy(p):
        with torch.no_grad():
            return float(small_model.predict(z, torch.as_tensor(p), c, b, graphs, 1)
                         .energy["finetune"][0])

    f = ref.forces_grad["finetune"].numpy()
    scale = np.abs(f).max()
    for atom, axis in [(0, 0), (1, 2), (len(numbers) - 1, 1)]:
        plus, minus = pos.copy(), pos.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        fd = -(energy(plus) - energy(minus)) / (2 * h)
        assert abs(fd - f[atom, axis]) <= 1e-6 * max(scale, 1.0), (atom, axis, fd, f[atom, axis])


def test_stress_matches_strain_finite_differences(small_model):
    numbers, pos, cell, pbc, settings = _crystal()
    ref = _predict(small_model, numbers, pos, cell, pbc, settings, stress=True)
    de = ref.dE_dstrain["finetune"][0].numpy()
    assert np.allclose(de, de.T, atol=1e-10)
    vol = abs(np.linalg.det(cell))
    assert np.allclose(ref.stress["finetune"][0].numpy(), de / vol, rtol=1e-12)
    graphs = build_goc_graphs(pos, cell, pbc, np.full(len(numbers), 2), settings)
    z = torch.as_tensor(numbers)
    b = torch.zeros(len(numbers), dtype=torch.long)
    h = 1e-6

    def energy(eps):
        deform = np.eye(3) + 0.5 * (eps + eps.T)
        with torch.no_grad():
            p = torch.as_tensor(pos @ deform)
            c = torch.as_tensor(cell @ deform)[None]
            return float(small_model.predict(z, p, c, b, graphs, 1).energy["finetune"][0])

    for i, j in [(0, 0), (1, 2), (2, 2)]:
        e = np.zeros((3, 3))
        e[i, j] = h
        fd = (energy(e) - energy(-e)) / (2 * h)
        assert abs(fd - de[i, j]) <= 1e-5 * max(np.abs(de).max(), 1.0), (i, j, fd, de[i, j])


def test_batch_equals_single(small_model):
    systems = [_molecule(), _crystal()]
    singles = [_predict(small_model, *s) for s in systems]
    graphs = collate_goc_graphs(
        [build_goc_graphs(s[1], s[2], s[3], np.full(len(s[0]), 2), s[4]) for s in systems],
        [len(s[0]) for s in systems])
    numbers = np.concatenate([s[0] for s in systems])
    pos = np.concatenate([s[1] for s in systems])
    cell = np.stack([s[2] for s in systems])
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([len(s[0]) for s in systems]))
    out = small_model.predict(torch.as_tensor(numbers), torch.as_tensor(pos),
                              torch.as_tensor(cell), batch, graphs, 2, gradient=True)
    start = 0
    for i, (s, single) in enumerate(zip(systems, singles)):
        n = len(s[0])
        for head, e in single.energy.items():
            assert torch.allclose(out.energy[head][i], e[0], rtol=1e-12, atol=1e-12)
            assert torch.allclose(out.forces_grad[head][start:start + n], single.forces_grad[head],
                                  atol=1e-11)
        for head, f in single.forces_direct.items():
            assert torch.allclose(out.forces_direct[head][start:start + n], f, atol=1e-12)
        start += n


def test_structures_without_qint_edges_or_quadruplets(small_model):
    """Empty index sets work: three atoms have no quadruplet (c == d always), so removing all
    qint edges (tags 0) must not change anything; a lone pair of atoms works too."""
    atoms = molecule("H2O")
    cell = np.eye(3) * 1000.0
    settings = GOCGraphSettings.from_constant(5.0, 9)
    pbc = np.zeros(3, bool)
    with_q = _predict(small_model, atoms.numbers, atoms.positions, cell, pbc, settings)
    without = _predict(small_model, atoms.numbers, atoms.positions, cell, pbc, settings,
                       tags=np.zeros(3, int))
    assert build_goc_graphs(atoms.positions, cell, pbc, np.zeros(3, int), settings).qint.num_edges == 0
    assert torch.allclose(with_q.energy["finetune"], without.energy["finetune"], atol=1e-12)
    assert torch.allclose(with_q.forces_grad["finetune"], without.forces_grad["finetune"],
                          atol=1e-12)
    pair = _predict(small_model, np.array([1, 8]), np.array([[0.0, 0, 0], [0.97, 0, 0]]), cell,
                    pbc, settings)
    assert torch.isfinite(pair.energy["finetune"]).all()
    assert torch.isfinite(pair.forces_grad["finetune"]).all()


@pytest.mark.parametrize("loss", ["direct", "gradient_forces"])
def test_block_checkpointing_gives_identical_gradients(small_model, loss):
    """Activation checkpointing (trainer.activation_checkpointing) changes memory, not math:
    the same parameter gradients for a loss on the backbone outputs and for a gradient-force
    loss (double backward through the recomputed blocks)."""
    numbers, pos, cell, pbc, settings = _molecule()
    graphs = build_goc_graphs(pos, cell, pbc, np.full(len(numbers), 2), settings)
    args = (torch.as_tensor(numbers), torch.as_tensor(pos), torch.as_tensor(cell)[None],
            torch.zeros(len(numbers), dtype=torch.long), graphs, 1)

    def grads():
        small_model.zero_grad(set_to_none=True)
        if loss == "direct":
            out = small_model(*args)
            (out.x_E.square().sum() + out.x_F.square().sum()).backward()
        else:
            pred = small_model.predict(*args, gradient=True, create_graph=True)
            (pred.energy["finetune"].sum() + pred.forces_grad["finetune"].square().sum()).backward()
        return {n: p.grad.clone() for n, p in small_model.named_parameters() if p.grad is not None}

    plain = grads()
    small_model.backbone.checkpoint_blocks = True
    try:
        ckpt = grads()
    finally:
        small_model.backbone.checkpoint_blocks = False
        small_model.zero_grad(set_to_none=True)
    assert plain.keys() == ckpt.keys() and len(plain) > 100
    for name, g in plain.items():
        assert torch.allclose(ckpt[name], g, rtol=1e-12, atol=1e-14), name
