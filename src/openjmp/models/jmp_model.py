"""JMP model container: atom embedding + GemNet-OC backbone + output heads.

State-dict layout (equal to the original JMP module trees, so published/fixture state dicts
load without renaming; see ``openjmp.models.gemnet_oc.keys`` for the alias keys):

* ``embedding.atom_embedding.weight`` (num_elements, emb_size_atom); row = Z - 1;
* ``backbone.*`` (:class:`~openjmp.models.gemnet_oc.backbone.GemNetOCBackbone`);
* ``output.out_energy.{t}.*`` / ``output.out_forces.{t}.*``: pre-training heads, one pair per
  pre-training task t (JMP order oc20, oc22, ani1x, transition1x), optional;
* ``out_energy.*`` / ``out_forces.*``: fine-tuning energy head (no bias) and direct-force head,
  optional. (JMP's fine-tuning module calls the embedding ``embedding.weight``; the checkpoint
  loader maps it.)

:meth:`JMPModel.forward` runs embedding + backbone; heads are applied by
:mod:`openjmp.models.outputs` (the one output path); :meth:`JMPModel.predict` applies every
head at once in model units (reference fixture, tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from openjmp.models.gemnet_oc.backbone import BackboneOutput, GemNetOCBackbone
from openjmp.models.gemnet_oc.config import GemNetOCConfig
from openjmp.models.heads import direct_forces, energy_from_atoms, mlp_head
from openjmp.models.outputs import gradient_outputs, prepare_inputs


class AtomEmbedding(nn.Module):
    """``atom_embedding``: nn.Embedding(num_elements, emb); h = E[Z - 1]."""

    def __init__(self, num_elements: int, emb_size: int):
        super().__init__()
        self.atom_embedding = nn.Embedding(num_elements, emb_size)
        if not self.atom_embedding.weight.is_meta:
            nn.init.uniform_(self.atom_embedding.weight, -(3**0.5), 3**0.5)

    def forward(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        return self.atom_embedding(atomic_numbers - 1)


class PretrainHeads(nn.Module):
    """``out_energy`` / ``out_forces``: ModuleLists of MLP heads, one per pre-training task."""

    def __init__(self, emb_size_atom: int, emb_size_edge: int, num_tasks: int, num_mlps: int = 5):
        super().__init__()
        self.out_energy = nn.ModuleList(
            [mlp_head(emb_size_atom, num_mlps) for _ in range(num_tasks)])
        self.out_forces = nn.ModuleList(
            [mlp_head(emb_size_edge, num_mlps) for _ in range(num_tasks)])


@dataclass
class Predictions:
    backbone: BackboneOutput
    energy: dict[str, torch.Tensor] = field(default_factory=dict)  # (B,)
    energy_per_atom: dict[str, torch.Tensor] = field(default_factory=dict)  # (N,)
    forces_direct: dict[str, torch.Tensor] = field(default_factory=dict)  # (N, 3)
    forces_grad: dict[str, torch.Tensor] = field(default_factory=dict)  # (N, 3)
    dE_dstrain: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, 3, 3)
    stress: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, 3, 3)


class JMPModel(nn.Module):
    def __init__(self, config: GemNetOCConfig, num_pretrain_tasks: int = 0,
                 finetune_energy: bool = False, finetune_forces: bool = False,
                 num_mlps: int = 5, finetune_energy_bias: bool = False):
        super().__init__()
        self.config = config
        self.embedding = AtomEmbedding(config.num_elements, config.emb_size_atom)
        self.backbone = GemNetOCBackbone(config)
        self.output = (PretrainHeads(config.emb_size_atom, config.emb_size_edge,
                                     num_pretrain_tasks, num_mlps)
                       if num_pretrain_tasks > 0 else None)
        # JMP's fine-tuning energy head has no biases; a head initialised from a pre-training
        # energy head (``TargetConfig.init_head``) keeps that head's hidden biases
        self.out_energy = (mlp_head(config.emb_size_atom, num_mlps, hidden_bias=finetune_energy_bias)
                           if finetune_energy else None)
        self.out_forces = mlp_head(config.emb_size_edge, num_mlps) if finetune_forces else None

    def forward(self, atomic_numbers: torch.Tensor, pos: torch.Tensor, cell: torch.Tensor,
                batch: torch.Tensor, graphs, num_structures: int | None = None,
                keep_intermediates: bool = False) -> BackboneOutput:
        h = self.embedding(atomic_numbers)
        return self.backbone(h, pos, cell, batch, graphs, num_structures, keep_intermediates)

    def heads(self) -> dict[str, tuple[nn.Module | None, nn.Module | None]]:
        """Head name -> (energy head, force head): ``finetune`` and ``pretrain{t}``."""
        out: dict[str, tuple[nn.Module | None, nn.Module | None]] = {}
        if self.out_energy is not None or self.out_forces is not None:
            out["finetune"] = (self.out_energy, self.out_forces)
        if self.output is not None:
            for t, (e, f) in enumerate(zip(self.output.out_energy, self.output.out_forces)):
                out[f"pretrain{t}"] = (e, f)
        return out

    def predict(self, atomic_numbers: torch.Tensor, pos: torch.Tensor, cell: torch.Tensor,
                batch: torch.Tensor, graphs, num_structures: int | None = None,
                gradient: bool = False, stress: bool = False, reduction: str = "sum",
                create_graph: bool = False) -> Predictions:
        """Backbone + every head, model units, via :mod:`openjmp.models.outputs`. ``gradient``:
        -dE/dpos per head; ``stress``: also dE/dε and stress (the graphs stay fixed, geometry is
        strained; no periodicity mask)."""
        inputs = prepare_inputs(pos, cell, batch, gradient, stress)
        if num_structures is None:
            num_structures = inputs.cell.shape[0]
        out = self.forward(atomic_numbers, inputs.pos_in, inputs.cell_in, batch, graphs, num_structures)
        pred = Predictions(out)
        heads = self.heads()
        for i, (name, (e_head, f_head)) in enumerate(heads.items()):
            if e_head is not None and out.x_E is not None:
                e, e_atom = energy_from_atoms(e_head, out.x_E, batch, num_structures, reduction)
                pred.energy[name], pred.energy_per_atom[name] = e, e_atom
                if gradient or stress:
                    last = i == len(heads) - 1
                    f, de, s = gradient_outputs(e, inputs, True, None, create_graph,
                                                retain_graph=create_graph or not last)
                    pred.forces_grad[name] = f
                    if stress:
                        pred.dE_dstrain[name], pred.stress[name] = de, s
            if f_head is not None and out.x_F is not None:
                pred.forces_direct[name] = direct_forces(f_head, out.x_F, out.V_st, out.idx_t,
                                                         atomic_numbers.shape[0])
        return pred


def get_module(model: nn.Module, dotted: str | None) -> nn.Module | None:
    """``model.output.out_energy.0`` from ``"output.out_energy.0"``; None when absent."""
    if not dotted:
        return None
    node: Any = model
    for part in dotted.split("."):
        if node is None:
            return None
        if isinstance(node, (nn.ModuleList, nn.Sequential)) and part.isdigit():
            idx = int(part)
            node = node[idx] if idx < len(node) else None
        elif isinstance(node, nn.ModuleDict):
            node = node[part] if part in node else None
        else:
            node = getattr(node, part, None)
    return node if isinstance(node, nn.Module) else None


def plain_activations(model: nn.Module) -> None:
    """Make this model's ScaledSiLU modules use the plain ``silu(x) * scale`` formula (same
    values and gradients): TorchDynamo cannot trace the fused in-place autograd.Function of
    :class:`~openjmp.models.gemnet_oc.layers.ScaledSiLU` (torch 2.13: "lift_tracked_freevar_to_input
    should not be called on root SubgraphTracer"). Instance-level, so other models keep the
    fused version."""
    import types

    from openjmp.models.gemnet_oc.layers import SILU_SCALE, ScaledSiLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(x) * SILU_SCALE

    for module in model.modules():
        if isinstance(module, ScaledSiLU):
            module.forward = types.MethodType(forward, module)
