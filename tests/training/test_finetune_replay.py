"""Replay of pre-training datasets during fine-tuning: heads kept, loss = pre-training loss,
deterministic schedule, export, and clear errors."""

import ase.io
import pytest
import torch
from finetune_helpers import tiny_finetune_config
from pretrain_helpers import make_two_domains, tiny_pretrain_config

from openjmp.configuration import ConfigError, load_config
from openjmp.training.config import PretrainConfig
from openjmp.training.finetune_config import FinetuneConfig
from openjmp.training.replay import is_replay_step, replay_index


@pytest.fixture(scope="module")
def replay_data(tmp_path_factory):
    """Two EMT 'domains' (slabs, mols), a pre-trained model file written by the pre-training
    exporter (untrained weights, fitted normalisers), and a fine-tuning set of other molecules."""
    from ase.build import molecule
    from ase.calculators.emt import EMT

    from openjmp.training.pretrain import PretrainDataModule, PretrainModule, save_pretrained_model

    folder = make_two_domains(tmp_path_factory.mktemp("replay"))
    frames = []
    for i in range(20):
        m = molecule(["C2H6", "CH3OH"][i % 2])
        m.rattle(0.04, seed=100 + i)
        m.calc = EMT()
        m.get_potential_energy()
        m.get_forces()
        frames.append(m)
    ase.io.write(folder / "ft.extxyz", frames)
    cfg = load_config(PretrainConfig, data=tiny_pretrain_config(folder))
    dm = PretrainDataModule(cfg)
    dm.load()
    torch.manual_seed(0)
    module = PretrainModule(cfg.model_dump(mode="json"), [n.as_dict() for n in dm.normalizers])
    elements = [sorted({int(z) for r in ds.records for z in r.atomic_numbers}) for ds in dm.train_sets]
    save_pretrained_model(module, cfg, folder / "pre.pt", elements)
    return folder, module, dm


def _cfg(folder, tmp_path, replay, **changes):
    return tiny_finetune_config(folder, "ft.extxyz", **{
        "output_dir": str(tmp_path / "out"), "data.graph": {"cutoff": 5.0, "max_neighbors": 12}, "optim.warmup_steps": 1, "replay": replay,
        **changes})


def _replay(folder, **changes):
    return {"datasets": [{"name": "mols", "path": str(folder / "mols.extxyz"), "format": "ase"}], "weight": 0.1} | changes


def test_schedule_is_an_even_fraction_of_steps():
    for fraction, n in ((1.0, 12), (0.5, 6), (0.25, 3), (1 / 3, 4)):
        steps = [s for s in range(12) if is_replay_step(s, fraction)]
        assert len(steps) == n
        assert [replay_index(s, fraction) for s in steps] == list(range(n))


def test_replay_loss_is_the_pretraining_loss_of_the_head(replay_data, tmp_path):
    """The replayed head (copied from the file into the fine-tuning model) gives the same
    predictions and the same loss as the pre-training module on a batch of its dataset."""
    from openjmp.training.data import collate_graph_batch
    from openjmp.training.finetune import build_finetune_model
    from openjmp.training.replay import build_replay

    folder, pre_module, dm = replay_data
    cfg = load_config(FinetuneConfig, data=_cfg(folder, tmp_path, _replay(folder)))
    model, _ = build_finetune_model(cfg)
    replay = build_replay(cfg, model)
    assert replay.names == ["mols"] and len(model.output.out_energy) == 1
    # the split is the pre-training one (seed + task index): same validation records
    assert [r.name for r in replay.val_sets[0].records] == [r.name for r in dm.val_sets[1].records]
    assert replay.coefficients == [(1.0, 10.0)]  # from the pre-training config in the file
    ds = dm.val_sets[1]
    batch = collate_graph_batch([ds[i] for i in range(len(ds))]).to(dtype=torch.float32)
    pre_module.eval()
    model.eval()
    with torch.no_grad():
        e_pre, f_pre = pre_module.predict_normalized(batch)
        loss_pre, _ = pre_module.losses(batch, e_pre, f_pre)
        e, f = replay.predict_normalized(model, batch, 0)
        loss, _, _ = replay.losses(model, batch, 0)
    torch.testing.assert_close(e, e_pre, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f, f_pre, rtol=1e-5, atol=1e-5)
    assert loss.item() == pytest.approx(loss_pre.item(), rel=1e-5)


def test_finetuning_with_replay_trains_and_exports_the_replayed_head(replay_data, tmp_path):
    from openjmp.checkpoints.format import load_model_file
    from openjmp.inference import load_predictor
    from openjmp.training.finetune import run_finetuning

    folder, _, dm = replay_data
    cfg = load_config(FinetuneConfig, data=_cfg(folder, tmp_path, _replay(folder, fraction=0.5)))
    summary = run_finetuning(cfg)
    rep = summary["replay"]
    assert rep["replay_batches"] == 3  # half of 6 steps
    for key in ("val_before", "val_after"):
        m = rep[key]["mols"]
        assert m["structures"] == len(dm.val_sets[1]) and m["force_mae_eV_per_A"] > 0
    assert rep["val_after"]["mols"]["loss"] != rep["val_before"]["mols"]["loss"]
    mf = load_model_file(tmp_path / "out" / "model.pt")
    assert mf.heads["mols"]["kind"] == "pretrain" and mf.heads["mols"]["energy_module"] == "output.out_energy.0"
    assert mf.normalization["mols"] == load_model_file(folder / "pre.pt").normalization["mols"]
    pre = load_model_file(folder / "pre.pt").weights()
    assert not torch.equal(mf.weights()["output.out_energy.0.0.weight"], pre["output.out_energy.1.0.weight"])
    # default head: the fine-tuned target; the replayed head predicts through the same file
    assert load_predictor(tmp_path / "out" / "model.pt").head_name == "energy"
    records = dm.val_sets[1].records[:2]
    predictor = load_predictor(tmp_path / "out" / "model.pt", head="mols")
    (group, result), = list(predictor.predict(records))
    assert torch.isfinite(torch.as_tensor(result["energy"])).all()


def test_replay_heads_can_be_dropped_and_runs_repeat_under_the_seed(replay_data, tmp_path):
    from openjmp.models.registry import load_model
    from openjmp.training.finetune import run_finetuning

    folder, _, _ = replay_data
    weights = []
    for run in ("a", "b"):
        cfg = load_config(FinetuneConfig, data=_cfg(
            folder, tmp_path, _replay(folder, keep_heads=False), output_dir=str(tmp_path / run),
            trainer={"max_steps": 3, "val_every_n_steps": 3, "progress_bar": False}))
        summary = run_finetuning(cfg)
        assert summary["replay"]["replay_batches"] == 3
        model, mf = load_model(tmp_path / run / "model.pt")
        assert set(mf.heads) == {"energy"} and model.output is None
        weights.append(mf.weights())
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_replay_errors_are_clear(replay_data, tmp_path):
    from openjmp.training.finetune import FinetuneError, run_finetuning

    folder, _, _ = replay_data
    data = _cfg(folder, tmp_path, _replay(folder), init={"kind": "scratch", "checkpoint": str(folder / "pre.pt")})
    with pytest.raises(ConfigError, match="replay needs init.kind 'pretrained'"):
        load_config(FinetuneConfig, data=data)
    bad = _replay(folder)
    bad["datasets"][0]["name"] = "mini-ani1x"
    cfg = load_config(FinetuneConfig, data=_cfg(folder, tmp_path, bad))
    with pytest.raises(FinetuneError, match=r"'mini-ani1x' has no pre-training head.*\['mols', 'slabs'\]"):
        run_finetuning(cfg)
    cfg = load_config(FinetuneConfig, data=_cfg(folder, tmp_path, _replay(folder), head_layers=3))
    with pytest.raises(FinetuneError, match="head_layers: 2 or replay.keep_heads: false"):
        run_finetuning(cfg)
