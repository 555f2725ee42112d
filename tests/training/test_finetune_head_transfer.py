"""Fine-tuning heads copied from pre-training heads (``init_head``) and "estimated" references."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from finetune_helpers import write_emt_molecules

from openjmp.training.finetune import (
    FinetuneError,
    build_finetune_model,
    run_finetuning,
    target_normalizations,
)
from openjmp.training.finetune_config import FinetuneConfig

PRE_NORM = {"energy_mean": 0.3, "energy_std": 2.0, "force_std": 0.5}


@pytest.fixture(scope="module")
def ht_data(tmp_path_factory):
    """EMT molecules of four compositions (element-count matrix of full rank over H, C, N, O) and
    a 'pre-trained' file with two pre-training heads of 2 layers."""
    from openjmp.models.registry import create_model, save_model_file

    folder = tmp_path_factory.mktemp("ht")
    write_emt_molecules(folder / "mols.extxyz", 24, lambda i, m: {"size": float(len(m)) + 0.1 * np.sin(i)})
    torch.manual_seed(0)
    model = create_model("openjmp-tiny", num_pretrain_tasks=2, num_mlps=2)
    model.model_config["pretrain_tasks"] = ["mols-a", "mols-b"]
    ref = np.zeros(120)
    ref[[1, 6, 7, 8]] = [-13.6, -1029.0, -1484.0, -2041.0]
    norm = {name: {"linear_reference": ref.tolist(), **PRE_NORM} for name in ("mols-a", "mols-b")}
    heads = {name: {"kind": "pretrain"} for name in ("mols-a", "mols-b")}
    save_model_file(model, folder / "pre.pt", normalization=norm, heads=heads)
    return folder


def cfg_dict(folder, target: dict, **changes) -> dict:
    cfg = {
        "seed": 0, "output_dir": str(folder / "out"),
        "init": {"kind": "pretrained", "checkpoint": str(folder / "pre.pt")},
        "data": {"path": str(folder / "mols.extxyz"), "format": "ase", "graph": {"cutoff": 4.0, "max_neighbors": 10},
                 "batch_size": 4, "val_fraction": 0.2, "test_fraction": 0.2},
        "targets": [target],
        "head_layers": 2,
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "trainer": {"max_steps": 4, "val_every_n_steps": 2, "progress_bar": False},
    }
    cfg.update(changes)
    return cfg


ENERGY = {"name": "energy", "kind": "energy_forces", "init_head": "mols-b", "reference": "estimated"}


def _source_model(folder):
    from openjmp.models.registry import load_model

    model, _ = load_model(folder / "pre.pt")
    return model


def test_copied_heads_compute_the_pretraining_heads_function(ht_data):
    cfg = FinetuneConfig.model_validate(cfg_dict(ht_data, dict(ENERGY, forces="direct")))
    model, _ = build_finetune_model(cfg)
    from openjmp.data.readers import read

    train = [item.record for item in read(ht_data / "mols.extxyz", "ase")][:8]
    norm, info = target_normalizations(cfg, model, train, _dataset(cfg, model, train))
    source = _source_model(ht_data)
    x_atoms = torch.randn(7, model.config.emb_size_atom)
    x_edges = torch.randn(9, model.config.emb_size_edge)
    # head index 1 = "mols-b"; "mols-a" (index 0) has different (random) weights
    assert torch.equal(model.out_energy(x_atoms), source.output.out_energy[1](x_atoms))
    assert not torch.equal(model.out_energy(x_atoms), source.output.out_energy[0](x_atoms))
    assert torch.equal(model.out_forces(x_edges), source.output.out_forces[1](x_edges))
    # the scales are inherited so the copied head means the same thing in eV
    assert norm["energy"]["energy_std"] == PRE_NORM["energy_std"]
    assert norm["energy"]["force_std"] == PRE_NORM["force_std"]
    assert info["energy"]["init_head"] == "mols-b"


def _dataset(cfg, model, records):
    from openjmp.training.data import GraphDataset

    settings = cfg.data.graph.settings()
    return GraphDataset(records, settings, 0, tuple(model.config.qint_tags))


def test_estimated_reference_recovers_per_element_offsets_of_the_zero_shot_model(ht_data):
    """Labels = the copied head's zero-shot energies + known per-element offsets: the
    'estimated' reference is the pre-training reference plus exactly those offsets."""
    from openjmp.data.readers import read
    from openjmp.training.head_transfer import (
        copy_pretrain_heads,
        energy_normalization_from_head,
        zero_shot_energies,
    )

    cfg = FinetuneConfig.model_validate(cfg_dict(ht_data, ENERGY))
    model, _ = build_finetune_model(cfg)
    records = [item.record for item in read(ht_data / "mols.extxyz", "ase")]
    inherited = copy_pretrain_heads(cfg, model, ht_data / "pre.pt")["energy"]
    dataset = _dataset(cfg, model, records)
    zero_shot = zero_shot_energies(model, dataset, "sum", inherited)
    offsets = {1: 0.25, 6: -1.5, 7: 0.75, 8: 2.0}
    labelled = []
    for r, e0 in zip(records, zero_shot):
        r = copy.copy(r)
        r.energy = float(e0 + sum(offsets[int(z)] for z in r.atomic_numbers))
        labelled.append(r)
    norm, info = energy_normalization_from_head(cfg.targets[0], inherited, labelled, model, dataset)
    expected = np.asarray(inherited["linear_reference"], dtype=np.float64)
    for z, d in offsets.items():
        expected[z] += d
    np.testing.assert_allclose(norm["linear_reference"], expected, atol=2e-4)
    assert info["zero_shot_energy_mae"] < 1e-4
    assert abs(norm["energy_mean"] - PRE_NORM["energy_mean"]) < 1e-4


def test_scalar_target_head_starts_from_the_pretraining_energy_head(ht_data):
    target = {"name": "size", "kind": "scalar", "init_head": "mols-a", "reference": "none"}
    cfg = FinetuneConfig.model_validate(cfg_dict(ht_data, target))
    model, _ = build_finetune_model(cfg)
    from openjmp.data.readers import read

    train = [item.record for item in read(ht_data / "mols.extxyz", "ase")][:8]
    norm, _ = target_normalizations(cfg, model, train, _dataset(cfg, model, train))
    head, source = model.task_heads["size"], _source_model(ht_data).output.out_energy[0]
    x = torch.randn(5, model.config.emb_size_atom)
    assert torch.equal(head[-1].bias, torch.zeros(1))
    torch.testing.assert_close(head(x), source(x), rtol=0, atol=0)
    # a scalar target keeps its own label statistics
    sizes = np.array([r.targets["size"] for r in train])
    assert norm["size"]["mean"] == pytest.approx(sizes.mean())


def test_bad_init_head_settings_fail_clearly(ht_data):
    with pytest.raises(FinetuneError, match=r"no pre-training head.*mols-a"):
        cfg = FinetuneConfig.model_validate(cfg_dict(ht_data, dict(ENERGY, init_head="ani1x")))
        model, _ = build_finetune_model(cfg)
        target_normalizations(cfg, model, [], None)
    with pytest.raises(ValueError, match="needs init.kind 'pretrained'"):
        FinetuneConfig.model_validate(cfg_dict(ht_data, ENERGY, init={"kind": "scratch", "preset": "openjmp_tiny"}))
    with pytest.raises(ValueError, match="needs kind energy_forces and init_head"):
        FinetuneConfig.model_validate(cfg_dict(ht_data, {"name": "energy", "kind": "energy_forces",
                                                         "reference": "estimated"}))
    with pytest.raises(FinetuneError, match="head_layers must equal"):
        cfg = FinetuneConfig.model_validate(cfg_dict(ht_data, ENERGY, head_layers=3))
        model, _ = build_finetune_model(cfg)
        target_normalizations(cfg, model, [], None)


def test_finetuning_from_a_copied_head_runs_and_exports_a_loadable_model(ht_data, tmp_path):
    from openjmp.inference import load_predictor

    cfg = FinetuneConfig.model_validate(cfg_dict(ht_data, ENERGY, output_dir=str(tmp_path / "run")))
    summary = run_finetuning(cfg)
    assert summary["init_heads"]["energy"]["init_head"] == "mols-b"
    assert np.isfinite(summary["init_heads"]["energy"]["zero_shot_energy_mae"])
    assert np.isfinite(summary["test"]["metrics"]["energy/forces"]["mae"])
    predictor = load_predictor(summary["model"])
    assert predictor.energy_module[0].bias is not None  # the copied head keeps its hidden biases


def test_study_scratch_arm_gets_fresh_heads_and_label_references():
    from pathlib import Path

    from openjmp.study.config import StudyConfig
    from openjmp.study.runner import finetune_config_dict

    task = {"name": "t", "domain": "d", "in_pretraining_domain": True, "primary_metric": "energy/forces",
            "finetune": {"data": {"path": "x"}, "targets": [dict(ENERGY)]}}
    study = StudyConfig.model_validate({"tasks": [task]})
    jmp = finetune_config_dict(study, study.tasks[0], "jmp", 0, 1e-3, Path("pre.pt"), Path("out"))
    scratch = finetune_config_dict(study, study.tasks[0], "scratch", 0, 1e-3, Path("pre.pt"), Path("out"))
    assert jmp["targets"][0]["init_head"] == "mols-b" and jmp["targets"][0]["reference"] == "estimated"
    assert "init_head" not in scratch["targets"][0] and scratch["targets"][0]["reference"] == "average"
    assert study.tasks[0].finetune["targets"][0]["init_head"] == "mols-b"  # the study config is not modified
    # a pre-trained model without that head (single-domain ablation): the JMP arm gets a fresh head too
    ablation = finetune_config_dict(study, study.tasks[0], "jmp", 0, 1e-3, Path("pre.pt"), Path("out"), {"mols-a"})
    assert "init_head" not in ablation["targets"][0] and ablation["targets"][0]["reference"] == "average"
