"""``openjmp models list|inspect|convert`` and the conversion it runs."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch

from openjmp.checkpoints import jmp
from openjmp.checkpoints.convert import convert_jmp_checkpoint
from openjmp.checkpoints.format import load_model_file
from openjmp.cli.main import main
from openjmp.models import registry
from openjmp.models.gemnet_oc.keys import canonical_state_dict


def _mini_checkpoint(path, throwaway_module):
    handle = throwaway_module("old_project.cfg")
    mod = handle.define("class Cfg:\n    pass\n")
    cfg = mod.Cfg()
    cfg.backbone = {"num_blocks": 2}
    torch.manual_seed(4)
    model = registry.create_model("openjmp-tiny")
    sd = OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())
    for key in sd:
        target = jmp._alias_of(key)
        if target is not None:
            sd[key] = sd[target]
    for task in model.model_config["pretrain_tasks"]:
        sd[f"task_steps._module_dict._typed_moduledict_{task}.value"] = torch.tensor(1.0)
    gen = torch.Generator().manual_seed(5)
    ema = tuple(sd[k] + 0.05 * torch.randn(sd[k].shape, generator=gen) for k in jmp.ema_parameter_keys(sd))
    torch.save({"state_dict": sd, "optimizer_states": [{"ema": ema, "decay": 0.99}], "epoch": 3,
                "global_step": 99, "hyper_parameters": cfg}, path)
    handle.forget()  # the loader must do without the class
    return sd, ema


def test_models_list_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENJMP_CACHE", str(tmp_path))
    (tmp_path / "jmp-s.pt").write_bytes(b"x")
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["jmp-s"]["local_file"] == str(tmp_path / "jmp-s.pt")
    assert rows["jmp-l"]["local_file"] is None and rows["jmp-l"]["url"].endswith("/jmp-l.pt")
    assert rows["openjmp-tiny"]["weights"] is None
    assert main(["models", "list"]) == 0
    assert "never downloaded" in capsys.readouterr().out


def test_convert_then_load_gives_the_same_model(tmp_path, throwaway_module, capsys):
    src = tmp_path / "mini.ckpt"
    _mini_checkpoint(src, throwaway_module)
    out = tmp_path / "mini-openjmp.pt"
    assert main(["models", "convert", str(src), str(out), "--preset", "openjmp-tiny"]) == 0
    assert "sha256" in capsys.readouterr().out

    mf = load_model_file(out)
    assert mf.extra["used_ema"] is True and mf.extra["global_step"] == 99
    assert mf.heads["pretrain_tasks"] == ["oc20", "oc22", "ani1x", "transition1x"]

    from_lightning = registry.create_model("openjmp-tiny", checkpoint_path=src)
    from_converted = registry.create_model("openjmp-tiny", checkpoint_path=out)
    rebuilt, _ = registry.load_model(out)
    a = canonical_state_dict(from_lightning.state_dict())
    for other in (from_converted, rebuilt):
        b = canonical_state_dict(other.state_dict())
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=0)

    # a fine-tuning model from the converted pre-training file: backbone loaded, new energy head
    ft = registry.create_model("openjmp-tiny", checkpoint_path=out, num_pretrain_tasks=0,
                               finetune_energy=True, regress_forces=False, direct_forces=False)
    ft_sd = canonical_state_dict(ft.state_dict())
    assert any(k.startswith("out_energy.") for k in ft_sd)
    for key, value in ft_sd.items():
        if not key.startswith("out_energy."):
            torch.testing.assert_close(value, a[key], rtol=0, atol=0)

    assert main(["models", "inspect", str(src), "--preset", "openjmp-tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["variant"] == "openjmp-tiny" and info["epoch"] == 3 and info["used_ema"] is True
    assert info["placeholder_classes"] == ["old_project.cfg.Cfg"]
    assert main(["models", "inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "openjmp model file" and info["preset"] == "openjmp-tiny"


def test_convert_raw_weights(tmp_path, throwaway_module):
    src = tmp_path / "mini.ckpt"
    sd, _ = _mini_checkpoint(src, throwaway_module)
    out = tmp_path / "raw.pt"
    convert_jmp_checkpoint(src, out, preset="openjmp-tiny", use_ema=False, hash_source=False)
    mf = load_model_file(out)
    assert mf.extra["used_ema"] is False and mf.extra["source_sha256"] is None
    for key, value in mf.state_dict.items():
        torch.testing.assert_close(value, sd[key], rtol=0, atol=0)
    with pytest.raises(ValueError, match="not jmp-s"):
        spec = jmp.published_key_spec("jmp-l")
        meta = OrderedDict((e.name, torch.empty(e.shape, device="meta")) for e in spec.entries)
        ema = tuple(torch.empty(meta[k].shape, device="meta") for k in spec.ema_keys())
        torch.save({"state_dict": meta, "optimizer_states": [{"ema": ema}]}, tmp_path / "l.pt")
        convert_jmp_checkpoint(tmp_path / "l.pt", tmp_path / "l-out.pt", preset="jmp-s")
