"""GPU checks: every test here runs on ``OPENJMP_TEST_DEVICE`` (default ``cuda``) and is skipped,
with the reason shown, on a machine without CUDA. ``OPENJMP_TEST_DEVICE=cpu`` runs the same checks
on the CPU (how the tests themselves are tested where no GPU is at hand).

Run: ``pytest tests/gpu`` on a machine with a GPU (``make test-gpu``)."""

import os
import sys
from pathlib import Path

import pytest
import torch

from openjmp.training.devices import prepare_deterministic_cuda

# the tests run CUDA matmuls before any trainer starts; the workspace setting must come first
prepare_deterministic_cuda(True, "gpu")

# the fine-tuning, pre-training and inference test helpers are shared with these tests
_TESTS = Path(__file__).resolve().parents[1]
for sub in ("training", "inference"):
    if str(_TESTS / sub) not in sys.path:
        sys.path.insert(0, str(_TESTS / sub))


@pytest.fixture(scope="session")
def device() -> torch.device:
    name = os.environ.get("OPENJMP_TEST_DEVICE", "cuda")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (these checks run on a GPU machine: make test-gpu)")
    return dev


@pytest.fixture(scope="session")
def accelerator(device) -> str:
    """Lightning's name for the device."""
    return "gpu" if device.type == "cuda" else "cpu"
