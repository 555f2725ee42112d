"""JMP-S / JMP-L built from the presets have exactly the published state-dict layout."""

import json

import pytest
import torch

from openjmp.models.gemnet_oc.config import GemNetOCConfig, load_preset
from openjmp.models.gemnet_oc.keys import (
    alias_target,
    canonical_state_dict,
    is_step_counter,
    parameter_names,
    with_aliases,
)
from openjmp.models.jmp_model import JMPModel


@pytest.mark.parametrize("name", ["jmp_s", "jmp_l"])
def test_preset_keys_and_shapes(name, fixture_dir):
    ref = json.loads((fixture_dir / f"{name}_keys.json").read_text())
    with torch.device("meta"):
        model = JMPModel(load_preset(name), num_pretrain_tasks=len(ref["task_order"]))
    sd = model.state_dict()
    entries = [e for e in ref["entries"] if not is_step_counter(e["name"])]
    assert list(sd) == [e["name"] for e in entries]
    for e in entries:
        assert list(sd[e["name"]].shape) == e["shape"], e["name"]
    # parameter order = EMA order of the published checkpoint
    ema = sorted((e for e in ref["entries"] if e["ema_index"] is not None),
                 key=lambda e: e["ema_index"])
    assert parameter_names(model) == [e["name"] for e in ema]
    assert sum(p.numel() for p in model.parameters()) == ref["stats"]["num_parameters_total_unique"]
    # alias rules reproduce the alias_of column exactly
    for e in ref["entries"]:
        assert alias_target(e["name"]) == e["alias_of"], e["name"]
    # canonical state dict: no aliases, no step counters
    canon = [k for k in canonical_state_dict(sd, check=False)]
    assert canon == [e["name"] for e in entries if e["alias_of"] is None]


def test_preset_matches_json(fixture_dir):
    for name in ("s", "l"):
        hp = json.loads((fixture_dir / f"hparams_jmp_{name}.json").read_text())
        assert load_preset(f"jmp_{name}") == GemNetOCConfig(**hp["backbone"])


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError):
        GemNetOCConfig(num_blocks=2, no_such_option=1)
    cfg = GemNetOCConfig.from_jmp_dict({"num_blocks": 2, "ln": False,
                                        "replace_scale_factors_with_ln": False,
                                        "old_gaussian_implementation": False})
    assert cfg.num_blocks == 2


def test_fixture_state_dict_loads_and_aliases_roundtrip(fixture_dir, small_model):
    sd = torch.load(fixture_dir / "state_dict.pt", weights_only=True)
    model = small_model
    # the fixture (with its aliases) loads as is
    missing, unexpected = model.load_state_dict(sd, strict=True)
    assert not missing and not unexpected
    canon = canonical_state_dict(sd)
    assert not any(".seq_energy_pre." in k for k in canon)
    assert "backbone.bases.cbf_basis_tint.radial_basis.rbf.offset" not in canon
    model.load_state_dict(with_aliases(canon, model), strict=True)
    # an inconsistent alias is refused
    bad = dict(sd)
    k = "backbone.out_blocks.0.seq_energy_pre.0.linear.weight"
    bad[k] = bad[k] + 1
    with pytest.raises(ValueError, match="seq_energy_pre"):
        canonical_state_dict(bad)


def test_scale_factor_zero_is_identity():
    from openjmp.models.gemnet_oc.layers import ScaleFactor

    sf = ScaleFactor()
    x = torch.randn(4, 3)
    assert torch.equal(sf(x), x)
    sf.scale_factor.fill_(2.5)
    assert torch.allclose(sf(x), 2.5 * x)
    assert sf.scale_factor.dim() == 0 and "scale_factor" in dict(sf.named_buffers())


def test_finetune_backbone_without_force_outputs(fixture_dir):
    """JMP fine-tuning default (regress_forces = direct_forces = False): the backbone has exactly
    the backbone keys the published checkpoint keeps for fine-tuning."""
    ref = json.loads((fixture_dir / "jmp_s_keys.json").read_text())
    cfg = load_preset("jmp_s").model_copy(update={"regress_forces": False,
                                                   "direct_forces": False})
    with torch.device("meta"):
        model = JMPModel(cfg, finetune_energy=True)
    ours = {k for k in model.state_dict() if k.startswith("backbone.")}
    kept = {e["finetune_target_key"] for e in ref["entries"]
            if e["finetune_target_key"] and e["finetune_target_key"].startswith("backbone.")
            and e["finetune_dropped_reason"] is None}
    assert ours == kept
    assert [k for k in model.state_dict() if k.startswith("out_energy.")] == [
        f"out_energy.{i}.weight" for i in (0, 2, 4, 6, 8)]
