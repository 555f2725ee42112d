"""State-dict key facts of GemNet-OC / JMP models.

Our modules are registered exactly like the original, so ``JMPModel.state_dict()`` has the
original key names, including the original's **aliases** (two names for one tensor):

* ``backbone.out_blocks.{i}.seq_energy_pre.*`` == ``backbone.out_blocks.{i}.layers.*``
  (each output block registers its atom MLP twice);
* ``backbone.bases.cbf_basis_aeint.radial_basis.rbf.{offset,temps}`` and
  ``backbone.bases.cbf_basis_tint.radial_basis.rbf.{offset,temps}`` ==
  ``backbone.bases.sbf_basis_qint.radial_basis.rbf.{offset,temps}`` (one shared radial basis).

A fixture/published state dict therefore loads with ``model.load_state_dict(sd)`` directly
(after dropping JMP's step counters ``task_steps.*``, which are not model state). Use
:func:`canonical_state_dict` to drop aliases and step counters (one name per tensor), and
:func:`with_aliases` to add the alias names back before ``load_state_dict``.

Parameter order: ``[n for n, _ in model.named_parameters()]`` (aliases removed, first name
kept) equals the original's parameter order, i.e. the order of the EMA tensors in
``optimizer_states[0]["ema"]`` of published checkpoints (:func:`parameter_names`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

STEP_COUNTER_PREFIX = "task_steps."

#: (alias pattern, replacement giving the canonical key)
ALIAS_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^(.*\.out_blocks\.\d+)\.seq_energy_pre\.(.*)$"), r"\1.layers.\2"),
    (re.compile(r"^(.*\.bases)\.cbf_basis_(?:aeint|tint)\.radial_basis\.(.*)$"),
     r"\1.sbf_basis_qint.radial_basis.\2"),
)


def alias_target(key: str) -> str | None:
    """Canonical key of an alias key, or None if ``key`` is not an alias."""
    for pattern, repl in ALIAS_RULES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return None


def is_step_counter(key: str) -> bool:
    return key.startswith(STEP_COUNTER_PREFIX)


def canonical_state_dict(sd: Mapping[str, torch.Tensor], check: bool = True
                         ) -> dict[str, torch.Tensor]:
    """Drop alias keys and JMP step counters (order of the remaining keys kept).

    With ``check``, an alias whose value differs from its canonical key's raises ValueError
    (such a state dict is ambiguous). An alias whose canonical key is absent is renamed to it.
    """
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for key, value in sd.items():
        if is_step_counter(key):
            continue
        target = alias_target(key)
        if target is None:
            out[key] = value
        else:
            aliases[key] = target
    for key, target in aliases.items():
        if target not in out:
            out[target] = sd[key]
        elif check and not torch.equal(out[target].cpu(), sd[key].cpu()):
            raise ValueError(f"state dict alias {key!r} differs from {target!r}")
    return out


def with_aliases(sd: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Add the alias keys ``model`` expects (values from their canonical keys)."""
    out = dict(sd)
    for key in model.state_dict().keys():
        if key not in out:
            target = alias_target(key)
            if target is not None and target in sd:
                out[key] = sd[target]
    return out


def parameter_names(model: nn.Module) -> list[str]:
    """Unique parameter names in registration order (= JMP's EMA tensor order)."""
    return [name for name, _ in model.named_parameters()]
