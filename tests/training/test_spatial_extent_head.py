"""Mass-weighted spatial-extent readout (JMP's QM9 <R²> head): the value of a hand-made case,
invariance under translation/rotation, config checks, and the same readout in fine-tuning,
the exported model file, the Predictor property path and evaluation."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import torch
from ase.data import atomic_masses
from pydantic import ValidationError

from openjmp.models.heads import spatial_extent, structure_readout
from openjmp.training.finetune_config import TargetConfig


def test_value_of_a_hand_made_case():
    # structure 0: C at the origin, H at (1, 0, 0) Å; structure 1: two O atoms 2 Å apart
    z = torch.tensor([6, 1, 8, 8])
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [5.0, 5, 5], [5.0, 5, 7]], dtype=torch.float64)
    batch = torch.tensor([0, 0, 1, 1])
    q = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    got = spatial_extent(q, pos, z, batch, 2)
    m_c, m_h = atomic_masses[6], atomic_masses[1]
    x_cm = m_h / (m_c + m_h)  # centre of mass on the C-H axis
    expected0 = 0.5 * x_cm**2 + 2.0 * (1 - x_cm) ** 2
    expected1 = 1.0 * 1.0 + 3.0 * 1.0  # equal masses: centre halfway, 1 Å from each
    assert got.tolist() == pytest.approx([expected0, expected1], rel=1e-12)
    # with q = 1 it is the plain second moment about the centre of mass
    ones = spatial_extent(torch.ones(4, dtype=torch.float64), pos, z, batch, 2)
    assert ones[1].item() == pytest.approx(2.0)
    assert torch.equal(structure_readout(q, batch, 2, "spatial_extent", pos, z), got)
    with pytest.raises(ValueError, match="positions"):
        structure_readout(q, batch, 2, "spatial_extent")


def test_invariant_under_translation_and_rotation():
    gen = torch.Generator().manual_seed(0)
    z = torch.tensor([6, 1, 1, 8, 7, 1])
    pos = torch.randn(6, 3, generator=gen, dtype=torch.float64) * 2
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    q = torch.randn(6, generator=gen, dtype=torch.float64)
    base = spatial_extent(q, pos, z, batch, 2)
    shift = torch.tensor([[3.0, -7.0, 11.0]] * 3 + [[-2.0, 0.5, 40.0]] * 3, dtype=torch.float64)
    rot, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    assert torch.allclose(spatial_extent(q, pos + shift, z, batch, 2), base, rtol=1e-10, atol=1e-10)
    assert torch.allclose(spatial_extent(q, pos @ rot.T, z, batch, 2), base, rtol=1e-10, atol=1e-10)
    # not invariant to moving one atom (the readout depends on the geometry)
    moved = pos.clone()
    moved[0, 0] += 1.0
    assert not torch.allclose(spatial_extent(q, moved, z, batch, 2)[0], base[0])


def test_config_checks():
    TargetConfig(name="r2", kind="scalar", reduction="spatial_extent", reference="none")
    with pytest.raises(ValidationError, match="reference: none"):
        TargetConfig(name="r2", kind="scalar", reduction="spatial_extent")  # default reference: average
    with pytest.raises(ValidationError, match="scalar targets"):
        TargetConfig(name="e", kind="energy_forces", reduction="spatial_extent", reference="none")


@pytest.fixture(scope="module")
def r2_data(tmp_path_factory):
    from ase.build import molecule
    from ase.calculators.emt import EMT

    folder = tmp_path_factory.mktemp("r2")
    frames = []
    for i in range(24):
        m = molecule(["H2O", "NH3", "CH4", "C2H6"][i % 4])
        m.rattle(0.05, seed=i)
        m.calc = EMT()
        m.get_potential_energy()
        m.get_forces()
        d = m.positions - m.get_center_of_mass()
        m.info["r2"] = float((d**2).sum())
        frames.append(m)
    ase.io.write(folder / "mols.extxyz", frames)
    return folder


def test_finetune_export_predict_and_evaluate_use_the_readout(r2_data, tmp_path):
    from dataclasses import replace

    from openjmp.checkpoints.format import load_model_file
    from openjmp.configuration import load_config
    from openjmp.data.collate import collate
    from openjmp.data.readers import read
    from openjmp.inference import load_predictor
    from openjmp.training.evaluate import collect_predictions
    from openjmp.training.finetune import run_finetuning
    from openjmp.training.finetune_config import FinetuneConfig

    cfg = load_config(FinetuneConfig, data={
        "seed": 0, "output_dir": str(tmp_path / "out"),
        "init": {"kind": "scratch", "preset": "openjmp_tiny"},
        "data": {"path": str(r2_data / "mols.extxyz"), "format": "ase",
                 "graph": {"cutoff": 4.0, "max_neighbors": 10}, "batch_size": 4},
        "targets": [{"name": "energy", "kind": "energy_forces", "force_coefficient": 1.0},
                    {"name": "r2", "kind": "scalar", "reduction": "spatial_extent", "reference": "none"}],
        "head_layers": 2,
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "trainer": {"max_steps": 3, "val_every_n_steps": 3, "progress_bar": False},
    })
    summary = run_finetuning(cfg)
    model_path = tmp_path / "out" / "model.pt"
    mf = load_model_file(model_path)
    assert mf.heads["r2"]["reduction"] == "spatial_extent"
    norm = mf.normalization["r2"]
    assert norm["mean"] == 0.0 and norm["std"] > 0
    metrics = json.loads((tmp_path / "out" / "test" / "metrics.json").read_text())["metrics"]
    assert metrics["r2"]["count"] == summary["test_records"] > 0

    records = [r for _, r in read(r2_data / "mols.extxyz", format="ase")][:3]
    shifted = [replace(r, positions=r.positions + np.array([4.0, -3.0, 25.0])) for r in records]
    predictor = load_predictor(model_path, dtype="float64")
    pred = predictor.predict_batch(records)["properties"]["r2"].numpy()
    pred_shifted = predictor.predict_batch(shifted)["properties"]["r2"].numpy()
    assert pred_shifted == pytest.approx(pred, rel=1e-8, abs=1e-8)
    # the evaluation path (the same Predictor) gives the same values
    only = collect_predictions(model_path, records, dtype="float64")["properties"]["r2"]["pred"]
    assert only == pytest.approx(pred.tolist(), rel=1e-8, abs=1e-8)

    # and they are std · Σ_i q_i |r_i - r_cm|² with q_i the head's per-atom output
    data = collate(records, dtype=torch.float64)
    with torch.no_grad():
        x_E = predictor.model(data.atomic_numbers, data.pos, data.cell, data.batch,
                              predictor.build_graphs(records), 3).x_E
        q = (predictor.model.task_heads["r2"](x_E).squeeze(-1) * norm["std"]).numpy()
    manual = []
    for s, r in enumerate(records):
        m = atomic_masses[r.atomic_numbers]
        d = r.positions - (m[:, None] * r.positions).sum(0) / m.sum()
        manual.append(float((q[data.batch.numpy() == s] * (d**2).sum(1)).sum()))
    assert pred.tolist() == pytest.approx(manual, rel=1e-8, abs=1e-8)
