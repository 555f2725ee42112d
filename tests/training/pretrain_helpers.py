"""Helpers for pre-training tests. Tiny EMT-labelled datasets (two 'domains') and a tiny pre-training config for tests."""

import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import yaml


def _write_domains(folder: Path) -> None:
    from ase.build import add_adsorbate, fcc111, molecule
    from ase.calculators.emt import EMT

    slabs = []
    for i in range(24):
        s = fcc111("Cu", size=(2, 2, 2), vacuum=5.0)
        add_adsorbate(s, "O", 1.6, "fcc")
        s.pbc = True
        s.rattle(0.08, seed=i)
        s.calc = EMT()
        s.get_potential_energy()
        s.get_forces()
        slabs.append(s)
    ase.io.write(folder / "slabs.extxyz", slabs)
    mols = []
    for i in range(24):
        m = molecule(["H2O", "NH3", "CH4"][i % 3])
        m.rattle(0.05, seed=i)
        m.calc = EMT()
        m.get_potential_energy()
        m.get_forces()
        mols.append(m)
    ase.io.write(folder / "mols.extxyz", mols)


def set_dotted(cfg: dict, changes: dict) -> dict:
    """Set ``{"a.b.0.c": value}`` entries into the nested dicts/lists of ``cfg`` (missing dict
    levels are created); returns ``cfg``."""
    for key, value in changes.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if isinstance(node, list):
            node[int(parts[-1])] = value
        else:
            node[parts[-1]] = value
    return cfg


def tiny_pretrain_config(folder: Path, data: Path | None = None, **changes) -> dict:
    """Two-domain pre-training config writing to ``folder/run``, reading ``slabs.extxyz`` and
    ``mols.extxyz`` from ``data`` (default ``folder``); ``changes`` are dotted keys."""
    data = Path(data) if data is not None else folder
    cfg = {
        "seed": 0,
        "output_dir": str(folder / "run"),
        "model": {"preset": "openjmp_tiny", "backbone": {"num_blocks": 1}, "head_layers": 2, "edge_dropout": 0.1},
        "datasets": [
            {"name": "slabs", "path": str(data / "slabs.extxyz"), "format": "ase",
             "graph": {"cutoff": 5.0, "max_neighbors": 12}, "force_coefficient": 10},
            {"name": "mols", "path": str(data / "mols.extxyz"), "format": "ase",
             "graph": {"cutoff": 5.0, "max_neighbors": 12}, "force_coefficient": 10},
        ],
        "sampler": {"batch_size": 4},
        "optim": {"lr": 1e-3, "warmup_steps": 4},
        "trainer": {"max_steps": 12, "val_every_n_steps": 6, "checkpoint_every_n_steps": 6,
                    "progress_bar": False, "tensorboard": False},
    }
    return set_dotted(cfg, changes)


def make_two_domains(folder: Path) -> Path:
    _write_domains(folder)
    return folder


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


_RUNNER = """\
import os, signal, sys
import lightning as L
from openjmp.configuration import load_config
from openjmp.training.config import PretrainConfig
from openjmp.training.pretrain import run_pretraining
class Kill(L.Callback):
    def on_train_batch_end(self, trainer, *a):
        if trainer.global_step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
cfg = load_config(PretrainConfig, sys.argv[1])
run_pretraining(cfg, callbacks=[Kill()] if int(sys.argv[2]) > 0 else [])
"""


def run_pretraining_process(config_path: Path, kill_at_step: int = 0) -> subprocess.CompletedProcess:
    """Pre-train from a YAML config in a fresh process; with ``kill_at_step`` > 0 the process
    SIGKILLs itself after that optimizer step (a crash without any clean-up)."""
    runner = Path(config_path).with_name("runner.py")
    runner.write_text(_RUNNER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(runner), str(config_path), str(kill_at_step)],
                          env=env, capture_output=True, text=True)


def _record(i: int, periodic: bool, rng):
    from openjmp.data.record import AtomsRecord

    if periodic:  # a small Cu/O cell
        z = np.array([29, 29, 29, 8])
        pos = np.array([[0, 0, 0], [1.8, 1.8, 0], [1.8, 0, 1.8], [0, 1.8, 1.8]], float)
        cell = np.eye(3) * 3.6
    else:  # a C/H/N/O molecule
        z = np.array([6, 1, 1, 7, 8])
        pos = np.array([[0, 0, 0], [1.09, 0, 0], [-0.4, 1.0, 0], [-0.5, -0.8, 0.6], [0.3, -0.3, -1.3]])
        cell = np.zeros((3, 3))
    pos = pos + rng.normal(0, 0.02, pos.shape)
    return AtomsRecord(z, pos, cell, np.array([periodic] * 3), energy=float(rng.normal(-10, 1)),
                       forces=rng.normal(0, 0.3, pos.shape), source=f"fake:{i}")


def write_stand_in_jmp_stores(root: Path) -> None:
    """Tiny stores at the paths configs/pretrain/jmp_*.yaml expect under ${JMP_DATA} (labels as
    the real conversions give)."""
    from openjmp.data.readers.base import ReaderItem
    from openjmp.data.store import convert

    rng = np.random.default_rng(0)
    plan = {
        "oc20-s2ef-all": (True, ["train"] * 12), "oc20-s2ef-val-id": (True, ["val"] * 4),
        "oc22-s2ef-train": (True, ["train"] * 10), "oc22-s2ef-val-id": (True, ["val"] * 3),
        "ani1x": (False, [None] * 40), "transition1x": (False, ["train"] * 9 + ["val"] * 3 + ["test"] * 3),
    }
    for folder, (periodic, labels) in plan.items():
        items = [ReaderItem(s, _record(i, periodic, rng)) for i, s in enumerate(labels)]
        convert(items, root / folder, progress=False)
