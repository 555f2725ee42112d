"""Fine-tuning: fresh heads on a pre-trained (or published JMP, or random) GemNet-OC backbone.

Targets (any number at once, see `TargetConfig`): energy + forces (gradient forces −dE/dx by
default, direct optional, stress optional), graph-level scalars with sum/mean/max readout, and
binary classification. Each target is normalised on the training split (per-element linear
reference when asked, then mean/std); losses are L1 on normalised energies/scalars, per-atom L2
force distance reduced structure-wise (in units of the training force std), and class-weighted
binary cross-entropy; the total is the coefficient-weighted sum.

Optimisation as JMP: AdamW, layer-wise LR multipliers, warm-up + cosine then
ReduceLROnPlateau, early stopping on the validation loss, EMA weights for validation and export,
gradient clipping by value, optional freezing of the first blocks.

The exported model file (``model.pt``) holds the EMA weights of the best validation step and the
heads/normalisation of ``docs/model-files.md``; ``openjmp evaluate`` and the ASE calculator read
it through `openjmp.inference.Predictor`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from openjmp.data.splits import assign_splits, read_items, subsample
from openjmp.models.gemnet_oc.config import GemNetOCConfig, load_preset
from openjmp.models.lora import apply_lora, merge_lora
from openjmp.models.outputs import (
    EnergySpec,
    PropertySpec,
    compute_outputs,
    from_physical,
    reference_energy,
    to_physical,
)
from openjmp.training.data import GraphBatch, GraphDataset, collate_graph_batch
from openjmp.training.devices import evaluation_device, prepare_deterministic_cuda
from openjmp.training.ema import ExponentialMovingAverage
from openjmp.training.finetune_config import FinetuneConfig, TargetConfig, step_schedule
from openjmp.training.losses import force_l2_distance, segment_mean
from openjmp.training.normalization import (
    element_count_matrix,
    fit_linear_reference,
    fit_normalizer,
)
from openjmp.training.optim import parameter_groups, warmup_cosine_factor
from openjmp.training.pretrain import write_json
from openjmp.training.replay import build_replay

log = logging.getLogger(__name__)


class FinetuneError(ValueError):
    """The fine-tuning configuration, data or checkpoint cannot be used (raised before training)."""


# ============================================================================ data and targets
def load_finetune_splits(cfg: FinetuneConfig) -> dict[str, list]:
    d = cfg.data
    if not d.path.exists():
        raise FinetuneError(f"data path {d.path} does not exist")
    items = read_items(d.path, d.format, **d.reader_options)
    splits = assign_splits(items, {d.val_split: d.val_fraction, d.test_split: d.test_fraction}, seed=cfg.seed,
                           rest=d.train_split)
    if not splits.get(d.val_split) and splits.get(d.train_split):
        # the source has train/test but no validation split (MatBench folds): hold out
        # val_fraction of the training part, seeded (JMP: 90/10)
        carved = assign_splits([(None, r) for r in splits[d.train_split]], {d.val_split: d.val_fraction},
                               seed=cfg.seed, rest=d.train_split)
        splits.update(carved)
    out = {
        "train": subsample(splits.get(d.train_split, []), d.max_train_records, cfg.seed),
        "val": subsample(splits.get(d.val_split, []), d.max_val_records, cfg.seed + 1),
        "test": subsample(splits.get(d.test_split, []), d.max_test_records, cfg.seed + 2),
    }
    if not out["train"]:
        raise FinetuneError(f"{d.path}: zero training records (splits found: {sorted(splits)})")
    if not out["val"]:
        raise FinetuneError(f"{d.path}: zero validation records (splits found: {sorted(splits)})")
    return out


def check_targets(cfg: FinetuneConfig, train) -> None:
    """Clear errors for targets the data cannot provide."""
    for t in cfg.targets:
        if t.kind == "energy_forces":
            if any(r.energy is None for r in train):
                bad = next(r for r in train if r.energy is None)
                raise FinetuneError(f"target {t.name!r}: record {bad.name} has no energy")
            if t.force_coefficient > 0 and any(r.forces is None for r in train):
                bad = next(r for r in train if r.forces is None)
                raise FinetuneError(f"target {t.name!r}: record {bad.name} has no forces")
            continue
        key = t.target_key
        missing = [r for r in train if key not in r.targets]
        if missing:
            available = sorted({k for r in train[:50] for k in r.targets})
            raise FinetuneError(f"target {key!r} is absent from record {missing[0].name} (available: {available})")
        if t.kind == "classification":
            values = np.array([float(r.targets[key]) for r in train])
            classes = set(np.unique(values[np.isfinite(values)]).tolist())
            if not classes <= {0.0, 1.0}:
                raise FinetuneError(f"classification target {key!r} must be 0/1, found {sorted(classes)[:5]}")
            if len(classes) < 2:
                raise FinetuneError(f"classification target {key!r} has a single class {sorted(classes)} in the training split")


def fit_target_normalization(t: TargetConfig, train) -> dict:
    """Normalisation constants of one target from the training split (docs/model-files.md)."""
    zs = [r.atomic_numbers for r in train]
    if t.kind == "energy_forces":
        norm = fit_normalizer(zs, [r.energy for r in train],
                              [r.forces for r in train] if all(r.forces is not None for r in train) else None,
                              use_linear_reference=t.reference == "average")
        if not t.normalize:
            norm.energy_mean, norm.energy_std, norm.force_std = 0.0, 1.0, 1.0
        return norm.as_dict()
    if t.kind == "classification":
        return {"mean": 0.0, "std": 1.0}
    y = np.array([float(r.targets[t.target_key]) for r in train])
    keep = np.isfinite(y)
    ref = np.zeros(120)
    if t.reference == "average":
        ref = fit_linear_reference(element_count_matrix([z for z, k in zip(zs, keep) if k]), y[keep])
    resid = y[keep] - element_count_matrix([z for z, k in zip(zs, keep) if k]) @ ref
    std = float(resid.std()) if t.normalize and resid.size > 1 and resid.std() > 1e-12 else 1.0
    # spatial extent: a scale only, so the prediction stays std · Σ q_i |r_i - r_cm|²
    mean = float(resid.mean()) if t.normalize and t.reduction != "spatial_extent" else 0.0
    return {"mean": mean, "std": std, "linear_reference": ref.tolist()}


def target_normalizations(cfg: FinetuneConfig, model, train, train_dataset) -> tuple[dict, dict]:
    """Normalisation per target, and per copied head what the copy measured (zero-shot error).

    Targets with ``init_head`` get their pre-training head's weights here (the backbone was
    loaded by `build_finetune_model`)."""
    from openjmp.training.head_transfer import (
        HeadTransferError,
        copy_pretrain_heads,
        energy_normalization_from_head,
    )

    inherited = {}
    if any(t.init_head for t in cfg.targets):
        try:
            inherited = copy_pretrain_heads(cfg, model, resolve_init_checkpoint(cfg))
        except HeadTransferError as exc:
            raise FinetuneError(str(exc)) from None
    normalization, info = {}, {}
    for t in cfg.targets:
        if t.kind == "energy_forces" and t.name in inherited:
            normalization[t.name], info[t.name] = energy_normalization_from_head(
                t, inherited[t.name], train, model, train_dataset)
            info[t.name]["init_head"] = t.init_head
            log.info("target %s: head from pre-training head %s, reference %s %s", t.name, t.init_head,
                     t.reference, info[t.name])
        else:
            normalization[t.name] = fit_target_normalization(t, train)
            if t.init_head:
                info[t.name] = {"init_head": t.init_head}
    return normalization, info


# ============================================================================ model
def finetune_backbone_config(cfg: FinetuneConfig, checkpoint_backbone: dict | None) -> GemNetOCConfig:
    """Architecture: the checkpoint's (pretrained/jmp) or the preset + fields (scratch).

    Direct force outputs of the backbone are built only when a target uses direct forces."""
    if checkpoint_backbone is not None:
        base = dict(checkpoint_backbone)
        for key, value in cfg.init.backbone.items():
            if key in base and base[key] != value and key not in ("regress_forces", "direct_forces"):
                raise FinetuneError(
                    f"init.backbone.{key}={value!r} does not match the checkpoint's architecture ({base[key]!r})"
                )
    else:
        base = load_preset(cfg.init.preset).model_dump() if cfg.init.preset else {}
        base.update(cfg.init.backbone)
    direct = any(t.kind == "energy_forces" and t.forces == "direct" for t in cfg.targets)
    direct = direct or cfg.replay is not None  # replayed pre-training heads predict direct forces
    base["regress_forces"] = base["direct_forces"] = direct
    try:
        return GemNetOCConfig(**base)
    except Exception as exc:
        raise FinetuneError(f"invalid backbone configuration: {exc}") from None


def model_config_for(cfg: FinetuneConfig, backbone: GemNetOCConfig) -> dict:
    from openjmp.models.registry import ARCHITECTURE

    energy = [t for t in cfg.targets if t.kind == "energy_forces"]
    return {
        "architecture": ARCHITECTURE, "preset": cfg.init.preset, "backbone": backbone.model_dump(mode="json"),
        "pretrain_tasks": [], "num_pretrain_tasks": 0,
        "finetune_energy": bool(energy), "finetune_forces": bool(energy and energy[0].forces == "direct"),
        "finetune_energy_bias": bool(energy and energy[0].init_head),
        "num_mlps": cfg.head_layers,
        "task_heads": {t.name: {"num_mlps": cfg.head_layers, "kind": t.kind} for t in cfg.targets if t.kind != "energy_forces"},
    }


def resolve_init_checkpoint(cfg: FinetuneConfig) -> Path:
    """Path of ``init.checkpoint`` (a file, or a registry name with local weights: ``openjmp-mini``,
    ``jmp-s``, ``jmp-l``; see :func:`openjmp.models.registry.resolve_model`)."""
    from openjmp.models.registry import resolve_model

    try:
        return resolve_model(cfg.init.checkpoint)
    except (OSError, KeyError, ValueError) as exc:
        raise FinetuneError(f"init.checkpoint {cfg.init.checkpoint!r}: {exc}") from None


def build_finetune_model(cfg: FinetuneConfig):
    """(model, source description): the model with fresh heads (or heads copied from
    pre-training heads, ``TargetConfig.init_head``) and the initial backbone weights."""
    from openjmp.models.registry import build_model

    init = cfg.init
    if init.kind == "pretrained" or (init.kind == "scratch" and init.checkpoint):
        from openjmp.checkpoints.format import load_model_file
        from openjmp.models.registry import load_model_weights

        path = resolve_init_checkpoint(cfg)
        mf = load_model_file(path)
        backbone = finetune_backbone_config(cfg, mf.model_config["backbone"])
        model = build_model(model_config_for(cfg, backbone))
        if init.kind == "pretrained":
            load_model_weights(model, path, use_ema=init.use_ema)
            return model, f"pretrained {path} ({'EMA' if init.use_ema else 'raw'} weights)"
        return model, f"scratch (architecture of {path})"
    if init.kind == "jmp":
        from openjmp.checkpoints.jmp import load_jmp_checkpoint

        ckpt = load_jmp_checkpoint(resolve_init_checkpoint(cfg), use_ema=init.use_ema)
        backbone = finetune_backbone_config(cfg, ckpt.backbone_config.model_dump()
                                            if hasattr(ckpt.backbone_config, "model_dump") else dict(ckpt.backbone_config))
        model = build_model(model_config_for(cfg, backbone))
        ckpt.load_into(model, pretrain_heads=False)
        return model, f"JMP checkpoint {init.checkpoint} ({ckpt.variant})"
    backbone = finetune_backbone_config(cfg, None)
    return build_model(model_config_for(cfg, backbone)), "scratch"


def freeze_parameters(model, freeze_blocks: int, freeze_backbone: bool) -> list[str]:
    """Set requires_grad False on the embedding, bases, output block 0 and the first N
    interaction blocks (with their output blocks), or on the whole backbone."""
    prefixes = []
    if freeze_backbone:
        prefixes = ["embedding.", "backbone."]
    elif freeze_blocks > 0:
        prefixes = ["embedding.", "backbone.bases.", "backbone.out_blocks.0."]
        for i in range(freeze_blocks):
            prefixes += [f"backbone.int_blocks.{i}.", f"backbone.out_blocks.{i + 1}."]
    frozen = []
    for name, p in model.named_parameters():
        if any(name.startswith(q) for q in prefixes):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


# ============================================================================ module
class FinetuneModule(L.LightningModule):
    def __init__(self, config: dict, model, normalization: dict[str, dict], replay=None,
                 steps_per_epoch: int | None = None) -> None:
        super().__init__()
        self.cfg = FinetuneConfig.model_validate(config)
        # lengths given in epochs -> steps (steps_per_epoch: training batches per epoch)
        self.schedule = step_schedule(self.cfg, steps_per_epoch)
        self.model = model
        self.replay = replay  # openjmp.training.replay.Replay or None
        self.dtype_ = torch.float64 if self.cfg.dtype == "float64" else torch.float32
        self.model.to(self.dtype_)
        self.model.backbone.checkpoint_blocks = self.cfg.trainer.activation_checkpointing
        self.normalization = normalization
        self.frozen = freeze_parameters(model, self.cfg.optim.freeze_blocks, self.cfg.optim.freeze_backbone)
        self.ema = ExponentialMovingAverage(model, self.cfg.ema.decay) if self.cfg.ema.enabled else None
        self.plateau_scale = 1.0
        self._plateau_best = math.inf
        self._plateau_bad = 0
        self.best_val = math.inf
        self.best_state: dict | None = None
        self.best_step = -1
        self.val_history: list[dict] = []
        self._val: dict = {}
        self._refs = {
            name: torch.tensor(n.get("linear_reference") or [0.0] * 120, dtype=torch.float64)
            for name, n in normalization.items()
        }

    # ------------------------------------------------------------------ predictions
    def _reference(self, name: str, data) -> torch.Tensor:
        return reference_energy(self._refs[name], data.atomic_numbers, data.batch, data.num_structures)

    def _periodic(self, data) -> torch.Tensor | None:
        """(B,) structures whose stress is defined: fully periodic ones (all with ``graph.pbc``)."""
        return None if self.cfg.data.graph.pbc else data.pbc.all(dim=1)

    def forward_targets(self, batch: GraphBatch, training: bool):
        """Predictions per target: dict name -> dict(kind-specific tensors): ``energy_norm`` (B,)
        normalised, ``forces`` (N, 3) eV/Å, ``stress`` (B, 3, 3) eV/Å³ (NaN rows for structures
        that are not fully periodic); ``value_norm`` (B,) normalised (logits for classification)."""
        data = batch.data
        energy_t = next((t for t in self.cfg.targets if t.kind == "energy_forces"), None)
        spec = None
        if energy_t is not None:
            norm = self.normalization[energy_t.name]
            spec = EnergySpec(self.model.out_energy, self.model.out_forces, forces=energy_t.forces,
                              reduction=energy_t.reduction, energy_scale=norm["energy_std"],
                              force_scale=norm["force_std"])
        props = [PropertySpec(t.name, self.model.task_heads[t.name], t.reduction,
                              t.dropout if t.kind == "classification" else 0.0)
                 for t in self.cfg.targets if t.kind != "energy_forces"]
        out = compute_outputs(self.model, data.atomic_numbers, data.pos, data.cell, data.batch, batch.graphs,
                              data.num_structures, energy=spec, properties=props,
                              stress=energy_t is not None and energy_t.stress, periodic=self._periodic(data),
                              create_graph=training, training=training)
        preds = {}
        for t in self.cfg.targets:
            if t.kind == "energy_forces":
                preds[t.name] = {"energy_norm": out.energy, "forces": out.forces, "stress": out.stress}
            else:
                preds[t.name] = {"value_norm": out.properties[t.name]}
        return preds

    def target_losses(self, batch: GraphBatch, preds) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        data = batch.data
        B = data.num_structures
        total = None
        parts: dict[str, torch.Tensor] = {}
        for t in self.cfg.targets:
            p = preds[t.name]
            norm = self.normalization[t.name]
            if t.kind == "energy_forces":
                e_true = from_physical(data.energy, norm["energy_std"], norm["energy_mean"], self._reference(t.name, data))
                le = (p["energy_norm"] - e_true.to(p["energy_norm"].dtype)).abs().mean()
                loss = t.energy_coefficient * le
                parts[f"{t.name}/energy"] = le
                if p.get("forces") is not None and t.force_coefficient > 0:
                    dist = force_l2_distance(p["forces"], data.forces.to(p["forces"].dtype)) / norm["force_std"]
                    lf = segment_mean(dist, data.batch, B).mean()
                    loss = loss + t.force_coefficient * lf
                    parts[f"{t.name}/forces"] = lf
                if p.get("stress") is not None and t.stress_coefficient > 0:
                    # labelled structures with a defined (periodic) stress
                    mask = ~(data.stress.isnan() | p["stress"].detach().isnan()).any(-1).any(-1)
                    if mask.any():
                        ls = (p["stress"][mask] - data.stress[mask].to(p["stress"].dtype)).abs().mean()
                        loss = loss + t.stress_coefficient * ls
                        parts[f"{t.name}/stress"] = ls
            else:
                y = data.targets[t.target_key].to(p["value_norm"].dtype)
                keep = torch.isfinite(y)
                if t.kind == "scalar":
                    y_norm = from_physical(y, norm["std"], norm["mean"], self._reference(t.name, data))
                    loss = (p["value_norm"][keep] - y_norm[keep].to(y.dtype)).abs().mean() if keep.any() else y.sum() * 0
                else:
                    w = torch.where(y > 0.5, t.class_weights[1], t.class_weights[0]).to(y.dtype)
                    loss = F.binary_cross_entropy_with_logits(p["value_norm"][keep], y[keep], weight=w[keep]) if keep.any() else y.sum() * 0
                parts[t.name] = loss
                loss = t.loss_coefficient * loss
            total = loss if total is None else total + loss
        return total, parts

    # ------------------------------------------------------------------ training
    def training_step(self, batch: GraphBatch, batch_idx: int):
        preds = self.forward_targets(batch, training=True)
        loss, parts = self.target_losses(batch, preds)
        if self.replay is not None:  # weight x pre-training loss of a replayed dataset's head
            replay_loss, replay_parts = self.replay.training_loss(self)
            if replay_loss is not None:
                loss = loss + replay_loss
                parts.update(replay_parts)
        bs = batch.num_structures
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for k, v in parts.items():
            self.log(f"train/{k}", v, batch_size=bs)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite fine-tuning loss at step {self.global_step}")
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.model)

    def configure_optimizers(self):
        o = self.cfg.optim
        multipliers = o.llrd.multipliers(self.model.config.num_blocks)
        groups = parameter_groups(self.model, o.weight_decay, o.lr, multipliers)
        for g in groups:
            g.pop("names")
        optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas))
        warmup, total = self.schedule.warmup_steps, self.schedule.cosine_steps

        def factor(step: int) -> float:
            return warmup_cosine_factor(step, warmup, total, o.warmup_start_factor, o.min_lr_factor) * self.plateau_scale

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if self.cfg.optim.grad_clip_value is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.cfg.optim.grad_clip_value, gradient_clip_algorithm="value")

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device, self.dtype_)

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val = {"loss": [], "n": 0}
        if self.ema is not None:
            self.ema.swap_in(self.model)

    def validation_step(self, batch: GraphBatch, batch_idx: int):
        with torch.enable_grad():
            preds = self.forward_targets(batch, training=False)
        loss, _ = self.target_losses(batch, preds)
        B = batch.num_structures
        self._val["loss"].append(float(loss) * B)
        self._val["n"] += B
        phys = physical_predictions(self, batch, preds)
        for name, (pred, true, kind) in phys.items():
            acc = self._val.setdefault(name, {"pred": [], "true": [], "kind": kind})
            acc["pred"].append(pred)
            acc["true"].append(true)

    def on_validation_epoch_end(self) -> None:
        from openjmp.training.metrics import (
            classification_metrics,
            force_metrics,
            regression_metrics,
        )

        if self.ema is not None:
            self.ema.restore(self.model)
        if self.trainer.sanity_checking or not self._val.get("n"):
            return
        val_loss = sum(self._val["loss"]) / self._val["n"]
        record = {"step": int(self.global_step), "loss": val_loss, "metrics": {}, "lr_scale": self.plateau_scale}
        for name, acc in self._val.items():
            if not isinstance(acc, dict):
                continue
            pred, true = np.concatenate(acc["pred"]), np.concatenate(acc["true"])
            if acc["kind"] == "forces":
                m = force_metrics(pred, true)
            elif acc["kind"] == "classification":
                m = classification_metrics(pred, true)
            else:
                m = regression_metrics(pred, true)
            record["metrics"][name] = m
            key = "accuracy" if acc["kind"] == "classification" else "mae"
            self.log(f"val/{name}/{key}", m[key])
        self.log("val/loss", val_loss, prog_bar=True)
        self.val_history.append(record)
        if val_loss < self.best_val:
            self.best_val, self.best_step = val_loss, int(self.global_step)
            source = self.ema.ema_state_dict(self.model) if self.ema is not None else self.model.state_dict()
            self.best_state = {k: v.detach().clone() for k, v in source.items()}
        self._plateau_update(val_loss)

    def _plateau_update(self, val_loss: float) -> None:
        """ReduceLROnPlateau once the warm-up + cosine schedule is over."""
        o = self.cfg.optim
        if self.global_step < self.schedule.cosine_steps:
            return
        if val_loss < self._plateau_best:
            self._plateau_best, self._plateau_bad = val_loss, 0
            return
        self._plateau_bad += 1
        if self._plateau_bad >= o.plateau_patience:
            self.plateau_scale *= o.plateau_factor
            self._plateau_bad = 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["openjmp"] = {
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "plateau": [self.plateau_scale, self._plateau_best, self._plateau_bad],
            "best": [self.best_val, self.best_step], "val_history": self.val_history,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("openjmp", {})
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.plateau_scale, self._plateau_best, self._plateau_bad = state.get("plateau", [1.0, math.inf, 0])
        self.best_val, self.best_step = state.get("best", [math.inf, -1])
        self.val_history = list(state.get("val_history", []))


def physical_predictions(module: FinetuneModule, batch: GraphBatch, preds) -> dict:
    """name -> (pred, true, kind) numpy arrays in physical units, for metrics."""
    data = batch.data
    out = {}
    for t in module.cfg.targets:
        p = preds[t.name]
        norm = module.normalization[t.name]
        if t.kind == "energy_forces":
            e = to_physical(p["energy_norm"].detach(), norm["energy_std"], norm["energy_mean"],
                            module._reference(t.name, data))
            out[f"{t.name}/energy"] = (e.cpu().numpy(), data.energy.double().cpu().numpy(), "scalar")
            n = data.natoms.double().cpu().numpy()
            out[f"{t.name}/energy_per_atom"] = (e.cpu().numpy() / n, data.energy.double().cpu().numpy() / n, "scalar")
            if p.get("forces") is not None:
                out[f"{t.name}/forces"] = (p["forces"].detach().double().cpu().numpy(), data.forces.double().cpu().numpy(), "forces")
        elif t.kind == "scalar":
            y = to_physical(p["value_norm"].detach(), norm["std"], norm["mean"], module._reference(t.name, data))
            out[t.name] = (y.cpu().numpy(), data.targets[t.target_key].double().cpu().numpy(), "scalar")
        else:
            prob = torch.sigmoid(p["value_norm"].detach().double())
            out[t.name] = (prob.cpu().numpy(), data.targets[t.target_key].double().cpu().numpy(), "classification")
    return out


# ============================================================================ driver
def write_splits_file(cfg: FinetuneConfig, splits: dict[str, list], out: Path) -> str | None:
    """``out/splits.json``: the source ids of each split (`openjmp.data.split_file`), so that
    evaluate / data export can select the same records; None (with a warning) when the source's
    records have no unique ids."""
    from openjmp.data.split_file import FILE_NAME, SplitFile, SplitFileError

    try:
        split_file = SplitFile.from_records(cfg.data.path, cfg.data.format, cfg.data.reader_options, cfg.seed,
                                            splits, out)
    except SplitFileError as exc:
        warnings.warn(f"{out / FILE_NAME} not written: {exc}", stacklevel=2)
        return None
    return str(split_file.write(out / FILE_NAME))


def target_units(cfg: FinetuneConfig) -> dict[str, str]:
    """Units of the source's graph-level targets, as its reader documents them."""
    from openjmp.data.readers import read

    return read(cfg.data.path, cfg.data.format, **cfg.data.reader_options).target_units()


def heads_metadata(cfg: FinetuneConfig, elements: list[int], units: dict[str, str] | None = None) -> dict:
    """Model-file head entries; ``units`` (target key → unit, from the reader) label plots."""
    graph = cfg.data.graph.model_dump(mode="json")
    units = units or {}
    heads = {}
    for t in cfg.targets:
        if t.kind == "energy_forces":
            heads[t.name] = {
                "kind": "energy_forces", "energy_module": "out_energy",
                "force_module": "out_forces" if t.forces == "direct" else None, "forces": t.forces,
                "reduction": t.reduction, "graph": graph, "elements": elements, "stress": t.stress,
            }
        else:
            heads[t.name] = {
                "kind": t.kind, "energy_module": f"task_heads.{t.name}", "force_module": None, "forces": None,
                "reduction": t.reduction, "graph": graph, "elements": elements, "key": t.target_key,
                "unit": units.get(t.target_key),
            }
    return heads


def run_finetuning(cfg: FinetuneConfig, callbacks=None) -> dict:
    """Fine-tune, export the best EMA model, evaluate it on the test split; returns the summary."""
    import time

    from lightning.pytorch.callbacks import EarlyStopping
    from lightning.pytorch.loggers import CSVLogger

    from openjmp.models.registry import save_model_file

    t0 = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    splits = load_finetune_splits(cfg)
    check_targets(cfg, splits["train"])
    splits_file = write_splits_file(cfg, splits, out)
    model, source = build_finetune_model(cfg)
    qint_tags = tuple(model.config.qint_tags)
    settings = cfg.data.graph.settings()
    try:
        model.config.check_graph_cutoffs(settings.cutoffs, "data.graph")
    except ValueError as exc:
        raise FinetuneError(str(exc)) from None
    datasets = {k: GraphDataset(v, settings, 0, qint_tags, force_pbc=cfg.data.graph.pbc) for k, v in splits.items()}
    normalization, head_info = target_normalizations(cfg, model, splits["train"], datasets["train"])
    # replayed pre-training heads and LoRA adapters, before the module (its EMA and optimiser see them)
    replay = build_replay(cfg, model) if cfg.replay is not None else None
    lora_layers = apply_lora(model, cfg.optim.lora) if cfg.optim.lora is not None else []
    gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(datasets["train"], batch_size=cfg.data.batch_size, shuffle=True, generator=gen,
                              collate_fn=collate_graph_batch, drop_last=len(datasets["train"]) > cfg.data.batch_size)
    val_loader = DataLoader(datasets["val"], batch_size=cfg.data.batch_size, collate_fn=collate_graph_batch)
    # epochs of the training loader in optimizer steps (per process when data-parallel)
    steps_per_epoch = len(train_loader)
    if isinstance(cfg.trainer.devices, int) and cfg.trainer.devices > 1:
        steps_per_epoch = math.ceil(steps_per_epoch / cfg.trainer.devices)
    module = FinetuneModule(cfg.model_dump(mode="json"), model, normalization, replay=replay,
                            steps_per_epoch=steps_per_epoch)
    schedule = module.schedule
    replay_before = replay.evaluate(module.model, module.dtype_) if replay is not None else None
    tc = cfg.trainer
    cbs = list(callbacks or [])
    if tc.early_stopping_patience:
        cbs.append(EarlyStopping(monitor="val/loss", patience=tc.early_stopping_patience, mode="min",
                                 check_on_train_epoch_end=False))
    from openjmp.training.progress import (
        ProgressLog,
        quiet_lightning,
        stdout_is_terminal,
        step_progress_bar,
        verbosity,
    )

    quiet_lightning()
    # a terminal gets a live bar; a log (stdout redirected) gets a progress line at least every
    # $OPENJMP_PROGRESS_INTERVAL seconds (30) and after each validation; --quiet: neither
    live_bar = tc.progress_bar and stdout_is_terminal() and verbosity() >= 0
    if live_bar:
        cbs.append(step_progress_bar())
    elif tc.progress_bar and verbosity() >= 0:
        cbs.append(ProgressLog("fine-tune"))
    prepare_deterministic_cuda(tc.deterministic, tc.accelerator)
    trainer = L.Trainer(
        max_steps=schedule.max_steps, max_epochs=-1, accelerator=tc.accelerator, devices=tc.devices, precision=tc.precision,
        logger=[CSVLogger(out, name="logs", version="")], callbacks=cbs,
        val_check_interval=schedule.val_every_n_steps,
        check_val_every_n_epoch=None, log_every_n_steps=tc.log_every_n_steps, deterministic=tc.deterministic,
        enable_progress_bar=live_bar, enable_checkpointing=False, enable_model_summary=False,
        inference_mode=False, max_time={"minutes": tc.max_time_minutes} if tc.max_time_minutes else None,
    )
    trainer.fit(module, train_loader, val_loader)
    train_time = time.perf_counter() - t0
    # export the best validation step's EMA weights
    best = module.best_state or (module.ema.ema_state_dict(module.model) if module.ema else module.model.state_dict())
    export = copy.deepcopy(module.model).to(torch.float32)
    export.load_state_dict(best)
    export.model_config = module.model.model_config
    merge_lora(export)  # adapters folded into the base weights: the file loads into the plain model
    elements = sorted({int(z) for r in splits["train"] for z in r.atomic_numbers})
    export_norm, export_heads = normalization, heads_metadata(cfg, elements, target_units(cfg))
    if replay is not None:
        replay.summary["val_before"] = replay_before
        replay.summary["val_after"] = replay.evaluate(export.to(module.dtype_), module.dtype_)
        export.to(torch.float32)
        export_norm, export_heads = replay.export(export, export_norm, export_heads)
    model_path = out / "model.pt"
    save_model_file(export, model_path, normalization=export_norm, heads=export_heads,
                    extra={"finetune_config": cfg.model_dump(mode="json"), "init": source,
                           "best_step": module.best_step, "steps": int(trainer.global_step),
                           "schedule": dataclasses.asdict(schedule)})
    from openjmp.training.evaluate import evaluate_records

    test = evaluate_records(model_path, splits["test"], out / "test", dtype=cfg.dtype,
                            device=evaluation_device(tc.accelerator)) if splits["test"] else None
    summary = {
        "init": source, "steps": int(trainer.global_step), "best_step": module.best_step,
        "schedule": dataclasses.asdict(schedule),
        "best_val_loss": module.best_val, "train_records": len(splits["train"]), "val_records": len(splits["val"]),
        "test_records": len(splits["test"]), "frozen_parameters": len(module.frozen),
        "train_time_s": train_time, "init_heads": head_info, "lora_layers": len(lora_layers),
        "replay": replay.summary if replay is not None else None, "validation": module.val_history, "test": test,
        "model": str(model_path), "splits_file": splits_file,
    }
    write_json(out / "summary.json", summary)
    return summary
