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
    """Physical predictions and targets, concatenated over ``records`` (model on ``device``); a
    model file without an energy head gives its properties only (kind ``properties``)."""
    from openjmp.inference import load_predictor, split_results

    predictor = load_predictor(model_path, head=head, dtype=dtype, forces=forces, unknown_elements="ignore",
                               device=device)
    out: dict = {"head": predictor.head_name, "kind": predictor.kind or "properties", "energy": [],
                 "energy_true": [], "natoms": [], "forces": [], "forces_true": [], "properties": {},
                 "property_kinds": {}, "property_units": {}}
    heads = predictor.heads
    for group, result in predictor.predict(records, max_atoms=max_atoms):
        for r, item in zip(group, split_results(group, result)):
            out["natoms"].append(r.natoms)
            if "energy" in item:
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
                out["property_units"][name] = heads[name].get("unit")
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


def _parity(ax, pred, true, quantity: str, unit: str | None) -> None:
    """Parity plot of ``quantity`` [``unit``] with N, MAE and RMSE in the corner."""
    pred, true = np.asarray(pred, dtype=float).ravel(), np.asarray(true, dtype=float).ravel()
    keep = np.isfinite(true) & np.isfinite(pred)
    ax.scatter(true[keep], pred[keep], s=6, alpha=0.6)
    if keep.any():
        lo, hi = float(min(true[keep].min(), pred[keep].min())), float(max(true[keep].max(), pred[keep].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    err = pred[keep] - true[keep]
    mae = float(np.abs(err).mean()) if keep.any() else float("nan")
    rmse = float(np.sqrt((err**2).mean())) if keep.any() else float("nan")
    bracket = f" [{unit}]" if unit else " [unit not recorded]"
    ax.set(xlabel=f"reference {quantity}{bracket}", ylabel=f"predicted {quantity}{bracket}", title=quantity)
    ax.text(0.03, 0.97, f"N = {int(keep.sum()):,}\nMAE = {mae:.4g}\nRMSE = {rmse:.4g}", transform=ax.transAxes,
            va="top", ha="left", fontsize=8, bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})


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
            _parity(ax, f, ft, "force component", "eV/Å")
            save(fig, "parity_forces.png")
            err = np.linalg.norm(f - ft, axis=1)
            err = err[np.isfinite(err)]
            fig, ax = plt.subplots(figsize=(4.5, 3.5))
            ax.hist(err, bins=50)
            ax.set(xlabel="force error per atom |F_pred − F_ref| [eV/Å]", ylabel="atoms",
                   title=f"force error (N = {err.size:,} atoms, mean {err.mean() if err.size else float('nan'):.4g} eV/Å)")
            save(fig, "force_error_histogram.png")
    for name, p in pred["properties"].items():
        fig, ax = plt.subplots(figsize=(4.5, 4.2))
        if pred["property_kinds"].get(name) == "classification":
            _parity(ax, p["pred"], p["true"], f"{name} (class probability)", "0–1")
        else:
            _parity(ax, p["pred"], p["true"], name, pred["property_units"].get(name))
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
