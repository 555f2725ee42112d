"""Settings that must be in place before a GPU run starts."""

from __future__ import annotations

import os


def prepare_deterministic_cuda(deterministic: bool, accelerator: str) -> None:
    """With ``deterministic: true`` Lightning calls ``torch.use_deterministic_algorithms(True)``;
    on CUDA, cuBLAS then refuses to run unless ``CUBLAS_WORKSPACE_CONFIG`` fixes its workspace
    (RuntimeError at the first matmul). Set it (unless the user did) for every accelerator that
    may be a GPU. It takes effect only before the process's first cuBLAS call, which is why it is
    set here, before the trainer is built."""
    if deterministic and accelerator.lower() != "cpu":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def evaluation_device(accelerator: str) -> str:
    """The torch device for evaluating a model after training with Lightning's ``accelerator``
    (one device: the first GPU when the run used GPUs)."""
    import torch

    if accelerator.lower() in ("gpu", "cuda") or (accelerator.lower() == "auto"
                                                  and torch.cuda.is_available()):
        return "cuda"
    return "cpu"
