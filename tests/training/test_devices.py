"""GPU preparation that must happen before the trainer starts."""

import os

from openjmp.training.devices import prepare_deterministic_cuda


def test_cublas_workspace_is_fixed_for_deterministic_gpu_runs(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    prepare_deterministic_cuda(True, "cpu")
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    prepare_deterministic_cuda(False, "gpu")
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    prepare_deterministic_cuda(True, "gpu")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's choice is kept
    prepare_deterministic_cuda(True, "auto")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
