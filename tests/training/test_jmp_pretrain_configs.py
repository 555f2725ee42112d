"""configs/pretrain/jmp_{s,l}.yaml: the paper's recipe validates without the data, the missing
data error names the path, and the configs run on tiny stand-in stores at ${JMP_DATA}."""

from pathlib import Path

import pytest
from pretrain_helpers import write_stand_in_jmp_stores

from openjmp.checkpoints.jmp import published_pretrain_tasks
from openjmp.configuration import load_config
from openjmp.models.gemnet_oc.config import load_preset
from openjmp.training.config import PretrainConfig
from openjmp.training.data import StoreGraphDataset
from openjmp.training.pretrain import (
    PretrainDataModule,
    PretrainError,
    backbone_config,
    run_pretraining,
)

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "openjmp" / "configs" / "pretrain"
SIZES = {"jmp_s": (4, 512), "jmp_l": (6, 1024)}  # blocks, edge embedding (shared/jmp-recipe.md)


@pytest.fixture
def no_data(monkeypatch):
    monkeypatch.delenv("JMP_DATA", raising=False)


@pytest.mark.parametrize("name", ["jmp_s", "jmp_l"])
def test_jmp_config_holds_the_paper_recipe(name, no_data):
    cfg = load_config(PretrainConfig, CONFIGS / f"{name}.yaml")
    assert [d.name for d in cfg.datasets] == ["oc20", "oc22", "ani1x", "transition1x"]
    assert [d.force_coefficient for d in cfg.datasets] == [73, 80, 15, 14]
    assert [d.energy_coefficient for d in cfg.datasets] == [1, 1, 1, 1]
    assert [d.graph.cutoff for d in cfg.datasets] == [12, 12, 8, 8]
    assert [d.graph.pbc for d in cfg.datasets] == [True, True, False, False]
    for d in cfg.datasets:
        s = d.graph.settings()
        assert (s.max_neighbors_main, s.max_neighbors_aeaint, s.max_neighbors_qint, s.max_neighbors_aint) == (30, 20, 8, 1000)
        assert d.format == "store" and "${JMP_DATA}" in str(d.path)
    # normalisation: JMP's published constants (the packaged table), mean 0
    published = {t["name"]: t for t in published_pretrain_tasks()}
    for d in cfg.datasets:
        n = d.normalization
        assert n.energy_mean == 0.0
        assert n.energy_std == published[d.name]["energy"]["std"]
        assert n.force_std == published[d.name]["forces"]["std"]
        assert d.linear_reference == (published[d.name]["linear_reference"] is not None)
    assert cfg.sampler.temperature == 2.0 and cfg.sampler.balance_atoms
    o = cfg.optim
    assert (o.lr, tuple(o.betas), o.weight_decay, o.grad_clip_norm) == (3e-4, (0.9, 0.95), 0.1, 1.0)
    assert (o.warmup_steps, o.warmup_start_factor, o.min_lr_factor, o.cosine_epochs) == (2000, 0.2, 0.1, 2)
    assert cfg.ema.enabled and cfg.ema.decay == 0.99
    assert cfg.model.edge_dropout == 0.1 and cfg.model.head_layers == 5
    assert cfg.loss.reduction == "structure"
    assert cfg.trainer.precision == "16-mixed" and cfg.trainer.max_epochs == 2
    backbone = backbone_config(cfg.model)
    assert backbone == load_preset(name)
    assert (backbone.num_blocks, backbone.emb_size_edge) == SIZES[name]


@pytest.mark.parametrize("name", ["jmp_s", "jmp_l"])
def test_missing_data_error_names_the_path(name, no_data, monkeypatch, tmp_path):
    cfg = load_config(PretrainConfig, CONFIGS / f"{name}.yaml")
    with pytest.raises(PretrainError, match=r"'oc20': path \$\{JMP_DATA\}/oc20-s2ef-all does not exist "
                                            r"\(environment variable JMP_DATA not set\)"):
        PretrainDataModule(cfg).load()
    monkeypatch.setenv("JMP_DATA", str(tmp_path))
    cfg = load_config(PretrainConfig, CONFIGS / f"{name}.yaml")
    assert cfg.datasets[0].path == tmp_path / "oc20-s2ef-all"
    with pytest.raises(PretrainError, match=f"path {tmp_path / 'oc20-s2ef-all'} does not exist$"):
        PretrainDataModule(cfg).load()


def test_jmp_s_config_runs_on_stand_in_stores(monkeypatch, tmp_path):
    monkeypatch.setenv("JMP_DATA", str(tmp_path / "data"))
    write_stand_in_jmp_stores(tmp_path / "data")
    overrides = [  # CPU- and test-sized: a tiny backbone, few steps; everything else as written
        "model.preset=openjmp_tiny", "model.head_layers=2", f"output_dir={tmp_path / 'run'}",
        "sampler.batch_size=4", "sampler.num_workers=0", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.precision=32-true", "trainer.max_steps=2", "trainer.val_every_n_steps=2",
        "trainer.checkpoint_every_n_steps=2", "trainer.progress_bar=false", "trainer.tensorboard=false",
    ]
    cfg = load_config(PretrainConfig, CONFIGS / "jmp_s.yaml", overrides)
    dm = PretrainDataModule(cfg)
    dm.load()
    assert all(isinstance(ds, StoreGraphDataset) for ds in dm.train_sets + dm.val_sets)
    assert [len(ds) for ds in dm.train_sets] == [12, 10, 38, 9]
    assert [len(ds) for ds in dm.val_sets] == [4, 3, 2, 3]
    assert dm.normalizers[0].energy_std == cfg.datasets[0].normalization.energy_std
    assert not any(dm.normalizers[0].linear_reference)  # OC20: no reference
    assert {z for z, v in enumerate(dm.normalizers[2].linear_reference) if v} == {1, 6, 7, 8}  # fitted
    summary = run_pretraining(cfg)
    assert summary["steps"] == 2
    assert set(summary["validation"][-1]["datasets"]) == {"oc20", "oc22", "ani1x", "transition1x"}
