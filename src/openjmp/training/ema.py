"""Exponential moving average of model weights (JMP: decay 0.99).

``ema = decay * ema + (1 - decay) * weights`` after every optimiser step, for floating-point
parameters; buffers are copied. `swapped_in` temporarily puts the EMA weights into the model
(validation, checkpoint export) and restores the training weights afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class ExponentialMovingAverage:
    def __init__(self, model: nn.Module, decay: float = 0.99) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        for name, p in model.named_parameters():
            if name in self.shadow:
                shadow = self.shadow[name]
                if shadow.device != p.device:
                    # the trainer moved the model (CPU -> GPU) after the EMA was made: follow it
                    shadow = self.shadow[name] = shadow.to(p.device)
                shadow.lerp_(p.detach(), 1.0 - self.decay)

    def swap_in(self, model: nn.Module) -> None:
        """Put the EMA weights into ``model``, keeping the training weights for `restore`.

        (Two calls instead of a context manager where the swap spans hooks, e.g. the start and
        end of a validation epoch.)"""
        params = dict(model.named_parameters())
        self._backup = {name: params[name].detach().clone() for name in self.shadow}
        with torch.no_grad():
            for name, value in self.shadow.items():
                params[name].copy_(value)

    def restore(self, model: nn.Module) -> None:
        """Undo `swap_in` (no-op when nothing is swapped in)."""
        backup, self._backup = getattr(self, "_backup", None), None
        if backup is None:
            return
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in backup.items():
                params[name].copy_(value)

    @contextmanager
    def swapped_in(self, model: nn.Module):
        self.swap_in(model)
        try:
            yield model
        finally:
            self.restore(model)

    def ema_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state dict with EMA values in place of the trained parameters."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for name, value in self.shadow.items():
            state[name] = value.detach().clone()
        return state

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state lacks parameters: {sorted(missing)[:5]}...")
        for name, value in state["shadow"].items():
            if name in self.shadow:
                self.shadow[name].copy_(value)

    def to(self, device) -> ExponentialMovingAverage:
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self
