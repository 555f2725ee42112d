"""openjmp predict / md / relax, Predictor batching and property heads; calculator == predict."""

from __future__ import annotations

from types import SimpleNamespace

import ase.db
import ase.io
import numpy as np
import pytest
import torch
from inference_helpers import (
    normalizer,
    slab,
    tiny_model,
    triclinic_bulk,
    water_dimer,
    write_model_file,
)
from torch import nn

from openjmp.calculator import JMPCalculator
from openjmp.cli.main import main
from openjmp.data.record import AtomsRecord
from openjmp.inference import Predictor, iter_batches, load_predictor
from openjmp.models.heads import mlp_head


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    model = write_model_file(folder / "m.pt", cutoff=5.0, max_neighbors=120)
    structures = [water_dimer(), slab(), slab((True, True, False)), triclinic_bulk()]
    for i, a in enumerate(structures):
        a.info["label"] = float(i)
    ase.io.write(folder / "in.extxyz", structures)
    return SimpleNamespace(folder=folder, model=model, structures=structures)


def test_predict_cli_matches_calculator(files):
    out = files.folder / "out.extxyz"
    assert main(["predict", "--checkpoint", str(files.model), str(files.folder / "in.extxyz"),
                 "--out", str(out), "--dtype", "float64", "--max-atoms", "10",
                 "--no-progress"]) == 0
    predicted = ase.io.read(out, ":")
    assert len(predicted) == len(files.structures)
    calc = JMPCalculator(files.model, dtype="float64")
    # the calculator sees the same (file-rounded) input positions as predict
    for src, pred in zip(ase.io.read(files.folder / "in.extxyz", ":"), predicted):
        atoms = src.copy()
        atoms.calc = calc
        assert pred.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(pred.get_forces(), atoms.get_forces(), atol=1e-8)
        if src.pbc.all():
            np.testing.assert_allclose(pred.get_stress(), atoms.get_stress(), atol=1e-9)
        else:
            assert "stress" not in pred.calc.results
        assert pred.info["label"] == src.info["label"]


def test_predict_cli_writes_ase_db(files):
    out = files.folder / "out.db"
    assert main(["predict", "--checkpoint", str(files.model), str(files.folder / "in.extxyz"),
                 "--out", str(out), "--no-progress"]) == 0
    with ase.db.connect(out) as db:
        rows = list(db.select())
    assert len(rows) == 4
    assert np.isfinite(rows[1].energy) and rows[1].forces.shape == (9, 3)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.db")]  # no temp left


def test_batching_does_not_change_results(files):
    pred = load_predictor(files.model, dtype="float64", stress=True)
    records = [AtomsRecord.from_atoms(a) for a in files.structures]
    groups = list(iter_batches(records, max_atoms=10))
    assert [sum(r.natoms for r in g) for g in groups] == [6, 9, 9, 2]
    together = pred.predict_batch(records)
    alone = [pred.predict_batch([r]) for r in records]
    np.testing.assert_allclose(together["energy"].numpy(),
                               np.concatenate([a["energy"].numpy() for a in alone]), atol=1e-9)
    np.testing.assert_allclose(together["forces"].numpy(),
                               np.concatenate([a["forces"].numpy() for a in alone]), atol=1e-9)
    assert torch.isnan(together["stress"][0]).all() and torch.isnan(together["stress"][2]).all()
    assert torch.isfinite(together["stress"][1]).all() and torch.isfinite(together["stress"][3]).all()


def test_iter_batches_bounds():
    recs = [AtomsRecord(atomic_numbers=np.ones(n, dtype=np.int64), positions=np.zeros((n, 3)))
            for n in (3, 4, 5, 20, 1)]
    groups = list(iter_batches(recs, max_atoms=8))
    assert [[r.natoms for r in g] for g in groups] == [[3, 4], [5], [20], [1]]
    groups = list(iter_batches(recs, max_atoms=100, max_structures=2))
    assert [len(g) for g in groups] == [2, 2, 1]


def test_property_heads_and_energy_normalisation(tmp_path):
    """A model with ``task_heads`` (added by fine-tuning): scalar = out*std+mean (+ref),
    classification = sigmoid(out); energy = out*std + mean + Σ ref[Z]."""
    model = tiny_model("energy_forces")
    emb = model.config.emb_size_atom
    model.task_heads = nn.ModuleDict({"gap": mlp_head(emb, 2), "metal": mlp_head(emb, 2)})
    graph = {"cutoff": 5.0, "max_neighbors": 30}
    heads = {
        "energy": {"kind": "energy_forces", "energy_module": "out_energy", "force_module": None,
                   "forces": "gradient", "reduction": "sum", "graph": graph, "elements": [1, 8]},
        "gap": {"kind": "scalar", "energy_module": "task_heads.gap", "reduction": "mean",
                "graph": graph, "elements": [1, 8]},
        "metal": {"kind": "classification", "energy_module": "task_heads.metal",
                  "reduction": "mean", "graph": graph, "elements": [1, 8]},
        "absent": {"kind": "scalar", "energy_module": "task_heads.absent", "graph": graph},
    }
    norm = {"energy": normalizer(), "gap": {"mean": 4.0, "std": 2.0}}
    mf = SimpleNamespace(heads=heads, normalization=norm)
    pred = Predictor(model, mf, dtype=torch.float64)
    record = AtomsRecord.from_atoms(water_dimer())
    out = pred.predict_batch([record])
    assert set(out["properties"]) == {"gap", "metal"}
    # recompute by hand from the backbone
    graphs = pred.build_graphs([record])
    from openjmp.data.collate import collate

    data = collate([record], dtype=torch.float64)
    with torch.no_grad():
        bb = model(data.atomic_numbers, data.pos, data.cell, data.batch, graphs, 1)
        gap = model.task_heads.gap(bb.x_E).mean() * 2.0 + 4.0
        metal = torch.sigmoid(model.task_heads.metal(bb.x_E).mean())
        e = model.out_energy(bb.x_E).sum() * 0.7 - 0.3
    ref = normalizer()["linear_reference"]
    e = float(e) + sum(ref[z] for z in record.atomic_numbers)
    assert float(out["properties"]["gap"][0]) == pytest.approx(float(gap), abs=1e-10)
    assert float(out["properties"]["metal"][0]) == pytest.approx(float(metal), abs=1e-10)
    assert float(out["energy"][0]) == pytest.approx(e, abs=1e-8)


def test_md_cli(files, tmp_path):
    traj, log = tmp_path / "md.extxyz", tmp_path / "md.log"
    src = tmp_path / "mol.extxyz"
    ase.io.write(src, water_dimer())
    assert main(["md", "--checkpoint", str(files.model), str(src), "--steps", "20",
                 "--timestep", "0.25", "--traj", str(traj), "--log", str(log),
                 "--interval", "5", "--ensemble", "langevin"]) == 0
    frames = ase.io.read(traj, ":")
    assert len(frames) == 5  # steps 0, 5, 10, 15, 20
    assert not np.allclose(frames[0].positions, frames[-1].positions)
    assert len(log.read_text().strip().splitlines()) == 6  # header + 5 lines


def test_relax_cli(files, tmp_path, capsys):
    src = tmp_path / "mol.extxyz"
    ase.io.write(src, water_dimer())
    out = tmp_path / "relaxed.extxyz"
    rc = main(["relax", "--checkpoint", str(files.model), str(src), "--steps", "15",
               "--fmax", "0.01", "--traj", str(tmp_path / "r.traj"), "--log",
               str(tmp_path / "r.log"), "--out", str(out)])
    assert rc in (0, 1)
    first = ase.io.read(tmp_path / "r.traj", 0)
    final = ase.io.read(out)
    assert final.get_potential_energy() < first.get_potential_energy()
    # cell relaxation runs on a periodic structure and refuses a molecule
    bulk_file = tmp_path / "bulk.extxyz"
    ase.io.write(bulk_file, triclinic_bulk())
    rc = main(["relax", "--checkpoint", str(files.model), str(bulk_file), "--cell", "--steps",
               "3", "--traj", str(tmp_path / "c.traj"), "--log", str(tmp_path / "c.log"),
               "--out", str(tmp_path / "c.extxyz")])
    assert rc in (0, 1) and "stress" in ase.io.read(tmp_path / "c.extxyz").calc.results
    capsys.readouterr()
    assert main(["relax", "--checkpoint", str(files.model), str(src), "--cell"]) == 2
    assert "fully periodic" in capsys.readouterr().err
