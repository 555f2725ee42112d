"""The restricted unpickler: data loads, unknown classes become inert placeholders, callables are
refused, nothing from the file ever runs, and broken files give clear errors."""

from __future__ import annotations

import argparse
import builtins
import collections
import functools
import importlib
import operator
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from openjmp.checkpoints import safe_unpickle as su
from openjmp.checkpoints.errors import CheckpointReadError, UnsafeCheckpointError

CONFIG_SOURCE = '''
import enum

CALLS = []

class TrainConfig:
    """Every method records that it ran: the loader must never run any of them."""
    def __init__(self, lr, backbone):
        CALLS.append("init")
        self.lr = lr
        self.backbone = backbone
    def __setstate__(self, state):
        CALLS.append("setstate")
        self.__dict__.update(state)

class AttrDict(dict):
    def __setitem__(self, key, value):
        CALLS.append("setitem")
        super().__setitem__(key, value)

class Precision(enum.Enum):
    BF16 = "bf16"
    FP32 = "fp32"

def side_effect(path):
    CALLS.append("side_effect")
    open(path, "w").close()
    return 0
'''


class _CallsThrough:
    """Pickles as ``func(*args)``: the shape of every code-execution payload."""

    def __init__(self, func, *args):
        self.func = func
        self.args = args

    def __reduce__(self):
        return (self.func, self.args)


def _lightning_like(cfg_mod) -> dict:
    hparams = cfg_mod.AttrDict()
    dict.__setitem__(hparams, "config", cfg_mod.TrainConfig(3e-4, {"num_blocks": 4, "emb_size_atom": 8}))
    dict.__setitem__(hparams, "precision", cfg_mod.Precision.BF16)
    return {
        "epoch": 3,
        "global_step": 1234,
        "pytorch-lightning_version": "2.1.0",
        "state_dict": collections.OrderedDict(
            [("layer.weight", torch.arange(6.0).reshape(2, 3)), ("layer.bias", torch.tensor([1.0, -1.0]))]
        ),
        "optimizer_states": [{"ema": (torch.full((2, 3), 0.5), torch.zeros(2)), "decay": 0.99}],
        "hyper_parameters": hparams,
        "extras": {
            "ns": argparse.Namespace(seed=1),
            "path": pathlib.Path("/data/x.lmdb"),
            "np_scalar": np.float32(2.5),
            "np_array": np.arange(4, dtype=np.int64),
            "set": {1, 2},
            "bytes": b"\x00\xff",
            "device": torch.device("cpu"),
            "dtype": torch.bfloat16,
            "param": torch.nn.Parameter(torch.ones(3)),
            "view": torch.arange(10.0)[2:8:2],
        },
    }


@pytest.mark.parametrize("legacy", [False, True])
def test_unknown_classes_become_placeholders_and_never_run(tmp_path, throwaway_module, legacy):
    mod = throwaway_module("jmp_fake_project.configs").define(CONFIG_SOURCE)
    ckpt = _lightning_like(mod)
    path = tmp_path / "ckpt.pt"
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    mod.CALLS.clear()  # pickling itself does not call them, but be explicit

    # the class is importable right now: the loader must still not use it
    loaded = su.load_checkpoint_file(path)
    assert mod.CALLS == []
    assert "jmp_fake_project.configs" in sys.modules

    torch.testing.assert_close(loaded["state_dict"]["layer.weight"], ckpt["state_dict"]["layer.weight"])
    assert list(loaded["state_dict"]) == ["layer.weight", "layer.bias"]
    torch.testing.assert_close(loaded["optimizer_states"][0]["ema"][0], torch.full((2, 3), 0.5))
    assert isinstance(loaded["optimizer_states"][0]["ema"], tuple)
    assert loaded["epoch"] == 3 and loaded["global_step"] == 1234

    hp = loaded["hyper_parameters"]
    assert isinstance(hp, su.PlaceholderObject) and hp.qualname == "jmp_fake_project.configs.AttrDict"
    config = hp.dict_items["config"]
    assert isinstance(config, su.PlaceholderObject)
    assert not callable(config.cls) and not callable(config)
    plain = su.to_plain_data(hp)
    assert plain["config"]["__class__"] == "jmp_fake_project.configs.TrainConfig"
    assert plain["config"]["lr"] == pytest.approx(3e-4)
    assert plain["config"]["backbone"] == {"num_blocks": 4, "emb_size_atom": 8}
    assert plain["precision"]["__class__"] == "jmp_fake_project.configs.Precision"
    assert "bf16" in str(plain["precision"])

    extras = loaded["extras"]
    assert su.to_plain_data(extras["ns"]) == {"__class__": "argparse.Namespace", "seed": 1}
    assert str(extras["path"]) == "/data/x.lmdb" and not hasattr(extras["path"], "unlink")
    assert extras["np_scalar"] == np.float32(2.5)
    np.testing.assert_array_equal(extras["np_array"], np.arange(4))
    assert extras["set"] == {1, 2} and extras["bytes"] == b"\x00\xff"
    assert extras["device"] == torch.device("cpu") and extras["dtype"] is torch.bfloat16
    assert isinstance(extras["param"], torch.nn.Parameter)
    torch.testing.assert_close(extras["view"], torch.tensor([2.0, 4.0, 6.0]))
    assert su.find_placeholders(loaded) == [
        "argparse.Namespace",
        "jmp_fake_project.configs.AttrDict",
        "jmp_fake_project.configs.Precision",
        "jmp_fake_project.configs.TrainConfig",
    ]


def test_os_system_payload_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "hyper_parameters": _CallsThrough(os.system, f"touch {marker}")}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt.*system") as info:
        su.load_checkpoint_file(path)
    assert "not plain data" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "func, args",
    [
        (builtins.eval, ("1+1",)),
        (builtins.exec, ("x = 1",)),
        (builtins.__import__, ("os",)),
        (subprocess.check_call, (["true"],)),
        (functools.partial, (print, "hi")),
        (operator.attrgetter, ("system",)),
        (importlib.import_module, ("os",)),
        (torch.load, ("/nonexistent.pt",)),
        (np.load, ("/nonexistent.npy",)),
        (builtins.getattr, (torch.Tensor, "add_")),  # getattr is only allowed on placeholders
    ],
)
def test_callables_are_refused(tmp_path, func, args):
    path = tmp_path / "bad.pt"
    torch.save({"x": _CallsThrough(func, *args)}, path)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        su.load_checkpoint_file(path)


def test_unknown_module_callable_is_recorded_not_called(tmp_path, throwaway_module):
    mod = throwaway_module("some_plugin.hooks").define(CONFIG_SOURCE)
    marker = tmp_path / "MARKER"
    path = tmp_path / "plugin.pt"
    torch.save({"x": _CallsThrough(mod.side_effect, str(marker))}, path)
    loaded = su.load_checkpoint_file(path)
    assert not marker.exists() and mod.CALLS == []
    record = loaded["x"]
    assert isinstance(record, su.PlaceholderObject)
    assert record.qualname == "some_plugin.hooks.side_effect" and record.args == (str(marker),)


def test_tensor_subclass_is_refused(tmp_path, throwaway_module):
    mod = throwaway_module("fancy_tensors.lib").define(
        "import torch\nclass Fancy(torch.Tensor):\n    pass\n"
    )
    path = tmp_path / "sub.pt"
    torch.save({"t": torch.ones(2).as_subclass(mod.Fancy)}, path)
    with pytest.raises(UnsafeCheckpointError, match="rebuilds a tensor as type"):
        su.load_checkpoint_file(path)


@pytest.mark.parametrize("protocol", [1, 2, 4, 5])
def test_pickle_protocols(tmp_path, throwaway_module, protocol):
    mod = throwaway_module("proto_cfg.mod").define(CONFIG_SOURCE)
    path = tmp_path / "p.pt"
    obj = {"w": torch.arange(3.0), "cfg": mod.TrainConfig(1.0, [1, 2]), "p": mod.Precision.FP32}
    torch.save(obj, path, pickle_protocol=protocol)
    loaded = su.load_checkpoint_file(path)
    torch.testing.assert_close(loaded["w"], torch.arange(3.0))
    assert su.to_plain_data(loaded["cfg"])["backbone"] == [1, 2]
    assert mod.CALLS == ["init"]  # only the constructor call made above, in this test


def test_plain_pickle_module_interface():
    data = su.loads(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.")
    assert data == {"a": 1}
    import pickle

    with pytest.raises(UnsafeCheckpointError):
        su.loads(pickle.dumps(_CallsThrough(os.getcwd), protocol=2))


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_files_give_read_errors(tmp_path, legacy):
    path = tmp_path / "full.pt"
    torch.save({"state_dict": {"w": torch.randn(64, 64)}, "meta": {"a": [1, 2, 3]}}, path,
               _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    for cut in (1, len(data) // 3, len(data) // 2, len(data) - 10):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointReadError, match=f"cut{cut}.pt"):
            su.load_checkpoint_file(bad)


def test_missing_empty_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointReadError, match="no such checkpoint file"):
        su.load_checkpoint_file(tmp_path / "nope.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointReadError, match="empty"):
        su.load_checkpoint_file(empty)
    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointReadError, match="notes.pt"):
        su.load_checkpoint_file(text)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x80\x02\x82\x01.", "extension code"),  # EXT1 1
        (b"\x80\x02)K\x01K\x02s.", "sets items on"),  # SETITEM on a tuple
        (b"\x80\x02c__builtin__\nset\n]\x85R}b.", "sets the state of"),  # BUILD on a set
        (b"\x80\x02cfoo.bar\nBaz\n)R)R.", "calls a placeholder object"),  # calling an inert record
        (b"\x80\x02c__builtin__\nset\n)\x81.", None),  # NEWOBJ of an allowed type is fine
        (b"\x80\x02ccollections\nOrderedDict\n)R]\x85R.", "calls an object of type OrderedDict"),  # calling a result
    ],
)
def test_hand_made_pickles(data, message):
    if message is None:
        assert su.loads(data) == set()
        return
    with pytest.raises(UnsafeCheckpointError, match=message):
        su.loads(data)


def test_torch_objects_pickled_by_lightning_become_placeholders(tmp_path):
    # a scheduler state that holds live torch objects (optimizer, ReduceLROnPlateau) must not
    # stop the weights from loading; the objects stay inert records
    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([param], lr=1e-3)
    rlp = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    path = tmp_path / "sched.pt"
    torch.save({"state_dict": {"w": torch.arange(3.0)}, "lr_schedulers": [{"rlp": rlp}],
                "act": torch.nn.SiLU()}, path)
    loaded = su.load_checkpoint_file(path)
    torch.testing.assert_close(loaded["state_dict"]["w"], torch.arange(3.0))
    names = su.find_placeholders(loaded)
    assert "torch.optim.lr_scheduler.ReduceLROnPlateau" in names
    assert "torch.optim.adamw.AdamW" in names and "torch.nn.modules.activation.SiLU" in names
    assert isinstance(loaded["act"], su.PlaceholderObject)


def test_typing_annotations_are_inert_records():
    import pickle
    import typing

    data = pickle.dumps({"a": typing.Any, "b": typing.Optional[int], "c": list[int], "n": type(None)},  # noqa: UP045
                        protocol=2)
    loaded = su.loads(data)
    assert loaded["n"] is type(None)
    assert isinstance(loaded["a"], su.PlaceholderGlobal) and loaded["a"].qualname == "typing.Any"
    assert isinstance(loaded["b"], su.PlaceholderObject)
    assert "typing.Union" in su.find_placeholders(loaded)
    with pytest.raises(UnsafeCheckpointError, match="type\\(name, bases, dict\\)"):
        su.loads(b"\x80\x02c__builtin__\ntype\nX\x01\x00\x00\x00Xc__builtin__\nobject\n\x85}\x87R.")
