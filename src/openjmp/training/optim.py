"""Optimiser parameter groups and learning-rate schedules.

* Weight decay (AdamW, JMP: 0.1) applies to weight matrices only: not to biases, norms,
  embeddings or scale factors (configurable).
* Layer-wise learning-rate decay (fine-tuning): each parameter's LR is multiplied by the factor
  of the first matching name prefix (embedding, block i, ...).
* Schedule: linear warm-up from ``warmup_start_factor * lr`` to ``lr`` over ``warmup_steps``,
  then cosine decay to ``min_lr_factor * lr`` at ``total_steps`` and constant afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn


def embedding_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that belong to `nn.Embedding` modules."""
    return {
        f"{module_name}.{param_name}" if module_name else param_name
        for module_name, module in model.named_modules()
        if isinstance(module, nn.Embedding)
        for param_name, _ in module.named_parameters(recurse=False)
    }


def parameter_groups(
    model: nn.Module,
    weight_decay: float,
    lr: float,
    lr_multipliers: Mapping[str, float] | None = None,
    no_decay_embeddings: bool = True,
) -> list[dict]:
    """AdamW groups keyed by (decay or not, LR multiplier); each group records its ``names``.

    ``lr_multipliers`` maps a parameter-name prefix to a factor; the longest matching prefix wins;
    parameters matching none get 1.0. A factor of 0 leaves the parameter out of the optimiser
    (frozen), so AdamW's decoupled weight decay cannot move it either.
    """
    groups: dict[tuple[bool, float], dict] = {}
    prefixes = sorted((lr_multipliers or {}).items(), key=lambda kv: -len(kv[0]))
    embeddings = embedding_parameter_names(model) if no_decay_embeddings else set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        factor = next((f for prefix, f in prefixes if name.startswith(prefix)), 1.0)
        if factor == 0.0:
            continue
        # Biases and 0/1-D tensors (norms, scale factors) never decay; embeddings optionally.
        decay = param.ndim > 1 and not name.endswith(".bias") and name not in embeddings
        key = (decay, float(factor))
        group = groups.setdefault(
            key,
            {"params": [], "names": [], "weight_decay": weight_decay if decay else 0.0,
             "lr": lr * factor, "lr_multiplier": float(factor)},
        )
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())


def warmup_cosine_factor(
    step: int,
    warmup_steps: int,
    total_steps: int,
    warmup_start_factor: float = 0.2,
    min_lr_factor: float = 0.1,
) -> float:
    """LR multiplier at ``step`` (0-based) for warm-up + cosine (see module docstring)."""
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start_factor + (1.0 - warmup_start_factor) * step / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr_factor + (1.0 - min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(optimizer, warmup_steps, total_steps, warmup_start_factor=0.2, min_lr_factor=0.1):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_cosine_factor(step, warmup_steps, total_steps, warmup_start_factor, min_lr_factor),
    )
