"""Helpers for checkpoint tests: classes living in a throwaway module the loader has never seen."""

from __future__ import annotations

import sys
import types

import pytest


class ThrowawayModule:
    """Creates ``name`` (and its parent package) in ``sys.modules`` so that pickle can save
    objects of classes defined in it; ``forget()`` removes it again so nothing can import it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.parts = name.split(".")
        self.modules: list[str] = []
        self.module = None
        parent = None
        for i in range(1, len(self.parts) + 1):
            mod_name = ".".join(self.parts[:i])
            mod = types.ModuleType(mod_name)
            sys.modules[mod_name] = mod
            self.modules.append(mod_name)
            if parent is not None:
                setattr(parent, self.parts[i - 1], mod)
            parent = mod
        self.module = parent

    def define(self, source: str) -> types.ModuleType:
        exec(source, self.module.__dict__)
        for value in list(self.module.__dict__.values()):
            if isinstance(value, type):
                value.__module__ = self.name
        return self.module

    def forget(self) -> None:
        for mod_name in self.modules:
            sys.modules.pop(mod_name, None)


@pytest.fixture
def throwaway_module():
    made: list[ThrowawayModule] = []

    def make(name: str) -> ThrowawayModule:
        mod = ThrowawayModule(name)
        made.append(mod)
        return mod

    yield make
    for mod in made:
        mod.forget()
