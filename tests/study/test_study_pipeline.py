"""The whole study pipeline at toy size: runs, report structure, numbers traced to metrics files."""

import json
import re

import ase.io
import numpy as np
import pytest
import torch
import yaml

from openjmp.cli.main import main


@pytest.fixture(scope="module")
def toy_study(tmp_path_factory):
    from ase.build import bulk, molecule
    from ase.calculators.emt import EMT

    from openjmp.models.registry import create_model, save_model_file

    folder = tmp_path_factory.mktemp("study")
    mols = []
    for i in range(24):
        m = molecule(["H2O", "NH3", "CH4"][i % 3])
        m.rattle(0.04, seed=i)
        m.calc = EMT()
        m.get_potential_energy()
        m.get_forces()
        mols.append(m)
    ase.io.write(folder / "mols.extxyz", mols)
    crystals = []
    for i in range(24):
        c = bulk("Cu", "fcc", a=3.6 + 0.02 * (i % 6), cubic=False)
        c.calc = EMT()
        c.info["e_per_atom"] = c.get_potential_energy() / len(c)
        crystals.append(c)
    ase.io.write(folder / "crystals.extxyz", crystals)
    torch.manual_seed(0)
    model = create_model("openjmp-tiny", num_pretrain_tasks=1, num_blocks=1, num_mlps=2)
    norm = {"oc20": {"linear_reference": [0.0] * 120, "energy_mean": 0.0, "energy_std": 1.0, "force_std": 1.0}}
    save_model_file(model, folder / "pre.pt", normalization=norm, heads={"oc20": {"kind": "pretrain"}})
    common = {"graph": {"cutoff": 4.0, "max_neighbors": 8}, "batch_size": 4, "format": "ase"}
    cfg = {
        "pretrained": str(folder / "pre.pt"), "steps": 4, "val_every_n_steps": 2, "lr_grid": [1e-3, 3e-3],
        "seeds": [0], "run_time_cap_minutes": 2,
        "tasks": [
            {"name": "mols-ef", "domain": "molecules", "in_pretraining_domain": True,
             "primary_metric": "energy/forces", "report_scale": 1000.0, "report_unit": "meV/Å",
             "finetune": {"data": {"path": str(folder / "mols.extxyz"), **common},
                          "targets": [{"name": "energy", "kind": "energy_forces", "init_head": "oc20",
                                       "reference": "estimated"}], "head_layers": 2}},
            {"name": "cu-eform", "domain": "bulk", "in_pretraining_domain": False,
             "primary_metric": "e_per_atom", "report_scale": 1000.0, "report_unit": "meV/atom",
             "finetune": {"data": {"path": str(folder / "crystals.extxyz"), **common},
                          "targets": [{"name": "e_per_atom", "kind": "scalar", "reduction": "mean", "reference": "none"}],
                          "head_layers": 2}},
        ],
    }
    (folder / "study.yaml").write_text(yaml.safe_dump(cfg))
    return folder


def task_run(results: dict, task: str, arm: str) -> str:
    return results["tasks"][task]["arms"][arm]["runs"][0]["run"]


def test_study_pipeline_writes_a_traceable_report(toy_study):
    out = toy_study / "out"
    assert main(["study", "--config", str(toy_study / "study.yaml"), "--out", str(out), "--workers", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["tasks"]) == {"mols-ef", "cu-eform"}
    report = (out / "report.md").read_text()
    for section in ("Fairness rules", "## Results", "Mean improvement", "## Wall time", "learning_curves.png", "improvements.png"):
        assert section in report
    assert (out / "learning_curves.png").is_file() and (out / "improvements.png").is_file()
    # the JMP arm's energy head started from the pre-training head, the scratch arm's did not
    assert "- mols-ef: energy ← oc20" in report
    jmp_summary = json.loads((out / task_run(results, "mols-ef", "jmp") / "summary.json").read_text())
    scratch_summary = json.loads((out / task_run(results, "mols-ef", "scratch") / "summary.json").read_text())
    assert jmp_summary["init_heads"]["energy"]["init_head"] == "oc20" and scratch_summary["init_heads"] == {}
    # every number in the results table comes from a metrics file
    rows = [line for line in report.splitlines() if line.startswith("| mols-ef") or line.startswith("| cu-eform")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name, scratch, jmp, improvement, files = cells[0], float(cells[4]), float(cells[5]), cells[6], cells[8]
        task = results["tasks"][name]
        paths = re.findall(r"`([^`]+)`", files)
        assert len(paths) == 2
        values = []
        for path in paths:
            metrics = json.loads((out / path).read_text())["metrics"][task["primary_metric"]]
            values.append(metrics["mae"] * 1000.0)
        assert scratch == pytest.approx(values[0], rel=1e-3)
        assert jmp == pytest.approx(values[1], rel=1e-3)
        assert float(improvement.rstrip("%")) == pytest.approx(100 * (1 - values[1] / values[0]), abs=0.06)
        # the chosen learning rate has the lowest validation loss of its candidates
        for arm in ("scratch", "jmp"):
            run = task["arms"][arm]["runs"][0]
            assert run["best_val_loss"] == min(run["lr_candidates"].values())
    assert results["mean_improvement"] == pytest.approx(np.mean([t["improvement"] for t in results["tasks"].values()]))
    # a second invocation resumes: nothing is re-run, same results
    mtime = (out / "runs" / "mols-ef" / "jmp" / "seed0").stat().st_mtime
    assert main(["study", "--config", str(toy_study / "study.yaml"), "--out", str(out), "--workers", "1"]) == 0
    assert (out / "runs" / "mols-ef" / "jmp" / "seed0").stat().st_mtime == mtime
    assert json.loads((out / "results.json").read_text())["tasks"]["mols-ef"]["arms"] == results["tasks"]["mols-ef"]["arms"]


def test_ablation_flags_require_pretrain(toy_study, tmp_path, capsys):
    assert main(["study", "--config", str(toy_study / "study.yaml"), "--out", str(tmp_path), "--no-ema"]) == 2
    assert "--pretrain" in capsys.readouterr().err
