"""openjmp's own model file: plain containers, weights_only loading, atomic writes, round trip of
config + weights + normalisation (same outputs after reloading)."""

from __future__ import annotations

import collections
import hashlib
import pathlib

import numpy as np
import pytest
import torch
from ase.build import molecule

from openjmp.checkpoints import format as fmt
from openjmp.checkpoints.errors import (
    CheckpointError,
    CheckpointKeyError,
    CheckpointReadError,
    UnsafeCheckpointError,
)
from openjmp.data.graphs.goc import GOCGraphSettings, build_goc_graphs
from openjmp.models import registry


def _energy(model, atoms):
    graphs = build_goc_graphs(atoms.positions, np.eye(3) * 1000.0, np.zeros(3, bool),
                              np.full(len(atoms), 2), GOCGraphSettings.from_constant(5.0, 9))
    pred = model.predict(torch.as_tensor(atoms.numbers), torch.as_tensor(atoms.positions, dtype=torch.float32),
                         torch.eye(3)[None] * 1000.0, torch.zeros(len(atoms), dtype=torch.long), graphs, 1)
    return pred


def _mini(seed=0, **overrides):
    torch.manual_seed(seed)
    return registry.create_model("openjmp-tiny", **overrides)


def test_round_trip_config_weights_normalisation(tmp_path):
    model = _mini(finetune_energy=True, finetune_forces=True)
    model.eval()
    gen = torch.Generator().manual_seed(3)
    # EMA of the parameters (one name per tensor, as training keeps it)
    ema = {name: p.detach() + 0.01 * torch.randn(p.shape, generator=gen)
           for name, p in model.named_parameters()}
    normalization = {"energy": {"mean": -1.25, "std": 2.5, "linref": torch.linspace(0, 1, 120)},
                     "forces": {"mean": 0.0, "std": 0.75}}
    heads = {"finetune": {"energy": "sum", "forces": "direct"}, "pretrain_tasks": ["oc20", "oc22", "ani1x", "transition1x"]}
    path = tmp_path / "models" / "mini.pt"
    digest = registry.save_model_file(model, path, normalization=normalization, heads=heads,
                                      ema_state_dict=ema, extra={"step": 10, "source": "test"})
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == fmt.sha256_file(path)
    assert [p.name for p in path.parent.iterdir()] == ["mini.pt"]  # no temp files left

    raw_model, mf = registry.load_model(path, use_ema=False)
    assert mf.model_config == model.model_config
    assert mf.heads == heads and mf.extra == {"step": 10, "source": "test"}
    assert mf.normalization["energy"]["mean"] == -1.25 and mf.normalization["forces"]["std"] == 0.75
    torch.testing.assert_close(mf.normalization["energy"]["linref"], torch.linspace(0, 1, 120))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(raw_model.state_dict()[key], value, rtol=0, atol=0)

    raw_model.eval()
    atoms = molecule("CH3CH2OH")
    before, after = _energy(model, atoms), _energy(raw_model, atoms)
    for head in before.energy:
        torch.testing.assert_close(after.energy[head], before.energy[head], rtol=0, atol=0)
    torch.testing.assert_close(after.forces_direct["finetune"], before.forces_direct["finetune"], rtol=0, atol=0)

    ema_model, _ = registry.load_model(path)  # EMA by default
    ema_sd = ema_model.state_dict()
    for key, value in ema.items():
        torch.testing.assert_close(ema_sd[key], value, rtol=0, atol=0)
    alias = "backbone.out_blocks.1.seq_energy_pre.0.linear.weight"
    torch.testing.assert_close(ema_sd[alias], ema[alias.replace("seq_energy_pre", "layers")])
    scale = "backbone.int_blocks.0.atom_update.scale_sum.scale_factor"
    torch.testing.assert_close(ema_sd[scale], model.state_dict()[scale])  # buffers: no EMA


def test_file_is_plain_data_loadable_with_weights_only(tmp_path):
    path = tmp_path / "m.pt"
    fmt.save_model(path, {"backbone": {"num_blocks": 1}}, {"w": torch.arange(10.0)[2:5]},
                   normalization={"energy": {"mean": np.float64(-2.5), "linref": np.arange(3.0)}},
                   heads={})
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == fmt.FORMAT_NAME and payload["format_version"] == fmt.FORMAT_VERSION
    assert payload["state_dict"]["w"].untyped_storage().nbytes() == 3 * 4  # the view was compacted
    mf = fmt.load_model_file(path)
    torch.testing.assert_close(mf.state_dict["w"], torch.tensor([2.0, 3.0, 4.0]))
    assert mf.ema_state_dict is None and mf.weights() == mf.state_dict
    # numpy values were turned into plain numbers / tensors
    assert type(mf.normalization["energy"]["mean"]) is float and mf.normalization["energy"]["mean"] == -2.5
    torch.testing.assert_close(mf.normalization["energy"]["linref"], torch.arange(3.0, dtype=torch.float64))


@pytest.mark.parametrize("bad, where", [
    ({"energy": {"file": pathlib.Path("/x")}}, "normalization.energy.file"),
    ({"energy": collections.OrderedDict(a=1)}, "normalization.energy: OrderedDict"),
    ({"energy": [1, {"a": object()}]}, r"normalization.energy\[1\].a"),
])
def test_non_plain_data_is_refused_at_save(tmp_path, bad, where):
    path = tmp_path / "m.pt"
    with pytest.raises(TypeError, match=where):
        fmt.save_model(path, {}, {"w": torch.ones(1)}, normalization=bad, heads={})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    fmt.save_model(path, {"v": 1}, {"w": torch.ones(2)}, normalization={}, heads={})
    old = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(fmt.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        fmt.save_model(path, {"v": 2}, {"w": torch.zeros(2)}, normalization={}, heads={})
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_sha256_verification(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"openjmp")
    fmt.verify_sha256(path, hashlib.sha256(b"openjmp").hexdigest().upper())
    with pytest.raises(CheckpointError, match="SHA-256"):
        fmt.verify_sha256(path, "0" * 64)


def test_foreign_and_broken_files_are_refused_clearly(tmp_path):
    lightning = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {}, "optimizer_states": []}, lightning)
    with pytest.raises(CheckpointError, match="load_jmp_checkpoint"):
        fmt.load_model_file(lightning)

    pickled_class = tmp_path / "cls.pt"
    torch.save({"format": fmt.FORMAT_NAME, "path": pathlib.Path("/tmp")}, pickled_class)
    with pytest.raises(UnsafeCheckpointError, match="not a plain-data openjmp model file"):
        fmt.load_model_file(pickled_class)

    newer = tmp_path / "newer.pt"
    fmt.save_model(newer, {}, {}, normalization={}, heads={})
    payload = torch.load(newer, weights_only=True)
    payload["format_version"] = fmt.FORMAT_VERSION + 1
    torch.save(payload, newer)
    with pytest.raises(CheckpointError, match="newer openjmp"):
        fmt.load_model_file(newer)

    good = tmp_path / "good.pt"
    fmt.save_model(good, {}, {"w": torch.randn(100, 100)}, normalization={}, heads={})
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:20000])
    with pytest.raises(CheckpointReadError, match="cut.pt"):
        fmt.load_model_file(cut)
    with pytest.raises(CheckpointReadError, match="no such model file"):
        fmt.load_model_file(tmp_path / "absent.pt")


def test_partial_head_in_file_is_an_error(tmp_path):
    model = _mini(finetune_energy=True)
    path = tmp_path / "m.pt"
    sd = {k: v for k, v in model.state_dict().items() if k != "out_energy.4.weight"}
    fmt.save_model(path, model.model_config, sd, normalization={}, heads={})
    with pytest.raises(CheckpointKeyError, match=r"1 missing: out_energy\.4\.weight"):
        registry.load_model(path)
