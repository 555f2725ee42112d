"""The shipped fine-tuning configs: every YAML validates against FinetuneConfig, the paper
folder holds one file per JMP fine-tuning task with the recipe's settings, the mini configs
point at shipped data that has their targets, and the generator's output is committed."""

from __future__ import annotations

import importlib.util
import math
from itertools import islice
from pathlib import Path

import pytest
import yaml

from openjmp.configuration import load_config
from openjmp.data.readers import read
from openjmp.training.config import GraphConfig, resolve_path
from openjmp.training.finetune_config import FinetuneConfig

REPO = Path(__file__).resolve().parents[2]
FINETUNE = REPO / "src" / "openjmp" / "configs" / "finetune"
PAPER = sorted((FINETUNE / "paper").glob("*.yaml"))
MINI = sorted((FINETUNE / "mini").glob("*.yaml"))

QM9 = ("mu", "alpha", "eps_HOMO", "eps_LUMO", "delta_eps", "R_2_Abs", "ZPVE", "U_0", "U", "H", "G", "c_v")
QM9_REFERENCED = {"ZPVE", "U_0", "U", "H", "G", "c_v"}
RMD17 = ("aspirin", "benzene", "ethanol", "malonaldehyde", "naphthalene", "salicylic", "toluene",
         "uracil", "paracetamol", "azobenzene")
MD22 = ("Ac-Ala3-NHMe", "DHA", "stachyose", "AT-AT", "AT-AT-CG-CG", "buckyball-catcher",
        "double-walled_nanotube")
MD22_DIRECT = {"Ac-Ala3-NHMe", "double-walled_nanotube"}
MATBENCH = ("jdft2d", "phonons", "dielectric", "log_gvrh", "log_kvrh", "perovskites", "mp_gap", "mp_e_form")


def load(path: Path) -> FinetuneConfig:
    return load_config(FinetuneConfig, path)


def test_paper_folder_has_one_file_per_task():
    expected = (
        [f"qm9_{t}" for t in QM9] + [f"rmd17_{m}" for m in RMD17] + [f"md22_{m}" for m in MD22]
        + ["spice_dipeptides", "spice_solvated_amino_acids"]
        + [f"matbench_{t}" for t in MATBENCH] + ["matbench_mp_is_metal", "qmof_bandgap"]
    )
    assert len(PAPER) == 12 + 10 + 7 + 2 + 9 + 1 == 41
    assert sorted(p.stem for p in PAPER) == sorted(expected)


@pytest.mark.parametrize("path", PAPER + MINI, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_config_validates(path):
    cfg = load(path)
    assert cfg.data.path.is_absolute()
    assert cfg.targets
    if cfg.optim.llrd.preset is not None:
        # the preset's block count must match the backbone it names (JMP-S: 4 blocks)
        assert cfg.optim.llrd.preset == "jmp_s" and cfg.init.kind == "jmp"
        assert len(cfg.optim.llrd.multipliers(4)) == 3 + 2 * 4


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_common_recipe(path):
    cfg = load(path)
    assert cfg.init.kind == "jmp" and cfg.init.use_ema
    # a registry name, resolved in $OPENJMP_CACHE / ~/.cache/openjmp when the run starts
    assert cfg.init.checkpoint == "jmp-s"
    o, t = cfg.optim, cfg.trainer
    assert o.lr == 8e-5 and tuple(o.betas) == (0.9, 0.95) and o.weight_decay == 0.1
    assert o.grad_clip_value == 1.0 and o.llrd.preset == "jmp_s"
    assert o.warmup_start_factor == 0.1 and o.min_lr_factor == 0.1 and o.plateau_factor == 0.8
    # in epochs, as JMP: one validation per epoch; warm-up 5, cosine 32, run 500 epochs
    assert (o.warmup_epochs, o.cosine_epochs, t.max_epochs, t.val_every_n_epochs) == (5, 32, 500, 1)
    assert o.warmup_steps is o.cosine_steps is t.max_steps is t.val_every_n_steps is None
    assert o.plateau_patience == (25 if path.stem.startswith("rmd17_") else 3)
    assert t.early_stopping_patience == 50
    assert cfg.ema.enabled and cfg.ema.decay == 0.99
    assert cfg.head_layers == 5
    assert cfg.data.path.is_relative_to(path.parent / "data")
    # size-conditional neighbour caps only where JMP uses them
    conditional = path.stem.startswith(("matbench_", "qmof_"))
    assert (cfg.data.graph.max_neighbors_by_natoms is not None) == conditional


def _family(stem: str) -> str:
    return stem.split("_", 1)[0]


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_task_settings(path):
    cfg = load(path)
    fam, d = _family(path.stem), cfg.data
    (target,) = cfg.targets
    graph = (d.graph.cutoff, d.graph.max_neighbors)
    if fam == "qm9":
        name = path.stem.removeprefix("qm9_")
        from openjmp.data.readers.qm9 import PROPERTIES
        from openjmp.data.readers.qm9_pyg import Y_COLUMNS

        assert target.name == name and target.kind == "scalar"
        assert target.reduction == ("spatial_extent" if name == "R_2_Abs" else "sum")
        assert target.target_key in {p[0] for p in PROPERTIES} & {c[0] for c in Y_COLUMNS}
        assert target.reference == ("average" if name in QM9_REFERENCED else "none")
        assert graph == (8.0, 30) and d.batch_size == 48 and d.format == "qm9-pyg"
        # JMP's 10,000 / 10,000 molecules of the 130,831
        assert round(d.val_fraction * 130_831) == round(d.test_fraction * 130_831) == 10_000
        assert f"about {math.ceil(110_831 / 48)} steps/epoch" in path.read_text()
    elif fam == "rmd17":
        assert target.kind == "energy_forces" and target.forces == "gradient"
        assert (target.energy_coefficient, target.force_coefficient) == (0.0, 10.0)
        assert graph == (7.0, 100) and d.batch_size == 1
        assert d.reader_options == {"split": "jmp", "train_size": 950, "val_size": 50, "seed": 42}
        assert "about 950 steps/epoch" in path.read_text()
    elif fam == "md22":
        mol = path.stem.removeprefix("md22_")
        assert d.path.name == f"md22_{mol}.npz" and d.reader_options["split"] == "jmp"
        assert target.forces == ("direct" if mol in MD22_DIRECT else "gradient")
        assert (target.energy_coefficient, target.force_coefficient) == (1.0, 100.0)
        assert graph == (12.0, 30) and d.batch_size in (1, 2)
    elif fam == "spice":
        assert target.forces == "gradient"
        assert (target.energy_coefficient, target.force_coefficient) == (1.0, 100.0)
        assert graph == (12.0, 30) and d.batch_size == 2
        assert d.reader_options["split"] == "jmp" and len(d.reader_options["subsets"]) == 1
    elif fam == "matbench":
        assert d.reader_options["fold"] == 0 and graph == (12.0, 30) and 2 <= d.batch_size <= 8
        assert d.graph.max_neighbors_by_natoms == [(200, 10), (300, 5)] and d.graph.pbc is True
        if path.stem == "matbench_mp_is_metal":
            assert target.kind == "classification" and tuple(target.class_weights) == (1.0, 1.342)
            assert target.dropout == 0.5 and d.reader_options == {"fold": 0}
        else:
            assert target.kind == "scalar"
            assert target.reduction == ("max" if path.stem == "matbench_phonons" else "mean")
    elif fam == "qmof":
        assert target.target_key == "bandgap" and target.reduction == "mean"
        assert graph == (19.0, 30) and d.batch_size == 4
        assert d.graph.max_neighbors_by_natoms == [(200, 10), (300, 5)] and d.graph.pbc is True
    else:  # pragma: no cover - a file of no known family
        pytest.fail(f"unexpected config {path.name}")


def test_mini_folder_covers_the_mini_finetuning_datasets():
    assert len(MINI) >= 4
    used = {load(p).data.path.relative_to(resolve_path(Path("asset://mini"), REPO)).parts[0] for p in MINI}
    assert used == {"mini-rmd17", "mini-md22", "mini-qm9", "mini-matbench"}


@pytest.mark.parametrize("path", MINI, ids=lambda p: p.stem)
def test_mini_config_data_exists_and_has_the_target(path):
    cfg = load(path)
    assert cfg.data.path.exists(), cfg.data.path
    assert cfg.init.kind == "pretrained" and cfg.init.checkpoint == "openjmp-mini"
    # the openjmp-mini model's own graphs: its per-graph radial cutoffs, caps that do not cut
    mini = yaml.safe_load((REPO / "configs" / "pretrain" / "mini.yaml").read_text())
    assert cfg.data.graph.settings().cutoffs == mini["model"]["backbone"]["rbf_cutoffs"]
    assert cfg.data.graph.settings() == GraphConfig(**mini["datasets"][0]["graph"]).settings()
    assert cfg.trainer.max_steps <= 1000 and cfg.data.batch_size <= 16
    # the first few records carry what the targets need (catches a misspelt target key)
    records = [item.record for item in islice(read(cfg.data.path, cfg.data.format, **cfg.data.reader_options), 3)]
    assert records
    for t in cfg.targets:
        for r in records:
            if t.kind == "energy_forces":
                assert r.energy is not None and r.forces is not None
            else:
                assert math.isfinite(float(r.targets[t.target_key]))


def test_generated_files_are_up_to_date():
    spec = importlib.util.spec_from_file_location("make_finetune_configs", REPO / "scripts" / "make_finetune_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files = module.all_configs()
    assert set(files) == set(PAPER) | set(MINI)
    stale = [p.name for p, text in files.items() if p.read_text() != text]
    assert not stale, f"rerun scripts/make_finetune_configs.py: {stale}"


def test_resolve_path_expands_home(tmp_path):
    assert resolve_path(Path("~/x.pt"), tmp_path) == Path.home() / "x.pt"
    assert resolve_path(Path("data/x.npz"), tmp_path) == tmp_path / "data" / "x.npz"


def test_mini_configs_give_nonempty_splits_with_their_targets():
    from openjmp.training.finetune import check_targets, load_finetune_splits

    for path in MINI:
        cfg = load(path)
        splits = load_finetune_splits(cfg)
        assert all(len(splits[name]) >= 10 for name in ("train", "val", "test")), (path.name, splits.keys())
        assert len(splits["train"]) <= 250
        check_targets(cfg, splits["train"])  # raises on a missing key or missing forces
