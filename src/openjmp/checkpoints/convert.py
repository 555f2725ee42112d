"""Convert a published JMP checkpoint into an openjmp model file (plain data, weights_only).

Reading a 3.7 GB Lightning checkpoint through the restricted unpickler is slower than a
``weights_only`` load and keeps optimizer moments on disk that nobody needs; converting once
gives a file with the chosen weights (EMA by default), the preset's model config, the
pre-training task names and (JMP-S / JMP-L) the pre-training heads' normalisation, which ``create_model(name, checkpoint_path=...)`` and ``load_model``
read directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from openjmp.checkpoints.format import save_model, sha256_file
from openjmp.checkpoints.jmp import PUBLISHED_VARIANTS, load_jmp_checkpoint


def convert_jmp_checkpoint(
    source: str | Path,
    destination: str | Path,
    *,
    preset: str | None = None,
    use_ema: bool = True,
    alias_values: Literal["jmp", "ema"] = "jmp",
    hash_source: bool = True,
) -> str:
    """Write ``destination`` (openjmp model file) from the JMP checkpoint ``source``.

    ``preset``: registry name whose pre-training layout the file has (default: the detected
    published variant, ``jmp-s`` / ``jmp-l``). Returns the new file's SHA-256.
    """
    from openjmp.models import registry

    source = Path(source)
    if preset is None or preset in PUBLISHED_VARIANTS:
        ckpt = load_jmp_checkpoint(source, use_ema=use_ema, alias_values=alias_values)
        if preset is not None and ckpt.variant != preset:
            raise ValueError(f"{source}: this is a {ckpt.variant} checkpoint, not {preset}")
        preset = ckpt.variant
    else:
        spec, config = registry.pretraining_key_spec(preset)
        ckpt = load_jmp_checkpoint(source, use_ema=use_ema, alias_values=alias_values,
                                   key_spec=spec, backbone_config=config)
    model_config = registry.model_config(preset)
    model_config["pretrain_tasks"] = list(ckpt.task_names)
    model_config["num_pretrain_tasks"] = len(ckpt.task_names)
    extra = {
        "source_file": source.name,
        "source_sha256": sha256_file(source) if hash_source else None,
        "source_format": "jmp-lightning",
        "used_ema": ckpt.used_ema,
        "alias_values": ckpt.alias_values,
        "epoch": ckpt.epoch,
        "global_step": ckpt.global_step,
        "ema_decay": ckpt.ema_decay,
        "lightning_version": ckpt.lightning_version,
    }
    heads = {"pretrain_tasks": list(ckpt.task_names), "pretrain_energy_reduction": "sum",
             "pretrain_forces": "direct"}
    pretrain = ckpt.pretrain_normalization()
    normalization = {"pretrain": pretrain} if pretrain else {}
    return save_model(destination, model_config, ckpt.state_dict, normalization=normalization,
                      heads=heads, extra=extra)
