"""Tiny random-weight model files (heads / normalisation per docs/model-files.md) and structures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule

from openjmp.models.registry import create_model, save_model_file

ELEMENTS = [1, 6, 7, 8, 29]


def tiny_model(kind: str = "energy_forces", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    opts = dict(num_blocks=1, num_mlps=2)
    if kind == "energy_forces":
        opts.update(num_pretrain_tasks=0, finetune_energy=True, regress_forces=False, direct_forces=False)
    elif kind == "pretrain":
        opts.update(num_pretrain_tasks=1)
    elif kind == "none":
        opts.update(num_pretrain_tasks=0)
    opts.update(overrides)
    model = create_model("openjmp-tiny", **opts)
    # random init gives tiny outputs; scale the head weights up so forces are O(0.1-1) eV/Å
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("out_energy", "output.")):
                p.mul_(3.0)
    return model


def normalizer(std=0.7, mean=-0.3, force_std=1.3):
    ref = [0.0] * 120
    for z, v in {1: -13.6, 6: -1030.0, 7: -1480.0, 8: -2040.0, 29: -45000.0}.items():
        ref[z] = v
    return {"linear_reference": ref, "energy_mean": mean, "energy_std": std, "force_std": force_std}


def write_model_file(path: Path, kind: str = "energy_forces", cutoff: float = 6.0,
                     max_neighbors: int = 50, elements=ELEMENTS, seed: int = 0,
                     graph_pbc=None, **overrides) -> Path:
    """Save a tiny model with one head of ``kind`` (``energy_forces``, ``pretrain`` or ``none``
    for a file without an energy head)."""
    model = tiny_model(kind, seed, **overrides)
    graph = {"cutoff": cutoff, "max_neighbors": max_neighbors, "pbc": graph_pbc}
    heads, norm = {}, {}
    if kind == "energy_forces":
        heads["energy"] = {"kind": "energy_forces", "energy_module": "out_energy",
                           "force_module": None, "forces": "gradient", "reduction": "sum",
                           "graph": graph, "elements": list(elements)}
        norm["energy"] = normalizer()
    elif kind == "pretrain":
        heads["oc20"] = {"kind": "pretrain", "task_index": 0,
                         "energy_module": "output.out_energy.0",
                         "force_module": "output.out_forces.0", "forces": "direct",
                         "reduction": "sum", "graph": graph, "elements": list(elements)}
        norm["oc20"] = normalizer()
    save_model_file(model, path, normalization=norm, heads=heads)
    return path


# ------------------------------------------------------------------------------- structures


def water_dimer() -> Atoms:
    a = molecule("H2O")
    b = molecule("H2O")
    b.translate([2.9, 0.2, 0.1])
    m = a + b
    m.rattle(0.05, seed=1)
    return m


def slab(pbc=(True, True, True)) -> Atoms:
    s = fcc111("Cu", size=(2, 2, 2), vacuum=5.0)
    s.info.pop("adsorbate_info", None)  # not writable to extxyz
    o = Atoms("O", positions=[s.positions[-1] + [0.3, 0.4, 1.6]])
    s = s + o
    s.pbc = pbc
    s.rattle(0.05, seed=2)
    return s


def triclinic_bulk() -> Atoms:
    b = bulk("Cu", "fcc", a=3.7, cubic=False)  # primitive: triclinic-looking rhombohedral cell
    b = b.repeat((2, 1, 1))
    cell = np.array(b.cell) + np.array([[0.0, 0.1, 0.05], [0.2, 0.0, -0.1], [0.1, 0.15, 0.0]])
    b.set_cell(cell, scale_atoms=True)
    b.rattle(0.05, seed=3)
    return b
