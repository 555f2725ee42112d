"""Pre-training end to end at toy size: run, outputs, bad input, exact resume, DDP equivalence."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from pretrain_helpers import (
    make_two_domains,
    run_pretraining_process,
    tiny_pretrain_config,
    write_config,
)

from openjmp.configuration import ConfigError, load_config
from openjmp.training.config import PretrainConfig
from openjmp.training.pretrain import PretrainError, run_pretraining


@pytest.fixture(scope="module")
def two_domains(tmp_path_factory):
    return make_two_domains(tmp_path_factory.mktemp("domains"))


def test_pretraining_runs_and_writes_outputs(two_domains, tmp_path):
    cfg = load_config(PretrainConfig, data=tiny_pretrain_config(tmp_path, two_domains))
    summary = run_pretraining(cfg)
    out = cfg.output_dir
    assert summary["steps"] == 12
    assert len(summary["validation"]) == 2
    for record in summary["validation"]:
        assert set(record["datasets"]) == {"slabs", "mols"}
        for m in record["datasets"].values():
            assert m["force_mae_eV_per_A"] > 0 and torch.isfinite(torch.tensor(m["energy_mae_eV"]))
    assert (out / "summary.json").is_file() and (out / "learning_curves.png").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    # linear reference fitted on the slabs: O and Cu have non-zero references
    assert set(summary["normalizers"]["slabs"]["linear_reference"]) == {8, 29}
    # the exported model file reloads through the registry with EMA weights and both heads
    from openjmp.models.registry import load_model

    model, mf = load_model(out / "model.pt")
    assert mf.model_config["pretrain_tasks"] == ["slabs", "mols"]
    assert len(model.output.out_energy) == 2
    assert mf.ema_state_dict is not None


def _cfg(two_domains, tmp_path, **changes):
    return tiny_pretrain_config(tmp_path, two_domains, **changes)


def test_bad_configs_fail_before_training(two_domains, tmp_path):
    cfg = _cfg(two_domains, tmp_path)
    cfg["optim"]["learning_rate"] = 1.0  # unknown key
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        load_config(PretrainConfig, data=cfg)
    cfg = _cfg(two_domains, tmp_path, **{"datasets.0.path": str(tmp_path / "missing.extxyz")})
    with pytest.raises(PretrainError, match="does not exist"):
        run_pretraining(load_config(PretrainConfig, data=cfg))
    # a dataset with zero records (an empty ASE database)
    import ase.db

    empty = tmp_path / "empty.db"
    ase.db.connect(str(empty)).count()
    cfg = _cfg(two_domains, tmp_path, **{"datasets.1.path": str(empty)})
    with pytest.raises(PretrainError, match="zero training records"):
        run_pretraining(load_config(PretrainConfig, data=cfg))


def test_activation_checkpointing_gives_the_same_run(two_domains, tmp_path):
    import lightning as L

    class Seen(L.Callback):
        def on_train_start(self, trainer, module):
            self.flag = module.model.backbone.checkpoint_blocks

    runs = {}
    for flag in (False, True):
        cfg = _cfg(two_domains, tmp_path / str(flag), **{"trainer.max_steps": 4, "trainer.val_every_n_steps": 4,
                                                         "trainer.activation_checkpointing": flag})
        seen = Seen()
        run_pretraining(load_config(PretrainConfig, data=cfg), callbacks=[seen])
        assert seen.flag is flag
        runs[flag] = _final_weights(tmp_path / str(flag) / "run")
    assert all(torch.equal(runs[False][k], runs[True][k]) for k in runs[False])


def _final_weights(out):
    from openjmp.checkpoints.format import load_model_file

    return load_model_file(out / "model.pt").state_dict


def test_resume_after_sigkill_is_bit_identical(two_domains, tmp_path):
    """Kill a run (SIGKILL) after its step-6 checkpoint, resume, compare with an uninterrupted run."""
    # validation at steps 3, 6, 9, 12: the step-6 checkpoint already holds validation history
    base = _cfg(two_domains, tmp_path, **{"trainer.max_steps": 14, "trainer.checkpoint_every_n_steps": 6,
                                          "trainer.val_every_n_steps": 3})
    full = dict(base, output_dir=str(tmp_path / "full"))
    cut = dict(base, output_dir=str(tmp_path / "cut"))
    assert run_pretraining_process(write_config(tmp_path / "full.yaml", full)).returncode == 0
    killed = run_pretraining_process(write_config(tmp_path / "cut.yaml", cut), kill_at_step=9)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "cut" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "cut" / "model.pt").exists()
    assert run_pretraining_process(tmp_path / "cut.yaml").returncode == 0
    a, b = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    hist_a = json.loads((tmp_path / "full" / "summary.json").read_text())["validation"]
    hist_b = json.loads((tmp_path / "cut" / "summary.json").read_text())["validation"]
    assert hist_a[-1] == hist_b[-1]


def test_ddp_two_processes_equal_one_process_with_same_global_batch(two_domains, tmp_path):
    """gloo DDP with 2 x 2 structures == 1 process with 4 structures (edge dropout off)."""
    common = {"model.edge_dropout": 0.0, "trainer.max_steps": 4, "trainer.val_every_n_steps": 4,
              "trainer.checkpoint_every_n_steps": 4, "sampler.epoch_size": 24}
    one = _cfg(two_domains, tmp_path, **common, **{"sampler.batch_size": 4})
    one["output_dir"] = str(tmp_path / "one")
    two = _cfg(two_domains, tmp_path, **common, **{"sampler.batch_size": 2, "trainer.devices": 2, "trainer.strategy": "ddp"})
    two["output_dir"] = str(tmp_path / "two")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for cfg, name in ((one, "one"), (two, "two")):
        path = write_config(tmp_path / f"{name}.yaml", cfg)
        proc = subprocess.run([sys.executable, "-m", "openjmp.cli.main", "pretrain", "--config", str(path)],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _final_weights(tmp_path / "one"), _final_weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)


def test_non_finite_loss_skips_the_batch_then_aborts(two_domains, tmp_path):
    """A NaN loss skips its batch with a warning; more than max_nan_batches of them abort."""
    from openjmp.training.pretrain import PretrainDataModule, PretrainModule

    cfg = load_config(PretrainConfig, data=_cfg(two_domains, tmp_path, **{"trainer.max_nan_batches": 1}))
    dm = PretrainDataModule(cfg)
    dm.load()
    module = PretrainModule(cfg.model_dump(mode="json"), [n.as_dict() for n in dm.normalizers])
    batch = next(iter(dm.train_dataloader())).to(dtype=torch.float32)
    assert torch.isfinite(module.training_step(batch, 0))
    batch.data.energy[0] = float("nan")
    with pytest.warns(UserWarning, match="non-finite loss"):
        assert module.training_step(batch, 1) is None
    assert module.nan_batches == 1
    with pytest.raises(RuntimeError, match="non-finite losses; aborting"), pytest.warns(UserWarning):
        module.training_step(batch, 2)
