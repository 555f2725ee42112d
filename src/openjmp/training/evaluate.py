"""Evaluation of a model file on records: metrics JSON, parity plots, force-error histogram.

Predictions come from `openjmp.inference.Predictor` (the same code path as ``openjmp predict``
and the ASE calculator), so all three give the same numbers. Per target:

* energy heads: energy MAE/RMSE per structure (eV) and per atom (meV/atom), force MAE/RMSE
  (eV/Å, over components), per-atom L2 force error and mean cosine similarity;
* scalar heads: MAE, RMSE, R² in the target's unit;
* classification heads: accuracy and ROC-AUC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openjmp.training.metrics import classification_metrics, force_metrics, regression_metrics


def collect_predictions(model_path, records, head: str | None = None, dtype: str = "float32",
                        forces: str | None = None, max_atoms: int = 2000, device: str = "cpu") -> dict:
    """Physical predictions and targets, concatenated over ``records`` (model on ``device``)."""
    from openjmp.checkpoints.format import load_model_file
    from openjmp.inference import ENERGY_KINDS, load_predictor, split_results

    if head is None and not any(h.get("kind") in ENERGY_KINDS for h in load_model_file(model_path).heads.values()):
        return _property_only_predictions(model_path, records, dtype, max_atoms, device)
    predictor = load_predictor(model_path, head=head, dtype=dtype, forces=forces, unknown_elements="ignore",
                               device=device)
    out: dict = {"head": predictor.head_name, "kind": predictor.kind, "energy": [], "energy_true": [], "natoms": [],
                 "forces": [], "forces_true": [], "properties": {}, "property_kinds": {}}
    heads = predictor.heads
    for group, result in predictor.predict(records, max_atoms=max_atoms):
        for r, item in zip(group, split_results(group, result)):
            out["natoms"].append(r.natoms)
            out["energy"].append(item["energy"])
            out["energy_true"].append(np.nan if r.energy is None else r.energy)
            if "forces" in item:
                out["forces"].append(item["forces"])
                out["forces_true"].append(r.forces if r.forces is not None else np.full((r.natoms, 3), np.nan))
            for name, value in item["properties"].items():
                key = heads[name].get("key", name)
                p = out["properties"].setdefault(name, {"pred": [], "true": []})
                p["pred"].append(value)
                p["true"].append(float(r.targets.get(key, np.nan)))
                out["property_kinds"][name] = heads[name]["kind"]
    return out


def _property_only_predictions(model_path, records, dtype: str, max_atoms: int, device: str = "cpu") -> dict:
    """Predictions of a model file that has only scalar / classification heads."""
    import torch

    from openjmp.inference import graph_settings_of, iter_batches, resolve_dtype
    from openjmp.models.heads import structure_readout
    from openjmp.models.registry import load_model
    from openjmp.training.data import GraphDataset, collate_graph_batch
    from openjmp.training.normalization import reference_energy

    model, mf = load_model(model_path)
    torch_dtype = resolve_dtype(dtype)
    model = model.to(device=device, dtype=torch_dtype).eval()
    heads = {n: h for n, h in mf.heads.items() if h.get("kind") in ("scalar", "classification")}
    first = next(iter(heads.values()))
    settings, force_pbc = graph_settings_of(first)
    out: dict = {"head": None, "kind": "properties", "energy": [], "energy_true": [], "natoms": [], "forces": [],
                 "forces_true": [], "properties": {}, "property_kinds": {}}
    for group in iter_batches(records, max_atoms):
        ds = GraphDataset(group, settings, 0, tuple(model.config.qint_tags), cache=False, force_pbc=force_pbc)
        batch = collate_graph_batch([ds[i] for i in range(len(ds))]).to(device, torch_dtype)
        data = batch.data
        with torch.no_grad():
            x_E = model(data.atomic_numbers, data.pos, data.cell, data.batch, batch.graphs, data.num_structures).x_E
            for name, h in heads.items():
                value = structure_readout(model.task_heads[name](x_E).squeeze(-1), data.batch, data.num_structures,
                                          h.get("reduction", "sum"), data.pos, data.atomic_numbers).double()
                norm = mf.normalization.get(name, {})
                if h["kind"] == "classification":
                    value = torch.sigmoid(value)
                else:
                    ref = reference_energy(norm.get("linear_reference") or None, data.atomic_numbers, data.batch,
                                           data.num_structures)
                    value = value * norm.get("std", 1.0) + norm.get("mean", 0.0) + ref
                p = out["properties"].setdefault(name, {"pred": [], "true": []})
                p["pred"].extend(value.tolist())
                p["true"].extend(float(r.targets.get(h.get("key", name), np.nan)) for r in group)
                out["property_kinds"][name] = h["kind"]
        out["natoms"].extend(r.natoms for r in group)
    return out


def metrics_from_predictions(pred: dict) -> dict:
    metrics: dict = {}
    e, et, n = np.array(pred["energy"]), np.array(pred["energy_true"]), np.array(pred["natoms"], dtype=float)
    if pred["kind"] in ("pretrain", "energy_forces") and np.isfinite(et).any():
        m = regression_metrics(e, et)
        per_atom = regression_metrics(e / n, et / n)
        m["mae_meV_per_atom"] = 1000 * per_atom["mae"]
        m["rmse_meV_per_atom"] = 1000 * per_atom["rmse"]
        metrics[f"{pred['head']}/energy"] = m
        if pred["forces"]:
            metrics[f"{pred['head']}/forces"] = force_metrics(np.concatenate(pred["forces"]), np.concatenate(pred["forces_true"]))
    for name, p in pred["properties"].items():
        if pred["property_kinds"][name] == "classification":
            metrics[name] = classification_metrics(p["pred"], p["true"])
        else:
            metrics[name] = regression_metrics(p["pred"], p["true"])
    return metrics


def _parity(ax, pred, true, title, unit):
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    keep = np.isfinite(true) & np.isfinite(pred)
    ax.scatter(true[keep], pred[keep], s=6, alpha=0.6)
    if keep.any():
        lo, hi = float(min(true[keep].min(), pred[keep].min())), float(max(true[keep].max(), pred[keep].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    mae = float(np.abs(pred[keep] - true[keep]).mean()) if keep.any() else float("nan")
    ax.set(xlabel=f"reference [{unit}]", ylabel=f"predicted [{unit}]", title=f"{title} (MAE {mae:.4g} {unit})")


def write_plots(pred: dict, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name):
        path = out_dir / name
        tmp = path.with_suffix(".tmp.png")
        fig.tight_layout()
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(path)
        written.append(str(path))

    n = np.array(pred["natoms"], dtype=float)
    if pred["kind"] in ("pretrain", "energy_forces") and np.isfinite(pred["energy_true"]).any():
        fig, ax = plt.subplots(figsize=(4.5, 4.2))
        _parity(ax, np.array(pred["energy"]) / n, np.array(pred["energy_true"]) / n, "energy per atom", "eV/atom")
        save(fig, "parity_energy.png")
        if pred["forces"]:
            f, ft = np.concatenate(pred["forces"]), np.concatenate(pred["forces_true"])
            fig, ax = plt.subplots(figsize=(4.5, 4.2))
            _parity(ax, f, ft, "force components", "eV/Å")
            save(fig, "parity_forces.png")
            err = np.linalg.norm(f - ft, axis=1)
            err = err[np.isfinite(err)]
            fig, ax = plt.subplots(figsize=(4.5, 3.5))
            ax.hist(err, bins=50)
            ax.set(xlabel="|F_pred - F_ref| [eV/Å]", ylabel="atoms", title="force error per atom")
            save(fig, "force_error_histogram.png")
    for name, p in pred["properties"].items():
        fig, ax = plt.subplots(figsize=(4.5, 4.2))
        _parity(ax, p["pred"], p["true"], name, "target unit")
        save(fig, f"parity_{name.replace('/', '_')}.png")
    return written


def evaluate_records(model_path, records, out_dir, head: str | None = None, dtype: str = "float32",
                     forces: str | None = None, device: str = "cpu") -> dict:
    """Metrics (also written to ``out_dir/metrics.json``) and plots of a model file on records
    (the model runs on ``device``)."""
    from openjmp.training.pretrain import write_json

    out_dir = Path(out_dir)
    pred = collect_predictions(model_path, records, head=head, dtype=dtype, forces=forces, device=device)
    result = {"model": str(model_path), "head": pred["head"], "records": len(records),
              "metrics": metrics_from_predictions(pred), "plots": write_plots(pred, out_dir)}
    write_json(out_dir / "metrics.json", result)
    return result
