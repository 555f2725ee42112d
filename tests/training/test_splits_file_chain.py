"""A fine-tuning run's splits.json: evaluate --split test and data export select exactly the
run's own test records (issue 16: commands that chain), also when the source defines no splits."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from finetune_helpers import tiny_finetune_config, write_emt_molecules, write_tiny_pretrained

from openjmp.cli.main import main
from openjmp.configuration import load_config
from openjmp.data.split_file import SplitFile, SplitFileError
from openjmp.training.finetune import run_finetuning
from openjmp.training.finetune_config import FinetuneConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 6-step fine-tune on 24 EMT molecules in one extxyz (no splits in the source: seeded)."""
    folder = tmp_path_factory.mktemp("chain")
    write_emt_molecules(folder / "mols.extxyz", 24)
    write_tiny_pretrained(folder / "pre.pt")
    cfg = load_config(FinetuneConfig, data=tiny_finetune_config(folder))
    summary = run_finetuning(cfg)
    return folder, summary


def test_splits_file_lists_disjoint_splits_and_names_the_source_portably(run):
    folder, summary = run
    split_file = SplitFile.read(summary["splits_file"])
    assert split_file.source_path == "../mols.extxyz"  # relative to the run folder: no absolute path
    assert split_file.source.resolve() == (folder / "mols.extxyz").resolve()
    ids = {name: set(v) for name, v in split_file.splits.items()}
    assert len(ids["train"]) == summary["train_records"] and len(ids["test"]) == summary["test_records"] > 0
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["val"]) and not (ids["val"] & ids["test"])
    assert "/" not in json.dumps(split_file.splits)  # ids, not paths


def test_evaluate_split_test_reproduces_the_runs_own_test_metrics(run, capsys):
    folder, summary = run
    model = folder / "out" / "model.pt"
    # no --data: the source named by out/splits.json, its test ids
    assert main(["evaluate", "--model", str(model), "--split", "test", "--out", str(folder / "ev1")]) == 0
    # --data given, a source without splits: the ids of the splits.json next to the model
    assert main(["evaluate", "--model", str(model), "--data", str(folder / "mols.extxyz"), "--split", "test",
                 "--out", str(folder / "ev2")]) == 0
    capsys.readouterr()
    for name in ("ev1", "ev2"):
        got = json.loads((folder / name / "metrics.json").read_text())
        assert got["records"] == summary["test"]["records"]
        np.testing.assert_allclose(got["metrics"]["energy/forces"]["mae"],
                                   summary["test"]["metrics"]["energy/forces"]["mae"], rtol=1e-6)


def test_data_export_writes_the_test_split_and_keeps_record_ids(run, capsys):
    folder, summary = run
    out = folder / "test.extxyz"
    assert main(["data", "export", "--splits", str(folder / "out" / "splits.json"), "--split", "test",
                 "--out", str(out)]) == 0
    frames = ase.io.read(out, ":")
    split_file = SplitFile.read(folder / "out" / "splits.json")
    assert [a.info["openjmp_source"] for a in frames] == split_file.splits["test"]
    source = {f"mols.extxyz#{i}": a for i, a in enumerate(ase.io.read(folder / "mols.extxyz", ":"))}
    for a in frames:
        ref = source[a.info["openjmp_source"]]
        assert a.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(a.get_forces(), ref.get_forces(), atol=1e-9)
    # the exported file is itself selectable by the run's splits file (ids survive the round trip)
    assert main(["evaluate", "--model", str(folder / "out" / "model.pt"), "--data", str(out),
                 "--splits", str(folder / "out" / "splits.json"), "--split", "test",
                 "--out", str(folder / "ev3")]) == 0
    # ... and an ASE database
    db = folder / "test.db"
    assert main(["data", "export", str(out), "--out", str(db)]) == 0
    assert len(ase.io.read(db, ":")) == len(frames)
    assert not list(folder.glob(".*.tmp*"))


def test_splits_file_that_does_not_match_the_data_is_refused(run, tmp_path):
    folder, _ = run
    split_file = SplitFile.read(folder / "out" / "splits.json")
    other = write_emt_molecules(tmp_path / "other.extxyz", 5)
    from openjmp.data.readers import read

    with pytest.raises(SplitFileError, match="not in"):
        split_file.select((r for _, r in read(other)), "test")
    with pytest.raises(SplitFileError, match="split 'holdout' is not in"):
        split_file.select([], "holdout")
    bad = tmp_path / "splits.json"
    bad.write_text(json.dumps({**split_file.to_dict(), "format_version": 99}))
    with pytest.raises(SplitFileError, match="format_version 99"):
        SplitFile.read(bad)
