"""The model registry: presets, overrides, local-only pretrained weights, loading checkpoints."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch

from openjmp.checkpoints import jmp
from openjmp.checkpoints.errors import CheckpointError
from openjmp.checkpoints.format import sha256_file
from openjmp.models import registry
from openjmp.models.gemnet_oc.keys import canonical_state_dict


def test_list_models():
    assert {"jmp-s", "jmp-l", "openjmp-tiny"} <= set(registry.list_models())
    assert registry.list_models(pretrained=True) == ["jmp-l", "jmp-s", "openjmp-mini"]
    assert registry.list_models("jmp-*") == ["jmp-l", "jmp-s"]
    with pytest.raises(KeyError, match="unknown model 'jmp-xl'.*jmp-s"):
        registry.create_model("jmp-xl")


@pytest.mark.parametrize("name", ["jmp-s", "jmp-l"])
def test_presets_match_published_parameter_counts(shared_dir, name):
    keys = json.loads((shared_dir / "reference" / "gemnet_oc" / f"{name.replace('-', '_')}_keys.json").read_text())
    with torch.device("meta"):
        model = registry.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == keys["stats"]["num_parameters_total_unique"]
    assert model.model_config["pretrain_tasks"] == keys["task_order"]


def test_overrides():
    with torch.device("meta"):
        model = registry.create_model("openjmp-tiny", regress_forces=False, direct_forces=False,
                                      num_pretrain_tasks=0, finetune_energy=True, num_blocks=3)
    keys = set(model.state_dict())
    assert not any(k.startswith("backbone.out_mlp_F.") for k in keys)
    assert any(k.startswith("out_energy.") for k in keys) and not any(k.startswith("output.") for k in keys)
    assert len(model.backbone.int_blocks) == 3
    assert model.model_config["backbone"]["num_blocks"] == 3 and model.model_config["pretrain_tasks"] == []
    with pytest.raises(TypeError, match="unknown model option 'num_layers'"):
        registry.create_model("openjmp-tiny", num_layers=3)
    with pytest.raises(ValueError, match="emb_size_atom"):
        registry.create_model("openjmp-tiny", emb_size_atom="big")


def test_pretrained_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENJMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(FileNotFoundError) as info:
        registry.create_model("jmp-s", pretrained=True)
    message = str(info.value)
    assert "does not download" in message
    assert "https://jmp-iclr-datasets.s3.amazonaws.com/jmp-s.pt" in message
    assert str(tmp_path / "cache" / "jmp-s.pt") in message and "OPENJMP_CACHE" in message
    assert str(tmp_path / "xdg" / "openjmp" / "jmp-s.pt") in message
    with pytest.raises(ValueError, match="no published weights"):
        registry.create_model("openjmp-tiny", pretrained=True)


def _mini_pretraining_checkpoint(path):
    """A Lightning-layout checkpoint of openjmp-tiny with distinct EMA values."""
    torch.manual_seed(1)
    model = registry.create_model("openjmp-tiny")
    sd = OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())
    for key in sd:  # aliases share storage, as in the original module's state_dict
        target = jmp._alias_of(key)
        if target is not None:
            sd[key] = sd[target]
    for task in model.model_config["pretrain_tasks"]:
        sd[f"task_steps._module_dict._typed_moduledict_{task}.sum_value"] = torch.tensor(3.0)
    gen = torch.Generator().manual_seed(2)
    ema = tuple(sd[k] + 0.05 * torch.randn(sd[k].shape, generator=gen) for k in jmp.ema_parameter_keys(sd))
    torch.save({"state_dict": sd, "optimizer_states": [{"ema": ema, "decay": 0.99}], "epoch": 1,
                "global_step": 2, "hyper_parameters": {}}, path)
    return sd, ema


def test_create_from_a_jmp_layout_checkpoint(tmp_path):
    path = tmp_path / "mini.ckpt"
    sd, ema = _mini_pretraining_checkpoint(path)
    ema_by_key = dict(zip(jmp.ema_parameter_keys(sd), ema))

    model = registry.create_model("openjmp-tiny", checkpoint_path=path)
    loaded = canonical_state_dict(model.state_dict(), check=False)
    for key, value in loaded.items():
        if key in ema_by_key and not (".out_blocks." in key and ".layers." in key):
            torch.testing.assert_close(value, ema_by_key[key], rtol=0, atol=0)
        else:  # buffers, and the out-block MLPs JMP leaves raw (alias semantics)
            torch.testing.assert_close(value, sd[key], rtol=0, atol=0)

    raw = registry.create_model("openjmp-tiny", checkpoint_path=path, use_ema=False)
    for key, value in canonical_state_dict(raw.state_dict(), check=False).items():
        torch.testing.assert_close(value, sd[key], rtol=0, atol=0)

    # fine-tuning build: backbone without force outputs, fresh energy head, no pre-training heads
    ft = registry.create_model("openjmp-tiny", checkpoint_path=path, num_pretrain_tasks=0,
                               finetune_energy=True, regress_forces=False, direct_forces=False)
    ft_sd = ft.state_dict()
    torch.testing.assert_close(ft_sd["embedding.atom_embedding.weight"],
                               ema_by_key["embedding.atom_embedding.weight"], rtol=0, atol=0)
    assert "backbone.out_mlp_F.out_mlp.0.linear.weight" not in ft_sd

    with pytest.raises(CheckpointError, match="2 pre-training heads, the model 4|4 pre-training heads, the model 2"):
        registry.create_model("openjmp-tiny", checkpoint_path=path, num_pretrain_tasks=2)


def test_pretrained_from_cache_with_pinned_digest(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "mini-pretrained.ckpt"
    path.parent.mkdir()
    sd, ema = _mini_pretraining_checkpoint(path)
    digest = sha256_file(path)
    monkeypatch.setenv("OPENJMP_CACHE", str(path.parent))

    def register(name, sha):
        cfg = registry.PretrainedCfg(file_name=path.name, source="test", sha256=sha)
        entry = registry.get_model_entry("openjmp-tiny")
        monkeypatch.setitem(registry._REGISTRY, name, registry.ModelEntry(
            name, entry.builder, entry.preset_file, "test entry", cfg))

    register("mini-pinned", digest)
    monkeypatch.setattr(registry, "pretraining_key_spec",
                        lambda name, _orig=registry.pretraining_key_spec: _orig("openjmp-tiny"))
    model = registry.create_model("mini-pinned", pretrained=True)
    torch.testing.assert_close(model.state_dict()["embedding.atom_embedding.weight"], ema[0], rtol=0, atol=0)

    register("mini-wrong-digest", "f" * 64)
    with pytest.raises(CheckpointError, match="SHA-256"):
        registry.create_model("mini-wrong-digest", pretrained=True)


def test_wrong_variant_is_refused(tmp_path):
    spec = jmp.published_key_spec("jmp-l")
    sd = OrderedDict((e.name, torch.empty(e.shape, device="meta")) for e in spec.entries)
    ema = tuple(torch.empty(sd[k].shape, device="meta") for k in spec.ema_keys())
    path = tmp_path / "jmp-l.pt"
    torch.save({"state_dict": sd, "optimizer_states": [{"ema": ema}]}, path)
    with torch.device("meta"):
        with pytest.raises(CheckpointError, match="jmp-l checkpoint, not jmp-s"):
            registry.create_model("jmp-s", checkpoint_path=path)
