"""Helpers shared by the verbs."""

from __future__ import annotations


def check_device(device: str) -> None:
    """A ``--device`` this machine has, else a one-line user error (exit status 2)."""
    from openjmp.cli.main import UserError

    text = str(device)
    try:
        import torch

        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {text}: not a torch device (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {text}: CUDA is not available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UserError(f"--device {text}: MPS is not available on this machine (use --device cpu)")
