"""The stuck-loop watchdog: notices when actions stop having effects and escalates.

Separate from the process watchdog (sd_notify): that one stops pinging when the
pipeline itself hangs; this one handles a pipeline that runs fine while the
agent gets nowhere. Two symptoms: the same action keeps producing
``unchanged`` verdicts, or the screen only cycles between a few states.
What reaches the model as ``avoid``: actions dead ``loop.avoid_after`` times,
and ``wait`` once the agent has waited ``loop.wait_patience_s`` on a screen
that did not change (a student unsure what to do answers "wait" forever; the
screen it waits for would have changed by then).
Escalation, one step at a time and at least ``escalate_every_s`` apart:
1. a different action (``loop.alternatives``) instead of the dead one;
2. ``loop.reset_action`` (a reset action, a key such as F5, or a reset request event);
3. an ``alarm`` event for a person. Any action that changes the picture ends it.
"""

from __future__ import annotations

import collections
import hashlib
import time
from dataclasses import dataclass

import numpy as np

from ..actions import Action, signature
from ..config import LoopConfig
from .verifier import Verdict

CYCLE_WINDOW = 12  # recent decisions looked at for a cycle
CYCLE_STATES = 2  # at most this many distinct screens in the window: a cycle
WAIT = signature(Action(type="wait"))


def parse_action_spec(spec: str) -> Action | None:
    """``key:Escape``, ``scroll:DX:DY``, ``action:reset``; ``event`` -> None (no action)."""
    if spec == "event":
        return None
    kind, _, rest = spec.partition(":")
    if kind == "key" and rest:
        return Action(type="key", key=rest)
    if kind == "scroll":
        dx, _, dy = rest.partition(":")
        return Action(type="scroll", dx=int(dx), dy=int(dy))
    if kind == "action" and rest in ("reset", "wait", "done"):
        return Action(type=rest)
    raise ValueError(f"not an action spec: {spec!r} (key:NAME, scroll:DX:DY, action:reset or event)")


def screen_state(thumb: np.ndarray) -> bytes:
    """A coarse fingerprint of a screen: 16 columns, 4 grey levels; ignores small noise."""
    h, w = thumb.shape
    k = max(1, w // 16)
    coarse = thumb[: (h // k) * k, : (w // k) * k].reshape(h // k, k, w // k, k).mean(axis=(1, 3))
    return hashlib.blake2b(np.floor(coarse * 4).astype(np.uint8).tobytes(), digest_size=8).digest()


@dataclass(frozen=True)
class Escalation:
    level: int  # 1 alternative, 2 reset, 3 alarm
    kind: str
    reason: str
    mono: float
    wall_ts: float

    def event(self) -> dict:
        return {"level": self.level, "step": self.kind, "reason": self.reason, "at": round(self.wall_ts, 3)}


class StuckWatchdog:
    def __init__(self, cfg: LoopConfig, now: float | None = None):
        self.cfg = cfg
        self.alternatives = [a for a in (parse_action_spec(s) for s in cfg.alternatives) if a is not None]
        self.reset = parse_action_spec(cfg.reset_action)
        self.dead: collections.Counter = collections.Counter()  # signature -> unchanged verdicts
        self.last_change = time.monotonic() if now is None else now
        self.level = 0
        self.level_since: float | None = None
        self.states: collections.deque[bytes] = collections.deque(maxlen=CYCLE_WINDOW)
        self.history: list[Escalation] = []
        self.waiting: tuple[float, bytes | None] | None = None  # since when, on which screen
        self.impatient = False  # waited long enough on this screen: wait is avoided until it changes

    def on_verdict(self, v: Verdict, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if v.result == "changed" and not self.cycling():
            self.dead.clear()
            self.last_change = now
            self.level, self.level_since = 0, None
            self.impatient = False
        else:
            self.dead[signature(v.action)] += 1

    def on_state(self, state: bytes) -> None:
        if self.states and state != self.states[-1]:  # what it waited for may have come
            self.waiting, self.impatient = None, False
        self.states.append(state)

    def avoid(self) -> frozenset:
        """Signatures the model should steer around (``runtime.avoid``)."""
        dead = {sig for sig, n in self.dead.items() if n >= self.cfg.avoid_after}
        return frozenset(dead | {WAIT}) if self.impatient else frozenset(dead)

    def _waited(self, action: Action, now: float) -> None:
        if action.type != "wait":
            self.waiting = None
            return
        state = self.states[-1] if self.states else None
        if self.waiting is None:
            self.waiting = (now, state)
        elif now - self.waiting[0] >= self.cfg.wait_patience_s:
            self.impatient = True

    def cycling(self) -> bool:
        return len(self.states) == CYCLE_WINDOW and len(set(self.states)) <= CYCLE_STATES

    def stuck(self, now: float) -> bool:
        return (bool(self.dead) and now - self.last_change > self.cfg.stuck_after_s) or self.cycling()

    def review(self, action: Action, now: float | None = None) -> tuple[Action | None, Escalation | None]:
        """The action to send instead of ``action`` (None: send nothing) and the step taken, if any."""
        now = time.monotonic() if now is None else now
        self._waited(action, now)
        due = self.level_since is None or now - self.level_since >= self.cfg.escalate_every_s
        if self.level >= 1 and due and self.stuck(now):
            if self.level == 1:
                step = self._escalate(2, "reset", "no visual change after trying other actions", now)
                return (self.reset if self.reset is not None else action), step
            if self.level == 2:
                return action, self._escalate(3, "alarm", "still stuck after a reset", now)
        if self.dead[signature(action)] >= self.cfg.max_repeats or (self.level == 0 and self.cycling()):
            alt = self._alternative()
            step = None
            if self.level == 0:
                why = "screen cycles between a few states" if self.cycling() else (
                    f"{action.type} had no visible effect {self.dead[signature(action)]} times")
                step = self._escalate(1, "alternative", why, now)
            return alt, step
        return action, None

    def _alternative(self) -> Action | None:
        live = [a for a in self.alternatives if self.dead[signature(a)] < self.cfg.max_repeats]
        return live[0] if live else Action(type="wait")

    def _escalate(self, level: int, kind: str, reason: str, now: float) -> Escalation:
        self.level, self.level_since = level, now
        step = Escalation(level, kind, reason, now, time.time())
        self.history.append(step)
        return step
