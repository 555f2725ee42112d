"""Unit tests of the JMP recipe's pure pieces: sampler, linear reference, losses, EMA, optimiser."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from openjmp.data.sampling import TemperatureBatchSampler, temperature_probabilities
from openjmp.training.ema import ExponentialMovingAverage
from openjmp.training.losses import energy_l1, force_l2_distance, reduce_atoms, weighted_sum
from openjmp.training.normalization import (
    element_count_matrix,
    fit_linear_reference,
    fit_normalizer,
)
from openjmp.training.optim import parameter_groups, warmup_cosine_factor


# ----------------------------------------------------------------------------- sampling
def test_temperature_probabilities():
    sizes = [100, 400, 1600]
    np.testing.assert_allclose(temperature_probabilities(sizes, 1.0), np.array(sizes) / 2100)
    p2 = temperature_probabilities(sizes, 2.0)
    np.testing.assert_allclose(p2, np.array([10, 20, 40]) / 70)
    np.testing.assert_allclose(temperature_probabilities(sizes, math.inf), [1 / 3] * 3)
    with pytest.raises(ValueError, match="dataset 1 has 0"):
        temperature_probabilities([5, 0], 2.0)


def test_sampler_frequencies_follow_temperature():
    sizes = [100, 400, 1600]
    sampler = TemperatureBatchSampler(sizes, batch_size=10, temperature=2.0, epoch_size=70_000, seed=1)
    stream = sampler.global_stream(0)
    which = np.searchsorted(np.cumsum(sizes), stream, side="right")
    freq = np.bincount(which, minlength=3) / stream.size
    np.testing.assert_allclose(freq, [1 / 7, 2 / 7, 4 / 7], atol=0.01)
    # within a dataset no repeats before every record was drawn once
    first = stream[which == 0][:100]
    assert len(set(first.tolist())) == 100


def test_sampler_deterministic_and_epoch_dependent():
    a = TemperatureBatchSampler([50, 70], batch_size=4, seed=3)
    b = TemperatureBatchSampler([50, 70], batch_size=4, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    c = TemperatureBatchSampler([50, 70], batch_size=4, seed=4)
    assert list(a) != list(c)


def test_sampler_ddp_ranks_are_disjoint_shards_of_the_same_stream():
    sizes = [30, 90]
    single = TemperatureBatchSampler(sizes, batch_size=6, seed=0, epoch_size=120)
    ranks = [TemperatureBatchSampler(sizes, batch_size=3, seed=0, epoch_size=120, rank=r, world_size=2) for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 20
    for global_batch, r0, r1 in zip(single, *ranks):
        assert r0 + r1 == global_batch


def test_sampler_atom_balancing_and_resume():
    natoms = np.array([3, 60, 5, 50, 7, 40, 9, 30] * 5)
    sampler = [
        TemperatureBatchSampler([40], batch_size=4, seed=0, rank=r, world_size=2, natoms=natoms, balance_atoms=True)
        for r in range(2)
    ]
    for b0, b1 in zip(*sampler):
        assert len(b0) == len(b1) == 4
        assert not set(b0) & set(b1)
        loads = sorted([natoms[b0].sum(), natoms[b1].sum()])
        everything = np.sort(natoms[b0 + b1])[::-1]
        # greedy dealing keeps the imbalance below the largest structure
        assert loads[1] - loads[0] <= everything[0]
    s = TemperatureBatchSampler([40, 10], batch_size=5, seed=2)
    full = list(s)
    s.start_batch = 3
    assert list(s) == full[3:]
    assert list(s) == full  # skipping applies to one iteration only


# ----------------------------------------------------------------------------- normalisation
def test_linear_reference_recovers_known_element_energies():
    rng = np.random.default_rng(0)
    true = {1: -13.6, 6: -1029.4, 7: -1484.9, 8: -2041.8}
    records = [rng.choice(list(true), size=rng.integers(3, 15)) for _ in range(200)]
    energies = np.array([sum(true[z] for z in r) for r in records]) + rng.normal(0, 1e-3, 200)
    coeff = fit_linear_reference(element_count_matrix(records), energies)
    for z, e in true.items():
        assert abs(coeff[z] - e) < 1e-3
    assert coeff[2] == 0.0 and coeff[0] == 0.0  # absent elements stay zero


def test_normalizer_round_trip():
    rng = np.random.default_rng(1)
    z = [rng.choice([1, 8], size=5) for _ in range(50)]
    e = np.array([(-13.6 * (r == 1).sum() - 2041 * (r == 8).sum()) for r in z]) + rng.normal(0, 0.5, 50)
    f = [rng.normal(0, 2.0, (5, 3)) for _ in range(50)]
    norm = fit_normalizer(z, e, f)
    assert 1.5 < norm.force_std < 2.5
    zt = torch.tensor(np.concatenate(z))
    batch = torch.arange(50).repeat_interleave(5)
    en = norm.normalize_energy(torch.tensor(e), zt, batch)
    assert abs(en.mean().item()) < 1e-9 and abs(en.std(unbiased=False).item() - 1) < 1e-9
    np.testing.assert_allclose(norm.denormalize_energy(en, zt, batch).numpy(), e)


# ----------------------------------------------------------------------------- losses
def test_structure_wise_reduction_matches_hand_computed_value():
    # a 3-atom molecule and a 60-atom slab with different per-atom force errors
    pred = torch.zeros(63, 3)
    true = torch.zeros(63, 3)
    true[:3, 0] = 3.0  # error 3 on each molecule atom
    true[3:, 1] = 1.0  # error 1 on each slab atom
    batch = torch.tensor([0] * 3 + [1] * 60)
    per_atom = force_l2_distance(pred, true)
    structure_wise = reduce_atoms(per_atom, batch, 2, "structure")
    atom_wise = reduce_atoms(per_atom, batch, 2, "atom")
    assert structure_wise.item() == pytest.approx((3.0 + 1.0) / 2)
    assert atom_wise.item() == pytest.approx((3 * 3.0 + 60 * 1.0) / 63)
    mask = torch.tensor([False, True])
    assert reduce_atoms(per_atom, batch, 2, "structure", mask).item() == pytest.approx(1.0)
    assert energy_l1(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])).tolist() == [0.5, 3.0]
    total = weighted_sum({"e": torch.tensor(2.0), "f": torch.tensor(3.0)}, {"e": 1.0, "f": 10.0})
    assert total.item() == 32.0


# ----------------------------------------------------------------------------- EMA, optimiser
def test_ema_update_and_swap():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ExponentialMovingAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 1.1))
    with ema.swapped_in(model):
        assert torch.allclose(model.weight, torch.full((1, 2), 1.1))
    assert torch.allclose(model.weight, torch.full((1, 2), 2.0))
    state = ema.state_dict()
    other = ExponentialMovingAverage(model, decay=0.5)
    other.load_state_dict(state)
    assert other.decay == 0.9 and torch.equal(other.shadow["weight"], ema.shadow["weight"])


def test_ema_follows_the_model_to_another_device():
    """The trainer moves the model to the GPU after the EMA copy was made (a GPU run crashed in
    update); the "meta" device stands in for the GPU here."""
    model = nn.Linear(2, 1, bias=False)
    ema = ExponentialMovingAverage(model, decay=0.9)
    model.to("meta")
    ema.update(model)
    assert ema.shadow["weight"].device.type == "meta"


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.norm = nn.LayerNorm(4)
        self.register_parameter("scale", nn.Parameter(torch.tensor(1.0)))


def test_weight_decay_groups_and_lr_multipliers():
    model = _Toy()
    groups = parameter_groups(model, weight_decay=0.1, lr=1e-3, lr_multipliers={"blocks.0": 0.5, "embedding": 0.3})
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["blocks.1.weight"]["weight_decay"] == 0.1 and by_name["blocks.1.weight"]["lr"] == 1e-3
    assert by_name["blocks.0.weight"]["lr"] == pytest.approx(5e-4)
    for name in ("blocks.0.bias", "blocks.1.bias", "norm.weight", "norm.bias", "scale", "embedding.weight"):
        assert by_name[name]["weight_decay"] == 0.0, name
    assert by_name["embedding.weight"]["lr"] == pytest.approx(3e-4)
    frozen = parameter_groups(model, 0.1, 1e-3, {"blocks.0": 0.0})
    assert not any(n.startswith("blocks.0") for g in frozen for n in g["names"])


def test_warmup_cosine_schedule():
    f = [warmup_cosine_factor(s, 10, 110, 0.2, 0.1) for s in range(0, 130)]
    assert f[0] == pytest.approx(0.2)
    assert f[5] == pytest.approx(0.6)
    assert f[10] == pytest.approx(1.0)
    assert f[60] == pytest.approx(0.55)
    assert f[110] == pytest.approx(0.1) and f[129] == pytest.approx(0.1)
    assert all(a >= b - 1e-12 for a, b in zip(f[10:], f[11:]))


def test_lightning_advances_the_temperature_sampler_every_epoch():
    """Lightning's epoch hook reaches the batch sampler, so every epoch is a new draw (it used to
    stay at epoch 0: the same batches every epoch, and a resumed run switched order)."""
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    sampler = TemperatureBatchSampler([30, 40], batch_size=4, seed=0)
    loader = DataLoader(list(range(70)), batch_sampler=sampler)
    epochs = []
    for epoch in range(3):
        _set_sampler_epoch(loader, epoch)  # what the fit loop calls at each epoch start
        epochs.append([b.tolist() for b in loader])
    assert sampler.epoch == 2
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    fresh = TemperatureBatchSampler([30, 40], batch_size=4, seed=0)
    fresh.set_epoch(1)
    assert epochs[1] == [list(b) for b in fresh]  # (seed, epoch) decides the draw
