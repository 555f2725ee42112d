"""Fine-tuning heads that start from a pre-training head, and "estimated" element references.

JMP fine-tunes with fresh heads. When a downstream dataset shares its level of theory with a
pre-training dataset (in openjmp's mini suite: GFN2-xTB for mini-ani1x and the rMD17/MD22
molecules), the pre-training head already predicts the new labels up to per-element offsets.
``TargetConfig.init_head`` copies that head:

* energy_forces targets: the pre-training energy MLP becomes the fine-tuning energy head (with
  its hidden biases, ``finetune_energy_bias``), its direct-force MLP the fine-tuning force head
  when forces are direct; the energy/force scales (``energy_std``, ``force_std``) are inherited
  so the copied head computes the same function in eV;
* scalar targets: the energy MLP initialises the property head (its extra output bias starts at
  0); the target keeps its own fitted mean/std.

Element references of an energy target (``TargetConfig.reference``):

* ``average``: least squares of the training labels on element counts (JMP's choice for new
  datasets);
* ``estimated``: the copied head's pre-training reference plus a least-squares per-element
  correction of its zero-shot errors on the training split — the reference a pre-trained model
  implies, so that the head starts close to the new labels (for a single composition, as in
  rMD17, this is a constant shift).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from openjmp.models.outputs import EnergySpec, compute_outputs
from openjmp.training.finetune_config import FinetuneConfig, TargetConfig
from openjmp.training.normalization import (
    DatasetNormalizer,
    element_count_matrix,
    fit_linear_reference,
    fit_normalizer,
)


class HeadTransferError(ValueError):
    """A target's ``init_head`` cannot be taken from the init checkpoint."""


def pretrain_head_index(model_file, name: str, checkpoint: str) -> int:
    """Index of pre-training head ``name`` in ``model_file`` (``output.out_energy.<index>``)."""
    tasks = list(model_file.model_config.get("pretrain_tasks") or [])
    if name not in tasks:
        raise HeadTransferError(f"init_head {name!r}: {checkpoint} has no pre-training head of that name "
                                f"(available: {tasks or 'none'})")
    return tasks.index(name)


def _sub_state(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def copy_pretrain_heads(cfg: FinetuneConfig, model, checkpoint_path) -> dict[str, dict]:
    """Copy the pre-training heads named by ``init_head`` into ``model``'s fine-tuning heads.

    Returns, per target with an ``init_head``, the pre-training head's normalisation dict
    (``linear_reference``, ``energy_mean``, ``energy_std``, ``force_std``)."""
    from openjmp.checkpoints.format import load_model_file
    from openjmp.models.gemnet_oc.keys import canonical_state_dict

    targets = [t for t in cfg.targets if t.init_head]
    if not targets:
        return {}
    mf = load_model_file(checkpoint_path)
    weights = canonical_state_dict(mf.weights(use_ema=cfg.init.use_ema), check=False)
    inherited = {}
    for t in targets:
        i = pretrain_head_index(mf, t.init_head, str(checkpoint_path))
        energy = _sub_state(weights, f"output.out_energy.{i}.")
        if t.kind == "energy_forces":
            _load(model.out_energy, energy, t, "energy")
            if t.forces == "direct":
                _load(model.out_forces, _sub_state(weights, f"output.out_forces.{i}."), t, "force")
        else:
            head = model.task_heads[t.name]
            state = head.state_dict()
            last = max(int(k.split(".")[0]) for k in state)
            energy = dict(energy)
            energy[f"{last}.bias"] = torch.zeros_like(state[f"{last}.bias"])
            _load(head, energy, t, "energy")
        norm = dict(mf.normalization.get(t.init_head) or {})
        if not norm:
            raise HeadTransferError(f"init_head {t.init_head!r}: {checkpoint_path} stores no normalisation for it")
        inherited[t.name] = norm
    return inherited


def _load(module, state: dict, t: TargetConfig, what: str) -> None:
    if module is None:
        raise HeadTransferError(f"target {t.name!r}: the model has no fine-tuning {what} head to initialise")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise HeadTransferError(
            f"target {t.name!r}: pre-training {what} head {t.init_head!r} does not fit the fine-tuning head "
            f"(head_layers must equal the pre-training heads' layer count): {exc}"
        ) from None


@torch.no_grad()
def zero_shot_energies(model, dataset, reduction: str, norm: dict, batch_size: int = 16) -> np.ndarray:
    """Energies (eV, float64, one per record of ``dataset``) the fine-tuning energy head predicts
    with normalisation ``norm`` (the copied pre-training head before any fine-tuning)."""
    from openjmp.training.data import collate_graph_batch

    dtype = next(model.parameters()).dtype
    normalizer = DatasetNormalizer(**{k: norm[k] for k in ("linear_reference", "energy_mean", "energy_std", "force_std")
                                      if norm.get(k) is not None})
    was_training = model.training
    model.eval()
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_graph_batch):
        batch = batch.to("cpu", dtype)
        data, B = batch.data, batch.num_structures
        spec = EnergySpec(model.out_energy, forces=None, reduction=reduction)
        e_norm = compute_outputs(model, data.atomic_numbers, data.pos, data.cell, data.batch, batch.graphs, B,
                                 energy=spec).energy
        out.append(normalizer.denormalize_energy(e_norm.double(), data.atomic_numbers, data.batch).numpy())
    model.train(was_training)
    return np.concatenate(out)


def energy_normalization_from_head(t: TargetConfig, inherited: dict, train, model=None,
                                   train_dataset=None) -> tuple[dict, dict]:
    """Normalisation of an energy_forces target whose head was copied from a pre-training head.

    Scales (``energy_std``, ``force_std``) are the pre-training head's; the reference follows
    ``t.reference`` (module docstring). ``estimated`` needs the model (with the copied head) and
    the training records as a ``GraphDataset``. Returns (normalisation, info) where info holds
    the zero-shot energy MAE after the correction (eV) for ``estimated``."""
    norm = dict(inherited)
    zs = [r.atomic_numbers for r in train]
    energies = np.array([float(r.energy) for r in train])
    info: dict = {}
    if t.reference == "estimated":
        predicted = zero_shot_energies(model, train_dataset, t.reduction, norm)
        residual = energies - predicted
        counts = element_count_matrix(zs)
        correction = fit_linear_reference(counts, residual)
        norm["linear_reference"] = (np.asarray(norm["linear_reference"], dtype=np.float64) + correction).tolist()
        remaining = residual - counts @ correction
        # what a per-element correction cannot absorb goes into the mean
        norm["energy_mean"] = float(norm["energy_mean"] + remaining.mean())
        info = {"zero_shot_energy_mae": float(np.abs(remaining - remaining.mean()).mean())}
    else:
        fitted = fit_normalizer(zs, energies, None, use_linear_reference=t.reference == "average").as_dict()
        norm["linear_reference"] = fitted["linear_reference"]
        norm["energy_mean"] = fitted["energy_mean"]
    return {k: norm[k] for k in ("linear_reference", "energy_mean", "energy_std", "force_std")}, info
