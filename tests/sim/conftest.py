"""Shared helpers of the simulation-engine tests (TorchSim, export, LAMMPS)."""

from __future__ import annotations

import dataclasses

import pytest


@pytest.fixture(scope="session")
def model_path():
    from openjmp.models.registry import resolve_pretrained_file

    return resolve_pretrained_file("openjmp-mini")


def uncap(predictor, cutoff: float = 3.2, cap: int = 100) -> None:
    """Graphs whose neighbour caps do not cut, for the tests' minima.

    Smooth models (``rbf_cutoffs``: the shipped openjmp-mini, cutoffs 4/4/3/6 Å, caps far above
    what they can hold) are left as they are: their caps do not cut (docs/forces.md). Models
    with the original basis (e.g. the older openjmp-mini file: 6 Å and caps 20 / 13 / 5 / 666,
    which cut every crystal, so the energy jumps with the neighbour order) get ``cutoff`` for
    every graph (3.2 Å: the first shell(s) of :func:`small_crystals`, more than 0.15 Å from the
    next shell) and caps ``cap``: cheap and continuous for these tests."""
    if getattr(predictor.model.config, "rbf_cutoffs", None):
        return
    predictor.settings = dataclasses.replace(
        predictor.settings, cutoff_main=cutoff, cutoff_aeaint=cutoff, cutoff_qint=cutoff,
        cutoff_aint=cutoff, max_neighbors_main=cap, max_neighbors_aeaint=cap,
        max_neighbors_qint=cap, max_neighbors_aint=cap, max_neighbors_by_natoms=())


def small_crystals(n: int, seed: int = 0, rattle: float = 0.03):
    """``n`` rattled 2-atom fcc / B2 crystals of the elements openjmp-mini knows."""
    from ase.build import bulk

    protos = [("Cu", "fcc", 3.63), ("Ni", "fcc", 3.52), ("Al", "fcc", 4.05), ("Pd", "fcc", 3.89),
              ("Ag", "fcc", 4.09), ("Pt", "fcc", 3.92), ("Au", "fcc", 4.08), ("NiAl", "cesiumchloride", 2.88)]
    out = []
    for i in range(n):
        name, kind, a = protos[i % len(protos)]
        a = a * (0.98 + 0.01 * ((i // len(protos)) % 4))  # four lattice constants
        x = bulk(name, kind, a=a)
        if len(x) == 1:
            x = x.repeat((2, 1, 1))
        x.rattle(rattle, seed=seed + i)
        out.append(x)
    return out
