"""The shipped openjmp-mini weights: card == config file, hash, loadable by name, right heads."""

import hashlib
import json
from importlib import resources
from pathlib import Path

import yaml

from openjmp.models.registry import create_model, resolve_pretrained_file

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = Path(str(resources.files("openjmp") / "assets" / "weights"))


def test_card_config_equals_the_shipped_config_file():
    card = json.loads((WEIGHTS / "openjmp-mini.json").read_text())
    shipped = yaml.safe_load((ROOT / card["config_file"]).read_text())
    assert card["config"] == shipped
    assert card["config_file"] == "configs/pretrain/mini.yaml"
    assert card["steps"] == shipped["trainer"]["max_steps"]
    assert card["tasks"] == [d["name"] for d in shipped["datasets"]]
    md = (WEIGHTS / "openjmp-mini.md").read_text()
    assert card["sha256"] in md


def test_weights_match_the_card_and_load_by_name():
    card = json.loads((WEIGHTS / "openjmp-mini.json").read_text())
    path = resolve_pretrained_file("openjmp-mini")
    assert path.stat().st_size <= 20 * 2**20
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["sha256"]
    model = create_model("openjmp-mini", pretrained=True)
    assert len(model.output.out_energy) == len(card["tasks"])
    from openjmp.checkpoints.format import load_model_file

    mf = load_model_file(path)
    assert list(mf.heads) == card["tasks"]
    assert mf.ema_state_dict is not None
    # validation errors were falling during pre-training on every dataset
    history = card["validation_history"]
    for name in card["tasks"]:
        first, last = history[0]["datasets"][name], history[-1]["datasets"][name]
        assert last["energy_mae_meV_per_atom"] < first["energy_mae_meV_per_atom"]
