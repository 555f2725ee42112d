"""Bias-free linear map y = x W^T for float32 on CPU through oneDNN, with an autograd backward.

Why: on the machines we measured (AMD EPYC, torch 2.13 CPU wheel) the default float32 GEMM
(MKL, used by ``torch.nn.functional.linear``) reaches ~91 GFLOP/s on one core for the
(E, 512) x (512, 512) products that dominate GemNet-OC, while oneDNN's matmul
(``torch.ops.mkldnn._linear_pointwise``, the kernel inductor uses for CPU linears) reaches
~108 GFLOP/s; for the narrow products (K or N = 16 ... 64) the gap is 1.3-5x. Same math: each
output element is the same dot product, summed in another order (differences at float32
rounding level, ~1e-6 relative).

:func:`linear` takes the oneDNN path only where it applies (float32 CPU tensors, no autocast,
not being traced by TorchDynamo, non-empty) and otherwise calls ``F.linear``; so float64 (the
reference checks), bf16 autocast and ``torch.compile`` behave as before. Backward: the input
gradient g W also goes through oneDNN; the weight gradient g^T x stays on ``torch.mm`` (MKL
is faster for that (512, E) x (E, 512) shape). Under ``create_graph=True`` (training on
gradient forces) the backward uses differentiable aten matmuls.

:func:`set_onednn_enabled` switches the path off process-wide (A/B benchmarks, debugging);
the environment variable ``OPENJMP_ONEDNN=0`` does the same at import.
"""

from __future__ import annotations

import os

import torch

_LINEAR_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _available() -> bool:
    try:
        return _LINEAR_POINTWISE is not None and torch.backends.mkldnn.is_available()
    except (AttributeError, RuntimeError):
        return False


_ENABLED = _available() and os.environ.get("OPENJMP_ONEDNN", "1") != "0"


def set_onednn_enabled(enabled: bool) -> bool:
    """Turn the oneDNN path on/off; returns the previous setting. Enabling is a no-op where
    oneDNN is not available."""
    global _ENABLED
    previous = _ENABLED
    _ENABLED = bool(enabled) and _available()
    return previous


def onednn_enabled() -> bool:
    return _ENABLED


def _dnn(x: torch.Tensor, weight: torch.Tensor, post_op: str = "none") -> torch.Tensor:
    """x (rows, in) @ weight (out, in)^T, optionally with oneDNN's fused "swish" (= silu)."""
    return _LINEAR_POINTWISE(x, weight, None, post_op, [], "")


def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True where :func:`linear` takes the oneDNN path for these operands."""
    return (_ENABLED and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.device.type == "cpu" and weight.device.type == "cpu" and x.dim() == 2
            and x.shape[0] > 0 and x.shape[1] > 0 and weight.shape[0] > 0
            and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling())


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _dnn(x, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if torch.is_grad_enabled():
            # create_graph=True: differentiable formulas (second derivatives)
            if ctx.needs_input_grad[0]:
                grad_x = grad.matmul(weight)
            if ctx.needs_input_grad[1]:
                grad_w = grad.t().matmul(x)
            return grad_x, grad_w
        grad = grad.contiguous()
        if ctx.needs_input_grad[0]:
            grad_x = _dnn(grad, weight.t())  # g W = g (W^T)^T
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(grad.t(), x)
        return grad_x, grad_w


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (..., in) @ weight (out, in)^T, bias-free; oneDNN where :func:`applies`."""
    if x.dim() != 2 and x.dim() > 0:
        lead = x.shape[:-1]
        return linear(x.reshape(-1, x.shape[-1]), weight).reshape(*lead, weight.shape[0])
    if not applies(x, weight):
        return torch.nn.functional.linear(x, weight)
    x = x.contiguous()
    weight = weight.contiguous()
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _OneDNNLinear.apply(x, weight)
    return _dnn(x, weight)


def linear_silu_nograd(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor | None:
    """silu(x @ weight^T) in one oneDNN call (fused post-op) when no gradient is recorded and
    :func:`applies`; None otherwise (the caller then uses the unfused path)."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return None
    if not applies(x, weight):
        return None
    return _dnn(x.contiguous(), weight.contiguous(), "swish")
