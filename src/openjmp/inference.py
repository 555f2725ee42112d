"""From records to physical predictions with one head of an openjmp model file.

:class:`Predictor` is the one place that turns :class:`~openjmp.data.record.AtomsRecord` s into
energies (eV), forces (eV/Å), stress (eV/Å³, ASE sign) and graph-level properties for a named
head, following ``docs/model-files.md``:

* graphs: the four GemNet-OC graphs built with the head's ``graph`` settings (cutoff,
  max_neighbors, optional per-graph caps, ``pbc`` override) and the backbone's ``qint_tags``;
  records without tags get tag 2 (as in training, :data:`openjmp.data.collate.DEFAULT_TAG`);
* energy: ``E = out * energy_std + energy_mean + Σ_i linear_reference[Z_i]`` in float64
  whatever the model dtype (totals of 10⁴ eV need it); per-atom energies
  ``out_i * energy_std + energy_mean / n + linear_reference[Z_i]`` sum to it;
* forces: ``gradient`` = −dE/dx of that physical energy (conservative), or ``direct`` = force
  head × ``force_std`` (``pretrain`` heads only); default: the head's own ``forces`` entry in the
  model file (``openjmp predict``, the calculator, md and relax alike);
* stress: ``(1/V) dE/dε`` with positions and cell strained by ``(I + sym ε)``
  (:func:`openjmp.models.outputs.apply_strain`), which is ASE's sign (positive = tensile); only
  for fully periodic structures, NaN rows otherwise;
* properties: every ``scalar`` / ``classification`` head whose module exists on the model
  (``task_heads.{name}``) — scalar: ``out * std + mean (+ Σ ref[Z])`` where ``out`` is the
  head's ``reduction`` (sum/mean/max, or ``spatial_extent`` Σ_i q_i |r_i - r_cm|²,
  :func:`openjmp.models.heads.spatial_extent`); classification: the probability ``sigmoid(out)``.
  A model file without an energy head (fine-tuned on QM9 / MatBench / QMOF properties only)
  predicts its properties alone.

All of it is computed by :mod:`openjmp.models.outputs` (the one output path of openjmp), in
batches bounded by a total atom count (:func:`iter_batches`).
"""

from __future__ import annotations

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
from openjmp.models.jmp_model import get_module, plain_activations
from openjmp.models.outputs import (
    FORCE_MODES,
    EnergySpec,
    PropertySpec,
    Scaling,
    compute_outputs,
    grad_context,
)

ENERGY_KINDS = ("energy_forces", "pretrain")
PROPERTY_KINDS = ("scalar", "classification")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class HeadError(ValueError):
    """A head name that the model file lacks, or a model file without a usable energy head."""


class UnknownElementError(ValueError):
    """A structure holds an element the head was never trained on (``unknown_elements="error"``)."""



def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    try:
        return DTYPES[str(dtype)]
    except KeyError:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None


def heads_listing(heads: dict[str, Any]) -> str:
    """``"name (kind), ..."`` of a model file's heads, for error messages."""
    return ", ".join(f"{n} ({h.get('kind')})" for n, h in heads.items()) or "none"


def select_energy_head(heads: dict[str, Any], name: str | None = None,
                       required: bool = True) -> str | None:
    """The head to predict energies with: ``name`` if given (any energy kind), else the first
    fine-tuned ``energy_forces`` head, else the first ``pretrain`` head; None when the file has
    no energy head and ``required`` is False (a property-only model). :class:`HeadError` listing
    the heads when ``name`` is unknown or the file has no energy head and one is required."""
    listing = heads_listing(heads)
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
    if not required:
        return None
    raise HeadError(f"the model file has no energy head (kinds {', '.join(ENERGY_KINDS)}); "
                    f"heads: {listing}")


def graph_settings_of(head: dict[str, Any]) -> tuple[GOCGraphSettings, bool | None]:
    """(GOCGraphSettings, pbc override) from a head's ``graph`` entry (docs/model-files.md)."""
    g = dict(head.get("graph") or {})
    try:
        settings = GOCGraphSettings.from_graph_dict(g)
    except ValueError as e:
        raise HeadError(f"head graph settings: {e}") from None
    pbc = g.get("pbc")
    return settings, (None if pbc is None else bool(pbc))


@dataclass
class _PropertyHead:
    name: str
    kind: str
    module: nn.Module
    reduction: str
    scaling: Scaling
    settings: GOCGraphSettings
    pbc: bool | None

    @property
    def spec(self) -> PropertySpec:
        return PropertySpec(self.name, self.module, self.reduction)


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
    """Physical predictions of one energy head (+ every property head) of a loaded model file;
    of the property heads alone for a model file without an energy head.

    Args:
        model: the model of :func:`openjmp.models.registry.load_model`. The predictor takes
            ownership: it is moved to ``device`` / ``dtype``, set to eval mode and its parameters
            stop requiring grad (pass a copy of a model that is still being trained).
        model_file: its :class:`~openjmp.checkpoints.format.ModelFile` (``heads``,
            ``normalization``).
        head: energy head name (default: see :func:`select_energy_head`; None on a file
            without an energy head: properties only).
        forces: ``"gradient"`` (−dE/dx), ``"direct"`` (force MLP; pretrain heads), ``"none"`` or
            None = the head's own convention from the file (``energy_forces`` heads: their
            ``forces`` entry; ``pretrain`` heads: direct).
        stress: also compute the stress of fully periodic structures (gradient path; ignored
            without an energy head).
        unknown_elements: ``"warn"`` / ``"error"`` / ``"ignore"`` for elements outside the
            head's ``elements``.
        compile: run the backbone through ``torch.compile(dynamic=True)`` (equal to eager,
            faster per MD step, minutes of compilation: docs/inference.md); off by default.
    """

    def __init__(self, model: nn.Module, model_file: Any, head: str | None = None,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = torch.float32,
                 forces: str | None = None, stress: bool = False,
                 unknown_elements: str = "warn", compile: bool = False) -> None:
        self.heads = dict(model_file.heads)
        self.head_name = select_energy_head(self.heads, head, required=False)
        self.head = dict(self.heads[self.head_name]) if self.head_name is not None else {}
        self.kind = self.head.get("kind")  # None: no energy head (properties only)
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype)
        if unknown_elements not in ("warn", "error", "ignore"):
            raise ValueError(f"unknown_elements must be warn, error or ignore, got {unknown_elements!r}")
        self.unknown_elements = unknown_elements
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.qint_tags = tuple(getattr(self.model.config, "qint_tags", (1, 2)) or (1, 2))
        if self.head_name is not None:
            self._init_energy_head(forces)
        elif forces not in (None, "none"):
            raise HeadError(f"forces={forces!r}: the model file has no energy head "
                            f"({', '.join(ENERGY_KINDS)}); heads: {heads_listing(self.heads)}")
        else:
            self.energy_module = self.force_module = None
            self.forces = "none"
            self.reduction = "sum"
        self.stress = bool(stress)
        s = self.scaling = Scaling.from_dict(model_file.normalization.get(self.head_name) if self.head_name else None)
        self.energy_std, self.energy_mean, self.force_std = s.std, s.mean, s.force_std
        self.property_heads = self._property_heads(model_file)
        if self.head_name is None and not self.property_heads:
            raise HeadError(f"the model file has no energy head ({', '.join(ENERGY_KINDS)}) and no "
                            f"property head ({', '.join(PROPERTY_KINDS)}) with a module on the "
                            f"model; heads: {heads_listing(self.heads)}")
        # the graphs and elements of the energy head, else of the first property head
        self.primary = self.head_name or self.property_heads[0].name
        primary = self.heads[self.primary]
        self.elements = (set(int(z) for z in primary["elements"])
                         if primary.get("elements") is not None else None)
        self.settings, self.force_pbc = graph_settings_of(primary)
        try:
            self.model.config.check_graph_cutoffs(self.settings.cutoffs, f"head {self.primary!r}")
        except ValueError as exc:
            raise HeadError(str(exc)) from None
        self._warned_caps = False
        for ph in self.property_heads:
            if ph.settings is None:
                ph.settings, ph.pbc = self.settings, self.force_pbc
        self.backbone_fn = self.model
        self.compiled = False
        if compile:
            plain_activations(self.model)
            self.backbone_fn = torch.compile(self.model, dynamic=True)
            self.compiled = True

    def _init_energy_head(self, forces: str | None) -> None:
        self.energy_module = get_module(self.model, self.head.get("energy_module"))
        if self.energy_module is None:
            raise HeadError(f"head {self.head_name!r}: the model has no module "
                            f"{self.head.get('energy_module')!r} (energy head)")
        self.force_module = get_module(self.model, self.head.get("force_module"))
        # default: the forces the head was trained to give, so predict, the calculator, md and
        # relax agree: pretrain heads their direct-force MLP (accurate, not conservative),
        # fine-tuned heads their ``forces`` entry (usually gradient: conservative). docs/forces.md
        self.forces = forces or self.head.get("forces") or "gradient"
        if self.forces not in (*FORCE_MODES, "none"):
            raise ValueError(f"forces must be 'gradient', 'direct' or None, got {self.forces!r}")
        if self.forces == "direct" and self.force_module is None:
            raise HeadError(f"head {self.head_name!r} has no direct-force module; use forces='gradient'")
        if self.forces == "direct" and getattr(self.model.config, "direct_forces", True) is False:
            raise HeadError("the backbone was built without direct-force outputs; use forces='gradient'")
        self.reduction = self.head.get("reduction", "sum")

    def _property_heads(self, model_file) -> list[_PropertyHead]:
        out = []
        for name, h in self.heads.items():
            if h.get("kind") not in PROPERTY_KINDS:
                continue
            module = get_module(self.model, h.get("energy_module") or f"task_heads.{name}")
            if module is None:
                continue  # declared but not built on this model: skip (docs: optional)
            scaling = Scaling.from_dict(model_file.normalization.get(name), h["kind"])
            # no graph entry: the primary head's (filled in by __init__)
            settings, pbc = graph_settings_of(h) if h.get("graph") else (None, None)
            out.append(_PropertyHead(name, h["kind"], module, h.get("reduction", "sum"), scaling, settings, pbc))
        return out

    def energy_spec(self) -> EnergySpec | None:
        """The energy head as an :class:`~openjmp.models.outputs.EnergySpec` (eV, eV/Å)."""
        if self.energy_module is None:
            return None
        return EnergySpec(self.energy_module, self.force_module,
                          self.forces if self.forces in FORCE_MODES else None, self.reduction,
                          energy_scale=self.energy_std, force_scale=self.force_std)

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
                       f"{self.primary!r} (Z={sorted(self.elements)}); predictions are unreliable")
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

    def warn_caps(self, graphs) -> None:
        """Warn once per predictor when a neighbour cap cut these graphs (numbers included):
        the energy then jumps whenever the order of neighbours changes (docs/forces.md)."""
        if self._warned_caps or not getattr(graphs, "truncations", ()):
            return
        self._warned_caps = True
        cuts = "; ".join(t.describe() for t in graphs.truncations)
        warnings.warn(f"neighbour caps cut the graphs of head {self.primary!r}: {cuts}. Energies "
                      f"jump when the neighbour order changes and ties break crystal symmetry; "
                      f"raise the head's max_neighbors (docs/forces.md)", stacklevel=3)

    # ----------------------------------------------------------------------- predict

    def predict_batch(self, records: Sequence[AtomsRecord], graphs=None) -> dict[str, Any]:
        """Predictions for one batch of records (:func:`openjmp.models.outputs.compute_outputs`).

        Returns a dict of CPU tensors: ``energy`` (B,) eV float64; ``energies`` (N,) eV float64
        per atom (sum and mean readouts); ``forces`` (N, 3) eV/Å (absent when ``forces="none"``);
        ``stress`` (B, 3, 3) eV/Å³ ASE sign (NaN rows for structures that are not fully periodic;
        only with ``stress=True``); ``natoms`` (B,); ``properties`` {name: (B,)};
        ``energy_per_atom_model`` (N,) raw head output per atom. Without an energy head only
        ``natoms`` and ``properties``. ``graphs``: the collated graphs of ``records`` with the
        head's settings, when the caller has them.
        """
        records = list(records)
        if not records:
            raise ValueError("predict_batch needs at least one record")
        for r in records:
            self.check_record(r)
        data = collate(records, dtype=torch.float64).to(self.device, self.dtype)
        if graphs is None:
            graphs = self.build_graphs(records)
        self.warn_caps(graphs)
        graphs = graphs.to(self.device)
        B = data.num_structures
        spec = self.energy_spec()
        main = (self.settings, self.force_pbc)
        shared = [ph.spec for ph in self.property_heads if (ph.settings, ph.pbc) == main]
        with grad_context(spec is not None and (spec.forces == "gradient" or self.stress)):
            out = compute_outputs(self.backbone_fn, data.atomic_numbers, data.pos, data.cell,
                                  data.batch, graphs, B, energy=spec, properties=shared,
                                  stress=self.stress, periodic=data.pbc.all(dim=1))
        result: dict[str, Any] = {"natoms": data.natoms.cpu()}
        if spec is not None:
            e_atoms = out.energy_per_atom.detach()
            result["energy"] = self.scaling.physical(out.energy.detach(), data.atomic_numbers, data.batch).cpu()
            energies = self.scaling.per_atom(e_atoms, self.reduction, data.atomic_numbers, data.batch, data.natoms)
            if energies is not None:
                result["energies"] = energies.cpu()
            if out.forces is not None:
                result["forces"] = out.forces.detach().cpu()
            if out.stress is not None:
                result["stress"] = out.stress.detach().cpu()
            result["energy_per_atom_model"] = e_atoms.cpu()
        values = {k: v.detach() for k, v in out.properties.items()}
        for key in {(ph.settings, ph.pbc) for ph in self.property_heads} - {main}:
            specs = [ph.spec for ph in self.property_heads if (ph.settings, ph.pbc) == key]
            g = self.build_graphs(records, *key).to(self.device)
            with torch.no_grad():
                values.update(compute_outputs(self.backbone_fn, data.atomic_numbers, data.pos, data.cell,
                                              data.batch, g, B, properties=specs).properties)
        result["properties"] = {ph.name: ph.scaling.physical(values[ph.name], data.atomic_numbers, data.batch).cpu()
                                for ph in self.property_heads}
        return result

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
    """Per-structure numpy results of one ``predict_batch`` call: energy (float), energies (n,),
    forces (n, 3), stress (3, 3) — each absent when not predicted (stress: or not defined) —
    and properties {name: float}."""
    out = []
    start = 0
    for i, r in enumerate(records):
        n = r.natoms
        item: dict[str, Any] = {}
        if "energy" in result:
            item["energy"] = float(result["energy"][i])
        for key in ("energies", "forces"):
            if key in result:
                item[key] = result[key][start:start + n].double().numpy()
        if "stress" in result:
            s = result["stress"][i].double().numpy()
            if np.isfinite(s).all():
                item["stress"] = s
        item["properties"] = {k: float(v[i]) for k, v in result["properties"].items()}
        out.append(item)
        start += n
    return out
