"""From records to physical predictions with one head of an openjmp model file.

:class:`Predictor` is the one place that turns :class:`~openjmp.data.record.AtomsRecord` s into
energies (eV), forces (eV/Å), stress (eV/Å³, ASE sign) and graph-level properties for a named
head, following ``docs/model-files.md``:

* graphs: the four GemNet-OC graphs built with the head's ``graph`` settings (cutoff,
  max_neighbors, optional per-graph caps, ``pbc`` override) and the backbone's ``qint_tags``;
  records without tags get tag 2 (as in training, :data:`openjmp.data.collate.DEFAULT_TAG`);
* energy: ``E = out * energy_std + energy_mean + Σ_i linear_reference[Z_i]`` (the reference
  part is added in float64 whatever the model dtype: totals of 10⁴ eV need it);
* forces: ``gradient`` = −dE/dx of that physical energy (conservative; the default of the
  calculator), or ``direct`` = force head × ``force_std`` (``pretrain`` heads only);
* stress: ``(1/V) dE/dε`` with positions and cell strained by ``(I + sym ε)``
  (:func:`openjmp.models.heads.apply_strain`), which is ASE's sign (positive = tensile); only
  for fully periodic structures, NaN rows otherwise;
* properties: every ``scalar`` / ``classification`` head whose module exists on the model
  (``task_heads.{name}``) — scalar: ``out * std + mean (+ Σ ref[Z])`` where ``out`` is the
  head's ``reduction`` (sum/mean/max, or ``spatial_extent`` Σ_i q_i |r_i - r_cm|²,
  :func:`openjmp.models.heads.spatial_extent`); classification: the probability ``sigmoid(out)``.

Records are processed in batches bounded by a total atom count (:func:`iter_batches`), so memory
stays bounded on large files.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from openjmp.data.collate import DEFAULT_TAG, collate
from openjmp.data.graphs.goc import GOCGraphSettings, build_goc_graphs, collate_goc_graphs
from openjmp.data.record import AtomsRecord, InvalidStructureError
from openjmp.models.heads import (
    apply_strain,
    cell_volume,
    direct_forces,
    reduce_per_structure,
    structure_readout,
)
from openjmp.training.normalization import reference_energy

ENERGY_KINDS = ("energy_forces", "pretrain")
PROPERTY_KINDS = ("scalar", "classification")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class HeadError(ValueError):
    """A head name that the model file lacks, or a model file without a usable energy head."""


class UnknownElementError(ValueError):
    """A structure holds an element the head was never trained on (``unknown_elements="error"``)."""


# ------------------------------------------------------------------------------- heads


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    try:
        return DTYPES[str(dtype)]
    except KeyError:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None


def select_energy_head(heads: dict[str, Any], name: str | None = None) -> str:
    """The head to predict energies with: ``name`` if given (any energy kind), else the first
    fine-tuned ``energy_forces`` head, else the first ``pretrain`` head. :class:`HeadError`
    listing the heads when ``name`` is unknown or the file has no energy head."""
    listing = ", ".join(f"{n} ({h.get('kind')})" for n, h in heads.items()) or "none"
    if name is not None:
        if name not in heads:
            raise HeadError(f"no head named {name!r}; the model file has: {listing}")
        if heads[name].get("kind") not in ENERGY_KINDS:
            raise HeadError(f"head {name!r} is a {heads[name].get('kind')!r} head, not an energy "
                            f"head ({', '.join(ENERGY_KINDS)}); heads: {listing}")
        return name
    for kind in ENERGY_KINDS:
        for n, h in heads.items():
            if h.get("kind") == kind:
                return n
    raise HeadError(f"the model file has no energy head (kinds {', '.join(ENERGY_KINDS)}); "
                    f"heads: {listing}")


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


def graph_settings_of(head: dict[str, Any]) -> tuple[GOCGraphSettings, bool | None]:
    """(GOCGraphSettings, pbc override) from a head's ``graph`` entry (docs/model-files.md)."""
    g = dict(head.get("graph") or {})
    if "cutoff" not in g or "max_neighbors" not in g:
        raise HeadError(f"head graph settings need 'cutoff' and 'max_neighbors', got {g}")
    cutoff = float(g["cutoff"])
    n = int(g["max_neighbors"])
    settings = GOCGraphSettings(
        cutoff_main=cutoff, cutoff_aeaint=cutoff, cutoff_qint=cutoff, cutoff_aint=cutoff,
        max_neighbors_main=n,
        max_neighbors_aeaint=int(g.get("max_neighbors_a2ee2a") or int(n * 20 / 30)),
        max_neighbors_qint=int(g.get("max_neighbors_qint") or int(n * 8 / 30)),
        max_neighbors_aint=int(g.get("max_neighbors_a2a") or int(n * 1000 / 30)),
        # size-conditional caps (absent from older model files: fixed caps)
        max_neighbors_by_natoms=tuple((int(t), int(c)) for t, c in (g.get("max_neighbors_by_natoms") or ())),
    )
    settings.validate()
    pbc = g.get("pbc")
    return settings, (None if pbc is None else bool(pbc))


@dataclass
class _PropertyHead:
    name: str
    kind: str
    module: nn.Module
    reduction: str
    mean: float
    std: float
    linear_reference: torch.Tensor | None  # (120,) float64 or None
    settings: GOCGraphSettings
    pbc: bool | None


def _plain_activations(model: nn.Module) -> None:
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


# ------------------------------------------------------------------------------- batching


def iter_batches(records: Iterable[AtomsRecord], max_atoms: int = 2000,
                 max_structures: int | None = None) -> Iterator[list[AtomsRecord]]:
    """Consecutive groups of records with at most ``max_atoms`` atoms in total (a larger single
    structure forms a batch alone) and at most ``max_structures`` structures."""
    if max_atoms < 1:
        raise ValueError(f"max_atoms must be >= 1, got {max_atoms}")
    group: list[AtomsRecord] = []
    atoms = 0
    for r in records:
        n = r.natoms
        full = max_structures is not None and len(group) >= max_structures
        if group and (atoms + n > max_atoms or full):
            yield group
            group, atoms = [], 0
        group.append(r)
        atoms += n
    if group:
        yield group


# ------------------------------------------------------------------------------- predictor


class Predictor:
    """Physical predictions of one energy head (+ every property head) of a loaded model file.

    Args:
        model: the model of :func:`openjmp.models.registry.load_model`. The predictor takes
            ownership: it is moved to ``device`` / ``dtype``, set to eval mode and its parameters
            stop requiring grad (pass a copy of a model that is still being trained).
        model_file: its :class:`~openjmp.checkpoints.format.ModelFile` (``heads``,
            ``normalization``).
        head: energy head name (default: see :func:`select_energy_head`).
        forces: ``"gradient"`` (−dE/dx), ``"direct"`` (force MLP; pretrain heads) or None = the
            head's own convention from the file (``energy_forces`` heads: gradient).
        stress: also compute the stress of fully periodic structures (gradient path).
        unknown_elements: ``"warn"`` / ``"error"`` / ``"ignore"`` for elements outside the
            head's ``elements``.
        compile: run the backbone through ``torch.compile(dynamic=True)``: equal to eager,
            1.4-1.9x faster per MD step on CPU for openjmp-mini, but minutes of compilation (see
            docs/inference.md); off by default.
    """

    def __init__(self, model: nn.Module, model_file: Any, head: str | None = None,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = torch.float32,
                 forces: str | None = None, stress: bool = False,
                 unknown_elements: str = "warn", compile: bool = False) -> None:
        self.heads = dict(model_file.heads)
        self.head_name = select_energy_head(self.heads, head)
        self.head = dict(self.heads[self.head_name])
        self.kind = self.head.get("kind")
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype)
        if unknown_elements not in ("warn", "error", "ignore"):
            raise ValueError(f"unknown_elements must be warn, error or ignore, got {unknown_elements!r}")
        self.unknown_elements = unknown_elements
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

        self.energy_module = get_module(self.model, self.head.get("energy_module"))
        if self.energy_module is None:
            raise HeadError(f"head {self.head_name!r}: the model has no module "
                            f"{self.head.get('energy_module')!r} (energy head)")
        self.force_module = get_module(self.model, self.head.get("force_module"))
        # None: the head's own convention (pretrain heads: direct; fine-tuned: gradient)
        self.forces = forces or self.head.get("forces") or "gradient"
        if self.forces not in ("gradient", "direct", "none"):
            raise ValueError(f"forces must be 'gradient', 'direct' or None, got {self.forces!r}")
        if self.forces == "direct" and self.force_module is None:
            raise HeadError(f"head {self.head_name!r} has no direct-force module; use forces='gradient'")
        if self.forces == "direct" and getattr(self.model.config, "direct_forces", True) is False:
            raise HeadError("the backbone was built without direct-force outputs; use forces='gradient'")
        self.stress = bool(stress)
        self.reduction = self.head.get("reduction", "sum")
        norm = dict(model_file.normalization.get(self.head_name) or {})
        self.energy_std = float(norm.get("energy_std", 1.0))
        self.energy_mean = float(norm.get("energy_mean", 0.0))
        self.force_std = float(norm.get("force_std", 1.0))
        ref = norm.get("linear_reference")
        self.linear_reference = (torch.as_tensor(ref, dtype=torch.float64).reshape(-1)
                                 if ref is not None else None)
        self.elements = (set(int(z) for z in self.head["elements"])
                         if self.head.get("elements") is not None else None)
        self.settings, self.force_pbc = graph_settings_of(self.head)
        self.qint_tags = tuple(getattr(self.model.config, "qint_tags", (1, 2)) or (1, 2))
        self.property_heads = self._property_heads(model_file)
        self.backbone_fn = self.model
        self.compiled = False
        if compile:
            _plain_activations(self.model)
            self.backbone_fn = torch.compile(self.model, dynamic=True)
            self.compiled = True

    def _property_heads(self, model_file) -> list[_PropertyHead]:
        out = []
        for name, h in self.heads.items():
            if h.get("kind") not in PROPERTY_KINDS:
                continue
            module = get_module(self.model, h.get("energy_module") or f"task_heads.{name}")
            if module is None:
                continue  # declared but not built on this model: skip (docs: optional)
            norm = dict(model_file.normalization.get(name) or {})
            ref = norm.get("linear_reference")
            settings, pbc = graph_settings_of(h) if h.get("graph") else (self.settings, self.force_pbc)
            out.append(_PropertyHead(
                name, h["kind"], module, h.get("reduction", "sum"),
                float(norm.get("mean", 0.0)), float(norm.get("std", 1.0)),
                torch.as_tensor(ref, dtype=torch.float64).reshape(-1) if ref is not None else None,
                settings, pbc))
        return out

    # ----------------------------------------------------------------------- checks

    def check_record(self, record: AtomsRecord) -> None:
        """Finite positions / cell and known elements (warn or error by ``unknown_elements``)."""
        pos = np.asarray(record.positions, dtype=np.float64)
        if not np.isfinite(pos).all():
            i = int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
            raise InvalidStructureError(
                f"{record.name}: non-finite (NaN/inf) position of atom {i}: {pos[i].tolist()}")
        if np.any(record.pbc) and not np.isfinite(np.asarray(record.cell, dtype=np.float64)).all():
            raise InvalidStructureError(f"{record.name}: non-finite cell {np.asarray(record.cell).tolist()}")
        if self.elements is not None and self.unknown_elements != "ignore":
            unknown = sorted(set(int(z) for z in np.asarray(record.atomic_numbers)) - self.elements)
            if unknown:
                msg = (f"{record.name}: element(s) Z={unknown} not in the training elements of head "
                       f"{self.head_name!r} (Z={sorted(self.elements)}); predictions are unreliable")
                if self.unknown_elements == "error":
                    raise UnknownElementError(msg)
                warnings.warn(msg, stacklevel=3)

    # ----------------------------------------------------------------------- graphs

    def build_graphs(self, records: Sequence[AtomsRecord], settings: GOCGraphSettings | None = None,
                     force_pbc: bool | None | str = "head"):
        """The collated GemNet-OC graphs of ``records`` with the head's settings."""
        settings = settings or self.settings
        force_pbc = self.force_pbc if force_pbc == "head" else force_pbc
        per = []
        for r in records:
            pbc = np.asarray(r.pbc, dtype=bool) if force_pbc is None else np.array([force_pbc] * 3)
            tags = r.tags if r.tags is not None else np.full(r.natoms, DEFAULT_TAG, dtype=np.int64)
            per.append(build_goc_graphs(np.asarray(r.positions, dtype=np.float64),
                                        np.asarray(r.cell, dtype=np.float64), pbc, tags,
                                        settings, self.qint_tags))
        return collate_goc_graphs(per, [r.natoms for r in records])

    # ----------------------------------------------------------------------- predict

    def predict_batch(self, records: Sequence[AtomsRecord], graphs=None) -> dict[str, Any]:
        """Predictions for one batch of records.

        Returns a dict of CPU tensors: ``energy`` (B,) eV float64; ``forces`` (N, 3) eV/Å (absent
        when ``forces=None``); ``stress`` (B, 3, 3) eV/Å³ ASE sign (NaN rows for structures that
        are not fully periodic; only with ``stress=True``); ``natoms`` (B,); ``properties``
        {name: (B,)}; ``energy_per_atom_model`` (N,) raw head output per atom. ``graphs``: the
        collated graphs of ``records`` with the head's settings, when the caller has them.
        """
        records = list(records)
        if not records:
            raise ValueError("predict_batch needs at least one record")
        for r in records:
            self.check_record(r)
        data = collate(records, dtype=torch.float64).to(self.device, self.dtype)
        if graphs is None:
            graphs = self.build_graphs(records)
        graphs = graphs.to(self.device)
        B = data.num_structures
        N = data.num_atoms
        want_grad = self.forces == "gradient" or self.stress
        periodic = data.pbc.all(dim=1)
        pos = data.pos
        cell = data.cell
        eps = None
        with torch.enable_grad() if want_grad else torch.no_grad():
            if want_grad:
                pos = pos.detach().requires_grad_(True)
            pos_in, cell_in = pos, cell
            if self.stress:
                pos_in, cell_in, eps = apply_strain(pos, cell, data.batch)
            out = self.backbone_fn(data.atomic_numbers, pos_in, cell_in, data.batch, graphs, B)
            per_atom = self.energy_module(out.x_E).squeeze(-1)
            e_model = reduce_per_structure(per_atom, data.batch, B, self.reduction)
            # gradient of the physical energy: std * d(model output); the reference is constant
            e_scaled = e_model * self.energy_std
            result: dict[str, Any] = {"natoms": data.natoms.cpu()}
            if want_grad:
                inputs = [pos] if eps is None else [pos, eps]
                grads = torch.autograd.grad(e_scaled.sum(), inputs, allow_unused=True)
                if self.forces == "gradient":
                    g = grads[0] if grads[0] is not None else torch.zeros_like(pos)
                    result["forces"] = (-g).detach().cpu()
                if eps is not None:
                    de = grads[1] if grads[1] is not None else torch.zeros_like(eps)
                    vol = cell_volume(cell.detach())
                    s = de / vol.clamp_min(torch.finfo(vol.dtype).tiny)[:, None, None]
                    s = torch.where(periodic[:, None, None], s, torch.full_like(s, math.nan))
                    result["stress"] = s.detach().cpu()
            if self.forces == "direct":
                f = direct_forces(self.force_module, out.x_F, out.V_st, out.idx_t, N)
                result["forces"] = (f * self.force_std).detach().cpu()
        ref = reference_energy(self.linear_reference, data.atomic_numbers, data.batch, B)
        energy = e_scaled.detach().double() + self.energy_mean + ref
        result["energy"] = energy.cpu()
        result["energy_per_atom_model"] = per_atom.detach().cpu()
        result["properties"] = self._predict_properties(records, data, graphs, out)
        return result

    def _predict_properties(self, records, data, graphs, out) -> dict[str, torch.Tensor]:
        props: dict[str, torch.Tensor] = {}
        B = data.num_structures
        cache = {(self.settings, self.force_pbc): out}
        for ph in self.property_heads:
            key = (ph.settings, ph.pbc)
            with torch.no_grad():
                if key not in cache:
                    g = self.build_graphs(records, ph.settings, ph.pbc).to(self.device)
                    cache[key] = self.backbone_fn(data.atomic_numbers, data.pos, data.cell,
                                                  data.batch, g, B)
                x_E = cache[key].x_E.detach()
                value = structure_readout(ph.module(x_E).squeeze(-1), data.batch, B, ph.reduction,
                                          data.pos, data.atomic_numbers).double()
            if ph.kind == "classification":
                props[ph.name] = torch.sigmoid(value).cpu()
            else:
                ref = reference_energy(ph.linear_reference, data.atomic_numbers, data.batch, B)
                props[ph.name] = (value * ph.std + ph.mean + ref).cpu()
        return props

    def predict(self, records: Iterable[AtomsRecord], max_atoms: int = 2000,
                max_structures: int | None = None) -> Iterator[tuple[list[AtomsRecord], dict]]:
        """(records, predict_batch result) per memory-bounded batch (see :func:`iter_batches`)."""
        for group in iter_batches(records, max_atoms, max_structures):
            yield group, self.predict_batch(group)


def load_predictor(checkpoint: str | Path, head: str | None = None, device: str = "cpu",
                   dtype: str | torch.dtype = "float32", use_ema: bool = True,
                   **kwargs: Any) -> Predictor:
    """:class:`Predictor` for an openjmp model file (``openjmp.models.registry.load_model``)."""
    from openjmp.models.registry import load_model

    model, mf = load_model(checkpoint, use_ema=use_ema)
    return Predictor(model, mf, head=head, device=device, dtype=dtype, **kwargs)


def split_results(records: Sequence[AtomsRecord], result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-structure numpy results of one ``predict_batch`` call: energy (float), forces (n, 3),
    stress (3, 3) or absent, properties {name: float}."""
    out = []
    start = 0
    for i, r in enumerate(records):
        n = r.natoms
        item: dict[str, Any] = {"energy": float(result["energy"][i])}
        if "forces" in result:
            item["forces"] = result["forces"][start:start + n].double().numpy()
        if "stress" in result:
            s = result["stress"][i].double().numpy()
            if np.isfinite(s).all():
                item["stress"] = s
        item["properties"] = {k: float(v[i]) for k, v in result["properties"].items()}
        out.append(item)
        start += n
    return out
