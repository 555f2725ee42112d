"""Size-conditional neighbour caps (JMP MatBench/QMOF: 30, 10 above 200 atoms, 5 above 300):
GraphConfig validation, per-structure caps in graph building, and the same caps after a round
trip through a model file's head ``graph`` entry."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from openjmp.data.graphs.goc import GOCGraphSettings, build_goc_graphs
from openjmp.data.record import AtomsRecord
from openjmp.inference import graph_settings_of
from openjmp.training.config import GraphConfig
from openjmp.training.data import GraphDataset
from openjmp.training.finetune import heads_metadata
from openjmp.training.finetune_config import FinetuneConfig


def _cluster(n: int, seed: int) -> AtomsRecord:
    """A dense random molecule of n atoms (every pair within 6 Å, so caps bind)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 3.0, size=(n, 3))
    return AtomsRecord(atomic_numbers=np.full(n, 6, dtype=np.int64), positions=pos, cell=np.zeros((3, 3)),
                       pbc=np.zeros(3, dtype=bool), energy=0.0, targets={"y": 1.0})


def _edges_per_target(g) -> np.ndarray:
    return np.bincount(g.main.edge_index[1].numpy())


def _caps(settings) -> dict[str, int]:
    return {"main": settings.max_neighbors_main, "a2ee2a": settings.max_neighbors_aeaint,
            "qint": settings.max_neighbors_qint, "a2a": settings.max_neighbors_aint}


def test_caps_per_structure_size_follow_the_rules():
    s = GraphConfig(cutoff=12.0, max_neighbors=30, max_neighbors_by_natoms=[[200, 10], [300, 5]]).settings()
    assert _caps(s)["main"] == 30
    assert _caps(s.for_natoms(200))["main"] == 30  # "above 200 atoms": strictly more
    assert _caps(s.for_natoms(201)) == {"main": 10, "a2ee2a": 6, "qint": 2, "a2a": 333}
    assert _caps(s.for_natoms(301)) == {"main": 5, "a2ee2a": 3, "qint": 1, "a2a": 166}


@pytest.mark.parametrize("rules, message", [
    ([[300, 5], [200, 10]], "ascending"),
    ([[200, 10], [200, 5]], "ascending"),
    ([[200, 0]], "caps must be >= 1"),
    ([[-1, 5]], ">= 0"),
])
def test_bad_rules_are_rejected(rules, message):
    with pytest.raises(ValidationError, match=message):
        GraphConfig(max_neighbors_by_natoms=rules)


def test_rules_cannot_be_combined_with_explicit_per_graph_caps():
    with pytest.raises(ValidationError, match="max_neighbors_a2a"):
        GraphConfig(max_neighbors_by_natoms=[[200, 10]], max_neighbors_a2a=500)


def test_settings_validate_rejects_unsorted_rules():
    s = GOCGraphSettings.from_constant(6.0, 12)
    bad = GOCGraphSettings(**{**s.__dict__, "max_neighbors_by_natoms": ((5, 4), (3, 2))})
    with pytest.raises(ValueError, match="ascending"):
        build_goc_graphs(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros(3, bool), np.full(2, 2), bad)


def test_graphs_use_the_cap_of_each_structure():
    cfg = GraphConfig(cutoff=6.0, max_neighbors=12, max_neighbors_by_natoms=[[10, 6], [20, 3]])
    settings = cfg.settings()
    records = [_cluster(8, 0), _cluster(15, 1), _cluster(25, 2)]
    dataset = GraphDataset(records, settings)
    for i, (r, expected_cap) in enumerate(zip(records, (12, 6, 3))):
        fixed = GOCGraphSettings.from_constant(6.0, expected_cap)
        got = dataset.graphs(i)
        want = build_goc_graphs(r.positions, r.cell, r.pbc, np.full(r.natoms, 2), fixed)
        for name in ("main", "a2a", "a2ee2a", "qint"):
            assert np.array_equal(getattr(got, name).edge_index.numpy(), getattr(want, name).edge_index.numpy()), name
        # the cap binds: every atom has (at most and here exactly) the cap's neighbours
        counts = _edges_per_target(got)
        assert counts.max() == min(expected_cap, r.natoms - 1)
    # without the rules the largest structure keeps 12 neighbours per atom
    plain = cfg.model_copy(update={"max_neighbors_by_natoms": None}).settings()
    assert _edges_per_target(GraphDataset(records[2:], plain).graphs(0)).max() == 12


def test_model_file_head_graph_reproduces_the_rules(tmp_path):
    cfg = FinetuneConfig.model_validate({
        "init": {"kind": "scratch", "preset": "openjmp_mini"},
        "data": {"path": str(tmp_path), "graph": {"cutoff": 12.0, "max_neighbors": 30, "pbc": True,
                                                  "max_neighbors_by_natoms": [[200, 10], [300, 5]]}},
        "targets": [{"name": "y", "kind": "scalar", "reduction": "mean"}],
    })
    head = heads_metadata(cfg, [6])["y"]
    settings, pbc = graph_settings_of(head)
    assert pbc is True
    assert settings.max_neighbors_by_natoms == ((200, 10), (300, 5))
    assert settings == cfg.data.graph.settings()
    assert settings.for_natoms(250).max_neighbors_main == 10
    assert settings.for_natoms(301).max_neighbors_aint == 166
    assert settings.for_natoms(200) is settings
    # a head written before the option existed: fixed caps
    old = {"graph": {"cutoff": 12.0, "max_neighbors": 30, "pbc": None}}
    settings_old, _ = graph_settings_of(old)
    assert settings_old.max_neighbors_by_natoms == () and settings_old.for_natoms(1000).max_neighbors_main == 30
