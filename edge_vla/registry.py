"""Backends by name: a ``"module:Class"`` target per name, imported only when that name is chosen,
so an unused backend's dependencies (PyAV, the simulator, torch) are never loaded."""

from __future__ import annotations

import importlib


class Registry:
    def __init__(self, what: str, targets: dict[str, str]):
        self.what = what  # for messages: "source.kind", "policy.kind", "family"
        self._targets = dict(targets)

    def register(self, name: str, target: str) -> None:
        """Make ``name`` build ``target`` ("module:Class")."""
        self._targets[name] = target

    def names(self) -> list[str]:
        return sorted(self._targets)

    def get(self, name: str) -> type:
        """The class registered as ``name``; ``LookupError`` naming the known ones if there is none."""
        target = self._targets.get(name)
        if target is None:
            raise LookupError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}")
        module, _, cls = target.partition(":")
        return getattr(importlib.import_module(module), cls)
