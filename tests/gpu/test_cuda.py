"""The model, training and inference on a GPU: the same numbers as on the CPU, mixed precision,
determinism. Skipped without CUDA (see conftest.py)."""

import json
import signal

import numpy as np
import pytest
import torch
from finetune_helpers import tiny_finetune_config, write_emt_molecules, write_tiny_pretrained
from inference_helpers import slab, triclinic_bulk, water_dimer, write_model_file
from pretrain_helpers import (
    make_two_domains,
    run_pretraining_process,
    tiny_pretrain_config,
    write_config,
    write_stand_in_jmp_stores,
)

from openjmp.configuration import load_config
from openjmp.models.gemnet_oc.reference import check_reference


@pytest.fixture(scope="module")
def two_domains(tmp_path_factory):
    return make_two_domains(tmp_path_factory.mktemp("domains"))


def test_check_reference_passes_on_the_device(shared_dir, device):
    """The original GemNet-OC fixture (float64 and float32 tolerances, stored and own graphs,
    single structures and the batch) on the device."""
    report = check_reference(shared_dir / "reference" / "gemnet_oc", device=device)
    assert report.passed, "\n".join(f"{r.dtype} {r.graphs} {r.system} {r.output}: {r.err:.3g} > {r.tol}"
                                    for r in report.failures)


def _bench_batch(shared_dir, structures):
    from ase.io import read

    from openjmp.data.collate import collate
    from openjmp.data.graphs.goc import GOCGraphSettings, goc_graphs_for_batch
    from openjmp.data.record import AtomsRecord

    atoms = read(shared_dir / "bench" / "batch8.extxyz", ":")
    records = [AtomsRecord.from_atoms(atoms[i]) for i in structures]
    for r in records:
        r.tags = np.full(r.natoms, 2, dtype=np.int64)
    batch = collate(records, torch.float64)
    return batch, goc_graphs_for_batch(batch, GOCGraphSettings.from_constant(12.0, 30))


def _predict(model, batch, graphs, device, dtype, autocast=False):
    model = model.to(device=device, dtype=dtype)
    b = batch.to(device, dtype)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        pred = model.predict(b.atomic_numbers, b.pos, b.cell, b.batch, graphs.to(device),
                             b.num_structures, gradient=True, stress=True)
    out = {"energy": pred.energy["pretrain0"], "forces_direct": pred.forces_direct["pretrain0"],
           "forces_grad": pred.forces_grad["pretrain0"], "stress": pred.stress["pretrain0"]}
    return {k: v.detach().double().cpu() for k, v in out.items()}


@pytest.fixture(scope="module")
def jmp_s_outputs(shared_dir, device):
    """JMP-S (random weights, one pre-training head) on a slab, a bulk cell and C60 of the
    benchmark batch: float64, float32 and bf16-autocast on the CPU, float64 / float32 / bf16-autocast on the device."""
    from openjmp.models.gemnet_oc.config import load_preset
    from openjmp.models.jmp_model import JMPModel

    torch.manual_seed(0)
    model = JMPModel(load_preset("jmp_s"), num_pretrain_tasks=1)
    batch, graphs = _bench_batch(shared_dir, [0, 4, 7])
    cpu = torch.device("cpu")
    out = {"cpu64": _predict(model, batch, graphs, cpu, torch.float64),
           "cpu32": _predict(model, batch, graphs, cpu, torch.float32),
           "cpu_bf16": _predict(model, batch, graphs, cpu, torch.float32, autocast=True),
           "dev64": _predict(model, batch, graphs, device, torch.float64),
           "dev32": _predict(model, batch, graphs, device, torch.float32),
           "dev_bf16": _predict(model, batch, graphs, device, torch.float32, autocast=True)}
    model.to(cpu)
    return out


def _rel(a, b):
    """max |a - b| / max |b| over finite entries (stress of the molecule is NaN)."""
    ok = torch.isfinite(b)
    assert torch.equal(ok, torch.isfinite(a))
    return float((a[ok] - b[ok]).abs().max() / b[ok].abs().max())


@pytest.mark.parametrize("output", ["energy", "forces_direct", "forces_grad", "stress"])
def test_jmp_s_on_the_device_equals_the_cpu(jmp_s_outputs, output):
    ref = jmp_s_outputs["cpu64"][output]
    assert _rel(jmp_s_outputs["dev64"][output], ref) < 1e-9
    # float32 as exact as on the CPU (TF32 matmuls, 10-bit mantissas, would be far off)
    cpu32 = _rel(jmp_s_outputs["cpu32"][output], ref)
    assert _rel(jmp_s_outputs["dev32"][output], ref) < max(5 * cpu32, 1e-6)


@pytest.mark.parametrize("output", ["energy", "forces_direct", "forces_grad"])
def test_bf16_autocast_as_close_as_on_the_cpu(jmp_s_outputs, output):
    """bf16 autocast (8-bit mantissas) deviates by percents with these random weights, whose
    activations grow ~3x per block (benchmarks/results: bf16_relative_deviation); the device's
    bf16 path must not be worse than the CPU's."""
    ref = jmp_s_outputs["cpu64"][output]
    err = _rel(jmp_s_outputs["dev_bf16"][output], ref)
    assert np.isfinite(err) and err < 3 * _rel(jmp_s_outputs["cpu_bf16"][output], ref) + 1e-3


def _pretrain(two_domains, folder, accelerator, precision, **changes):
    from openjmp.training.config import PretrainConfig
    from openjmp.training.pretrain import run_pretraining

    data = tiny_pretrain_config(folder, two_domains, **{"trainer.accelerator": accelerator,
                                                        "trainer.precision": precision, **changes})
    return run_pretraining(load_config(PretrainConfig, data=data))


def _val_metrics(summary):
    return [[m["energy_mae_eV"], m["force_mae_eV_per_A"]]
            for record in summary["validation"] for m in record["datasets"].values()]


def test_pretraining_on_the_device_is_deterministic_in_bf16(two_domains, tmp_path, accelerator):
    a = _pretrain(two_domains, tmp_path / "a", accelerator, "bf16-mixed")
    b = _pretrain(two_domains, tmp_path / "b", accelerator, "bf16-mixed")
    assert a["steps"] == 12
    assert np.isfinite(_val_metrics(a)).all()
    assert _val_metrics(a) == _val_metrics(b)  # bit-identical with deterministic: true
    from openjmp.models.registry import load_model

    model, _ = load_model(tmp_path / "a" / "run" / "model.pt")  # loads on the CPU
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_pretraining_on_the_device_follows_the_cpu_run(two_domains, tmp_path, accelerator):
    dev = _pretrain(two_domains, tmp_path / "dev", accelerator, "32-true")
    cpu = _pretrain(two_domains, tmp_path / "cpu", "cpu", "32-true")
    np.testing.assert_allclose(_val_metrics(dev), _val_metrics(cpu), rtol=2e-2)


def test_pretraining_killed_and_resumed_on_the_device_is_bit_identical(two_domains, tmp_path, accelerator):
    """SIGKILL after the step-6 checkpoint, resume: the same weights as the uninterrupted run."""
    from openjmp.checkpoints.format import load_model_file

    cfgs = {}
    for name in ("full", "cut"):
        cfgs[name] = write_config(tmp_path / f"{name}.yaml", tiny_pretrain_config(tmp_path / name, two_domains, **{
            "trainer.accelerator": accelerator, "trainer.max_steps": 14}))
    done = run_pretraining_process(cfgs["full"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert run_pretraining_process(cfgs["cut"], kill_at_step=9).returncode == -signal.SIGKILL
    assert run_pretraining_process(cfgs["cut"]).returncode == 0
    a = load_model_file(tmp_path / "full" / "run" / "model.pt").state_dict
    b = load_model_file(tmp_path / "cut" / "run" / "model.pt").state_dict
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("targets", ["energy_forces+scalar", "scalar"])
def test_finetuning_on_the_device(tmp_path, accelerator, device, targets):
    """Gradient-force training (double backward) on the device; the test split is evaluated
    there too, with the same metrics as on the CPU (both evaluation paths: energy models
    through the predictor, property-only models through their own loop)."""
    from openjmp.models.registry import load_model
    from openjmp.training.evaluate import evaluate_records
    from openjmp.training.finetune import load_finetune_splits, run_finetuning
    from openjmp.training.finetune_config import FinetuneConfig

    write_emt_molecules(tmp_path / "mols.extxyz", 30, lambda i, m: {"size": float(len(m)) + 0.1 * np.sin(i)})
    write_tiny_pretrained(tmp_path / "pre.pt")
    target_list = [{"name": "size", "kind": "scalar"}]
    if targets.startswith("energy_forces"):
        target_list.insert(0, {"name": "energy", "kind": "energy_forces", "force_coefficient": 5.0,
                               "forces": "gradient"})
    cfg = load_config(FinetuneConfig, data=tiny_finetune_config(tmp_path, **{
        "targets": target_list, "trainer.accelerator": accelerator, "trainer.precision": "32-true"}))
    summary = run_finetuning(cfg)
    assert summary["steps"] == 6
    metrics = summary["test"]["metrics"]
    expected = {"energy/energy", "energy/forces", "size"} if "energy" in targets else {"size"}
    assert expected <= set(metrics)
    assert all(np.isfinite(v) for m in metrics.values() for v in m.values() if isinstance(v, float))
    model, _ = load_model(summary["model"])
    assert all(p.device.type == "cpu" for p in model.parameters())
    test_records = load_finetune_splits(cfg)["test"]
    on_cpu = evaluate_records(summary["model"], test_records, tmp_path / "cpu_eval", device="cpu")
    for name, m in metrics.items():
        for key, value in m.items():
            if isinstance(value, float):
                assert value == pytest.approx(on_cpu["metrics"][name][key], rel=1e-4, abs=1e-7), (name, key)


@pytest.mark.parametrize("make", [water_dimer, lambda: slab((True, True, True)), triclinic_bulk],
                         ids=["molecule", "slab", "triclinic_bulk"])
def test_calculator_on_the_device_equals_the_cpu(tmp_path, device, make):
    from openjmp.calculator import JMPCalculator

    path = write_model_file(tmp_path / "ef.pt", cutoff=5.0, max_neighbors=120)
    results = {}
    for where in ("cpu", str(device)):
        atoms = make()
        atoms.calc = JMPCalculator(path, device=where, dtype="float64")
        res = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.all():
            res["stress"] = atoms.get_stress()
        results[where] = res
    # float64; summation order differs (atomics on the GPU) under energies of ~1e4 eV (element
    # references): force differences of ~1e-9 eV/Å are rounding
    for key, ref in results["cpu"].items():
        np.testing.assert_allclose(results[str(device)][key], ref, rtol=1e-7, atol=1e-8)


def test_predict_cli_on_the_device(tmp_path, device):
    import ase.io

    from openjmp.cli.main import main

    path = write_model_file(tmp_path / "ef.pt", cutoff=5.0, max_neighbors=120)
    ase.io.write(tmp_path / "in.extxyz", [water_dimer(), slab((True, True, True))])
    rc = main(["predict", "--checkpoint", str(path), str(tmp_path / "in.extxyz"),
               "--out", str(tmp_path / "out.extxyz"), "--device", str(device), "--no-progress"])
    assert rc == 0
    frames = ase.io.read(tmp_path / "out.extxyz", ":")
    assert len(frames) == 2 and all(np.isfinite(f.get_potential_energy()) for f in frames)
    json.dumps([float(f.get_potential_energy()) for f in frames])


def test_jmp_s_pretraining_config_as_written_on_the_device(monkeypatch, tmp_path):
    """configs/pretrain/jmp_s.yaml with its GPU settings (accelerator gpu, devices auto,
    16-mixed with loss scaling, deterministic false) and streamed stores read by DataLoader
    workers; only the backbone and the run length are test-sized."""
    from pathlib import Path

    from openjmp.training.config import PretrainConfig
    from openjmp.training.pretrain import run_pretraining

    if not torch.cuda.is_available():
        pytest.skip("the config as written asks for accelerator gpu")
    monkeypatch.setenv("JMP_DATA", str(tmp_path / "data"))
    write_stand_in_jmp_stores(tmp_path / "data")
    config = Path(__file__).resolve().parents[2] / "src" / "openjmp" / "configs" / "pretrain" / "jmp_s.yaml"
    cfg = load_config(PretrainConfig, config, [
        "model.preset=openjmp_tiny", "model.head_layers=2", f"output_dir={tmp_path / 'run'}",
        "sampler.batch_size=4", "sampler.num_workers=2", "trainer.max_steps=4",
        "trainer.val_every_n_steps=4", "trainer.checkpoint_every_n_steps=4",
        "trainer.progress_bar=false", "trainer.tensorboard=false"])
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "16-mixed")
    summary = run_pretraining(cfg)
    assert summary["steps"] == 4
    assert np.isfinite(_val_metrics(summary)).all()
