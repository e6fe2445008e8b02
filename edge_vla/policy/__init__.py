"""Policies: frame + instruction -> Decision. Chosen by ``policy.kind``.

``decide`` is synchronous and may be CPU-heavy; the pipeline calls it in a
worker thread. Backends are named with their import path so that only the
selected one is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..actions import Action
from ..config import Settings
from ..frames import Frame
from ..registry import Registry


@dataclass(frozen=True)
class Decision:
    action: Action
    model: str
    stages_ms: dict[str, float] = field(default_factory=dict)  # time per policy step
    # what the choice was made among, for people watching (the live view); kept as references and
    # converted only when someone looks: the element layer (``perception.layer.ElementLayer``) and
    # the region of interest the model focused on (0..1000 box)
    layer: Any = None
    focus: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class DecisionContext:
    """What the closed loop knows: recent verdicts, and actions that keep having no effect.

    Given to policies whose ``decide`` takes a ``context`` keyword.
    """

    verdicts: tuple = ()
    avoid: frozenset = frozenset()  # dead actions: actions.signature() tuples and actions.DeadArea
    sent: Action | None = None  # the last action sent on this stream under the current goal


class Policy(Protocol):
    name: str

    def decide(self, frame: Frame, instruction: str) -> Decision: ...

    def close(self) -> None: ...


POLICIES = Registry("policy.kind", {
    "onnx": "edge_vla.policy.onnx:OnnxPolicy",
    "oracle": "edge_vla.policy.oracle:OraclePolicy",
    "replay": "edge_vla.policy.replay:ReplayPolicy",
    "oracle-blind": "edge_vla.policy.oracle:BlindOraclePolicy",
})
register = POLICIES.register


def create_policy(settings: Settings, **extra: Any) -> Policy:
    """``extra`` carries what some policies need from the wiring (the oracle needs the sim world)."""
    try:
        policy = POLICIES.get(settings.policy.kind)
    except LookupError as exc:
        raise ValueError(str(exc)) from None
    return policy(settings, **extra)
