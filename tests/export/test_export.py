"""Portable export (openjmp.export): a TorchScript file that loads with torch only and gives the
calculator's energies and -dE/dx forces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

MODEL = "openjmp-mini"


def _structures():
    from ase.build import bulk, molecule

    mol = molecule("CH3CH2OH")
    mol.center(5.0)
    cu = bulk("Cu", "fcc", a=3.6).repeat((3, 2, 2))  # 12 atoms (the trace used 8)
    cu.rattle(0.05, seed=3)
    nial = bulk("NiAl", "cesiumchloride", a=2.88).repeat((2, 2, 1))
    nial.rattle(0.04, seed=4)
    return {"ethanol": mol, "cu12": cu, "nial8": nial}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from openjmp.export import export_model

    out = tmp_path_factory.mktemp("export") / "openjmp-mini.ts"
    export_model(MODEL, out)
    return out


@pytest.fixture(scope="module")
def reference():
    from openjmp.calculator import JMPCalculator

    calc = JMPCalculator(MODEL, forces="gradient", dtype="float32")
    out = {}
    for name, x in _structures().items():
        x.calc = calc
        out[name] = (x, float(x.get_potential_energy()), x.get_forces().copy())
    return out


def test_indices_equal_build_model_graphs():
    """The scripted index construction equals gemnet_oc.backbone.build_model_graphs."""
    from openjmp.data.record import AtomsRecord
    from openjmp.export import build_indices
    from openjmp.inference import load_predictor
    from openjmp.models.gemnet_oc.backbone import build_model_graphs
    from openjmp.sim.paths import resolve_model_path

    pred = load_predictor(resolve_model_path(MODEL), forces="gradient")
    atoms = list(_structures().values())
    recs = [AtomsRecord(atomic_numbers=a.numbers.astype(np.int64), positions=a.positions,
                        cell=np.asarray(a.cell), pbc=a.pbc, source="t") for a in atoms]
    g = pred.build_graphs(recs)
    batch = torch.cat([torch.full((len(a),), i, dtype=torch.long) for i, a in enumerate(atoms)])
    pos = torch.as_tensor(np.concatenate([a.positions for a in atoms]))
    cell = torch.as_tensor(np.stack([np.asarray(a.cell) for a in atoms]))
    mg = build_model_graphs(pos, cell, batch, len(atoms), g)
    idx = build_indices(batch, len(atoms), g.main.edge_index, g.main.cell_offset, g.a2a.edge_index,
                        g.a2a.cell_offset, g.a2ee2a.edge_index, g.a2ee2a.cell_offset,
                        g.qint.edge_index, g.qint.cell_offset)
    q = mg.quad
    pairs = {
        "main_edge_index": mg.main_edge_index, "main_cell_offset": mg.main_cell_offset,
        "id_swap": mg.id_swap, "main_num_neighbors": mg.main_num_neighbors,
        "a2a_target_rank": mg.a2a_target_rank, "a2ee2a_target_rank": mg.a2ee2a_target_rank,
        "e2e_in": mg.trip_e2e.in_, "e2e_out": mg.trip_e2e.out, "e2e_out_agg": mg.trip_e2e.out_agg,
        "a2e_in": mg.trip_a2e.in_, "a2e_out": mg.trip_a2e.out, "a2e_out_agg": mg.trip_a2e.out_agg,
        "e2a_in": mg.trip_e2a.in_, "e2a_out": mg.trip_e2a.out, "e2a_out_agg": mg.trip_e2a.out_agg,
        "quad_tin_in": q.triplet_in.in_, "quad_tin_out": q.triplet_in.out,
        "quad_tout_in": q.triplet_out.in_, "quad_tout_out": q.triplet_out.out,
        "quad_out": q.out, "quad_out_agg": q.out_agg, "quad_trip_in_to_quad": q.trip_in_to_quad,
        "quad_trip_out_to_quad": q.trip_out_to_quad, "quad_tin_rank": q.tin_rank,
        "quad_tout_rank_qint": q.tout_rank_qint, "quad_tout_rank_main": q.tout_rank_main,
        "e2e_pad": mg.e2e_pad, "a2e_pad": mg.a2e_pad, "e2a_pad": mg.e2a_pad,
        "e2a_atom_pad": mg.e2a_atom_pad, "a2a_pad": mg.a2a_pad, "quad_in_pad": mg.quad_in_pad,
        "quad_z_pad": mg.quad_z_pad,
    }
    for name, want in pairs.items():
        assert torch.equal(idx[name], want), name


def test_reference_graphs_equal_openjmp_graphs():
    """The module's own neighbour list (the contract's reference) equals Predictor.build_graphs."""
    from openjmp.data.record import AtomsRecord
    from openjmp.export import goc_graphs
    from openjmp.inference import load_predictor
    from openjmp.sim.paths import resolve_model_path

    pred = load_predictor(resolve_model_path(MODEL), forces="gradient")
    s = pred.settings
    cutoffs = [s.cutoff_main, s.cutoff_aeaint, s.cutoff_qint, s.cutoff_aint]
    caps = [s.max_neighbors_main, s.max_neighbors_aeaint, s.max_neighbors_qint, s.max_neighbors_aint]
    for name, a in _structures().items():
        rec = AtomsRecord(atomic_numbers=a.numbers.astype(np.int64), positions=a.positions,
                          cell=np.asarray(a.cell), pbc=a.pbc, source="t")
        g = pred.build_graphs([rec])
        mine = goc_graphs(torch.as_tensor(a.positions), torch.as_tensor(np.asarray(a.cell))[None],
                          torch.as_tensor(a.pbc)[None], torch.zeros(len(a), dtype=torch.long),
                          [float(c) for c in cutoffs], [int(c) for c in caps])
        want = [g.main.edge_index, g.main.cell_offset, g.a2a.edge_index, g.a2a.cell_offset,
                g.a2ee2a.edge_index, g.a2ee2a.cell_offset, g.qint.edge_index, g.qint.cell_offset]
        for i, (m, w) in enumerate(zip(mine, want)):
            assert torch.equal(m, w), (name, i)


def test_export_matches_calculator(exported, reference):
    module = torch.jit.load(str(exported))
    for name, (x, e, f) in reference.items():
        out = module(torch.as_tensor(x.numbers), torch.as_tensor(x.positions),
                     torch.as_tensor(np.asarray(x.cell))[None], torch.as_tensor(x.pbc)[None],
                     torch.zeros(len(x), dtype=torch.long))
        assert abs(float(out["energy"][0]) - e) / len(x) < 1e-5, name
        np.testing.assert_allclose(out["forces"].double().numpy(), f, atol=1e-4, rtol=0, err_msg=name)


def test_export_batch_and_caller_graphs(exported, reference):
    """Two structures in one call, and the caller-graph entry point."""
    module = torch.jit.load(str(exported))
    (m, em, fm), (c, ec, fc) = reference["ethanol"], reference["cu12"]
    z = torch.as_tensor(np.concatenate([m.numbers, c.numbers]))
    pos = torch.as_tensor(np.concatenate([m.positions, c.positions]))
    cell = torch.as_tensor(np.stack([np.asarray(m.cell), np.asarray(c.cell)]))
    pbc = torch.as_tensor(np.stack([m.pbc, c.pbc]))
    batch = torch.cat([torch.zeros(len(m), dtype=torch.long), torch.ones(len(c), dtype=torch.long)])
    gr = module.graphs(pos, cell, pbc, batch)
    out = module.forward_graphs(z, pos, cell, batch, *gr)
    np.testing.assert_allclose(out["energy"].numpy(), [em, ec], atol=1e-4)
    np.testing.assert_allclose(out["forces"].double().numpy(), np.concatenate([fm, fc]), atol=1e-4)


def test_export_loads_without_openjmp(exported, reference, tmp_path):
    """A subprocess with only torch importable (-I -S, site-packages without .pth processing,
    run from an empty directory): `import openjmp` fails, the file loads and reproduces."""
    site = Path(torch.__file__).resolve().parents[1]
    x, e, f = reference["cu12"]
    np.savez(tmp_path / "frame.npz", z=x.numbers, pos=x.positions, cell=np.asarray(x.cell), pbc=x.pbc)
    script = textwrap.dedent(f"""
        import sys, json
        sys.path.append({str(site)!r})
        try:
            import openjmp
            has = True
        except ImportError:
            has = False
        import numpy as np, torch
        d = np.load("frame.npz")
        m = torch.jit.load({str(exported)!r})
        out = m(torch.as_tensor(d["z"]), torch.as_tensor(d["pos"]), torch.as_tensor(d["cell"])[None],
                torch.as_tensor(d["pbc"])[None], torch.zeros(len(d["z"]), dtype=torch.long))
        print(json.dumps({{"openjmp": has, "energy": float(out["energy"][0]),
                          "forces": out["forces"].double().tolist(), "meta": json.loads(m.metadata)}}))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    res = subprocess.run([sys.executable, "-I", "-S", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["openjmp"] is False
    assert abs(got["energy"] - e) / len(x) < 1e-5
    np.testing.assert_allclose(np.array(got["forces"]), f, atol=1e-4, rtol=0)
    assert got["meta"]["forces"].startswith("gradient")


def test_aoti_refused_with_reason(tmp_path):
    from openjmp.export import export_model

    with pytest.raises(NotImplementedError, match="torch.export"):
        export_model(MODEL, tmp_path / "x.pt2", format="aoti")
