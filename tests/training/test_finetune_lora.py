"""LoRA adapters on the backbone: unchanged function at start, merge for export, what trains."""

import copy

import numpy as np
import pytest
import torch
from finetune_helpers import tiny_finetune_config, write_emt_molecules, write_tiny_pretrained

from openjmp.configuration import load_config
from openjmp.models.lora import LoRAConfig, apply_lora, lora_parameter_names, merge_lora
from openjmp.training.config import GraphConfig
from openjmp.training.finetune_config import FinetuneConfig


@pytest.fixture(scope="module")
def lora_data(tmp_path_factory):
    """EMT molecules with energies/forces and a tiny 'pre-trained' model file (random weights)."""
    folder = tmp_path_factory.mktemp("lora")
    write_emt_molecules(folder / "mols.extxyz", 24)
    write_tiny_pretrained(folder / "pre.pt")
    return folder


def _batch(folder, n=3, dtype=torch.float64):
    from openjmp.data.readers import read
    from openjmp.training.data import GraphDataset, collate_graph_batch

    records = [r for _, r in read(folder / "mols.extxyz", format="ase")][:n]
    ds = GraphDataset(records, GraphConfig(cutoff=4.0, max_neighbors=10, max_neighbors_a2ee2a=6, max_neighbors_qint=3, max_neighbors_a2a=30).settings())
    return collate_graph_batch([ds[i] for i in range(n)]).to(dtype=dtype)


def _outputs(model, batch):
    d = batch.data
    with torch.no_grad():
        out = model(d.atomic_numbers, d.pos, d.cell, d.batch, batch.graphs, d.num_structures)
        energy = model.out_energy(out.x_E).squeeze(-1)
    return out.x_E.clone(), out.x_F.clone(), energy


def test_adapters_start_bit_equal_and_merge_into_the_plain_architecture(lora_data):
    from openjmp.models.registry import build_model, model_config

    torch.manual_seed(1)
    config = model_config("openjmp-tiny", finetune_energy=True)
    model = build_model(config).double()
    batch = _batch(lora_data)
    before = _outputs(model, batch)
    plain_keys = set(model.state_dict())
    names = apply_lora(model, LoRAConfig(rank=4, alpha=8.0))
    # every backbone linear is adapted, including the edge embedding that slices .weight itself
    assert any(n.endswith("edge_emb.dense.linear") for n in names), names[:5]
    assert all(n.startswith("backbone.") for n in names)
    after = _outputs(model, batch)
    for a, b in zip(before, after):
        assert torch.equal(a, b)  # B = 0: bit-equal, not just close
    # non-zero adapters change the function; merging keeps the adapted function
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".lora_B"):
                p.normal_(0.0, 0.05)
    adapted = _outputs(model, batch)
    assert not torch.allclose(adapted[2], before[2], atol=1e-6)
    merged = copy.deepcopy(model)
    assert merge_lora(merged) == len(names)
    assert set(merged.state_dict()) == plain_keys
    assert not lora_parameter_names(merged)
    plain = build_model(config).double()
    plain.load_state_dict(merged.state_dict(), strict=True)
    for a, b in zip(adapted, _outputs(plain, batch)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_target_patterns_and_clear_error(lora_data):
    from openjmp.models.registry import build_model, model_config

    model = build_model(model_config("openjmp-tiny"))
    names = apply_lora(model, LoRAConfig(target=["backbone.int_blocks.1.*"], exclude=["*.atom_update.*"]))
    assert names and all(n.startswith("backbone.int_blocks.1.") and ".atom_update." not in n for n in names)
    with pytest.raises(ValueError, match="matches no linear layer"):
        apply_lora(build_model(model_config("openjmp-tiny")), LoRAConfig(target=["heads.*"]))
    with pytest.raises(ValueError, match="rank"):
        load_config(FinetuneConfig, data=_cfg(lora_data, lora={"rank": 0}))


def _cfg(folder, lora, **changes):
    return tiny_finetune_config(folder, **{
        "optim": {"lr": 1e-2, "warmup_steps": 1, "lora": lora}, "ema": {"enabled": False},
        "trainer": {"max_steps": 4, "val_every_n_steps": 2, "progress_bar": False}, **changes})


def test_only_adapters_and_heads_get_gradients(lora_data):
    from openjmp.training.finetune import FinetuneModule, build_finetune_model

    cfg = load_config(FinetuneConfig, data=_cfg(lora_data, {"rank": 2}))
    model, _ = build_finetune_model(cfg)
    apply_lora(model, cfg.optim.lora)
    module = FinetuneModule(cfg.model_dump(mode="json"), model, {"energy": {"energy_mean": 0.0, "energy_std": 1.0,
                                                                            "force_std": 1.0}})
    batch = _batch(lora_data, 4, torch.float32)
    loss, _ = module.target_losses(batch, module.forward_targets(batch, training=True))
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert with_grad <= trainable
    assert all(n.endswith((".lora_A", ".lora_B")) or n.startswith("out_energy.") for n in trainable), sorted(trainable)[:5]
    assert any(n.endswith(".lora_B") for n in with_grad)  # B gets gradient at B = 0 (A does not yet)
    assert any(n.startswith("out_energy.") for n in with_grad)


def test_lora_finetuning_changes_only_adapted_layers_and_exports_a_plain_file(lora_data, tmp_path):
    from openjmp.checkpoints.format import load_model_file
    from openjmp.models.registry import load_model
    from openjmp.training.finetune import run_finetuning

    target = ["backbone.int_blocks.*", "backbone.out_blocks.*"]
    cfg = load_config(FinetuneConfig, data=_cfg(lora_data, {"rank": 2, "target": target},
                                                output_dir=str(tmp_path / "lora")))
    summary = run_finetuning(cfg)
    assert summary["lora_layers"] > 0
    pre = load_model_file(lora_data / "pre.pt").state_dict
    after = load_model_file(tmp_path / "lora" / "model.pt").state_dict
    assert not any("lora" in k or "parametrizations" in k for k in after)
    model, _ = load_model(tmp_path / "lora" / "model.pt")  # plain architecture, strict backbone
    adapted = {f"{n}.weight" for n in (m for m, mod in model.named_modules() if isinstance(mod, torch.nn.Linear))
               if n.startswith(("backbone.int_blocks.", "backbone.out_blocks."))}
    changed = [k for k in adapted if not torch.equal(after[k], pre[k])]
    assert changed, "adapted layers should have moved"
    for k, v in after.items():
        if k.startswith(("embedding.", "backbone.")) and k not in adapted and k in pre:
            assert torch.equal(v, pre[k]), f"{k} is not adapted and must stay bit-equal"
    assert np.isfinite(summary["test"]["metrics"]["energy/energy"]["mae"])
