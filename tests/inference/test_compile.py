"""torch.compile path of Predictor: numerically equal to eager (slow: compilation takes minutes
on one CPU thread, so it runs only with --runslow)."""

from __future__ import annotations

import pytest
import torch
from inference_helpers import slab, water_dimer, write_model_file

from openjmp.data.record import AtomsRecord
from openjmp.inference import load_predictor


@pytest.mark.slow
def test_compiled_equals_eager(tmp_path):
    path = write_model_file(tmp_path / "m.pt", cutoff=5.0, max_neighbors=60)
    eager = load_predictor(path, dtype="float64", stress=True)
    compiled = load_predictor(path, dtype="float64", stress=True, compile=True)
    assert compiled.compiled
    # two sizes, one periodic: dynamic shapes must not give wrong numbers
    for atoms in (water_dimer(), slab()):
        record = AtomsRecord.from_atoms(atoms)
        a = eager.predict_batch([record])
        b = compiled.predict_batch([record])
        torch.testing.assert_close(b["energy"], a["energy"], rtol=0, atol=1e-9)
        torch.testing.assert_close(b["forces"], a["forces"], rtol=0, atol=1e-9)
        if atoms.pbc.all():
            torch.testing.assert_close(b["stress"], a["stress"], rtol=0, atol=1e-10)
