"""Retrieval: nearest remembered frames by image, by time range and stream, and as policy context.

``Retriever.context`` is what a policy calls: the frames most like the current
one (with the actions taken on them and their verdicts) plus frames whose
instruction mentions words of the goal, and a short text block for a prompt.
``RecallPolicy`` shows the intended use: when the current screen is one the
memory has seen (cosine distance under ``max_distance``) and an action for the
same instruction was executed there, that action is proposed; otherwise the
wrapped policy decides.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from ..actions import Action
from ..frames import Frame
from .embed import Embedder, default_embedder
from .store import Hit, MemoryStore

_WORD = re.compile(r"[A-Za-z0-9]{3,}")
_STOP = frozenset({"the", "and", "then", "click", "press", "tap", "button", "please", "with", "into", "from"})


@dataclass
class RetrievedContext:
    similar: list[Hit]
    mentioned: list[Hit] = field(default_factory=list)

    def prompt(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        lines = []
        for h in self.similar:
            acts = "; ".join(f"{a.get('type')} ({a.get('x', '-')},{a.get('y', '-')}) -> {a.get('verdict', '?')}"
                             for a in h.actions) or "no action"
            lines.append(f"- {now - h.ts:.0f} s ago, distance {h.distance:.3f}, goal {h.instruction!r}: {acts}")
        for h in self.mentioned:
            lines.append(f"- {now - h.ts:.0f} s ago, a screen for {h.instruction!r} (frame {h.frame_id})")
        return "Remembered screens:\n" + "\n".join(lines) if lines else ""


class Retriever:
    def __init__(self, store: MemoryStore, embedder: Embedder | None = None):
        self.store = store
        self.embedder = embedder or default_embedder()

    def by_image(self, image: np.ndarray, k: int = 5, stream: str | None = None, t_from: float | None = None,
                 t_to: float | None = None, kind: str | None = None) -> list[Hit]:
        return self.store.knn(self.embedder.embed(image).frame, k, stream, t_from, t_to, kind)

    def mentioning(self, text: str, stream: str | None = None, limit: int = 3) -> list[Hit]:
        words = [w for w in _WORD.findall(text.lower()) if w not in _STOP][:6]
        if not words:
            return []
        where = " OR ".join("lower(instruction) LIKE ?" for _ in words)
        args: list = [f"%{w}%" for w in words]
        sql = f"SELECT id FROM frames WHERE ({where})"
        if stream is not None:
            sql += " AND stream = ?"
            args.append(stream)
        ids = [r[0] for r in self.store.conn.execute(sql + " ORDER BY ts DESC LIMIT ?", (*args, limit))]
        return [self.store.hit(fid) for fid in ids]

    def context(self, image: np.ndarray, instruction: str, stream: str | None = None, k: int = 3,
                max_distance: float | None = None) -> RetrievedContext:
        similar = self.by_image(image, k, stream)
        if max_distance is not None:
            similar = [h for h in similar if h.distance <= max_distance]
        return RetrievedContext(similar)


class RecallPolicy:
    """Wraps a policy: a remembered, executed action for this screen and goal wins."""

    def __init__(self, base, retriever: Retriever, max_distance: float = 0.02, k: int = 32):
        self.k = k  # identical frames of one screen crowd the top: look past them for acted ones
        self.base = base
        self.retriever = retriever
        self.max_distance = max_distance
        self.name = f"{getattr(base, 'name', 'policy')}+memory"

    def decide(self, frame: Frame, instruction: str):
        from ..policy import Decision

        t0 = time.perf_counter()
        ctx = self.retriever.context(frame.image, instruction, frame.stream, k=self.k, max_distance=self.max_distance)
        for h in ctx.similar:
            if h.instruction and h.instruction != instruction:
                continue
            for a in h.actions:
                if a.get("verdict") == "executed":
                    fields = {k: v for k, v in a.items() if k in Action.model_fields}
                    return Decision(action=Action(**fields), model=self.name,
                                    stages_ms={"memory": (time.perf_counter() - t0) * 1e3})
        return self.base.decide(frame, instruction)

    def close(self) -> None:
        self.base.close()
