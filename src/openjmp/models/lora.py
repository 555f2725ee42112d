"""Low-rank adapters (LoRA) on the backbone's linear layers, and folding them back in.

An adapted linear layer computes with the weight

    W = W0 + (alpha / r) · B @ A,    W0 (out, in) frozen, A (r, in), B (out, r) trained,

with B initialised to zero, so the model function is exactly unchanged before training. The
adapter is a weight parametrization (``torch.nn.utils.parametrize``) rather than an extra
forward branch, because some GemNet-OC layers use ``linear.weight`` directly instead of calling
the layer (``EdgeEmbedding`` slices it); every use of ``.weight`` sees the adapted weight.

``dropout`` drops *input features* of the adapter (columns of A, one mask per use of the
weight, rescaled by 1/(1-p)) while the module is in training mode: the adapter is folded into
the weight, so a per-row input mask as in the LoRA paper is not available.

:func:`merge_lora` folds every adapter into its base weight and removes the parametrization:
the state dict then has the plain architecture's keys (``...linear.weight``), so an exported
``model.pt`` loads into the model without adapters.

State-dict keys while adapted: ``<layer>.parametrizations.weight.original`` (W0),
``<layer>.parametrizations.weight.0.lora_A`` and ``...lora_B``.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils import parametrize

#: the modules LoRA may adapt: the atom embedding and the GemNet-OC backbone (heads stay plain)
BACKBONE_PREFIXES = ("embedding.", "backbone.")


class LoRAConfig(BaseModel):
    """``optim.lora`` of a fine-tuning config.

    * ``rank`` r and ``alpha``: the adapter's update is (alpha / r) · B @ A;
    * ``dropout``: probability of dropping an input feature of the adapter while training;
    * ``target``: ``all`` (every ``nn.Linear`` of the embedding and backbone) or a list of glob
      patterns on module names (``backbone.int_blocks.*``, ``*.dense_mlp.*``);
    * ``exclude``: glob patterns of module names never adapted.

    With LoRA on, every embedding/backbone parameter that is not an adapter is frozen; heads stay
    fully trainable.
    """

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target: Literal["all"] | list[str] = "all"
    exclude: list[str] = Field(default_factory=list)


class LoRAParametrization(nn.Module):
    """W0 -> W0 + scaling · B @ A (see the module docstring)."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float, dropout: float = 0.0,
                 dtype: torch.dtype | None = None, device=None) -> None:
        super().__init__()
        self.rank = rank
        self.scaling = alpha / rank
        self.dropout = dropout
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, dtype=dtype, device=device))
        # A like nn.Linear's default init (uniform ±1/sqrt(in)); B = 0 keeps W = W0 at the start
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.lora_A, -bound, bound)

    def delta(self) -> torch.Tensor:
        """scaling · B @ A (out, in), without dropout."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        a = self.lora_A
        if self.training and self.dropout > 0:
            keep = torch.rand(a.shape[1], device=a.device) >= self.dropout
            a = a * (keep.to(a.dtype) / (1.0 - self.dropout))
        return weight + (self.lora_B @ a) * self.scaling


def lora_target_names(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Names of the ``nn.Linear`` modules of the embedding/backbone that ``config`` selects."""
    linears = [name for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and name.startswith(BACKBONE_PREFIXES)]
    if config.target == "all":
        chosen = linears
    else:
        chosen = [n for n in linears if any(fnmatch.fnmatchcase(n, p) for p in config.target)]
    chosen = [n for n in chosen if not any(fnmatch.fnmatchcase(n, p) for p in config.exclude)]
    if not chosen:
        examples = ", ".join(linears[:6]) or "none"
        raise ValueError(f"LoRA target {config.target!r} (exclude {config.exclude}) matches no linear layer of "
                         f"the embedding/backbone; {len(linears)} candidates, e.g. {examples}")
    return chosen


def apply_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Adapt the selected linear layers of ``model`` in place and freeze everything else of the
    embedding and backbone. Returns the adapted module names. Heads keep ``requires_grad``."""
    if has_lora(model):
        raise ValueError("the model already has LoRA adapters")
    names = lora_target_names(model, config)
    modules = dict(model.named_modules())
    for name, p in model.named_parameters():
        if name.startswith(BACKBONE_PREFIXES):
            p.requires_grad_(False)
    for name in names:
        linear = modules[name]
        w = linear.weight
        parametrize.register_parametrization(
            linear, "weight",
            LoRAParametrization(w.shape[0], w.shape[1], config.rank, config.alpha, config.dropout,
                                dtype=w.dtype, device=w.device))
        linear.parametrizations.weight.original.requires_grad_(False)
    return names


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRAParametrization) for m in model.modules())


def lora_parameter_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.endswith((".lora_A", ".lora_B"))]


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its base weight (W0 + scaling · B @ A, no dropout) and remove the
    parametrizations, in place; returns the number of merged layers. The merged weight keeps the
    base weight's ``requires_grad``."""
    count = 0
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module, "weight"):
            continue
        plist = module.parametrizations.weight
        if not (len(plist) == 1 and isinstance(plist[0], LoRAParametrization)):
            continue
        merged = plist.original + plist[0].delta().to(plist.original.dtype)
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        module.weight.copy_(merged)
        count += 1
    return count
