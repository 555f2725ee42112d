"""Temperature-based sampling across datasets (JMP: T = 2), deterministic and DDP-aware.

Dataset i with n_i training records is drawn with probability

    p_i = n_i^(1/T) / sum_j n_j^(1/T)

T = 1 is proportional to size, T -> inf uniform over datasets; T = 2 (the paper) up-weights
small datasets. Within a dataset, records are drawn without replacement from a fresh
permutation each pass (so every record is seen before any repeats).

The index stream of an epoch depends only on (seed, epoch): every rank computes the same global
stream, cuts it into global batches of ``batch_size * world_size`` and takes its own disjoint
part. With ``balance_atoms`` the structures of each global batch are dealt to ranks so that the
ranks' atom counts are as equal as possible (largest first onto the lightest rank), like JMP's
balanced batch sampler. ``start_batch`` skips batches already consumed, for exact mid-epoch
resumption.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np


def temperature_probabilities(sizes: Sequence[int], temperature: float) -> np.ndarray:
    """p_i ∝ n_i^(1/T). ``temperature=math.inf`` gives the uniform distribution."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.ndim != 1 or sizes.size == 0:
        raise ValueError("sizes must be a non-empty 1-D sequence")
    if (sizes <= 0).any():
        bad = int(np.flatnonzero(sizes <= 0)[0])
        raise ValueError(f"dataset {bad} has {int(sizes[bad])} training records; every dataset needs at least one")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    weights = np.ones_like(sizes) if math.isinf(temperature) else sizes ** (1.0 / temperature)
    return weights / weights.sum()


class TemperatureBatchSampler:
    """Yields lists of global indices into the concatenation of the datasets.

    Args:
        sizes: training records per dataset; global index = offset of its dataset + local index.
        batch_size: structures per batch **per rank**.
        temperature: T of the sampling distribution.
        epoch_size: structures per epoch over all ranks (default: the sum of sizes).
        seed: base seed; the stream of epoch e depends only on (seed, e).
        rank, world_size: this process and the number of processes.
        natoms: atoms of each global index (required with ``balance_atoms``).
        balance_atoms: deal each global batch to ranks by atom count.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        temperature: float = 2.0,
        epoch_size: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        natoms: Sequence[int] | None = None,
        balance_atoms: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.sizes = [int(s) for s in sizes]
        self.probabilities = temperature_probabilities(self.sizes, temperature)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.batch_size = batch_size
        self.temperature = temperature
        self.epoch_size = int(epoch_size) if epoch_size is not None else int(sum(self.sizes))
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        if balance_atoms and natoms is None:
            raise ValueError("balance_atoms needs per-record natoms")
        self.natoms = None if natoms is None else np.asarray(natoms, dtype=np.int64)
        self.balance_atoms = balance_atoms
        self.epoch = 0
        self.start_batch = 0

    # Lightning / DistributedSampler protocol
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def sampler(self) -> TemperatureBatchSampler:
        """Lightning calls ``set_epoch`` at every epoch start on ``dataloader.sampler`` and on
        ``dataloader.batch_sampler.sampler``, not on the batch sampler itself; exposing this
        object there is what makes every epoch a new draw (without it every epoch repeated
        epoch 0's batches, and a resumed run switched to its own epoch's order)."""
        return self

    def __len__(self) -> int:
        return self.epoch_size // (self.batch_size * self.world_size)

    def global_stream(self, epoch: int) -> np.ndarray:
        """The epoch's global index stream (same on every rank), length ``len(self) * B * W``."""
        rng = np.random.default_rng([self.seed, epoch])
        count = len(self) * self.batch_size * self.world_size
        choice = rng.choice(len(self.sizes), size=count, p=self.probabilities)
        out = np.empty(count, dtype=np.int64)
        for i, size in enumerate(self.sizes):
            where = np.flatnonzero(choice == i)
            if where.size == 0:
                continue
            passes = -(-where.size // size)
            local = np.concatenate([rng.permutation(size) for _ in range(passes)])[: where.size]
            out[where] = self.offsets[i] + local
        return out

    def _rank_part(self, global_batch: np.ndarray) -> list[int]:
        if self.world_size == 1:
            return global_batch.tolist()
        if not self.balance_atoms:
            return global_batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size].tolist()
        # Largest first onto the currently lightest rank that still has room (ties: lowest rank).
        order = np.argsort(-self.natoms[global_batch], kind="stable")
        loads = np.zeros(self.world_size, dtype=np.int64)
        fill = np.zeros(self.world_size, dtype=np.int64)
        mine = []
        for k in order:
            open_ranks = np.flatnonzero(fill < self.batch_size)
            r = open_ranks[np.argmin(loads[open_ranks])]
            loads[r] += self.natoms[global_batch[k]]
            fill[r] += 1
            if r == self.rank:
                mine.append(int(global_batch[k]))
        return mine

    def __iter__(self) -> Iterator[list[int]]:
        stream = self.global_stream(self.epoch)
        step = self.batch_size * self.world_size
        start, self.start_batch = self.start_batch, 0  # skipping applies to one iteration only
        for b in range(start, len(self)):
            yield self._rank_part(stream[b * step : (b + 1) * step])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed}
