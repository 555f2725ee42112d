"""Forgetting with and without replay: fine-tune rMD17 ethanol from openjmp-mini, then measure
mini-ani1x validation errors of (a) the co-trained replayed head and (b) the original openjmp-mini
head on the fine-tuned backbone (the backbone's direct-force outputs that fine-tuning without
replay does not train are taken from openjmp-mini).

    python scripts/compare_replay.py [--steps 100] [--out runs/compare-replay] [--case no_replay --case replay:1.0:1.0]

Case ``replay:WEIGHT:FRACTION``; writes OUT/compare.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "src/openjmp/configs/finetune/mini/rmd17_ethanol_replay.yaml"


def run_case(label: str, overrides: list[str], steps: int, out: Path) -> dict:
    import torch

    from openjmp.checkpoints.format import load_model_file
    from openjmp.configuration import load_config
    from openjmp.models.registry import load_model, resolve_pretrained_file
    from openjmp.training.finetune import run_finetuning
    from openjmp.training.finetune_config import FinetuneConfig
    from openjmp.training.replay import build_replay

    common = [f"trainer.max_steps={steps}", "trainer.val_every_n_steps=50", "trainer.progress_bar=false"]
    cfg = load_config(FinetuneConfig, CONFIG, common + overrides + [f"output_dir={out / label}"])
    t0 = time.perf_counter()
    summary = run_finetuning(cfg)
    wall = time.perf_counter() - t0
    # the original mini-ani1x head on the fine-tuned backbone
    reference_cfg = load_config(FinetuneConfig, CONFIG, [f"output_dir={out / 'unused'}"])
    model, _ = load_model(resolve_pretrained_file("openjmp-mini"))
    tuned = load_model_file(out / label / "model.pt").weights()
    state = model.state_dict()
    for key in state:
        if key.startswith(("embedding.", "backbone.")) and key in tuned and tuned[key].shape == state[key].shape:
            state[key] = tuned[key]
    model.load_state_dict(state)
    original = build_replay(reference_cfg, model).evaluate(model, torch.float32)["mini-ani1x"]
    test = summary["test"]["metrics"]
    replay = summary.get("replay") or {}
    return {
        "wall_s": wall,
        "ethanol_test_energy_mae_eV": test["energy/energy"]["mae"],
        "ethanol_test_force_mae_eV_per_A": test["energy/forces"]["mae"],
        "ani1x_before": (replay.get("val_before") or {}).get("mini-ani1x"),
        "ani1x_cotrained_head_after": (replay.get("val_after") or {}).get("mini-ani1x"),
        "ani1x_original_head_after": original,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path("runs/compare-replay"))
    p.add_argument("--case", action="append", default=None, help="no_replay or replay:WEIGHT:FRACTION")
    args = p.parse_args(argv)
    cases = args.case or ["no_replay", "replay:0.1:0.5", "replay:1.0:1.0"]
    results = {}
    for case in cases:
        if case == "no_replay":
            overrides = ["replay=null"]
        else:
            _, weight, fraction = case.split(":")
            overrides = [f"replay.weight={weight}", f"replay.fraction={fraction}"]
        results[case] = run_case(case.replace(":", "_"), overrides, args.steps, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps({"steps": args.steps, "results": results}, indent=2))
    print(f"{'case':16} {'ethanol E MAE eV':>16} {'ethanol F MAE':>14} {'ani1x head':>10} "
          f"{'E meV/atom':>10} {'F eV/A':>8} {'loss':>6}")
    for case, r in results.items():
        rows = [("original", r["ani1x_original_head_after"])]
        if r["ani1x_cotrained_head_after"]:
            rows.append(("co-trained", r["ani1x_cotrained_head_after"]))
        for head, m in rows:
            print(f"{case:16} {r['ethanol_test_energy_mae_eV']:16.4f} {r['ethanol_test_force_mae_eV_per_A']:14.4f} "
                  f"{head:>10} {m['energy_mae_meV_per_atom']:10.1f} {m['force_mae_eV_per_A']:8.4f} {m['loss']:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
