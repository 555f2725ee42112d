"""Check our GemNet-OC against a numerical reference fixture directory.

The fixture format is that of ``shared/reference/gemnet_oc`` (see its README): everything —
systems, file names, graph settings, hyperparameters, heads, tolerances — is read from
``DIR/case.json``; nothing is hard-coded. For float64 and float32, with the stored graphs and
with graphs built by openjmp (:mod:`openjmp.data.graphs.goc`), for every single system and for
the batch (``batch_all.npz``, if present), every stored output is compared:

    err = max|x - ref| / max|ref|   (per output, per system; ref = the ``*_f64`` array)

Per-edge arrays (``x_F``, ``V_st``, ``D_st``) are matched by the key (source, target, cell
offset), never by position. Tolerances: ``recommended_tolerances.float64.all_outputs`` and
``recommended_tolerances.float32.per_system[system][output]`` (``null`` or absent: reported,
not checked, with the reason). Own-built graphs are also checked to contain exactly the stored
edge sets.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from openjmp.data.graphs.goc import (
    GOCGraphs,
    GOCGraphSettings,
    build_goc_graphs,
    collate_goc_graphs,
)
from openjmp.models.gemnet_oc.config import GemNetOCConfig
from openjmp.models.gemnet_oc.keys import canonical_state_dict, with_aliases
from openjmp.models.jmp_model import JMPModel

EDGE_OUTPUTS = ("x_F", "V_st", "D_st")
#: arrays stored as ``*_f64``/``*_f32`` that are inputs, not outputs
INPUT_ARRAYS = ("pos", "cell")


@dataclass
class CheckRow:
    dtype: str
    graphs: str
    system: str
    output: str
    max_abs: float
    err: float
    tol: float | None
    status: str  # "ok", "FAIL", "skip"
    note: str = ""


@dataclass
class ReferenceReport:
    rows: list[CheckRow] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckRow]:
        return [r for r in self.rows if r.status == "FAIL"]

    @property
    def passed(self) -> bool:
        return not self.failures and any(r.status == "ok" for r in self.rows)

    def summary(self) -> str:
        n_ok = sum(r.status == "ok" for r in self.rows)
        n_skip = sum(r.status == "skip" for r in self.rows)
        worst = {}
        for dt in ("float64", "float32"):
            errs = [r.err for r in self.rows if r.dtype == dt and r.status != "skip"
                    and math.isfinite(r.err)]
            worst[dt] = max(errs) if errs else float("nan")
        verdict = "PASS" if self.passed else f"FAIL ({len(self.failures)} failed)"
        return (f"check-reference: {verdict}: {n_ok} ok, {len(self.failures)} failed, "
                f"{n_skip} skipped; worst err float64 {worst['float64']:.2e}, "
                f"float32 {worst['float32']:.2e}")

    def format_table(self) -> str:
        lines = [f"{'dtype':8} {'graphs':7} {'system':28} {'output':30} {'max_abs':>10} "
                 f"{'err':>10} {'tol':>8}  status"]
        for r in self.rows:
            tol = "-" if r.tol is None else f"{r.tol:.0e}"
            lines.append(f"{r.dtype:8} {r.graphs:7} {r.system:28} {r.output:30} "
                         f"{r.max_abs:10.2e} {r.err:10.2e} {tol:>8}  {r.status}"
                         + (f"  ({r.note})" if r.note else ""))
        return "\n".join(lines)


def _load_state_dict(directory: Path, case: dict) -> dict[str, torch.Tensor]:
    listed = case.get("files") if isinstance(case.get("files"), dict) else {}
    files = (case.get("hparams", {}).get("state_dict_files") or listed.get("state_dict_files")
             or listed.get("state_dict") or ["state_dict.pt", "state_dict.npz"])
    if isinstance(files, str):
        files = [files]
    for name in files:
        path = directory / name
        if not path.is_file():
            continue
        if name.endswith(".pt"):
            sd = torch.load(path, map_location="cpu", weights_only=True)
            return {k: v for k, v in sd.items()}
        if name.endswith(".npz"):
            with np.load(path) as z:
                return {k: torch.from_numpy(np.array(z[k])) for k in z.files}
    raise FileNotFoundError(f"{directory}: none of the state-dict files {files} exists")


def build_reference_model(directory: Path, case: dict) -> JMPModel:
    hp = case["hparams"]
    config = GemNetOCConfig(**hp["backbone"])
    sd = canonical_state_dict(_load_state_dict(directory, case))
    tasks = hp.get("pretrain_heads", {}).get("tasks_in_head_order", [])
    num_mlps = int(hp.get("pretrain_heads", {}).get("num_mlps", 5))
    model = JMPModel(
        config,
        num_pretrain_tasks=len(tasks),
        finetune_energy=any(k.startswith("out_energy.") for k in sd),
        finetune_forces=any(k.startswith("out_forces.") for k in sd),
        num_mlps=num_mlps,
    )
    model.load_state_dict(with_aliases(sd, model), strict=True)
    return model.eval()


def _settings(system: dict) -> GOCGraphSettings:
    """Graph settings of a system: one ``cutoff`` (or a per-graph dict ``cutoffs`` /
    ``cutoffs_per_graph``) and ``max_neighbors_per_graph`` (else JMP's proportions of
    ``max_neighbors``)."""
    gs = system["graph_settings"]
    base = GOCGraphSettings.from_constant(float(gs.get("cutoff", 0.0) or 0.0),
                                          int(gs.get("max_neighbors", 0) or 0))
    mn = gs.get("max_neighbors_per_graph") or {}
    cutoffs = gs.get("cutoffs_per_graph") or gs.get("cutoffs") or {}
    values = {}
    for g in ("main", "aeaint", "qint", "aint"):
        values[f"cutoff_{g}"] = float(cutoffs.get(g, getattr(base, f"cutoff_{g}")))
        values[f"max_neighbors_{g}"] = int(mn.get(g, getattr(base, f"max_neighbors_{g}")))
    return GOCGraphSettings(**values)


def _pbc(z, system: dict) -> np.ndarray:
    if "pbc" in z.files:
        return np.asarray(z["pbc"], dtype=bool).reshape(-1) * np.ones(3, dtype=bool)
    return np.full(3, bool(system["graph_settings"]["pbc"]))


def _own_graphs(z, system: dict, pos: np.ndarray, cell: np.ndarray, qint_tags) -> GOCGraphs:
    return build_goc_graphs(pos, cell, _pbc(z, system), np.asarray(z["tags"]), _settings(system),
                            qint_tags)


def _edge_key_set(edge_index: np.ndarray, offsets: np.ndarray) -> set:
    return set(zip(edge_index[0].tolist(), edge_index[1].tolist(),
                   *[offsets[:, i].tolist() for i in range(3)]))


def _align_edges(ours_ei, ours_off, ref_ei, ref_off) -> np.ndarray | None:
    """perm with ours[perm] in reference order, or None if the edge sets differ."""
    index = {k: i for i, k in enumerate(zip(ours_ei[0].tolist(), ours_ei[1].tolist(),
                                            *[ours_off[:, j].tolist() for j in range(3)]))}
    keys = list(zip(ref_ei[0].tolist(), ref_ei[1].tolist(),
                    *[ref_off[:, j].tolist() for j in range(3)]))
    if len(index) != len(keys):
        return None
    try:
        return np.array([index[k] for k in keys], dtype=np.int64)
    except KeyError:
        return None


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _run(model: JMPModel, dtype: torch.dtype, Z, pos, cell, batch, graphs, num_structures,
         strain: bool, device: torch.device) -> dict[str, np.ndarray]:
    model = model.to(device=device, dtype=dtype)
    pos_t = torch.as_tensor(pos, dtype=dtype, device=device)
    cell_t = torch.as_tensor(cell, dtype=dtype, device=device).reshape(-1, 3, 3)
    z_t = torch.as_tensor(Z, dtype=torch.long, device=device)
    b_t = torch.as_tensor(batch, dtype=torch.long, device=device)
    pred = model.predict(z_t, pos_t, cell_t, b_t, graphs.to(device), num_structures,
                         gradient=True, stress=strain)
    out = pred.backbone
    res: dict[str, np.ndarray] = {
        "x_E": _numpy(out.x_E),
        "V_st": _numpy(out.V_st),
        "D_st": _numpy(out.D_st),
        "edge_index": _numpy(out.graphs.main_edge_index),
        "cell_offset": _numpy(out.graphs.main_cell_offset),
    }
    if out.x_F is not None:
        res["x_F"] = _numpy(out.x_F)
    if "finetune" in pred.energy:
        res["energy_finetune"] = _numpy(pred.energy["finetune"])
        res["energy_per_atom_finetune"] = _numpy(pred.energy_per_atom["finetune"])
        res["forces_grad_finetune"] = _numpy(pred.forces_grad["finetune"])
        if strain:
            res["dE_dstrain_finetune"] = _numpy(pred.dE_dstrain["finetune"])
            res["stress_finetune"] = _numpy(pred.stress["finetune"])
    if "finetune" in pred.forces_direct:
        res["forces_direct_finetune"] = _numpy(pred.forces_direct["finetune"])
    heads = sorted((k for k in pred.energy if k.startswith("pretrain")), key=lambda k: int(k[8:]))
    if heads:
        res["energy_pretrain_heads"] = np.stack([_numpy(pred.energy[h]) for h in heads], axis=-1)
        res["forces_grad_pretrain_heads"] = np.stack(
            [_numpy(pred.forces_grad[h]) for h in heads], axis=-1)
        fheads = [h for h in heads if h in pred.forces_direct]
        if fheads:
            res["forces_direct_pretrain_heads"] = np.stack(
                [_numpy(pred.forces_direct[h]) for h in fheads], axis=-1)
    return res


def _output_names(z) -> list[str]:
    return [k[:-4] for k in z.files if k.endswith("_f64") and k[:-4] not in INPUT_ARRAYS]


def _tolerance(case: dict, dtype: str, system: str, output: str) -> tuple[float | None, str]:
    rt = case.get("recommended_tolerances", {})
    if dtype == "float64":
        tol = rt.get("float64", {}).get("all_outputs")
        return (None, "no float64 tolerance in case.json") if tol is None else (float(tol), "")
    per = rt.get("float32", {}).get("per_system", {}).get(system, {})
    if output not in per:
        return None, "no float32 tolerance for this output in case.json"
    if per[output] is None:
        return None, "float32 tolerance null in case.json (no meaningful float32 comparison)"
    return float(per[output]), ""


def _compare(report: ReferenceReport, case: dict, dtype: str, graphs: str, system: str,
             output: str, ours: np.ndarray | None, ref: np.ndarray) -> None:
    tol, reason = _tolerance(case, dtype, system, output)
    if ours is None:
        report.rows.append(CheckRow(dtype, graphs, system, output, float("nan"), float("nan"),
                                    tol, "FAIL" if tol is not None else "skip",
                                    "output not produced"))
        return
    ours = np.asarray(ours, dtype=np.float64).reshape(ref.shape)
    diff = float(np.abs(ours - ref).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    err = diff / scale if scale > 0 else diff
    if not np.all(np.isfinite(ours)):
        err = float("inf")
    if tol is None:
        status = "skip"
    else:
        status = "ok" if err <= tol else "FAIL"
    report.rows.append(CheckRow(dtype, graphs, system, output, diff, err, tol, status, reason))


def _check_graph_sets(report: ReferenceReport, dtype: str, system: str, own: GOCGraphs, z):
    for name in ("main", "a2a", "a2ee2a", "qint"):
        key = f"graph_{name}_edge_index"
        if key not in z.files:
            continue
        es = getattr(own, name)
        same = _edge_key_set(es.edge_index.numpy(), es.cell_offset.numpy()) == _edge_key_set(
            np.asarray(z[key]), np.asarray(z[f"graph_{name}_cell_offset"]))
        report.rows.append(CheckRow(dtype, "own", system, f"graph_{name} edge set",
                                    0.0 if same else float("inf"), 0.0 if same else float("inf"),
                                    0.0, "ok" if same else "FAIL",
                                    "" if same else "edge set differs from the stored graph"))


def _compare_outputs(report, case, dtype, graphs_name, system_names, res, ref_z, slices,
                     label: str = ""):
    """Compare every stored output; ``slices`` per system: (atom slice, structure index,
    edge slice in reference order)."""
    suffix = "_f64"
    perm = _align_edges(res["edge_index"], res["cell_offset"],
                        np.asarray(ref_z["main_sym_edge_index"]),
                        np.asarray(ref_z["main_sym_cell_offset"]))
    for output in _output_names(ref_z):
        ref_all = np.asarray(ref_z[output + suffix])
        ours_all = res.get(output)
        for name, (atoms, struct, edges) in zip(system_names, slices):
            if output in EDGE_OUTPUTS:
                if ours_all is None or perm is None:
                    _compare(report, case, dtype, graphs_name, name, output, None, ref_all[edges])
                    report.rows[-1].system = label + name
                    if perm is None:
                        report.rows[-1].note = "main_sym edge set differs from the reference"
                        report.rows[-1].status = "FAIL"
                    continue
                ours, ref = ours_all[perm][edges], ref_all[edges]
            elif output.startswith(("energy_pretrain", "energy_finetune")):
                ours = None if ours_all is None else ours_all[struct]
                ref = ref_all[struct]
            elif output in ("dE_dstrain_finetune", "stress_finetune"):
                ours = None if ours_all is None else ours_all[struct]
                ref = ref_all.reshape(-1, 3, 3)[struct]
            else:
                ours = None if ours_all is None else ours_all[atoms]
                ref = ref_all[atoms]
            _compare(report, case, dtype, graphs_name, name, output, ours, ref)
            report.rows[-1].system = label + name


def check_reference(directory: str | Path, dtypes=("float64", "float32"),
                    graph_modes=("stored", "own"), include_batch: bool = True,
                    verbose: bool = False, device: str | torch.device = "cpu") -> ReferenceReport:
    """Run every check of the fixture in ``directory``; returns the report (see module doc).

    ``device``: where the model runs (graphs are built on the CPU and moved there); the
    tolerances are the fixture's whatever the device (on CUDA, TF32 matmuls must be off, which
    is PyTorch's default for float32 matmuls)."""
    directory = Path(directory)
    device = torch.device(device)
    case_path = directory / "case.json"
    if not case_path.is_file():
        raise FileNotFoundError(f"{case_path} not found (not a reference fixture directory)")
    case = json.loads(case_path.read_text())
    model = build_reference_model(directory, case)
    qint_tags = case["hparams"]["backbone"].get("qint_tags", [1, 2])
    report = ReferenceReport()
    systems = case["systems"]
    loaded = [np.load(directory / s["file"]) for s in systems]
    for dtype_name in dtypes:
        dtype = torch.float64 if dtype_name == "float64" else torch.float32
        suf = "_f64" if dtype_name == "float64" else "_f32"
        for mode in graph_modes:
            per_system_graphs = []
            for system, z in zip(systems, loaded):
                pos = np.asarray(z["pos" + suf])
                cell = np.asarray(z["cell" + suf])
                if mode == "stored":
                    graphs = GOCGraphs.from_arrays(z)
                else:
                    graphs = _own_graphs(z, system, pos.astype(np.float64),
                                         cell.astype(np.float64), qint_tags)
                    _check_graph_sets(report, dtype_name, system["name"], graphs, z)
                per_system_graphs.append(graphs)
                n = pos.shape[0]
                strain = "dE_dstrain_finetune_f64" in z.files
                res = _run(model, dtype, z["atomic_numbers"], pos, cell, np.zeros(n, np.int64),
                           graphs, 1, strain, device)
                _compare_outputs(report, case, dtype_name, mode, [system["name"]], res, z,
                                 [(slice(0, n), 0, slice(None))])
            listed = case.get("files") if isinstance(case.get("files"), dict) else {}
            batch_path = directory / str(listed.get("batch") or listed.get("batch_all")
                                         or "batch_all.npz")
            if include_batch and batch_path.is_file():
                zb = np.load(batch_path)
                natoms = [int(np.asarray(z["atomic_numbers"]).shape[0]) for z in loaded]
                pos = np.concatenate([np.asarray(z["pos" + suf]) for z in loaded])
                cell = np.stack([np.asarray(z["cell" + suf]) for z in loaded])
                graphs = collate_goc_graphs(per_system_graphs, natoms)
                batch = np.repeat(np.arange(len(loaded)), natoms)
                res = _run(model, dtype, zb["atomic_numbers"], pos, cell, batch, graphs,
                           len(loaded), False, device)
                a0 = np.concatenate([[0], np.cumsum(natoms)])
                e0 = np.concatenate([[0], np.cumsum(np.asarray(zb["main_sym_num_neighbors"]))])
                slices = [(slice(a0[i], a0[i + 1]), i, slice(e0[i], e0[i + 1]))
                          for i in range(len(loaded))]
                _compare_outputs(report, case, dtype_name, mode,
                                 [s["name"] for s in systems], res, zb, slices, label="batch:")
                if verbose:
                    print(f"  {dtype_name} {mode} graphs: batch done", flush=True)
    model.to(device="cpu", dtype=torch.float32)
    return report
