"""Loading JMP pre-training checkpoints: fake files in the published Lightning layout, built
from the small reference model (../shared/reference/gemnet_oc/state_dict.pt), plus shape-only
(meta-tensor) files in the full JMP-S / JMP-L layouts."""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import pytest
import torch

from openjmp.checkpoints import jmp
from openjmp.checkpoints.errors import (
    CheckpointError,
    CheckpointKeyError,
    CheckpointReadError,
    UnsafeCheckpointError,
)
from openjmp.models.gemnet_oc.config import GemNetOCConfig, load_preset
from openjmp.models.gemnet_oc.keys import canonical_state_dict, parameter_names
from openjmp.models.jmp_model import JMPModel

TASKS = ("oc20", "ani1x")

PRETRAIN_CONFIG_SOURCE = '''
from pydantic import BaseModel, ConfigDict

class BackboneConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    num_blocks: int
    emb_size_atom: int

class OptimizerConfig(BaseModel):
    lr: float
    betas: tuple[float, float]

class PretrainConfig(BaseModel):
    backbone: BackboneConfig
    optimizer: OptimizerConfig
    tasks: list[str]
'''


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def reference(shared_dir):
    ref = shared_dir / "reference" / "gemnet_oc"
    sd = torch.load(ref / "state_dict.pt", weights_only=True)
    case = json.loads((ref / "case.json").read_text())
    return sd, case


def _pretrain_state_dict(reference_sd) -> OrderedDict:
    """The small model in the pre-training module's layout: no fine-tuning heads, aliases share
    storage (as the original module's state_dict does), 2 step counters."""
    out = OrderedDict()
    for key, value in reference_sd.items():
        if key.startswith(("out_energy.", "out_forces.")):
            continue
        out[key] = value.clone()
    for key in out:
        target = jmp._alias_of(key)
        if target is not None:
            out[key] = out[target]
    for i, task in enumerate(TASKS):
        out[f"task_steps._module_dict._typed_moduledict_{task}.value"] = torch.tensor(100.0 + i)
    return out


def _ema_for(sd: OrderedDict) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(7)
    return tuple(
        sd[k] + 0.01 * torch.randn(sd[k].shape, generator=gen)
        for k in jmp.ema_parameter_keys(sd.keys())
    )


def _write_checkpoint(path, sd, ema, hyper_parameters, *, optimizer_states=None, legacy=False):
    ckpt = {
        "epoch": 7,
        "global_step": 12345,
        "pytorch-lightning_version": "2.1.3",
        "state_dict": sd,
        "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 8, "completed": 7}}}},
        "callbacks": {"ModelCheckpoint{'monitor': None}": {"dirpath": "/checkpoint/run1"}},
        "optimizer_states": optimizer_states if optimizer_states is not None else [{
            "ema": ema,
            "opt": {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(3)}},
                    "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.95), "params": [0]}]},
            "current_step": 12345,
            "decay": 0.99,
            "every_n_steps": 1,
        }],
        "lr_schedulers": [{"last_epoch": 5, "_last_lr": [3e-4]}],
        "MixedPrecisionPlugin": {},
        "hparams_name": "hparams",
        "hyper_parameters": hyper_parameters,
    }
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture
def fake_checkpoint(tmp_path, reference, throwaway_module):
    """Writes a fake pre-training checkpoint whose hyper_parameters are pydantic models of a
    module that no longer exists when the test loads it."""
    sd_ref, case = reference
    mod_handle = throwaway_module("jmp_fake.configs.pretrain")
    mod = mod_handle.define(PRETRAIN_CONFIG_SOURCE)
    for cls in (mod.BackboneConfig, mod.OptimizerConfig, mod.PretrainConfig):
        cls.model_rebuild()
    backbone = dict(case["hparams"]["backbone"], ln=False, replace_scale_factors_with_ln=False,
                    old_gaussian_implementation=False, edge_dropout=0.1)
    hparams = {"config": mod.PretrainConfig(
        backbone=mod.BackboneConfig(**backbone),
        optimizer=mod.OptimizerConfig(lr=3e-4, betas=(0.9, 0.95)),
        tasks=list(TASKS),
    )}
    hparams["backbone"] = hparams["config"].backbone
    sd = _pretrain_state_dict(sd_ref)
    ema = _ema_for(sd)
    path = _write_checkpoint(tmp_path / "fake-jmp.ckpt", sd, ema, hparams)
    mod_handle.forget()
    config = GemNetOCConfig(**case["hparams"]["backbone"])
    return path, sd, ema, config


def _spec(sd):
    return jmp.key_spec_from_state_dict(sd, name="small-fixture", task_order=TASKS)


def test_loads_with_ema_by_default(fake_checkpoint):
    path, sd, ema, config = fake_checkpoint
    ckpt = jmp.load_jmp_checkpoint(path, key_spec=_spec(sd), backbone_config=config)

    assert ckpt.used_ema and ckpt.alias_values == "jmp" and ckpt.ema_decay == 0.99
    assert list(ckpt.state_dict) == list(canonical_state_dict(sd, check=False))
    ema_keys = jmp.ema_parameter_keys(sd.keys())
    assert len(ema_keys) == len(ema) > 100
    for key, value in zip(ema_keys, ema):
        if ".out_blocks." in key and ".layers." in key:
            # JMP's fine-tuning ends with the raw values here (the seq_energy_pre alias wins)
            torch.testing.assert_close(ckpt.state_dict[key], sd[key], rtol=0, atol=0)
            assert not torch.equal(ckpt.state_dict[key], value)
        else:
            torch.testing.assert_close(ckpt.state_dict[key], value, rtol=0, atol=0)
    for key in sd:
        if key.endswith(("scale_factor", "rbf.offset", "rbf.temps")) and key in ckpt.state_dict:
            torch.testing.assert_close(ckpt.state_dict[key], sd[key], rtol=0, atol=0)
    assert not any(k.startswith("task_steps") or ".seq_energy_pre." in k for k in ckpt.state_dict)

    assert ckpt.epoch == 7 and ckpt.global_step == 12345 and ckpt.lightning_version == "2.1.3"
    assert ckpt.task_names == TASKS
    assert "jmp_fake.configs.pretrain.PretrainConfig" in ckpt.placeholders
    hp = ckpt.hyper_parameters
    assert hp["config"]["__class__"] == "jmp_fake.configs.pretrain.PretrainConfig"
    assert hp["config"]["optimizer"]["lr"] == pytest.approx(3e-4)
    assert ckpt.checkpoint_backbone_hparams["num_blocks"] == config.num_blocks
    assert ckpt.checkpoint_backbone_hparams["ln"] is False
    assert ckpt.config_differences == {"edge_dropout": (0.1, None)}


def test_ema_for_aliases_on_request(fake_checkpoint):
    path, sd, ema, config = fake_checkpoint
    ckpt = jmp.load_jmp_checkpoint(path, key_spec=_spec(sd), backbone_config=config,
                                   alias_values="ema")
    for key, value in zip(jmp.ema_parameter_keys(sd.keys()), ema):
        torch.testing.assert_close(ckpt.state_dict[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("legacy", [False, True])
def test_raw_weights_on_request(tmp_path, reference, legacy):
    sd = _pretrain_state_dict(reference[0])
    path = _write_checkpoint(tmp_path / "raw.ckpt", sd, _ema_for(sd), {"note": "plain"}, legacy=legacy)
    ckpt = jmp.load_jmp_checkpoint(path, use_ema=False, key_spec=_spec(sd))
    assert not ckpt.used_ema
    for key, value in canonical_state_dict(sd, check=False).items():
        torch.testing.assert_close(ckpt.state_dict[key], value, rtol=0, atol=0)


def test_weights_land_in_the_model(fake_checkpoint):
    path, sd, ema, config = fake_checkpoint
    ckpt = jmp.load_jmp_checkpoint(path, key_spec=_spec(sd), backbone_config=config)
    model = JMPModel(config, num_pretrain_tasks=len(TASKS))
    ckpt.load_into(model)
    loaded = canonical_state_dict(model.state_dict(), check=False)
    assert set(loaded) == set(ckpt.state_dict)
    for key, value in ckpt.state_dict.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    # the aliases inside the model agree with their canonical names
    msd = model.state_dict()
    for key in msd:
        if ".seq_energy_pre." in key:
            torch.testing.assert_close(msd[key], msd[key.replace(".seq_energy_pre.", ".layers.")])

    # fine-tuning model: no force outputs, fresh energy head, no pre-training heads
    ft_config = config.model_copy(update={"regress_forces": False, "direct_forces": False})
    ft_model = JMPModel(ft_config, finetune_energy=True)
    head_before = ft_model.out_energy[0].weight.detach().clone()
    ckpt.load_into(ft_model, pretrain_heads=False)
    ft_loaded = canonical_state_dict(ft_model.state_dict(), check=False)
    expected = ckpt.finetune_state_dict(direct_forces=False)
    assert set(ft_loaded) - set(expected) == {k for k in ft_loaded if k.startswith("out_energy.")}
    for key, value in expected.items():
        torch.testing.assert_close(ft_loaded[key], value, rtol=0, atol=0)
    torch.testing.assert_close(ft_model.out_energy[0].weight, head_before)
    assert not any(jmp._FORCE_OUTPUT_KEY.match(k) for k in expected)
    assert "embedding.weight" in ckpt.finetune_state_dict(jmp_names=True)


def test_wrong_shape_missing_and_unexpected_keys_are_named(tmp_path, reference):
    sd = _pretrain_state_dict(reference[0])
    spec = _spec(sd)
    bad = OrderedDict(sd)
    bad["backbone.int_blocks.1.dense_ca.linear.weight"] = torch.zeros(48, 47)
    path = _write_checkpoint(tmp_path / "shape.ckpt", bad, _ema_for(sd), {})
    with pytest.raises(CheckpointKeyError, match=r"shape\.ckpt.*backbone\.int_blocks\.1\.dense_ca\.linear\.weight \(48, 47\) \(expected \(48, 48\)\)"):
        jmp.load_jmp_checkpoint(path, key_spec=spec)

    bad = OrderedDict(sd)
    del bad["backbone.out_mlp_E.out_mlp.0.linear.weight"]
    bad["backbone.extra.weight"] = torch.zeros(2)
    path = _write_checkpoint(tmp_path / "keys.ckpt", bad, _ema_for(sd), {})
    with pytest.raises(CheckpointKeyError) as info:
        jmp.load_jmp_checkpoint(path, key_spec=spec)
    message = str(info.value)
    assert "1 missing keys: backbone.out_mlp_E.out_mlp.0.linear.weight" in message
    assert "1 unexpected keys: backbone.extra.weight" in message

    bad = OrderedDict(sd)
    bad["embedding.atom_embedding.weight"] = sd["embedding.atom_embedding.weight"].double()
    path = _write_checkpoint(tmp_path / "dtype.ckpt", bad, _ema_for(sd), {})
    with pytest.raises(CheckpointKeyError, match=r"embedding\.atom_embedding\.weight float64 \(expected float32\)"):
        jmp.load_jmp_checkpoint(path, key_spec=spec)


def test_ema_problems_are_clear(tmp_path, reference):
    sd = _pretrain_state_dict(reference[0])
    spec = _spec(sd)
    ema = list(_ema_for(sd))
    path = _write_checkpoint(tmp_path / "short.ckpt", sd, tuple(ema[:-1]), {})
    with pytest.raises(CheckpointKeyError, match=f"has {len(ema) - 1} tensors.*{len(ema)} parameters"):
        jmp.load_jmp_checkpoint(path, key_spec=spec)

    keys = jmp.ema_parameter_keys(sd.keys())
    wrong = list(ema)
    wrong[3] = torch.zeros(5)
    path = _write_checkpoint(tmp_path / "ema_shape.ckpt", sd, tuple(wrong), {})
    with pytest.raises(CheckpointKeyError, match=f"EMA tensor 3 for {keys[3]}"):
        jmp.load_jmp_checkpoint(path, key_spec=spec)

    path = _write_checkpoint(tmp_path / "no_ema.ckpt", sd, None, {}, optimizer_states=[])
    with pytest.raises(CheckpointError, match="use_ema=False"):
        jmp.load_jmp_checkpoint(path, key_spec=spec)
    assert jmp.load_jmp_checkpoint(path, use_ema=False, key_spec=spec).used_ema is False


def test_inconsistent_alias_is_an_error(tmp_path, reference):
    sd = _pretrain_state_dict(reference[0])
    bad = OrderedDict(sd)
    key = "backbone.out_blocks.1.seq_energy_pre.0.linear.weight"
    bad[key] = sd[key] + 1.0
    path = _write_checkpoint(tmp_path / "alias.ckpt", bad, _ema_for(sd), {})
    with pytest.raises(CheckpointKeyError, match=key.replace(".", r"\.")):
        jmp.load_jmp_checkpoint(path, key_spec=_spec(sd))


def test_payload_in_hyper_parameters_does_not_run(tmp_path, reference):
    marker = tmp_path / "MARKER"
    sd = _pretrain_state_dict(reference[0])
    path = _write_checkpoint(tmp_path / "evil.ckpt", sd, _ema_for(sd), {"backbone": _Payload(marker)})
    with pytest.raises(UnsafeCheckpointError, match="system"):
        jmp.load_jmp_checkpoint(path, key_spec=_spec(sd))
    assert not marker.exists()


def test_truncated_checkpoint(tmp_path, reference):
    sd = _pretrain_state_dict(reference[0])
    path = _write_checkpoint(tmp_path / "full.ckpt", sd, _ema_for(sd), {})
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(CheckpointReadError, match="cut.ckpt"):
        jmp.load_jmp_checkpoint(cut, key_spec=_spec(sd))


def test_not_a_lightning_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="no 'state_dict'"):
        jmp.load_jmp_checkpoint(path)


# ---- the full published layouts ------------------------------------------------------------


@pytest.mark.parametrize("variant", ["jmp-s", "jmp-l"])
def test_rules_reproduce_the_published_key_lists(variant):
    spec = jmp.published_key_spec(variant)
    meta = OrderedDict((e.name, torch.empty(e.shape, device="meta")) for e in spec.entries)
    derived = jmp.key_spec_from_state_dict(meta, name=variant, task_order=spec.task_order)
    assert derived.entries == spec.entries
    assert spec.ema_keys() == jmp.ema_parameter_keys(meta)
    expected_entries = {"jmp-s": 514, "jmp-l": 734}[variant]
    assert len(spec.entries) == expected_entries


@pytest.mark.parametrize("variant, preset", [("jmp-s", "jmp_s"), ("jmp-l", "jmp_l")])
def test_preset_models_have_exactly_the_published_keys(variant, preset):
    spec = jmp.published_key_spec(variant)
    config = load_preset(preset)
    with torch.device("meta"):
        model = JMPModel(config, num_pretrain_tasks=len(spec.task_order))
    model_sd = model.state_dict()
    without_counters = jmp.KeySpec(
        variant, tuple(e for e in spec.entries if e.group != "task_step_counters"), spec.task_order
    )
    jmp.check_state_dict(model_sd, without_counters, source=f"{preset} model")
    assert list(model_sd) == [e.name for e in without_counters.entries]
    assert parameter_names(model) == spec.ema_keys()

    # the fine-tuning backbone (JMP default: no force outputs) has exactly the kept keys
    ft_config = config.model_copy(update={"regress_forces": False, "direct_forces": False})
    with torch.device("meta"):
        ft_model = JMPModel(ft_config)
    kept = {e.name for e in spec.entries if e.finetune_dropped_reason is None}
    assert set(ft_model.state_dict()) == kept


def _meta_checkpoint(tmp_path, spec, name, mutate=None, sum_value=False):
    sd = OrderedDict()
    for e in spec.entries:
        key = e.name
        if sum_value and key.startswith("task_steps."):
            key = key[: -len("value")] + "sum_value"
        sd[key] = torch.empty(e.shape, device="meta")
    if mutate:
        mutate(sd)
    ema = tuple(torch.empty(sd[k].shape, device="meta") for k in spec.ema_keys())
    return _write_checkpoint(tmp_path / name, sd, ema, {"backbone": {"num_blocks": 0}})


@pytest.mark.parametrize("variant", ["jmp-s", "jmp-l"])
def test_full_layouts_are_detected_and_loaded(tmp_path, variant, shared_dir):
    spec = jmp.published_key_spec(variant)
    path = _meta_checkpoint(tmp_path, spec, f"{variant}.ckpt", sum_value=(variant == "jmp-l"))
    ckpt = jmp.load_jmp_checkpoint(path)
    assert ckpt.variant == variant and ckpt.task_names == spec.task_order
    preset = load_preset(jmp.PUBLISHED_VARIANTS[variant][1])
    assert ckpt.backbone_config == preset
    assert ckpt.config_differences == {"num_blocks": (0, preset.num_blocks)}
    expected = [e.name for e in spec.entries if e.alias_of is None and e.group != "task_step_counters"]
    assert list(ckpt.state_dict) == expected
    hparams = json.loads((shared_dir / "reference" / "gemnet_oc" / f"hparams_{variant.replace('-', '_')}.json").read_text())
    norm = ckpt.pretrain_normalization()
    for task in hparams["pretraining"]["tasks_in_head_order"]:
        assert norm[task["name"]]["energy"]["std"] == task["normalization"]["y"]["std"]
        assert norm[task["name"]]["forces"]["std"] == task["normalization"]["force"]["std"]
    assert list(norm) == list(spec.task_order)
    finetune = ckpt.finetune_state_dict()
    assert len(finetune) == sum(
        1 for e in spec.entries if e.finetune_dropped_reason is None and e.alias_of is None
    )


def test_wrong_layout_names_the_key_and_the_closest_variant(tmp_path):
    spec = jmp.published_key_spec("jmp-s")

    def mutate(sd):
        sd["backbone.int_blocks.2.dense_ca.linear.weight"] = torch.empty(512, 256, device="meta")

    path = _meta_checkpoint(tmp_path, spec, "odd.ckpt", mutate=mutate)
    with pytest.raises(CheckpointKeyError, match=r"closest is jmp-s.*backbone\.int_blocks\.2\.dense_ca\.linear\.weight \(512, 256\) \(expected \(512, 512\)\)"):
        jmp.load_jmp_checkpoint(path)
