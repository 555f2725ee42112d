"""Index sets built by the model equal the fixture's stored ones (compared as sets)."""

import numpy as np
import pytest
import torch

from openjmp.data.graphs.goc import GOCGraphs
from openjmp.models.gemnet_oc.backbone import build_model_graphs
from openjmp.models.gemnet_oc.indices import inner_index, symmetrize_main


def _systems(fixture_case, fixture_dir):
    return [(s["name"], np.load(fixture_dir / s["file"])) for s in fixture_case["systems"]]


def _pairs(a, b):
    return sorted(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))


@pytest.fixture(scope="module")
def model_graphs(fixture_case, fixture_dir):
    out = {}
    for name, z in _systems(fixture_case, fixture_dir):
        pos = torch.tensor(z["pos_f64"])
        cell = torch.tensor(z["cell_f64"])[None]
        batch = torch.zeros(pos.shape[0], dtype=torch.long)
        out[name] = (build_model_graphs(pos, cell, batch, 1, GOCGraphs.from_arrays(z)), z)
    return out


def test_symmetrisation_and_id_swap(model_graphs):
    for g, z in model_graphs.values():
        assert np.array_equal(g.main_edge_index.numpy(), z["main_sym_edge_index"])
        assert np.array_equal(g.main_cell_offset.numpy(), z["main_sym_cell_offset"])
        assert np.array_equal(g.id_swap.numpy(), z["id_swap"])
        assert np.allclose(g.main_distance.numpy(), z["main_sym_distance"], rtol=0, atol=1e-13)
        assert np.allclose(g.main_vector.numpy(), z["main_sym_vector"], rtol=0, atol=1e-13)
        # reverse of the reverse is the edge itself; reverse swaps source and target
        ids = g.id_swap
        assert torch.equal(ids[ids], torch.arange(ids.shape[0]))
        assert torch.equal(g.main_edge_index[:, ids], g.main_edge_index.flip(0))


def test_triplets_and_quadruplets_as_sets(model_graphs):
    for g, z in model_graphs.values():
        for name, t in (("e2e", g.trip_e2e), ("a2e", g.trip_a2e), ("e2a", g.trip_e2a)):
            assert _pairs(t.in_, t.out) == _pairs(z[f"trip_{name}_in"], z[f"trip_{name}_out"])
            assert torch.all(t.out[1:] >= t.out[:-1])  # sorted by out
            # out_agg enumerates 0..k-1 within each out edge
            agg_sets = {}
            for o, a in zip(t.out.tolist(), t.out_agg.tolist()):
                agg_sets.setdefault(o, []).append(a)
            assert all(sorted(v) == list(range(len(v))) for v in agg_sets.values())
        q = g.quad
        assert _pairs(q.triplet_in.in_, q.triplet_in.out) == _pairs(
            z["quad_triplet_in_in"], z["quad_triplet_in_out"])
        assert _pairs(q.triplet_out.in_, q.triplet_out.out) == _pairs(
            z["quad_triplet_out_in"], z["quad_triplet_out_out"])
        ours = sorted(zip(q.out.tolist(), q.triplet_in.in_[q.trip_in_to_quad].tolist(),
                          q.triplet_out.in_[q.trip_out_to_quad].tolist()))
        tin_in = np.asarray(z["quad_triplet_in_in"])
        tout_in = np.asarray(z["quad_triplet_out_in"])
        ref = sorted(zip(np.asarray(z["quad_out"]).tolist(),
                         tin_in[z["quad_trip_in_to_quad"]].tolist(),
                         tout_in[z["quad_trip_out_to_quad"]].tolist()))
        assert ours == ref
        assert np.array_equal(g.a2ee2a_target_rank.numpy(), z["a2ee2a_target_neighbor_idx"])
        assert np.array_equal(g.a2a_target_rank.numpy(), z["a2a_target_neighbor_idx"])


def test_inner_index_any_order():
    group = torch.tensor([2, 0, 2, 1, 0, 2])
    assert inner_index(group, 3).tolist() == [0, 0, 1, 0, 1, 2]


def test_symmetrize_batch_layout():
    # two structures: (0->1, 1->0 dropped, 0->0 offset -x kept), (2->3)
    ei = torch.tensor([[0, 1, 0, 2], [1, 0, 0, 3]])
    off = torch.tensor([[0, 0, 0], [0, 0, 0], [-1, 0, 0], [0, 0, 0]])
    sym = symmetrize_main(ei, off, torch.tensor([0, 0, 0, 1]), 2)
    assert sym.edge_index.tolist() == [[0, 0, 1, 0, 2, 3], [1, 0, 0, 0, 3, 2]]
    assert sym.cell_offset[:, 0].tolist() == [0, -1, 0, 1, 0, 0]
    assert sym.id_swap.tolist() == [2, 3, 0, 1, 5, 4]
    assert sym.num_neighbors.tolist() == [4, 2]


def test_symmetrize_rejects_ungrouped_edges():
    ei = torch.tensor([[0, 2], [1, 3]])
    off = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="grouped by structure"):
        symmetrize_main(ei, off, torch.tensor([1, 0]), 2)
