"""TorchSim adapter: an openjmp model file as a ``torch_sim`` ``ModelInterface``.

``OpenJMPModel(path_or_name)`` gives energies (eV, (B,)), forces −dE/dx (eV/Å, (N, 3)) and, for
periodic states, stress (eV/Å³, (B, 3, 3), ASE / torch_sim sign: positive = tensile) of a
batch of systems in one backbone pass through :func:`openjmp.models.outputs.compute_outputs`,
the same code path (and numbers) as :class:`openjmp.calculator.JMPCalculator`. So every
torch_sim integrator and optimizer (``ts.optimize`` with FIRE / unit-cell FIRE,
``ts.integrate`` with NVE / NVT Langevin / NPT Langevin) runs openjmp models on many systems
at once.

* Graphs: built per system on every call (neighbours change) with the head's ``graph``
  settings by :meth:`openjmp.inference.Predictor.build_graphs` (on the CPU, numpy, float64),
  then collated; the backbone runs on the model's device.
* Memory-based batching: ``memory_scales_with = "n_atoms_x_density"`` (the graphs grow with the
  number of neighbours within the cutoff). torch_sim's autobatchers measure GPU memory; on a CPU
  they need ``max_memory_scaler``: :func:`autobatcher` picks one (default 2,000 atoms × density).
* Installed by ``pip install openjmp[torchsim]`` (``torch-sim-atomistic``; 0.3.0 is the newest
  release for Python 3.11, 0.4+ need Python >= 3.12; this adapter uses only the interface that
  0.3 – 0.6 share: ``ModelInterface``, ``SimState.positions / cell / pbc / atomic_numbers /
  system_idx``, ``row_vector_cell``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # optional dependency
    from torch_sim.models.interface import ModelInterface
    from torch_sim.state import SimState
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("openjmp.sim.torchsim needs torch-sim: pip install 'openjmp[torchsim]' "
                      "(package torch-sim-atomistic)") from exc

from openjmp.data.record import AtomsRecord
from openjmp.inference import Predictor, load_predictor
from openjmp.models.outputs import compute_outputs
from openjmp.sim.paths import resolve_model_path


def _pbc_tuple(pbc: Any) -> np.ndarray:
    arr = np.asarray(pbc.detach().cpu() if isinstance(pbc, torch.Tensor) else pbc, dtype=bool)
    return np.broadcast_to(arr, (3,)).copy() if arr.ndim == 0 or arr.size == 1 else arr.reshape(3)


class OpenJMPModel(ModelInterface):
    """torch_sim model of one energy head of an openjmp model file.

    Args:
        model: a model file path, a registered pretrained name (``"openjmp-mini"``) or a
            :class:`~openjmp.inference.Predictor` (used as is; its ``forces`` must be
            ``"gradient"``).
        head: energy head (default: the fine-tuned energy head, else the first pretrain head).
        device, dtype: where / in which precision the backbone runs (float64 default: tight
            relaxations and energy conservation; float32 is faster).
        compute_forces, compute_stress: what ``forward`` returns (stress only for periodic
            states).
        memory_scales_with: torch_sim's memory metric for its autobatchers.
    """

    def __init__(self, model: str | Path | Predictor, head: str | None = None,
                 device: str | torch.device | None = None, dtype: torch.dtype = torch.float64,
                 compute_forces: bool = True, compute_stress: bool = True,
                 memory_scales_with: str = "n_atoms_x_density", use_ema: bool = True,
                 unknown_elements: str = "warn") -> None:
        super().__init__()
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(model, Predictor):
            pred = model
            if pred.forces != "gradient":
                raise ValueError(f"the predictor's forces are {pred.forces!r}; torch_sim needs "
                                 f"conservative forces: forces='gradient'")
        else:
            pred = load_predictor(resolve_model_path(model), head=head, device=device, dtype=dtype,
                                  use_ema=use_ema, forces="gradient",
                                  unknown_elements=unknown_elements)
        if pred.head_name is None:
            raise ValueError("the model file has no energy head: nothing to simulate with")
        self.predictor = pred
        self._device = pred.device
        self._dtype = pred.dtype
        self._compute_forces = bool(compute_forces)
        self._compute_stress = bool(compute_stress)
        self._memory_scales_with = memory_scales_with
        self.calls = 0  # forward calls (benchmarks)

    # torch_sim lets integrators switch these on (NPT needs stress)
    @ModelInterface.compute_stress.setter
    def compute_stress(self, value: bool) -> None:
        self._compute_stress = bool(value)

    @ModelInterface.compute_forces.setter
    def compute_forces(self, value: bool) -> None:
        self._compute_forces = bool(value)

    # ----------------------------------------------------------------------- forward

    def records(self, positions: torch.Tensor, cell_rows: torch.Tensor, pbc: np.ndarray,
                atomic_numbers: torch.Tensor, system_idx: torch.Tensor) -> list[AtomsRecord]:
        """One :class:`AtomsRecord` per system (float64 numpy, for the graph construction)."""
        pos = positions.detach().to("cpu", torch.float64).numpy()
        cells = cell_rows.detach().to("cpu", torch.float64).numpy()
        z = atomic_numbers.detach().cpu().numpy().astype(np.int64)
        counts = torch.bincount(system_idx, minlength=cells.shape[0]).cpu().numpy()
        out, start = [], 0
        for b, n in enumerate(counts):
            out.append(AtomsRecord(atomic_numbers=z[start:start + n], positions=pos[start:start + n],
                                   cell=cells[b], pbc=pbc, source=f"torch-sim/{b}"))
            start += n
        return out

    def forward(self, state: SimState | dict, **kwargs: Any) -> dict[str, torch.Tensor]:
        """energy (B,), forces (N, 3) and stress (B, 3, 3) (periodic states, when asked) of a
        batched state, in the state's dtype / the model's device."""
        if isinstance(state, dict):
            positions, z = state["positions"], state["atomic_numbers"]
            cell = state["cell"]  # column vectors, as SimState
            if cell.dim() == 2:
                cell = cell.unsqueeze(0)
            system_idx = state.get("system_idx", state.get("batch"))
            if system_idx is None:
                system_idx = torch.zeros(positions.shape[0], dtype=torch.long, device=positions.device)
            cell_rows = cell.transpose(-2, -1)
            pbc = _pbc_tuple(state.get("pbc", True))
        else:
            positions, z, system_idx = state.positions, state.atomic_numbers, state.system_idx
            cell_rows = state.row_vector_cell
            pbc = _pbc_tuple(state.pbc)
        pred = self.predictor
        self.calls += 1
        num = int(cell_rows.shape[0])
        records = self.records(positions, cell_rows, pbc, z, system_idx)
        for r in records:
            pred.check_record(r)
        graphs = pred.build_graphs(records)
        pred.warn_caps(graphs)
        graphs = graphs.to(self._device)
        dev, dt = self._device, self._dtype
        Z = z.to(dev, torch.long)
        batch = system_idx.to(dev, torch.long)
        stress = self._compute_stress and bool(pbc.all())
        spec = pred.energy_spec()
        with torch.enable_grad():
            out = compute_outputs(pred.backbone_fn, Z, positions.detach().to(dev, dt),
                                  cell_rows.detach().to(dev, dt), batch, graphs, num, energy=spec,
                                  stress=stress)
        out_dtype = positions.dtype
        energy = pred.scaling.physical(out.energy.detach(), Z, batch)
        result = {"energy": energy.to(out_dtype)}
        if self._compute_forces:
            result["forces"] = out.forces.detach().to(out_dtype)
        if stress:
            result["stress"] = out.stress.detach().to(out_dtype)
        return result


def autobatcher(model: OpenJMPModel, kind: str = "in_flight", max_memory_scaler: float | None = None,
                **kwargs: Any):
    """A torch_sim autobatcher for ``model``: ``kind`` ``"in_flight"`` (optimisers: converged
    systems are swapped out) or ``"binning"`` (fixed-length MD). On a GPU with
    ``max_memory_scaler=None`` torch_sim measures how many atoms × density fit; on a CPU (where
    torch_sim cannot measure memory) ``max_memory_scaler`` defaults to 2,000 × the density of
    fcc Cu (torch_sim's density is per nm³: ≈ 85 atoms/nm³) — a batch of about 2,000 dense atoms, ~1-2 GB with openjmp-mini."""
    from torch_sim.autobatching import BinningAutoBatcher, InFlightAutoBatcher

    if max_memory_scaler is None and model.device.type == "cpu":
        max_memory_scaler = 2000.0 * 85.0 if model.memory_scales_with == "n_atoms_x_density" else 2000.0
    cls = {"in_flight": InFlightAutoBatcher, "binning": BinningAutoBatcher}[kind]
    return cls(model=model, memory_scales_with=model.memory_scales_with,
               max_memory_scaler=max_memory_scaler, **kwargs)


__all__ = ["OpenJMPModel", "autobatcher", "resolve_model_path"]
