"""Models fine-tuned on graph-level properties only (QM9 / MatBench / QMOF-like heads, no energy
head) in the Predictor, ``openjmp predict``, ``openjmp evaluate`` and the ASE calculator; per-atom
energies and the shared force-mode default of predict and the calculator."""

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from finetune_helpers import tiny_finetune_config, write_emt_molecules, write_tiny_pretrained

from openjmp.calculator import JMPCalculator, NoEnergyHeadError
from openjmp.cli.main import main
from openjmp.configuration import load_config
from openjmp.data.record import AtomsRecord
from openjmp.inference import HeadError, load_predictor, split_results
from openjmp.training.evaluate import collect_predictions
from openjmp.training.finetune import run_finetuning
from openjmp.training.finetune_config import FinetuneConfig


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A model fine-tuned on a scalar (``size``) and a classification (``is_big``) target only,
    and one fine-tuned on energy + gradient forces; their data; a 'pre-trained' file."""
    folder = tmp_path_factory.mktemp("props")
    write_emt_molecules(folder / "mols.extxyz", 24, lambda i, m: {
        "size": float(len(m)) + 0.1 * np.sin(i), "is_big": float(len(m) > 4)})
    write_tiny_pretrained(folder / "pre.pt")
    targets = [{"name": "size", "kind": "scalar", "reduction": "sum", "reference": "none"},
               {"name": "is_big", "kind": "classification", "reduction": "mean"}]
    run_finetuning(load_config(FinetuneConfig, data=tiny_finetune_config(
        folder, output_dir=str(folder / "props"), targets=targets, **{"trainer.max_steps": 2})))
    run_finetuning(load_config(FinetuneConfig, data=tiny_finetune_config(
        folder, output_dir=str(folder / "energy"), **{"trainer.max_steps": 2})))
    return folder


def _molecules(files, n=3):
    return ase.io.read(files / "mols.extxyz", index=f":{n}")


def test_predictor_serves_a_property_only_model(files):
    path = files / "props" / "model.pt"
    predictor = load_predictor(path, dtype="float64")
    assert predictor.head_name is None and predictor.forces == "none"
    assert [ph.name for ph in predictor.property_heads] == ["size", "is_big"]
    records = [AtomsRecord.from_atoms(a) for a in _molecules(files)]
    result = predictor.predict_batch(records)
    assert "energy" not in result and "forces" not in result
    items = split_results(records, result)
    assert all(set(item) == {"properties"} for item in items)
    assert all(0.0 < item["properties"]["is_big"] < 1.0 for item in items)
    # evaluate goes through the same predictor
    pred = collect_predictions(path, records, dtype="float64")
    assert pred["kind"] == "properties" and pred["head"] is None and pred["energy"] == []
    assert pred["properties"]["size"]["pred"] == pytest.approx([i["properties"]["size"] for i in items])
    with pytest.raises(HeadError, match="no energy head.*size \\(scalar\\)"):
        load_predictor(path, forces="gradient")


def test_property_only_model_in_the_calculator(files):
    calc = JMPCalculator(files / "props" / "model.pt", dtype="float64")
    assert {"size", "is_big"} <= set(calc.implemented_properties)
    atoms = _molecules(files, 1)[0]
    atoms.calc = calc
    size = calc.get_property("size", atoms)
    assert calc.results["size"] == size and 0.0 < calc.results["is_big"] < 1.0
    predictor = load_predictor(files / "props" / "model.pt", dtype="float64")
    expected = predictor.predict_batch([AtomsRecord.from_atoms(atoms)])["properties"]["size"]
    assert size == pytest.approx(float(expected[0]), rel=1e-12)
    for ask in (atoms.get_potential_energy, atoms.get_forces):
        with pytest.raises(NoEnergyHeadError, match=r"no energy head.*size \(scalar\), is_big \(classification\)"):
            ask()
    # one error, catchable as ASE's and as openjmp's
    assert issubclass(NoEnergyHeadError, PropertyNotImplementedError)
    assert issubclass(NoEnergyHeadError, HeadError)


def test_property_only_model_in_openjmp_predict(files, tmp_path):
    out = tmp_path / "pred.extxyz"
    rc = main(["predict", str(files / "mols.extxyz"), "--checkpoint", str(files / "props" / "model.pt"),
               "--out", str(out), "--dtype", "float64", "--no-progress"])
    assert rc == 0
    frames = ase.io.read(out, index=":")
    assert len(frames) == 24
    calc = JMPCalculator(files / "props" / "model.pt", dtype="float64")
    for a in frames[:2]:
        assert "ref_size" in a.info  # the label the input carried
        assert a.calc is None or "energy" not in a.calc.results  # no energy written
        b = a.copy()
        b.calc = calc
        assert a.info["size"] == pytest.approx(calc.get_property("size", b), rel=1e-9)


def test_per_atom_energies_sum_to_the_energy(files, tmp_path):
    path = files / "energy" / "model.pt"
    calc = JMPCalculator(path, dtype="float64")
    for atoms in [_molecules(files, 1)[0], bulk("C", "diamond", a=3.6).repeat((1, 1, 2))]:
        atoms.calc = calc
        energies = atoms.get_potential_energies()
        assert energies.shape == (len(atoms),)
        assert energies.sum() == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
    records = [AtomsRecord.from_atoms(a) for a in _molecules(files)]
    result = load_predictor(path, dtype="float64").predict_batch(records)
    sums = torch.zeros(3, dtype=torch.float64).index_add_(
        0, torch.repeat_interleave(torch.arange(3), result["natoms"]), result["energies"])
    torch.testing.assert_close(sums, result["energy"], rtol=0, atol=1e-8)
    # openjmp predict writes them too
    out = tmp_path / "e.extxyz"
    assert main(["predict", str(files / "mols.extxyz"), "--checkpoint", str(path), "--out", str(out),
                 "--dtype", "float64", "--no-progress"]) == 0
    first = ase.io.read(out, index=0)
    assert first.get_potential_energies().sum() == pytest.approx(first.get_potential_energy(), abs=1e-8)


def test_stress_of_a_molecule_is_absent(files):
    path = files / "energy" / "model.pt"
    predictor = load_predictor(path, dtype="float64", stress=True)
    crystal = bulk("C", "diamond", a=3.6)
    records = [AtomsRecord.from_atoms(a) for a in (_molecules(files, 1)[0], crystal)]
    result = predictor.predict_batch(records)
    assert torch.isnan(result["stress"][0]).all() and torch.isfinite(result["stress"][1]).all()
    mol, cry = split_results(records, result)
    assert "stress" not in mol and cry["stress"].shape == (3, 3)


def test_predict_and_calculator_default_to_the_heads_force_mode(files):
    """(pretrain heads, direct by their entry: tests/inference/test_calculator.py)"""
    energy = files / "energy" / "model.pt"  # fine-tuned with gradient forces
    assert load_predictor(energy).forces == JMPCalculator(energy).predictor.forces == "gradient"
    assert JMPCalculator(energy, forces="none").predictor.forces == "none"
