"""Radius graphs against a brute-force O(N^2 * images) reference, tie rule, gradients."""

import itertools

import numpy as np
import pytest
import torch

from openjmp.data.graphs import edge_vectors, max_neighbors_mask, radius_graph


def brute_force_graph(positions, cell, pbc, cutoff):
    """Every (source, target, offset) with 0 < |pos[t] - pos[s] - offset@cell| <= cutoff."""
    positions = np.asarray(positions, float)
    ranges = []
    if np.any(pbc):
        volume = abs(np.linalg.det(cell))
        for k in range(3):
            if pbc[k]:
                cross = np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])
                # planes of lattice direction k are volume/|cross| apart
                n = int(np.ceil(cutoff * np.linalg.norm(cross) / volume)) + 1
                ranges.append(range(-n, n + 1))
            else:
                ranges.append(range(0, 1))
    else:
        ranges = [range(0, 1)] * 3
    edges = {}
    for offset in itertools.product(*ranges):
        shift = np.asarray(offset, float) @ cell if np.any(pbc) else np.zeros(3)
        vec = positions[None, :, :] - positions[:, None, :] - shift  # [s, t]
        dist = np.linalg.norm(vec, axis=-1)
        for s, t in zip(*np.nonzero(dist <= cutoff)):
            if s == t and not any(offset):
                continue
            edges[(int(s), int(t), *offset)] = dist[s, t]
    return edges


def graph_as_dict(graph):
    return {
        (int(s), int(t), *map(int, o)): d
        for (s, t), o, d in zip(graph.edge_index.T, graph.cell_offsets, graph.distances)
    }


def random_triclinic_cell(rng, scale):
    while True:
        cell = rng.normal(size=(3, 3)) * scale * 0.3 + np.eye(3) * scale
        if np.linalg.det(cell) > 0.3 * scale**3:
            return cell


def assert_same_graph(graph, positions, cell, pbc, cutoff):
    ref = brute_force_graph(positions, cell, pbc, cutoff)
    got = graph_as_dict(graph)
    assert set(got) == set(ref)
    for key, d in got.items():
        assert abs(d - ref[key]) < 1e-10
    # the stored distance equals the geometry implied by the convention
    vec, dist = edge_vectors(
        torch.from_numpy(positions), torch.from_numpy(cell), torch.from_numpy(graph.edge_index),
        torch.from_numpy(graph.cell_offsets),
    )
    np.testing.assert_allclose(dist.numpy(), graph.distances, atol=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_random_triclinic_bulk(seed):
    rng = np.random.default_rng(seed)
    cell = random_triclinic_cell(rng, 4.0 + seed)
    positions = rng.random((7, 3)) @ cell
    graph = radius_graph(positions, cell, np.array([True] * 3), cutoff=5.5)
    assert_same_graph(graph, positions, cell, np.array([True] * 3), 5.5)


@pytest.mark.parametrize("natoms", [1, 2])
def test_tiny_cell_many_images(natoms):
    rng = np.random.default_rng(10 + natoms)
    cell = random_triclinic_cell(rng, 2.0)
    positions = rng.random((natoms, 3)) @ cell
    cutoff = 7.0  # cutoff >> cell: each atom sees many images of itself
    graph = radius_graph(positions, cell, np.array([True] * 3), cutoff)
    assert_same_graph(graph, positions, cell, np.array([True] * 3), cutoff)
    assert graph.num_edges > 50 * natoms
    # an atom's own images appear, the zero-offset self pair never does
    s, t = graph.edge_index
    self_edges = s == t
    assert self_edges.any()
    assert not (self_edges & (graph.cell_offsets == 0).all(1)).any()


def test_slab_mixed_pbc():
    rng = np.random.default_rng(3)
    cell = np.array([[5.1, 0.0, 0.0], [2.55, 4.42, 0.0], [0.0, 0.0, 20.0]])
    positions = rng.random((12, 3)) * np.array([1, 1, 0.3]) @ cell
    pbc = np.array([True, True, False])
    graph = radius_graph(positions, cell, pbc, cutoff=6.0)
    assert_same_graph(graph, positions, cell, pbc, 6.0)
    assert (graph.cell_offsets[:, 2] == 0).all()


def test_molecule_no_cell():
    rng = np.random.default_rng(4)
    positions = rng.random((15, 3)) * 6.0
    graph = radius_graph(positions, np.zeros((3, 3)), np.array([False] * 3), cutoff=3.0)
    assert_same_graph(graph, positions, np.zeros((3, 3)), np.array([False] * 3), 3.0)


def test_edge_order_sorted_by_target_source_offset():
    rng = np.random.default_rng(5)
    cell = random_triclinic_cell(rng, 3.0)
    positions = rng.random((4, 3)) @ cell
    g = radius_graph(positions, cell, np.array([True] * 3), 6.0)
    keys = [(t, s, *o) for (s, t), o in zip(g.edge_index.T.tolist(), g.cell_offsets.tolist())]
    assert keys == sorted(keys)


def test_max_neighbors_keeps_closest_and_breaks_ties_by_edge_order():
    # target 0 has five sources at distances 1, 2, 2, 2, 3 (three exact ties at 2)
    target = np.zeros(5, dtype=np.int64)
    distances = np.array([3.0, 2.0, 1.0, 2.0, 2.0])
    mask = max_neighbors_mask(target, distances, 3)
    # closest (index 2), then the first two of the tied edges in edge order (1, 3)
    assert mask.tolist() == [False, True, True, True, False]
    # multiple targets, each capped independently
    target = np.array([1, 0, 1, 0, 1])
    distances = np.array([0.5, 0.7, 0.4, 0.1, 0.9])
    assert max_neighbors_mask(target, distances, 1).tolist() == [False, False, True, True, False]


def test_max_neighbors_on_periodic_ties():
    # simple cubic lattice, one atom: 6 nearest images all at distance a (exact ties)
    cell = np.eye(3) * 2.0
    g = radius_graph(np.zeros((1, 3)), cell, np.array([True] * 3), cutoff=2.5, max_neighbors=4)
    assert g.num_edges == 4
    np.testing.assert_allclose(g.distances, 2.0)
    # ties broken by edge order = offset order ascending
    assert g.cell_offsets.tolist() == [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, 0, 1]]
    full = radius_graph(np.zeros((1, 3)), cell, np.array([True] * 3), cutoff=2.5)
    assert full.num_edges == 6


def test_edge_vector_gradients_match_finite_differences():
    rng = np.random.default_rng(6)
    cell0 = random_triclinic_cell(rng, 3.5)
    pos0 = rng.random((4, 3)) @ cell0
    g = radius_graph(pos0, cell0, np.array([True] * 3), 5.0)
    ei, off = torch.from_numpy(g.edge_index), torch.from_numpy(g.cell_offsets)

    def f(pos, cell):
        return edge_vectors(pos, cell, ei, off)[1].sum()

    pos = torch.tensor(pos0, requires_grad=True)
    cell = torch.tensor(cell0, requires_grad=True)
    gpos, gcell = torch.autograd.grad(f(pos, cell), (pos, cell))
    h = 1e-6
    for x0, grad, which in ((pos0, gpos, "pos"), (cell0, gcell, "cell")):
        fd = np.zeros_like(x0)
        for idx in np.ndindex(*x0.shape):
            plus, minus = x0.copy(), x0.copy()
            plus[idx] += h
            minus[idx] -= h
            args_p = (torch.tensor(plus), torch.tensor(cell0)) if which == "pos" else (torch.tensor(pos0), torch.tensor(plus))
            args_m = (torch.tensor(minus), torch.tensor(cell0)) if which == "pos" else (torch.tensor(pos0), torch.tensor(minus))
            fd[idx] = (f(*args_p) - f(*args_m)).item() / (2 * h)
        np.testing.assert_allclose(grad.numpy(), fd, atol=1e-6)


def test_batched_edge_vectors_use_each_structures_cell():
    cells = torch.stack([torch.eye(3, dtype=torch.float64) * 3, torch.eye(3, dtype=torch.float64) * 5])
    pos = torch.zeros((2, 3), dtype=torch.float64)
    ei = torch.tensor([[0, 1], [0, 1]])
    off = torch.tensor([[1, 0, 0], [1, 0, 0]])
    _, dist = edge_vectors(pos, cells, ei, off, edge_structure=torch.tensor([0, 1]))
    assert dist.tolist() == [3.0, 5.0]


def test_subgraphs_cut_by_neighbor_rank_equal_a_fresh_selection():
    """The GemNet-OC graphs are cut from one neighbour list with its ranks (no re-sort): a
    smaller cutoff then a cap must keep exactly the edges a fresh max_neighbors_mask keeps, ties
    included (a rattled lattice has many near-ties; the unrattled one exact ties)."""
    from ase.build import bulk

    for rattle in (0.0, 0.05):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
        if rattle:
            atoms.rattle(rattle, seed=3)
        full = radius_graph(atoms.positions, np.asarray(atoms.cell), atoms.pbc, 7.0, 200)
        for cutoff, cap in ((7.0, 30), (5.0, 12), (4.0, 1000), (6.0, 0)):
            near = full.select(full.distances <= cutoff)
            fresh = near.select(max_neighbors_mask(near.edge_index[1], near.distances, cap))
            ranked = near.closest(cap)
            assert np.array_equal(ranked.edge_index, fresh.edge_index)
            assert np.array_equal(ranked.cell_offsets, fresh.cell_offsets)
