"""Replay of pre-training datasets during fine-tuning (multi-task fine-tuning against forgetting).

With a ``replay:`` section, the fine-tuning model keeps the pre-trained model file's energy and
direct-force heads of the named pre-training datasets (weights and normalisers from the file),
and training steps mix in batches of those datasets:

    L = L_finetune + weight · L_pretrain(head d, replay batch of dataset d)

where ``L_pretrain`` is the pre-training loss of that head (``openjmp.training.pretrain``):
mean over structures of ``c_E |E'_pred - E'| + c_F (1/n) Σ_i |F'_pred,i - F'_i|₂`` in the
head's normalised units (E' = (E - Σ ref[Z] - μ_E) / σ_E, F' = F / σ_F, the file's normaliser).

Schedule (deterministic): step s (0-based) adds a replay batch when
``floor((s + 1) · fraction) > floor(s · fraction)`` (so a ``fraction`` of the steps, evenly
spread); the k-th replay step uses dataset ``k mod D`` (round robin) and the next batch of that
dataset's loader, shuffled by a generator seeded with ``seed + index``.

Records: read and split as pre-training did (same split and subsample seed, by default the
pre-training run's ``seed + task index`` from the model file), so the replay validation split is
the pre-training validation split of that dataset. The heads' graph settings are the file's.

Export (``keep_heads``, default true): the replayed heads stay in ``model.pt`` as ``pretrain``
heads (``output.out_energy.{j}`` / ``output.out_forces.{j}``, j = position in ``replay.datasets``)
with their normalisers, next to the fine-tuned heads; the fine-tuned ``energy_forces`` head
remains the default head of predictors. With ``keep_heads: false`` they are dropped and the
file holds only the fine-tuning heads.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.utils.data import DataLoader

from openjmp.training.config import GraphConfig, SourceConfig

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReplayDatasetConfig(SourceConfig):
    """One replayed pre-training dataset: a source as in the pre-training ``DatasetConfig``;
    ``name`` is the dataset's head in the pre-trained model file (``heads[name]``, kind pretrain).
    """

    #: split / subsample seed; None: the pre-training run's seed + the head's task index (the
    #: pre-training split), or ``seed`` of the fine-tuning config when the file does not say
    split_seed: int | None = None
    #: None: the head's graph settings from the model file
    graph: GraphConfig | None = None
    #: None: the coefficient of the pre-training config stored in the file (else 1.0)
    energy_coefficient: float | None = Field(None, ge=0)
    force_coefficient: float | None = Field(None, ge=0)


class ReplayConfig(_Strict):
    """``replay:`` section of a fine-tuning config (needs ``init.kind: pretrained``)."""

    datasets: list[ReplayDatasetConfig]
    #: weight of the replayed pre-training loss next to the fine-tuning loss
    weight: float = Field(0.1, gt=0)
    #: fraction of training steps that add a replay batch (1: every step)
    fraction: float = Field(1.0, gt=0, le=1)
    #: structures per replay batch (default: data.batch_size)
    batch_size: int | None = Field(None, ge=1)
    #: keep the replayed heads in the exported model file (as pretrain heads)
    keep_heads: bool = True

    @model_validator(mode="after")
    def _names(self):
        names = [d.name for d in self.datasets]
        if not names:
            raise ValueError("replay.datasets must name at least one pre-training dataset")
        if len(set(names)) != len(names):
            raise ValueError(f"replay dataset names must be unique, got {names}")
        return self

    def resolve_paths(self, base: Path) -> None:
        for d in self.datasets:
            d.resolve_paths(base)


def is_replay_step(step: int, fraction: float) -> bool:
    """Whether 0-based training step ``step`` adds a replay batch (see the module docstring)."""
    return math.floor((step + 1) * fraction + 1e-9) > math.floor(step * fraction + 1e-9)


def replay_index(step: int, fraction: float) -> int:
    """0-based count of replay steps up to and including ``step`` minus one (the k of step s)."""
    return math.floor((step + 1) * fraction + 1e-9) - 1


# ============================================================================ runtime
class Replay:
    """Replayed datasets of one fine-tuning run: records, normalisers, loaders and the loss."""

    def __init__(self, config: ReplayConfig, names: list[str], normalizers: list, coefficients: list[tuple[float, float]],
                 train_sets: list, val_sets: list, heads: list[dict], batch_size: int, seed: int) -> None:
        self.config = config
        self.names = names
        self.normalizers = normalizers  # DatasetNormalizer per dataset
        self.coefficients = coefficients  # (c_E, c_F) per dataset
        self.train_sets = train_sets
        self.val_sets = val_sets
        self.heads = heads  # model-file head entries (graph, elements) per dataset, re-indexed
        self.batch_size = batch_size
        self.seed = seed
        self._iters: dict[int, Any] = {}
        self._loaders: dict[int, DataLoader] = {}
        self.summary: dict[str, Any] = {"datasets": names, "weight": config.weight, "fraction": config.fraction,
                                        "keep_heads": config.keep_heads, "replay_batches": 0}

    # ------------------------------------------------------------------ batches
    def _loader(self, j: int) -> DataLoader:
        from openjmp.training.data import collate_graph_batch

        if j not in self._loaders:
            gen = torch.Generator().manual_seed(self.seed + 7919 * (j + 1))
            ds = self.train_sets[j]
            self._loaders[j] = DataLoader(ds, batch_size=self.batch_size, shuffle=True, generator=gen,
                                          collate_fn=collate_graph_batch, drop_last=len(ds) > self.batch_size)
        return self._loaders[j]

    def next_batch(self, j: int):
        """The next training batch of dataset j (loops over epochs; reshuffled each epoch)."""
        it = self._iters.get(j)
        if it is not None:
            batch = next(it, None)
            if batch is not None:
                return batch
        self._iters[j] = iter(self._loader(j))
        return next(self._iters[j])

    # ------------------------------------------------------------------ loss
    def predict_normalized(self, model, batch, j: int):
        """(energy (B,), forces (N, 3)) of head j in its normalised units."""
        from openjmp.models.outputs import EnergySpec, compute_outputs

        data = batch.data
        spec = EnergySpec(model.output.out_energy[j], model.output.out_forces[j], forces="direct")
        out = compute_outputs(model, data.atomic_numbers, data.pos, data.cell, data.batch, batch.graphs,
                              data.num_structures, energy=spec)
        return out.energy, out.forces

    def losses(self, model, batch, j: int):
        """Pre-training loss of head j on ``batch``: (total, energy loss, force loss)."""
        from openjmp.training.losses import force_l2_distance, segment_mean

        data = batch.data
        norm = self.normalizers[j]
        energy, forces = self.predict_normalized(model, batch, j)
        e_true = norm.normalize_energy(data.energy.double(), data.atomic_numbers, data.batch).to(energy.dtype)
        f_true = (data.forces.double() / norm.force_std).to(forces.dtype)
        le = (energy - e_true).abs().mean()
        lf = segment_mean(force_l2_distance(forces, f_true), data.batch, data.num_structures).mean()
        c_e, c_f = self.coefficients[j]
        return c_e * le + c_f * lf, le, lf

    def training_loss(self, module) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """weight · replay loss for the module's current step, or (None, {}) on non-replay steps."""
        step = int(module.global_step)
        if not is_replay_step(step, self.config.fraction):
            return None, {}
        j = replay_index(step, self.config.fraction) % len(self.names)
        batch = self.next_batch(j).to(module.device, module.dtype_)
        total, le, lf = self.losses(module.model, batch, j)
        self.summary["replay_batches"] += 1
        name = self.names[j]
        return self.config.weight * total, {f"replay/{name}/loss": total, f"replay/{name}/energy": le,
                                            f"replay/{name}/forces": lf}

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, model, dtype: torch.dtype, split: str = "val") -> dict[str, dict[str, float]]:
        """Per dataset: energy MAE (eV, meV/atom), direct-force MAE (eV/Å, components) and the
        pre-training loss of the replayed head on its validation (or training) records."""
        from openjmp.training.data import collate_graph_batch

        sets = self.val_sets if split == "val" else self.train_sets
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        out = {}
        try:
            for j, (name, ds) in enumerate(zip(self.names, sets)):
                if not len(ds):
                    continue
                norm = self.normalizers[j]
                sums = np.zeros(6)  # |dE| eV, |dE|/n, structures, |dF| sum, force components, loss·B
                for batch in DataLoader(ds, batch_size=self.batch_size, collate_fn=collate_graph_batch):
                    batch = batch.to(device, dtype)
                    data = batch.data
                    energy, forces = self.predict_normalized(model, batch, j)
                    total, _, _ = self.losses(model, batch, j)
                    e = norm.denormalize_energy(energy.double(), data.atomic_numbers, data.batch)
                    de = (e - data.energy.double()).abs()
                    df = (forces.double() * norm.force_std - data.forces.double()).abs()
                    B = data.num_structures
                    sums += [float(de.sum()), float((de / data.natoms.double()).sum()), B, float(df.sum()),
                             df.numel(), float(total) * B]
                out[name] = {"energy_mae_eV": sums[0] / sums[2], "energy_mae_meV_per_atom": 1000 * sums[1] / sums[2],
                             "force_mae_eV_per_A": sums[3] / max(sums[4], 1), "loss": sums[5] / sums[2],
                             "structures": int(sums[2])}
        finally:
            model.train(was_training)
        return out

    # ------------------------------------------------------------------ export
    def export(self, model, normalization: dict, heads: dict) -> tuple[dict, dict]:
        """Model-file ``normalization`` and ``heads`` for the exported ``model`` (changed in place:
        its replayed heads are dropped unless ``keep_heads``)."""
        mc = dict(getattr(model, "model_config", {}) or {})
        if not self.config.keep_heads:
            model.output = None
            mc.update(pretrain_tasks=[], num_pretrain_tasks=0)
            model.model_config = mc
            return dict(normalization), dict(heads)
        clash = sorted(set(self.names) & set(heads))
        if clash:
            raise ValueError(f"replay head names {clash} clash with fine-tuning target names")
        normalization = dict(normalization)
        heads = dict(heads)
        for j, name in enumerate(self.names):
            normalization[name] = self.normalizers[j].as_dict()
            heads[name] = dict(self.heads[j])
        model.model_config = mc
        return normalization, heads


def resolve_checkpoint(checkpoint: str) -> Path:
    """A model-file path or a registry name with local weights (as ``init.checkpoint``)."""
    path = Path(checkpoint)
    if path.exists():
        return path
    from openjmp.models.registry import resolve_pretrained_file

    return resolve_pretrained_file(checkpoint)


def build_replay(cfg, model) -> Replay:
    """Attach the replayed heads (weights from ``cfg.init.checkpoint``) to ``model`` as
    ``model.output`` and read the replay datasets. ``cfg``: a ``FinetuneConfig`` with ``replay``.

    Raises ``FinetuneError`` when init.kind is not ``pretrained``, when a named dataset has no
    head in the file (listing the heads there), or when the data cannot be used."""
    from openjmp.checkpoints.format import load_model_file
    from openjmp.data.splits import assign_splits, read_items, subsample
    from openjmp.models.gemnet_oc.keys import canonical_state_dict
    from openjmp.models.jmp_model import PretrainHeads
    from openjmp.training.data import GraphDataset
    from openjmp.training.finetune import FinetuneError
    from openjmp.training.normalization import DatasetNormalizer

    rc: ReplayConfig = cfg.replay
    if cfg.init.kind != "pretrained":
        raise FinetuneError(
            f"replay needs init.kind: pretrained (the replayed datasets' heads and normalisers come from the "
            f"pre-trained model file); got init.kind={cfg.init.kind!r}")
    try:
        path = resolve_checkpoint(cfg.init.checkpoint)
    except Exception as exc:
        raise FinetuneError(f"init.checkpoint {cfg.init.checkpoint!r}: {exc}") from None
    mf = load_model_file(path)
    pretrain_heads = {n: h for n, h in mf.heads.items() if h.get("kind") == "pretrain"}
    for d in rc.datasets:
        if d.name not in pretrain_heads:
            raise FinetuneError(f"replay dataset {d.name!r} has no pre-training head in {path}; heads available: "
                                f"{sorted(pretrain_heads) or 'none'}")
        if d.name not in mf.normalization or not mf.normalization[d.name]:
            raise FinetuneError(f"replay dataset {d.name!r}: {path} has no normaliser for this head")
    if any(t.name in {d.name for d in rc.datasets} for t in cfg.targets):
        raise FinetuneError("replay dataset names must differ from fine-tuning target names")
    bc = model.config
    if not (bc.regress_forces and bc.direct_forces):
        raise FinetuneError("replay needs a backbone with direct force outputs (regress_forces/direct_forces)")
    file_mlps = int(mf.model_config.get("num_mlps", 5))
    if rc.keep_heads and file_mlps != cfg.head_layers:
        raise FinetuneError(
            f"replay.keep_heads: the file's heads have {file_mlps} layers and head_layers is {cfg.head_layers}; "
            f"one model file has one head depth: set head_layers: {file_mlps} or replay.keep_heads: false")

    # heads: copy output.out_{energy,forces}.{t} of the file into output.out_{energy,forces}.{j}
    weights = canonical_state_dict(mf.weights(use_ema=cfg.init.use_ema), check=False)
    heads_module = PretrainHeads(bc.emb_size_atom, bc.emb_size_edge, len(rc.datasets), file_mlps)
    state = {}
    for j, d in enumerate(rc.datasets):
        t = int(pretrain_heads[d.name]["task_index"])
        for kind in ("out_energy", "out_forces"):
            prefix = f"output.{kind}.{t}."
            for k, v in weights.items():
                if k.startswith(prefix):
                    state[f"{kind}.{j}.{k[len(prefix):]}"] = v
    missing, unexpected = heads_module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FinetuneError(f"{path}: replay head weights do not fit ({len(missing)} missing, e.g. {missing[:3]}; "
                            f"{len(unexpected)} unexpected)")
    model.output = heads_module.to(next(model.parameters()).dtype)
    mc = dict(getattr(model, "model_config", {}) or {})
    mc.update(pretrain_tasks=[d.name for d in rc.datasets], num_pretrain_tasks=len(rc.datasets))
    model.model_config = mc

    # data: as pre-training read and split it
    pre_cfg = (mf.extra or {}).get("pretrain_config") or {}
    pre_datasets = {d.get("name"): d for d in pre_cfg.get("datasets", [])}
    names, normalizers, coefs, train_sets, val_sets, head_entries = [], [], [], [], [], []
    qint = tuple(bc.qint_tags)
    for j, d in enumerate(rc.datasets):
        head = pretrain_heads[d.name]
        t = int(head["task_index"])
        seed = d.split_seed if d.split_seed is not None else (
            int(pre_cfg["seed"]) + t if "seed" in pre_cfg else cfg.seed + t)
        if not d.path.exists():
            raise FinetuneError(f"replay dataset {d.name!r}: path {d.path} does not exist")
        items = read_items(d.path, d.format, **d.reader_options)
        if d.val_path is not None:
            if not d.val_path.exists():
                raise FinetuneError(f"replay dataset {d.name!r}: val_path {d.val_path} does not exist")
            items = [(d.train_split if s is None else s, r) for s, r in items]
            items += [(d.val_split, r) for _, r in read_items(d.val_path, d.format, **d.reader_options)]
        splits = assign_splits(items, {d.val_split: d.val_fraction}, seed=seed, rest=d.train_split)
        train = subsample(splits.get(d.train_split, []), d.max_train_records, seed)
        val = subsample(splits.get(d.val_split, []), d.max_val_records, seed)
        if not train:
            raise FinetuneError(f"replay dataset {d.name!r} ({d.path}) has zero training records")
        bad = next((r for r in train + val if r.energy is None or r.forces is None), None)
        if bad is not None:
            raise FinetuneError(f"replay dataset {d.name!r}: record {bad.name} has no energy/forces")
        graph = d.graph if d.graph is not None else GraphConfig(**(head.get("graph") or {}))
        settings = graph.settings()
        try:
            model.config.check_graph_cutoffs(settings.cutoffs, f"replay dataset {d.name!r}")
        except ValueError as exc:
            raise FinetuneError(str(exc)) from None
        train_sets.append(GraphDataset(train, settings, j, qint, force_pbc=graph.pbc))
        val_sets.append(GraphDataset(val, settings, j, qint, force_pbc=graph.pbc))
        normalizers.append(DatasetNormalizer.from_dict(mf.normalization[d.name]))
        pre = pre_datasets.get(d.name, {})
        coefs.append((float(d.energy_coefficient if d.energy_coefficient is not None else pre.get("energy_coefficient", 1.0)),
                      float(d.force_coefficient if d.force_coefficient is not None else pre.get("force_coefficient", 1.0))))
        entry = dict(head, task_index=j, energy_module=f"output.out_energy.{j}", force_module=f"output.out_forces.{j}",
                     graph=graph.model_dump(mode="json"))
        head_entries.append(entry)
        names.append(d.name)
        log.info("replay %s: %d train / %d val records (split seed %d), coefficients E %.3g F %.3g",
                 d.name, len(train), len(val), seed, *coefs[-1])
    return Replay(rc, names, normalizers, coefs, train_sets, val_sets, head_entries,
                  rc.batch_size or cfg.data.batch_size, cfg.seed)
