"""Joint multi-domain pre-training (the JMP recipe) as a Lightning module and data module.

One GemNet-OC backbone, one energy head and one direct-force head per dataset (task).
Per task, targets are normalised: E' = (E - Σ ref[Z] - μ_E) / σ_E and F' = F / σ_F.

Loss of a batch of B structures, structure s of task t(s) with n_s atoms:

    L = (1/B) Σ_s [ c_E(t) |E'_pred - E'_s| + c_F(t) (1/n_s) Σ_{i in s} |F'_pred,i - F'_i|₂ ]

(structure-wise reduction; ``loss.reduction = "atom"`` replaces the force term by the mean
over all atoms of the batch). Being a mean over structures of per-structure terms, L is exactly
the average of the per-process losses under DDP with equal per-process batch sizes.

Determinism: the sampler's stream depends on (seed, epoch); edge dropout draws from a generator
seeded by (seed, global step); resuming restores the optimiser, scheduler, EMA, the number of
batches consumed and the sampler position, so a resumed run continues the same run.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

from openjmp.data.readers import detect_format
from openjmp.data.readers.base import DataFormatError
from openjmp.data.sampling import TemperatureBatchSampler
from openjmp.data.splits import assign_splits, read_items, subsample
from openjmp.data.store.dataset import StoreDataset, StoreMetadata
from openjmp.models.gemnet_oc.config import GemNetOCConfig, load_preset
from openjmp.models.jmp_model import JMPModel
from openjmp.models.outputs import (
    from_physical,
    reference_energy,
    routed_energy_and_direct_forces,
    to_physical,
)
from openjmp.training.config import PretrainConfig, unset_variables
from openjmp.training.data import (
    GraphBatch,
    GraphDataset,
    StoreGraphDataset,
    collate_graph_batch,
    drop_edges,
)
from openjmp.training.devices import prepare_deterministic_cuda
from openjmp.training.ema import ExponentialMovingAverage
from openjmp.training.losses import force_l2_distance, segment_mean
from openjmp.training.normalization import (
    NUM_ELEMENTS,
    DatasetNormalizer,
    fit_normalizer_from_records,
    load_linear_reference,
)
from openjmp.training.optim import parameter_groups, warmup_cosine_scheduler
from openjmp.training.store_source import elements_present, fit_subsample, store_split

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class PretrainError(ValueError):
    """The configuration or the data cannot be used for pre-training (raised before training)."""


def backbone_config(model_cfg) -> GemNetOCConfig:
    """Preset (if any) + explicit backbone fields."""
    base = load_preset(model_cfg.preset).model_dump() if model_cfg.preset else {}
    base.update(model_cfg.backbone)
    try:
        return GemNetOCConfig(**base)
    except Exception as exc:  # pydantic ValidationError: re-raise with context
        raise PretrainError(f"invalid backbone configuration: {exc}") from None


# ============================================================================ data
class PretrainDataModule(L.LightningDataModule):
    """Opens every dataset, splits it, sets its normaliser (fixed constants and/or a fit on a
    seeded training subsample), builds graphs.

    Small sources are read into memory (`GraphDataset`, graphs cached); converted stores are
    streamed (`StoreGraphDataset`: records read and graphs built on demand, sampler sizes and
    atom counts from the store metadata).
    """

    def __init__(self, config: PretrainConfig) -> None:
        super().__init__()
        self.config = config
        self.train_sets: list[GraphDataset | StoreGraphDataset] = []
        self.val_sets: list[GraphDataset | StoreGraphDataset] = []
        self.normalizers: list[DatasetNormalizer] = []
        self.elements: list[list[int]] = []  # atomic numbers of each task's training records
        self.sampler: TemperatureBatchSampler | None = None
        self.resume_batches = 0  # batches of the current epoch already consumed (set on resume)
        self._prepared = False

    @property
    def task_names(self) -> list[str]:
        return [d.name for d in self.config.datasets]

    def batches_per_epoch(self, world_size: int = 1) -> int:
        """Training batches per process in one sampler epoch."""
        cfg = self.config
        self.load()
        total = cfg.sampler.epoch_size or sum(len(d) for d in self.train_sets)
        return total // (cfg.sampler.batch_size * max(world_size, 1))

    def load(self) -> None:
        """Open, split, validate and normalise all datasets (idempotent)."""
        if self._prepared:
            return
        cfg = self.config
        backbone = backbone_config(cfg.model)
        qint_tags = tuple(backbone.qint_tags)
        for t, d in enumerate(cfg.datasets):
            for label, path in (("path", d.path), ("val_path", d.val_path)):
                if path is not None and not path.exists():
                    unset = unset_variables(path)
                    hint = f" (environment variable {', '.join(unset)} not set)" if unset else ""
                    raise PretrainError(f"dataset {d.name!r}: {label} {path} does not exist{hint}")
            settings = d.graph.settings()
            try:
                backbone.check_graph_cutoffs(settings.cutoffs, f"dataset {d.name!r}")
            except ValueError as exc:
                raise PretrainError(str(exc)) from None
            if _streams(d):
                train, val, zmax, elements = self._open_store(t, d, settings, qint_tags)
                fit_source = train.store
            else:
                train, val, zmax, elements = self._read_in_memory(t, d, settings, qint_tags)
                fit_source = train.records
            if zmax > NUM_ELEMENTS:
                raise PretrainError(f"dataset {d.name!r}: element Z={zmax} cannot be embedded (max {NUM_ELEMENTS})")
            norm = self._normalizer(d, fit_source, cfg.seed + t)
            self.normalizers.append(norm)
            self.train_sets.append(train)
            self.val_sets.append(val)
            self.elements.append(elements)
            log.info(
                "dataset %s (%s): %d train / %d val records; energy mean %.4g std %.4g eV; force std %.4g eV/Å",
                d.name, "streamed" if isinstance(train, StoreGraphDataset) else "in memory", len(train), len(val),
                norm.energy_mean, norm.energy_std, norm.force_std,
            )
        self._prepared = True

    def _read_in_memory(self, t, d, settings, qint_tags):
        cfg = self.config
        items = read_items(d.path, d.format, **d.reader_options)
        if d.val_path is not None:
            items = [(d.train_split if s is None else s, r) for s, r in items]
            items += [(d.val_split, r) for _, r in read_items(d.val_path, d.format, **d.reader_options)]
        splits = assign_splits(items, {d.val_split: d.val_fraction}, seed=cfg.seed + t, rest=d.train_split)
        train = subsample(splits.get(d.train_split, []), d.max_train_records, cfg.seed + t)
        val = subsample(splits.get(d.val_split, []), d.max_val_records, cfg.seed + t)
        if not train:
            raise PretrainError(f"dataset {d.name!r} ({d.path}) has zero training records")
        for r in train[:1] + val[:1]:
            _check_labels(d, r)
        zmax = max(int(r.atomic_numbers.max()) for r in train + val)
        elements = sorted({int(z) for r in train for z in r.atomic_numbers})
        return (GraphDataset(train, settings, t, qint_tags, force_pbc=d.graph.pbc),
                GraphDataset(val, settings, t, qint_tags, force_pbc=d.graph.pbc), zmax, elements)

    def _open_store(self, t, d, settings, qint_tags):
        cfg = self.config
        try:
            meta = StoreMetadata(d.path)
            val_meta = StoreMetadata(d.val_path) if d.val_path is not None else None
        except DataFormatError as exc:
            raise PretrainError(f"dataset {d.name!r}: {exc}") from None
        parts = store_split(meta, val_meta, train_split=d.train_split, val_split=d.val_split,
                            val_fraction=d.val_fraction, seed=cfg.seed + t,
                            max_train=d.max_train_records, max_val=d.max_val_records)
        if parts.train.size == 0:
            raise PretrainError(f"dataset {d.name!r} ({d.path}) has zero training records")
        train_store = StoreDataset(d.path, indices=parts.train, metadata=meta)
        val_store = (StoreDataset(d.val_path, indices=parts.val, metadata=val_meta) if val_meta is not None
                     else StoreDataset(d.path, indices=parts.val, metadata=meta))
        for store in (train_store, val_store):
            if len(store):
                _check_labels(d, store[0])
        zmax = max(int(m.element_z.max()) if m.element_z.size else 0 for m in (meta, val_meta) if m is not None)
        elements = elements_present(meta, parts.train)
        return (StoreGraphDataset(train_store, settings, t, qint_tags, force_pbc=d.graph.pbc),
                StoreGraphDataset(val_store, settings, t, qint_tags, force_pbc=d.graph.pbc), zmax, elements)

    def _normalizer(self, d, fit_source, seed: int) -> DatasetNormalizer:
        """Fixed constants from ``d.normalization``; the others fitted on a seeded subsample of
        at most ``fit_records`` training records (read one at a time)."""
        n = d.normalization
        reference = None
        if d.linear_reference and n.linear_reference is not None:
            try:
                reference = load_linear_reference(n.linear_reference, f"dataset {d.name!r}: normalization.linear_reference")
            except ValueError as exc:
                raise PretrainError(str(exc)) from None
        try:
            return fit_normalizer_from_records(
                fit_subsample(fit_source, n.fit_records, seed), use_linear_reference=d.linear_reference,
                linear_reference=reference, energy_mean=n.energy_mean, energy_std=n.energy_std,
                force_std=n.force_std,
            )
        except DataFormatError as exc:
            raise PretrainError(f"dataset {d.name!r}: {exc}") from None

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def train_dataloader(self) -> DataLoader:
        cfg = self.config
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        natoms = np.concatenate([np.asarray(ds.natoms, dtype=np.int64) for ds in self.train_sets])
        self.sampler = TemperatureBatchSampler(
            [len(ds) for ds in self.train_sets], cfg.sampler.batch_size, cfg.sampler.temperature,
            cfg.sampler.epoch_size, cfg.seed, rank, world, natoms, cfg.sampler.balance_atoms,
        )
        if self.trainer is not None:
            self.sampler.set_epoch(self.trainer.current_epoch)
        self.sampler.start_batch = self.resume_batches
        self.resume_batches = 0
        return DataLoader(
            ConcatDataset(self.train_sets), batch_sampler=self.sampler, collate_fn=collate_graph_batch,
            num_workers=cfg.sampler.num_workers, persistent_workers=False,
        )

    def val_dataloader(self) -> list[DataLoader]:
        bs = self.config.sampler.batch_size
        return [
            DataLoader(ds, batch_size=bs, shuffle=False, collate_fn=collate_graph_batch,
                       num_workers=self.config.sampler.num_workers if isinstance(ds, StoreGraphDataset) else 0)
            for ds in self.val_sets if len(ds)
        ]


def _streams(d) -> bool:
    """Whether dataset config ``d`` is streamed from a store (see `DatasetConfig.streaming`)."""
    fmt = d.format or (detect_format(d.path) if d.path.exists() else None)
    if d.streaming is None:
        return fmt == "store"
    if d.streaming and fmt != "store":
        raise PretrainError(
            f"dataset {d.name!r}: streaming needs a converted store (openjmp data convert), "
            f"but {d.path} is {fmt!r}"
        )
    return d.streaming


def _check_labels(d, record) -> None:
    if record.energy is None or record.forces is None:
        raise PretrainError(f"dataset {d.name!r}: record {record.name} has no energy/forces")


# ============================================================================ model
class PretrainModule(L.LightningModule):
    def __init__(self, config: dict, normalizers: list[dict]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = PretrainConfig.model_validate(config)
        self.task_names = [d.name for d in self.cfg.datasets]
        self.dtype_ = DTYPES[self.cfg.dtype]
        self.model = JMPModel(backbone_config(self.cfg.model), num_pretrain_tasks=len(self.task_names),
                              num_mlps=self.cfg.model.head_layers).to(self.dtype_)
        self.model.backbone.checkpoint_blocks = self.cfg.trainer.activation_checkpointing
        norms = [DatasetNormalizer.from_dict(n) for n in normalizers]
        self.normalizers = norms
        self.register_buffer("linear_reference", torch.tensor([n.linear_reference for n in norms], dtype=torch.float64))
        self.register_buffer("energy_mean", torch.tensor([n.energy_mean for n in norms], dtype=torch.float64))
        self.register_buffer("energy_std", torch.tensor([n.energy_std for n in norms], dtype=torch.float64))
        self.register_buffer("force_std", torch.tensor([n.force_std for n in norms], dtype=torch.float64))
        self.register_buffer("energy_coef", torch.tensor([d.energy_coefficient for d in self.cfg.datasets]))
        self.register_buffer("force_coef", torch.tensor([d.force_coefficient for d in self.cfg.datasets]))
        self.ema = ExponentialMovingAverage(self.model, self.cfg.ema.decay) if self.cfg.ema.enabled else None
        self.nan_batches = 0
        self.batches_seen = 0
        self._val_sums: dict = {}
        self.val_history: list[dict] = []

    # ------------------------------------------------------------------ forward
    def predict_normalized(self, batch: GraphBatch, training: bool = False):
        """(energy (B,), forces (N, 3)) in each structure's task-normalised units."""
        data = batch.data
        graphs = batch.graphs
        if training and self.cfg.model.edge_dropout > 0:
            gen = torch.Generator().manual_seed(int(self.cfg.seed) * 1_000_003 + int(self.global_step))
            graphs = drop_edges(graphs, "a2a", self.cfg.model.edge_dropout, gen)
        B = data.num_structures
        out = self.model(data.atomic_numbers, data.pos, data.cell, data.batch, graphs, B)
        # every head runs on its task's atoms; sums in the model's dtype (under 16-/bf16-mixed
        # autocast the heads give half precision, accumulated and the loss computed in float32)
        return routed_energy_and_direct_forces(self.model.output.out_energy, self.model.output.out_forces, out,
                                               data.batch, batch.task_index[data.batch], B, self.dtype_)

    def reference_energy(self, data, task_index):
        """Σ_i ref_t[Z_i] per structure (B,), float64."""
        return reference_energy(self.linear_reference, data.atomic_numbers, data.batch, data.num_structures,
                                rows=task_index[data.batch])

    def normalized_targets(self, batch: GraphBatch):
        data, t = batch.data, batch.task_index
        e = from_physical(data.energy, self.energy_std[t], self.energy_mean[t], self.reference_energy(data, t))
        f = data.forces.double() / self.force_std[t[data.batch]].unsqueeze(-1)
        return e.to(self.dtype_), f.to(self.dtype_)

    def denormalize(self, batch: GraphBatch, energy, forces):
        data, t = batch.data, batch.task_index
        e = to_physical(energy, self.energy_std[t], self.energy_mean[t], self.reference_energy(data, t))
        f = forces.double() * self.force_std[t[data.batch]].unsqueeze(-1)
        return e, f

    def losses(self, batch: GraphBatch, energy, forces):
        """Total loss and per-task (energy, force) losses (see the module docstring)."""
        data, t = batch.data, batch.task_index
        e_true, f_true = self.normalized_targets(batch)
        B = data.num_structures
        e_err = (energy - e_true).abs()  # (B,)
        f_err = force_l2_distance(forces, f_true)  # (N,)
        coef_e = self.energy_coef.to(e_err.dtype)[t]
        coef_f = self.force_coef.to(e_err.dtype)[t]
        if self.cfg.loss.reduction == "structure":
            f_struct = segment_mean(f_err, data.batch, B)  # (B,)
            total = (coef_e * e_err + coef_f * f_struct).mean()
        else:
            f_struct = segment_mean(f_err, data.batch, B)
            total = (coef_e * e_err).mean() + (coef_f[data.batch] * f_err).mean()
        per_task = {}
        for k in torch.unique(t).tolist():
            m = t == k
            per_task[self.task_names[k]] = (e_err[m].mean(), f_struct[m].mean())
        return total, per_task

    # ------------------------------------------------------------------ training
    def training_step(self, batch: GraphBatch, batch_idx: int):
        self.batches_seen += 1
        energy, forces = self.predict_normalized(batch, training=True)
        loss, per_task = self.losses(batch, energy, forces)
        if not torch.isfinite(loss):
            self.nan_batches += 1
            warnings.warn(
                f"non-finite loss at step {self.global_step} (batch of {batch.data.source[:3]}...); "
                f"batch skipped ({self.nan_batches}/{self.cfg.trainer.max_nan_batches})", stacklevel=1,
            )
            if self.nan_batches > self.cfg.trainer.max_nan_batches:
                raise RuntimeError(f"more than {self.cfg.trainer.max_nan_batches} non-finite losses; aborting")
            return None
        bs = batch.num_structures
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, (le, lf) in per_task.items():
            self.log(f"train/{name}/energy_loss", le, batch_size=bs)
            self.log(f"train/{name}/force_loss", lf, batch_size=bs)
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        # EMA right after the weights change, before any callback (checkpointing) sees the step.
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.model)

    def configure_optimizers(self):
        o = self.cfg.optim
        groups = parameter_groups(self.model, o.weight_decay, o.lr, no_decay_embeddings=o.no_decay_embeddings)
        for g in groups:
            g.pop("names")
        optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas))
        total = o.cosine_steps or self.cfg.trainer.max_steps
        if o.cosine_epochs is not None:
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            if dm is None:
                raise PretrainError("optim.cosine_epochs needs the pre-training data module (sizes of the epoch)")
            total = max(1, int(o.cosine_epochs * dm.batches_per_epoch(self.trainer.world_size)))
        scheduler = warmup_cosine_scheduler(optimizer, o.warmup_steps, total, o.warmup_start_factor, o.min_lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device, self.dtype_)

    # ------------------------------------------------------------------ validation (EMA weights)
    def on_validation_epoch_start(self) -> None:
        self._val_sums = {}
        if self.ema is not None:
            self.ema.swap_in(self.model)

    def validation_step(self, batch: GraphBatch, batch_idx: int, dataloader_idx: int = 0):
        energy, forces = self.predict_normalized(batch)
        loss, _ = self.losses(batch, energy, forces)
        e_ev, f_ev = self.denormalize(batch, energy, forces)
        data = batch.data
        de = (e_ev - data.energy.double()).abs()
        df = (f_ev - data.forces.double()).abs()
        for k in torch.unique(batch.task_index).tolist():
            m = batch.task_index == k
            s = self._val_sums.setdefault(self.task_names[k], np.zeros(6))
            atoms = m[data.batch]
            s += [
                float(de[m].sum()), float((de[m] / data.natoms[m]).sum()), int(m.sum()),
                float(df[atoms].sum()), int(atoms.sum()) * 3, float(loss) * int(m.sum()),
            ]

    def on_validation_epoch_end(self) -> None:
        if self.ema is not None:
            self.ema.restore(self.model)
        if self.trainer.sanity_checking or not self._val_sums:
            return
        record = {"step": int(self.global_step), "epoch": int(self.current_epoch), "datasets": {}}
        losses = []
        for name, s in self._val_sums.items():
            # plain Python floats: checkpoints must load with torch.load(weights_only=True)
            m = {
                "energy_mae_eV": float(s[0] / s[2]), "energy_mae_meV_per_atom": float(1000 * s[1] / s[2]),
                "force_mae_eV_per_A": float(s[3] / max(s[4], 1)), "structures": int(s[2]),
                "loss": float(s[5] / s[2]),
            }
            record["datasets"][name] = m
            losses.append(m["loss"])
            for key in ("energy_mae_eV", "energy_mae_meV_per_atom", "force_mae_eV_per_A"):
                self.log(f"val/{name}/{key}", m[key])
        record["loss"] = float(np.mean(losses))
        self.log("val/loss", record["loss"], prog_bar=True)
        self.val_history.append(record)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["openjmp"] = {
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "batches_seen": self.batches_seen,
            "nan_batches": self.nan_batches,
            "val_history": self.val_history,
            "normalizers": [n.as_dict() for n in self.normalizers],
            "task_names": self.task_names,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("openjmp", {})
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.batches_seen = int(state.get("batches_seen", 0))
        self.nan_batches = int(state.get("nan_batches", 0))
        self.val_history = list(state.get("val_history", []))

    def export_state_dict(self, use_ema: bool = True) -> dict[str, torch.Tensor]:
        if use_ema and self.ema is not None:
            return self.ema.ema_state_dict(self.model)
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


class _ResumeSampler(L.Callback):
    """Tells the data module how many batches of the current epoch a resumed run has consumed."""

    def __init__(self, datamodule: PretrainDataModule) -> None:
        self.datamodule = datamodule

    def on_train_start(self, trainer, pl_module) -> None:
        pass

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        state = checkpoint.get("openjmp", {})
        seen = int(state.get("batches_seen", 0))
        dm = self.datamodule
        per_epoch = dm.batches_per_epoch(trainer.world_size)
        dm.resume_batches = seen % per_epoch if per_epoch else 0


def write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)


def plot_learning_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    names = sorted(history[0]["datasets"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name in names:
        steps = [h["step"] for h in history if name in h["datasets"]]
        e = [h["datasets"][name]["energy_mae_meV_per_atom"] for h in history if name in h["datasets"]]
        f = [h["datasets"][name]["force_mae_eV_per_A"] for h in history if name in h["datasets"]]
        axes[0].plot(steps, e, marker="o", label=name)
        axes[1].plot(steps, f, marker="o", label=name)
    axes[0].set(xlabel="step", ylabel="energy MAE [meV/atom]", yscale="log", title="validation energy (EMA)")
    axes[1].set(xlabel="step", ylabel="force MAE [eV/Å]", yscale="log", title="validation forces (EMA)")
    axes[0].legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def run_pretraining(config: PretrainConfig, resume: bool = True, callbacks=None) -> dict:
    """Train; returns the summary (also written to ``output_dir/summary.json``)."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(config.seed, workers=True, verbose=False)
    dm = PretrainDataModule(config)
    dm.load()  # fail on bad data before building anything else
    module = PretrainModule(config.model_dump(mode="json"), [n.as_dict() for n in dm.normalizers])
    tc = config.trainer
    ckpt_dir = out / "checkpoints"
    last_ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="last", every_n_train_steps=tc.checkpoint_every_n_steps,
                                save_top_k=1, save_last=False, enable_version_counter=False)
    best_ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/loss", mode="min", save_top_k=1,
                                enable_version_counter=False)
    loggers = [CSVLogger(out, name="logs", version="")]
    if tc.tensorboard:
        try:
            import tensorboard  # noqa: F401
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(out, name="tensorboard", version=""))
        except ImportError:
            pass
    cbs = [last_ckpt, best_ckpt, _ResumeSampler(dm)]
    from openjmp.training.progress import (
        ProgressLog,
        quiet_lightning,
        stdout_is_terminal,
        step_progress_bar,
        verbosity,
    )

    quiet_lightning()
    # as fine-tuning: a terminal gets a live bar labelled step N/TOTAL; a log (stdout redirected)
    # a progress line at least every $OPENJMP_PROGRESS_INTERVAL seconds (30) and after each
    # validation; --quiet: neither
    live_bar = tc.progress_bar and stdout_is_terminal() and verbosity() >= 0
    if live_bar:
        cbs.append(step_progress_bar())
    elif tc.progress_bar and verbosity() >= 0:
        cbs.append(ProgressLog("pretrain"))
    cbs += list(callbacks or [])
    prepare_deterministic_cuda(tc.deterministic, tc.accelerator)
    trainer = L.Trainer(
        max_steps=tc.max_steps, max_epochs=tc.max_epochs, accelerator=tc.accelerator, devices=tc.devices, num_nodes=tc.num_nodes,
        strategy=tc.strategy, precision=tc.precision, logger=loggers, callbacks=cbs,
        val_check_interval=tc.val_every_n_steps, check_val_every_n_epoch=None,
        log_every_n_steps=tc.log_every_n_steps, gradient_clip_val=config.optim.grad_clip_norm,
        gradient_clip_algorithm="norm", deterministic=tc.deterministic, enable_progress_bar=live_bar,
        max_time={"minutes": tc.max_time_minutes} if tc.max_time_minutes else None,
        enable_model_summary=False, use_distributed_sampler=False,
    )
    resume_from = ckpt_dir / "last.ckpt"
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume_from) if resume and resume_from.exists() else None)
    summary = {
        "tasks": module.task_names,
        "steps": int(trainer.global_step),
        "normalizers": {n: norm.as_dict() | {"linear_reference": _nonzero(norm.linear_reference)}
                        for n, norm in zip(module.task_names, module.normalizers)},
        "validation": module.val_history,
        "nan_batches": module.nan_batches,
        "is_global_zero": bool(trainer.is_global_zero),
    }
    if trainer.is_global_zero:
        write_json(out / "summary.json", summary)
        plot_learning_curves(module.val_history, out / "learning_curves.png")
        save_pretrained_model(module, config, out / "model.pt", dm.elements)
    return summary


def save_pretrained_model(module: PretrainModule, config: PretrainConfig, path: Path,
                          elements: list[list[int]]) -> str:
    """Export an openjmp model file (registry format, heads as in ``docs/model-files.md``) with
    raw and EMA weights, the fitted normalisers and the graph settings of every task."""
    from openjmp.models.registry import ARCHITECTURE, save_model_file

    model_config = {
        "architecture": ARCHITECTURE, "preset": config.model.preset,
        "backbone": module.model.config.model_dump(mode="json"),
        "pretrain_tasks": module.task_names, "num_pretrain_tasks": len(module.task_names),
        "finetune_energy": False, "finetune_forces": False, "num_mlps": config.model.head_layers,
    }
    return save_model_file(
        module.model, path, config=model_config,
        normalization={n: norm.as_dict() for n, norm in zip(module.task_names, module.normalizers)},
        heads={d.name: {
            "kind": "pretrain", "task_index": i, "energy_module": f"output.out_energy.{i}",
            "force_module": f"output.out_forces.{i}", "forces": "direct", "reduction": "sum",
            "graph": d.graph.model_dump(mode="json"), "elements": elements[i],
        } for i, d in enumerate(config.datasets)},
        ema_state_dict=module.export_state_dict(use_ema=True) if module.ema is not None else None,
        extra={"graphs": {d.name: d.graph.model_dump(mode="json") for d in config.datasets},
               "pretrain_config": config.model_dump(mode="json"), "steps": int(module.global_step)},
    )


def _nonzero(values) -> dict[int, float]:
    return {z: v for z, v in enumerate(values) if v != 0.0 and math.isfinite(v)}
