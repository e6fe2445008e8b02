"""The stuck-loop watchdog: notices when actions stop having effects and escalates.

Separate from the process watchdog (sd_notify): that one stops pinging when the
pipeline itself hangs; this one handles a pipeline that runs fine while the
agent gets nowhere. Two symptoms: the same action keeps producing
``unchanged`` verdicts, or the screen only cycles between a few states.
What reaches the model as ``avoid``: actions dead ``loop.avoid_after`` times,
and ``wait`` once the agent has waited ``loop.wait_patience_s`` on a screen
that did not change (a student unsure what to do answers "wait" forever; the
screen it waits for would have changed by then).
Dead means: no visible change (once is counted; the executor's ``failed`` is
certain and counts in full), or a change back to a screen already seen (a
toggle clicked twice: no way forward, counts in full). A dead click is the
element under it (``loop.elements``), else its signature cell. It stays dead
while its part of the screen looks as it did when it was found dead: changes
that the agent's own actions made elsewhere (a toast) leave it, a new screen
the app made by itself (an error cleared) revives all but the executor's failures
(nothing is there to act on; live content such as a chart changes the screen
all the time).
Escalation, one step at a time and at least ``escalate_every_s`` apart:
1. a different action (``loop.alternatives``) instead of the dead one;
2. ``loop.reset_action`` (a reset action, a key such as F5, or a reset request event);
3. an ``alarm`` event for a person. Any action that leads to a new screen ends it.
"""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from ..actions import NORM, ONE_POINT, Action, DeadArea, signature, signature_cell
from ..config import LoopConfig
from .elements import element_at
from .verifier import Verdict, region_changed

CYCLE_WINDOW = 12  # recent decisions looked at for a cycle
CYCLE_STATES = 2  # at most this many distinct screens in the window: a cycle
SCREENS_KEPT = 64  # screens remembered to tell a return to an earlier one
DEAD_KEPT = 64  # dead actions remembered (oldest forgotten first)
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


def same_screen(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    """No thumbnail pixel differs by more than the verifier's ``pixel_threshold``: the thumbnail's block
    averages swallow sensor noise, while a ticked box or another toast's words still tell two apart."""
    return a.shape == b.shape and bool((np.abs(a - b) <= threshold).all())


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


@dataclass
class _Dead:
    """An action found dead, and how the screen looked then: it stays dead while ``region`` (0..1000;
    None: the whole screen) looks as it did in ``ref`` (None: found before any screen was seen)."""

    key: Hashable  # what reaches the model: a signature, or a DeadArea for a click on an element
    ref: np.ndarray | None
    region: tuple[int, int, int, int] | None
    count: int = 0
    certain: bool = False  # the executor said it failed: nothing there to act on, whatever else changes

    def matches(self, action: Action) -> bool:
        if isinstance(self.key, DeadArea):
            return action.x is not None and action.y is not None and self.key.holds(action.type, action.x, action.y)
        return self.key == signature(action)


class StuckWatchdog:
    def __init__(self, cfg: LoopConfig, now: float | None = None):
        self.cfg = cfg
        self.alternatives = [a for a in (parse_action_spec(s) for s in cfg.alternatives) if a is not None]
        self.reset = parse_action_spec(cfg.reset_action)
        self.dead: list[_Dead] = []
        self.screen: np.ndarray | None = None  # the thumbnail of the screen being decided on
        self.seen: collections.deque[np.ndarray] = collections.deque(maxlen=SCREENS_KEPT)
        self.expected: np.ndarray | None = None  # the screen the last action changed it to
        self.last_change = time.monotonic() if now is None else now
        self.level = 0
        self.level_since: float | None = None
        self.states: collections.deque[bytes] = collections.deque(maxlen=CYCLE_WINDOW)
        self.history: list[Escalation] = []
        self.waiting: tuple[float, bytes | None] | None = None  # since when, on which screen
        self.impatient = False  # waited long enough on this screen: wait is avoided until it changes

    def on_verdict(self, v: Verdict, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if v.result == "changed":
            self.expected = v.after
            back = v.after is not None and self._seen(v.after)
            if not back and not self.cycling():
                self.last_change = now
                self.level, self.level_since = 0, None
                self.impatient = False
                return
            if back:  # it led to a screen already seen: that is no way forward from here
                self._found_dead(v, self.cfg.avoid_after)
                return
        # the executor saying it failed is certain; a picture that did not change may yet (a slow app)
        certain = v.status in ("failed", "rejected")
        self._found_dead(v, self.cfg.avoid_after if certain else 1, certain)

    def on_state(self, thumb: np.ndarray) -> None:
        """The screen about to be decided on (the grey thumbnail every stage shares)."""
        state = screen_state(thumb)
        seen = self._seen(thumb)
        if self.screen is not None and not same_screen(self.screen, thumb, self.cfg.pixel_threshold):
            ours = self.expected is not None and same_screen(self.expected, thumb, self.cfg.pixel_threshold)
            if not ours and not seen and self._much_changed(self.screen, thumb):
                # the app changed on its own (an error cleared): what did nothing may work now
                self.dead = [d for d in self.dead if d.certain]
            self.expected = None
        if not seen:
            self.seen.append(thumb)
        self.screen = thumb
        if self.states and state != self.states[-1]:  # what it waited for may have come
            self.waiting, self.impatient = None, False
        self.states.append(state)

    def avoid(self) -> frozenset:
        """What the model should steer around (``runtime.avoid``): signatures and dead elements."""
        dead = {d.key for d in self._standing() if d.count >= self.cfg.avoid_after}
        return frozenset(dead | {WAIT}) if self.impatient else frozenset(dead)

    def dead_count(self, action: Action) -> int:
        """How often ``action`` was found dead on a screen that looks like this one."""
        return max((d.count for d in self._standing() if d.matches(action)), default=0)

    def _standing(self) -> list[_Dead]:
        return [d for d in self.dead if self.screen is None or self._looks_same(d, self.screen)]

    def _found_dead(self, v: Verdict, n: int, certain: bool = False) -> None:
        action = v.action
        ref = v.before if v.before is not None else self.screen
        entry = next((d for d in self.dead if d.matches(action) and (ref is None or self._looks_same(d, ref))), None)
        if entry is None:
            key, region = self._identity(v)
            entry = _Dead(key, ref, region)
            self.dead = self.dead[-(DEAD_KEPT - 1):] + [entry]
        entry.count += n
        entry.certain |= certain

    def _identity(self, v: Verdict) -> tuple[Hashable, tuple[int, int, int, int] | None]:
        """What was dead and the part of the screen it depends on: for a click, the element under it
        (else its signature cell); for anything else the whole screen."""
        a = v.action
        if a.type not in ONE_POINT or a.x is None or a.y is None:
            return signature(a), None
        area = element_at(v.image, a.x, a.y, a.type) if v.image is not None else None
        if area is not None:
            return area, area.box
        return signature(a), signature_cell(a.x, a.y)

    def _looks_same(self, d: _Dead, thumb: np.ndarray) -> bool:
        if d.ref is None:
            return True
        if d.ref.shape != thumb.shape:
            return False
        if d.region is None:
            return same_screen(d.ref, thumb, self.cfg.pixel_threshold)
        h, w = thumb.shape
        x0, y0, x1, y1 = d.region
        # one thumbnail pixel of margin: an element's edge blends into its neighbours'
        sl = (slice(max(0, y0 * h // NORM - 1), min(h, -(-y1 * h // NORM) + 1)),
              slice(max(0, x0 * w // NORM - 1), min(w, -(-x1 * w // NORM) + 1)))
        return same_screen(d.ref[sl], thumb[sl], self.cfg.pixel_threshold)

    def _seen(self, thumb: np.ndarray) -> bool:
        return any(same_screen(s, thumb, self.cfg.pixel_threshold) for s in self.seen)

    def _much_changed(self, a: np.ndarray, b: np.ndarray) -> bool:
        if a.shape != b.shape:
            return True
        diff = np.abs(a - b) > self.cfg.pixel_threshold
        return float(diff.mean()) > self.cfg.global_fraction or region_changed(diff, self.cfg)

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
        return (bool(self._standing()) and now - self.last_change > self.cfg.stuck_after_s) or self.cycling()

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
        repeats = self.dead_count(action)
        if repeats >= self.cfg.max_repeats or (self.level == 0 and self.cycling()):
            alt = self._alternative()
            step = None
            if self.level == 0:
                why = "screen cycles between a few states" if self.cycling() else (
                    f"{action.type} had no visible effect {repeats} times")
                step = self._escalate(1, "alternative", why, now)
            return alt, step
        return action, None

    def _alternative(self) -> Action | None:
        live = [a for a in self.alternatives if self.dead_count(a) < self.cfg.max_repeats]
        return live[0] if live else Action(type="wait")

    def _escalate(self, level: int, kind: str, reason: str, now: float) -> Escalation:
        self.level, self.level_since = level, now
        step = Escalation(level, kind, reason, now, time.time())
        self.history.append(step)
        return step
