"""The replay policy: follow a recorded golden run by visual matching, re-issuing its actions.

``policy.kind = "replay"`` with ``memory.replay_run = NAME`` (and ``memory.path``).
The golden run's actions become steps. For the next step the policy waits until
the live screen looks like the frame the action was taken on (the best match
among the golden frames from the previous step up to that frame, and at least
``MATCH_MIN`` cosine similarity), then issues the action. It verifies each step:
the following live frames must look more like the golden frames after the action
than like the one before it; if not within ``RETRY_S`` the action is issued
again (at most ``MAX_RETRIES`` times, then the policy asks for a ``reset``).
After the last step it answers ``done``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import structlog

from ..actions import Action
from ..config import Settings
from ..frames import Frame
from . import Decision

log = structlog.get_logger(__name__)

MATCH_MIN = 0.9
VERIFY_MARGIN = 0.002
RETRY_S = 1.5
MAX_RETRIES = 2


@dataclass
class ReplayStats:
    issued: int = 0
    verified: int = 0
    retries: int = 0
    resets: int = 0


class ReplayPolicy:
    name = "replay"

    def __init__(self, settings: Settings, run: str | None = None, store=None, embedder=None, **_: object):
        from ..memory.embed import default_embedder
        from ..memory.store import MemoryStore

        run = run or settings.memory.replay_run
        if not run:
            raise ValueError("policy.kind=replay needs memory.replay_run (a golden run recorded with "
                             "`edge-vla memory record`)")
        own = store is None
        store = store or MemoryStore(settings.memory.path, readonly=True)
        try:
            frames = store.run_frames(run)
            if not frames:
                store.run_info(run)  # raises "no golden run ..." with the known names
                raise ValueError(f"golden run {run!r} has no frames")
            self.vectors = np.stack([store.frame_vector(h.frame_id) for h in frames])
            self.ts = np.array([h.ts for h in frames])
            self.steps: list[tuple[int, Action]] = []
            for i, h in enumerate(frames):
                for a in h.actions:
                    fields = {k: v for k, v in a.items() if k in Action.model_fields}
                    self.steps.append((i, Action(**fields)))
        finally:
            if own:
                store.close()
        self.run = run
        self.embedder = embedder or default_embedder()
        self.stats = ReplayStats()
        self.next_step = 0
        self._issued_at: float | None = None
        self._tries = 0
        self.name = f"replay:{run}"

    def _decision(self, action: Action, t0: float, **stages: float) -> Decision:
        return Decision(action=action, model=self.name, stages_ms={"replay": (time.perf_counter() - t0) * 1e3, **stages})

    def decide(self, frame: Frame, instruction: str) -> Decision:
        t0 = time.perf_counter()
        sims = self.vectors @ self.embedder.embed(frame.image).frame
        if self.next_step >= len(self.steps):
            return self._decision(Action(type="done"), t0)
        fi, action = self.steps[self.next_step]
        prev = self.steps[self.next_step - 1][0] + 1 if self.next_step else 0
        nxt = self.steps[self.next_step + 1][0] if self.next_step + 1 < len(self.steps) else len(self.vectors) - 1
        now = time.monotonic()
        if self._issued_at is not None:
            post = sims[fi + 1:nxt + 1].max() if fi + 1 <= nxt else sims[fi]
            if post >= sims[fi] + VERIFY_MARGIN or (fi + 1 > nxt) or \
                    float(self.vectors[fi] @ self.vectors[min(fi + 1, len(self.vectors) - 1)]) > 0.9995:
                self.stats.verified += 1
                self.next_step += 1
                self._issued_at = None
                self._tries = 0
                return self.decide(frame, instruction) if self.next_step < len(self.steps) else \
                    self._decision(Action(type="done"), t0)
            if now - self._issued_at < RETRY_S:
                return self._decision(Action(type="wait"), t0)
            if self._tries > MAX_RETRIES:
                self.stats.resets += 1
                log.warning("replay.step_failed", run=self.run, step=self.next_step, tries=self._tries)
                self._issued_at, self._tries, self.next_step = None, 0, 0
                return self._decision(Action(type="reset"), t0)
            self.stats.retries += 1
        else:
            window = sims[prev:fi + 1]
            if sims[fi] < MATCH_MIN or (len(window) > 1 and int(np.argmax(window)) + prev != fi
                                        and window.max() - sims[fi] > VERIFY_MARGIN):
                return self._decision(Action(type="wait"), t0)  # the screen is not at this step yet
        self._issued_at = now
        self._tries += 1
        self.stats.issued += 1
        return self._decision(action, t0)

    def close(self) -> None:
        pass
