"""ASE calculator for openjmp model files: ``atoms.calc = JMPCalculator("model.pt")`` or a
registered model by name, ``JMPCalculator("openjmp-mini")`` (``openjmp models list``).

Energies (eV), per-atom energies (``energies``, so ``atoms.get_potential_energies()`` works),
forces (eV/Å) and, for fully periodic structures, stress (eV/Å³, ASE sign and Voigt order xx yy
zz yz xz xy) of one energy head of an openjmp model file, and the values of its scalar /
classification heads under their head names, via :class:`openjmp.inference.Predictor` (the same
code path as ``openjmp predict``; both use :mod:`openjmp.models.outputs`).

* Head: a fine-tuned ``energy_forces`` head by default, else the first ``pretrain`` head, or the
  one named by ``head``; a wrong name lists the heads. A file without an energy head (fine-tuned
  on properties only) gives its properties (``calc.get_property("gap", atoms)``); asking it for
  energy, forces or stress raises :class:`NoEnergyHeadError`.
* Forces: by default the ones the head was trained to give, as ``openjmp predict``, ``md`` and
  ``relax``: a fine-tuned head's ``forces`` entry (usually ``gradient``, −dE/dx, conservative);
  a ``pretrain`` head's direct-force MLP (accurate, not conservative: NVE energy drifts).
  ``forces="gradient"`` gives −dE/dx of any energy head — conservative, but a pre-training
  energy head was fitted to energies only, so its gradient is not a trained force (docs/forces.md).
* Reuse between calls: the model is loaded once; when only positions change the graphs are
  rebuilt (neighbours change) but nothing else; when nothing changed ASE's cache answers.
  Stress is computed in the same backward pass when asked for.
* Elements outside the head's training ``elements`` warn (or raise with
  ``unknown_elements="error"``); NaN positions raise
  :class:`~openjmp.data.record.InvalidStructureError`.

Smoothness: models with the smooth basis (``openjmp-mini``; docs/forces.md) have continuous
energies; with the original JMP-S/L basis the radial envelope ends at 12 Å whatever the graph
cutoff, so an edge crossing a smaller cutoff makes the energy jump. Where a neighbour cap cuts a
graph, the calculator warns once with the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from openjmp.data.record import AtomsRecord
from openjmp.inference import ENERGY_KINDS, HeadError, Predictor, heads_listing, resolve_dtype

ENERGY_PROPERTIES = ("energy", "free_energy", "energies", "forces", "stress")


class NoEnergyHeadError(HeadError, PropertyNotImplementedError):
    """Energy, forces or stress asked of a model file without an energy head."""


class JMPCalculator(Calculator):
    """ASE calculator of one energy head of an openjmp model file.

    Args:
        checkpoint: openjmp model file path, or a registered model name (``"openjmp-mini"``;
            ``openjmp.models.registry.resolve_model``).
        head: energy head name (default: fine-tuned energy head, else the first pretrain head).
        device: torch device.
        dtype: ``"float32"`` or ``"float64"`` (use float64 for tight energy conservation).
        unknown_elements: ``"warn"`` (default), ``"error"`` or ``"ignore"``.
        forces: ``"gradient"`` (−dE/dx), ``"direct"`` or None (the head's trained convention).
        compile: run the backbone through ``torch.compile`` (off by default; see
            ``benchmarks/inference.py``).
        use_ema: use the file's EMA weights when present.
    """

    implemented_properties = list(ENERGY_PROPERTIES)  # + the property heads' names (per instance)

    def __init__(self, checkpoint: str | Path, head: str | None = None, device: str = "cpu",
                 dtype: str | torch.dtype = "float32", unknown_elements: str = "warn",
                 forces: str | None = None, compile: bool = False, use_ema: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from openjmp.models.registry import load_model, resolve_model

        self.checkpoint = resolve_model(checkpoint)
        model, model_file = load_model(self.checkpoint, use_ema=use_ema)
        self.predictor = Predictor(model, model_file, head=head, device=device,
                                   dtype=resolve_dtype(dtype), forces=forces, stress=False,
                                   unknown_elements=unknown_elements, compile=compile)
        self.head = self.predictor.head_name
        self.model_file = model_file
        self.implemented_properties = list(ENERGY_PROPERTIES) + [
            ph.name for ph in self.predictor.property_heads if ph.name not in ENERGY_PROPERTIES]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        p = self.predictor
        asked = [k for k in properties if k in ENERGY_PROPERTIES]
        if asked and p.head_name is None:
            raise NoEnergyHeadError(
                f"{', '.join(asked)}: the model file {self.checkpoint.name} has no energy head "
                f"({', '.join(ENERGY_KINDS)}), only {heads_listing(self.model_file.heads)}; its "
                f"properties: {', '.join(ph.name for ph in p.property_heads)}")
        want_stress = "stress" in properties
        if want_stress and not atoms.pbc.all():
            raise PropertyNotImplementedError(
                f"stress needs a fully periodic structure (pbc={atoms.pbc.tolist()})")
        record = AtomsRecord(
            atomic_numbers=atoms.get_atomic_numbers().astype(np.int64),
            positions=atoms.get_positions(),
            cell=np.asarray(atoms.get_cell(), dtype=np.float64),
            pbc=atoms.get_pbc(),
            tags=atoms.get_tags() if np.any(atoms.get_tags() != 0) else None,
            source="ase-calculator",
        )
        p.stress = want_stress
        try:
            result = p.predict_batch([record])
        finally:
            p.stress = False
        if "energy" in result:
            energy = float(result["energy"][0])
            self.results["energy"] = energy
            self.results["free_energy"] = energy
        if "energies" in result:
            self.results["energies"] = result["energies"].double().numpy().copy()
        if "forces" in result:
            self.results["forces"] = result["forces"].double().numpy().copy()
        if want_stress:
            s = result["stress"][0].double().numpy()
            self.results["stress"] = np.array(
                [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]], dtype=np.float64)
        for name, value in result["properties"].items():
            self.results[name] = float(value[0])
