"""Ship a pre-training run as packaged weights with a model card.

    python scripts/ship_pretrained.py RUN_DIR [--name openjmp-mini] [--config configs/pretrain/mini.yaml]
        [--wall-time-s SECONDS] [--note TEXT]

Copies RUN_DIR/model.pt to src/openjmp/assets/weights/NAME.pt and writes NAME.json (machine-
readable card: sha256, the pre-training config file's content, steps, wall time, machine,
validation errors per domain) and NAME.md (the human-readable card).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _basis_line(config: dict) -> str:
    """One line on the basis flavour of a pre-training config (docs/forces.md)."""
    backbone = config.get("model", {}).get("backbone", {})
    cutoffs = backbone.get("rbf_cutoffs")
    if (backbone.get("sbf") or {}).get("name") == "legendre_outer_smooth" and cutoffs:
        per = ", ".join(f"{g} {c:g} Å" for g, c in cutoffs.items())
        return (f"smooth basis (docs/forces.md): dihedral terms vanish at collinear atoms, radial "
                f"bases end at each graph's cutoff ({per}), neighbour caps that do not cut; "
                f"energies are continuous")
    return "the original GemNet-OC basis (docs/forces.md)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--name", default="openjmp-mini")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "pretrain" / "mini.yaml")
    p.add_argument("--wall-time-s", type=float, default=None)
    p.add_argument("--note", default="")
    p.add_argument("--threads", type=int, default=1, help="torch threads the run used")
    args = p.parse_args()
    from openjmp.checkpoints.format import load_model_file

    src = args.run_dir / "model.pt"
    summary = json.loads((args.run_dir / "summary.json").read_text())
    mf = load_model_file(src)
    out_dir = ROOT / "src" / "openjmp" / "assets" / "weights"
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{args.name}.pt"
    tmp = dest.with_suffix(".pt.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    digest = sha256(dest)
    params = sum(v.numel() for k, v in mf.state_dict.items() if not k.endswith(("rbf.offset", "rbf.temps", "scale_factor")))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    last = summary["validation"][-1] if summary["validation"] else {}
    card = {
        "name": args.name, "file": dest.name, "sha256": digest, "bytes": dest.stat().st_size,
        "config_file": str(args.config.relative_to(ROOT)) if args.config.is_relative_to(ROOT) else str(args.config),
        "config": yaml.safe_load(args.config.read_text()),
        "tasks": summary["tasks"], "steps": summary["steps"], "wall_time_s": args.wall_time_s,
        "machine": {"cpu": cpu, "threads": args.threads, "cores_on_machine": os.cpu_count(), "note": args.note},
        "parameters": params, "validation": last, "validation_history": summary["validation"],
        "normalizers": summary["normalizers"],
    }
    (out_dir / f"{args.name}.json").write_text(json.dumps(card, indent=1))
    rows = "\n".join(
        f"| {n} | {m['energy_mae_meV_per_atom']:.1f} | {m['energy_mae_eV']:.3f} | {1000 * m['force_mae_eV_per_A']:.0f} | {m['structures']} |"
        for n, m in last.get("datasets", {}).items())
    md = f"""# Model card: {args.name}

GemNet-OC (openjmp's implementation) pre-trained with the JMP recipe on openjmp's shipped mini
suite: per-dataset energy and direct-force heads, per-element linear references and unit
scaling, temperature sampling T = 2, structure-wise loss, AdamW + warm-up/cosine, EMA 0.99,
edge dropout 0.1 on the a2a graph.

- **Reproduce**: `openjmp pretrain --config {card['config_file']}` (the config below, verbatim;
  same steps, same data, same seed; bit-identical only with the same thread count).
- **Data**: {', '.join(summary['tasks'])} from `src/openjmp/assets/mini/` (EMT slabs + adsorbates;
  GFN2-xTB conformers and NEB reaction paths; see each dataset's CARD.md). Levels of theory are
  EMT and GFN2-xTB, not the DFT of the real datasets.
- **Architecture**: {params / 1e6:.2f} M parameters (backbone + 3 head pairs); preset `openjmp_mini`;
  {_basis_line(card['config'])}
- **Forces**: each head has an energy MLP and a direct-force MLP; the table below scores the
  direct one, which is what the calculator, `predict`, `md` and `relax` use by default (the
  forces the head was trained on; not conservative). `forces="gradient"` gives −dE/dx of the
  energy MLP: conservative (NVE conserves energy), but that MLP was fitted to energies only, so
  its gradient is not a trained force (docs/forces.md). For MD, fine-tune with gradient forces.
- **Training**: {summary['steps']} optimisation steps of 8 structures; wall time
  {'%.0f min' % (args.wall_time_s / 60) if args.wall_time_s else 'n/a'} on {cpu}, {args.threads} thread(s)
  (the machine's 2 cores were shared with other work). {args.note}
- **File**: `{dest.name}`, {dest.stat().st_size / 2**20:.1f} MiB, sha256 `{digest}`; raw and EMA weights
  (EMA used by default), normalisers and graph settings per head (`docs/model-files.md`).
- **Licence**: MIT (trained by openjmp on data openjmp generated).

## Validation (EMA weights, step {last.get('step')})

| dataset | energy MAE [meV/atom] | energy MAE [eV] | force MAE [meV/Å] | structures |
|---|---|---|---|---|
{rows}

## Config (`{card['config_file']}`)

```yaml
{args.config.read_text().strip()}
```
"""
    (out_dir / f"{args.name}.md").write_text(md)
    print(f"shipped {dest} ({dest.stat().st_size / 2**20:.1f} MiB, sha256 {digest})")


if __name__ == "__main__":
    main()
