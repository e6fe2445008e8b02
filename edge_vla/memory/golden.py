"""Golden runs: record a run (frames, tile embeddings, actions, verdicts) under a name.

Two ways in: the daemon with ``memory.record = NAME`` (ingest writes golden
frames with lossless reference thumbnails), or ``record_frames`` for a run
produced in-process (``edge-vla memory record NAME --sim``, the benchmark).
``promote`` turns an already stored stretch of live frames into a golden run
(their live thumbnails are small JPEGs, so it suits retrieval and replay better
than pixel-exact regression).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .embed import Embedder, default_embedder
from .ingest import encode_thumb
from .store import ActionRecord, FrameRecord, MemoryStore, MemoryStoreError
from .textdiff import text_lines


@dataclass
class RunFrame:
    image: np.ndarray
    ts: float
    action: dict | None = None  # the action taken on this frame (contract fields)
    verdict: str | None = None  # executed / failed / rejected
    instruction: str | None = None


def record_frames(store: MemoryStore, name: str, frames: Iterable[RunFrame], stream: str = "default",
                  embedder: Embedder | None = None, golden_width: int = 640, replace: bool = False,
                  info: dict | None = None, batch: int = 32, reader=None, outbox: bool = False) -> dict[str, Any]:
    """Write ``frames`` as golden run ``name``; with ``reader`` (a ``perception.Perceiver``) each
    frame's text lines are stored too, for regression by what the screen says. ``outbox``: queue
    every frame for the fleet store (``memory.sync``) in the same transactions."""
    embedder = embedder or default_embedder()
    created = False
    recs: list[FrameRecord] = []
    acts: list[ActionRecord] = []
    verdicts: list[tuple[str, str]] = []
    n = n_actions = 0
    seq_ids: dict[tuple[str, int], int] = {}
    for seq, f in enumerate(frames):
        h, w = f.image.shape[:2]
        if not created:
            store.create_run(name, stream, w, h, info, replace=replace)
            created = True
        thumb, size = encode_thumb(f.image, golden_width, "png")
        text = None if reader is None else text_lines(reader.perceive(f.image, f.ts))
        recs.append(FrameRecord(stream=stream, seq=seq, ts=f.ts, width=w, height=h, embedding=embedder.embed(f.image),
                                kind="golden", run=name, instruction=f.instruction, thumb=thumb, thumb_fmt="png",
                                thumb_size=size, text=text))
        if f.action is not None:
            aid = str(uuid.uuid4())
            acts.append(ActionRecord(aid, stream, seq, f.ts, {**f.action, "id": aid, "published_ts": f.ts}))
            if f.verdict is not None:
                verdicts.append((aid, f.verdict))
            n_actions += 1
        n += 1
        if len(recs) >= batch:
            store.write_batch(recs, acts, verdicts, seq_ids, outbox=[outbox] * len(recs))
            recs, acts, verdicts = [], [], []
    if recs or acts:
        store.write_batch(recs, acts, verdicts, seq_ids, outbox=[outbox] * len(recs))
    if not created:
        raise MemoryStoreError(f"golden run {name!r}: no frames to record")
    return {"run": name, "frames": n, "actions": n_actions}


def promote(store: MemoryStore, name: str, stream: str, t_from: float, t_to: float, replace: bool = False,
            outbox: bool = False) -> dict:
    """Copy stored live frames of ``stream`` between two times into golden run ``name``."""
    hits = store.frames_between(stream, t_from, t_to, limit=10**7, kind="live")
    if not hits:
        raise MemoryStoreError(f"no stored frames of stream {stream!r} between {t_from} and {t_to}")
    row = store.conn.execute("SELECT width, height FROM frames WHERE id = ?", (hits[0].frame_id,)).fetchone()
    store.create_run(name, stream, row[0], row[1], {"source": "promoted", "from": t_from, "to": t_to},
                     replace=replace)
    with store.conn:
        for h in hits:
            store.conn.execute("UPDATE frames SET kind = 'golden', run = ? WHERE id = ?", (name, h.frame_id))
            store.conn.execute("UPDATE frame_vec SET kind = 'golden' WHERE frame_id = ?", (h.frame_id,))
    if outbox:  # the promoted frames go to the fleet store as the run's frames
        store.outbox_queue([h.frame_id for h in hits])
    return {"run": name, "frames": len(hits), "actions": sum(len(h.actions) for h in hits)}


# --- the simulator as a run generator -------------------------------------------------------------

@dataclass
class SimScenario:
    """A deterministic simulator run: frames at ``fps`` over ``seconds`` of sim time, oracle actions
    at ``action_times``. ``setup`` edits the world before the first frame; ``on_frame`` may edit it
    (a defect) at a given time; ``post`` transforms each image (compression noise)."""

    seed: int
    width: int = 1280
    height: int = 720
    task: str | None = None
    seconds: float = 6.0
    fps: float = 5.0
    action_times: tuple[float, ...] = (2.0, 4.0)
    phase: float = 0.0
    setup: Callable[[Any], None] | None = None
    at: dict[float, Callable[[Any], None]] = field(default_factory=dict)
    post: Callable[[np.ndarray], np.ndarray] | None = None

    def frames(self, t0_wall: float | None = None) -> Iterator[RunFrame]:
        from ..sim import SimWorld

        world = SimWorld(seed=self.seed, width=self.width, height=self.height, task=self.task)
        if self.setup is not None:
            self.setup(world)
        self.world = world
        t0_wall = time.time() if t0_wall is None else t0_wall
        pending_actions = sorted(self.action_times)
        pending_edits = sorted(self.at.items())
        n = int(self.seconds * self.fps)
        for k in range(n):
            t = self.phase + k / self.fps
            world.advance(max(0.0, t - world.time))
            while pending_edits and pending_edits[0][0] <= t:
                pending_edits.pop(0)[1](world)
            action = verdict = None
            image = world.render()
            if pending_actions and pending_actions[0] <= t:
                pending_actions.pop(0)
                a = world.oracle()
                action = a.fields()
                verdict = world.execute(a).status
            out = self.post(image) if self.post is not None else image
            yield RunFrame(out, t0_wall + t, action, verdict, world.instruction)
