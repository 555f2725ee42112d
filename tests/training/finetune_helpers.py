"""Helpers for fine-tuning tests: small EMT-labelled molecule files, a tiny 'pre-trained' model
file and a small fine-tuning config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ase.io
import torch
from pretrain_helpers import set_dotted

#: four compositions whose element-count matrix has full rank over H, C, N, O
MOLECULES = ("H2O", "NH3", "CH4", "C2H6")


def write_emt_molecules(path: Path, count: int, info: Callable[[int, object], dict] | None = None) -> Path:
    """``count`` rattled molecules (cycling through `MOLECULES`) with EMT energies and forces,
    written as extxyz; ``info(i, atoms)`` adds per-frame graph-level targets."""
    from ase.build import molecule
    from ase.calculators.emt import EMT

    frames = []
    for i in range(count):
        m = molecule(MOLECULES[i % len(MOLECULES)])
        m.rattle(0.04, seed=i)
        m.calc = EMT()
        m.get_potential_energy()
        m.get_forces()
        if info is not None:
            m.info.update(info(i, m))
        frames.append(m)
    ase.io.write(path, frames)
    return path


def write_tiny_pretrained(path: Path, seed: int = 0) -> Path:
    """A randomly initialised openjmp-tiny model with one pre-training head, as a model file."""
    from openjmp.models.registry import create_model, save_model_file

    torch.manual_seed(seed)
    model = create_model("openjmp-tiny", num_pretrain_tasks=1)
    save_model_file(model, path, normalization={"task0": {}}, heads={"task0": {"kind": "pretrain"}})
    return path


def tiny_finetune_config(folder: Path, data: str = "mols.extxyz", **changes) -> dict:
    """Fine-tune ``folder/pre.pt`` on ``folder/data`` into ``folder/out`` (energy + gradient
    forces, 6 steps); ``changes`` are dotted keys ("optim.lr") or whole sections set into it."""
    cfg = {
        "seed": 0, "output_dir": str(folder / "out"),
        "init": {"kind": "pretrained", "checkpoint": str(folder / "pre.pt")},
        "data": {"path": str(folder / data), "format": "ase", "graph": {"cutoff": 4.0, "max_neighbors": 10},
                 "batch_size": 4},
        "targets": [{"name": "energy", "kind": "energy_forces", "force_coefficient": 5.0}],
        "head_layers": 2,
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "trainer": {"max_steps": 6, "val_every_n_steps": 3, "progress_bar": False},
    }
    return set_dotted(cfg, changes)
