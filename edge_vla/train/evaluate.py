"""Evaluation of any policy runtime (an exported bundle's ``VLMRuntime`` or the trainer's ``TorchRuntime``).

A runtime here is anything with ``infer(image, instruction) -> (Action, stages_ms)``
and optionally ``roi`` (its box is reset between cases). Numpy only: no torch.

- ``grounding``: held-out worlds (odd seeds; training uses even ones) whose
  oracle's next action is a click; a hit is a click whose pixel (``to_pixels``)
  lies inside the target element's box. Per resolution, per theme, overall.
- ``crop_grounding``: the second RoI stage alone: views ``[full, native-scale
  crop holding the target]`` -> a click mapped back to the frame.
- ``closed_loop``: held-out tasks run to success or ``max_steps``; success rate,
  mean steps, sim and wall seconds per task, per task kind. With ``LoopMemory``
  (the default in ``tools/eval_policy.py``) the loop is the daemon's: the
  pipeline's own verifier and stuck watchdog, on sim time, await each action's
  verdict, and the actions they found dead reach the policy as ``avoid``.
- latency per stage from the runtime's own stage times.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import Any, Callable

import numpy as np

from ..actions import Action, ActionMessage, Feedback, crop_to_frame, to_pixels
from ..config import LoopConfig
from ..frames import Frame, grey_thumb
from ..loop.verifier import Verifier
from ..loop.watchdog import StuckWatchdog
from ..sim import THEMES, TASK_KINDS, SimWorld
from ..sim.scene import inside
from .data import EVAL_RESOLUTIONS, HELD_OUT_FONTS, POINT_KINDS, crop_around

Runtime = Any


def _reset(rt: Runtime) -> None:
    """Between cases: no RoI box carried over, no memory of the last task's actions."""
    roi = getattr(rt, "roi", None)
    if roi is not None:
        roi.box = None
    reset = getattr(rt, "reset", None)
    if reset is not None:
        reset()


def _rate(hits: int, n: int) -> dict:
    return {"n": n, "hits": hits, "rate": (hits / n) if n else None}


def is_hit(action: Action, box: tuple, width: int, height: int) -> bool:
    if action.type not in POINT_KINDS or action.x is None or action.y is None:
        return False
    return inside(box, *to_pixels(action.x, action.y, width, height))


def grounding_cases(n: int, seed: int = 0, resolutions=EVAL_RESOLUTIONS, themes=THEMES) -> list[dict]:
    """``n`` held-out click cases, cycling resolutions x themes; deterministic in ``seed``."""
    rng = random.Random(f"edge-vla-eval:grounding:{seed}")
    combos = [(r, t) for r in resolutions for t in themes]
    cases: list[dict] = []
    i = 0
    while len(cases) < n:
        (w, h), theme = combos[i % len(combos)]
        i += 1
        for _ in range(20):  # a world whose next step is a click
            spec = {"seed": rng.randrange(1 << 29) * 2 + 1, "width": w, "height": h, "theme": theme,
                    "task": rng.choice(TASK_KINDS)}
            dt = rng.uniform(0.0, 3.0)
            world = SimWorld(**spec)
            world.advance(dt)
            a = world.oracle()
            if a.type == "click" and world.target is not None:
                cases.append({"spec": spec, "dt": dt, "box": tuple(world.target.box), "kind": spec["task"],
                              "crop_rng": rng.randrange(1 << 30)})
                break
    return cases


def _world(case: dict) -> SimWorld:
    w = SimWorld(**case["spec"])
    w.advance(case["dt"])
    return w


def grounding(rt: Runtime, cases: list[dict], stages: list | None = None) -> dict:
    by_res: dict = defaultdict(lambda: [0, 0])
    by_theme: dict = defaultdict(lambda: [0, 0])
    by_font: dict = defaultdict(lambda: [0, 0])
    by_kind: dict = defaultdict(lambda: [0, 0])
    hits = 0
    for c in cases:
        world = _world(c)
        _reset(rt)
        action, st = rt.infer(np.ascontiguousarray(world.render()), world.instruction)
        if stages is not None:
            stages.append(st)
        hit = is_hit(action, c["box"], world.width, world.height)
        hits += hit
        for d, k in ((by_res, f"{world.width}x{world.height}"), (by_theme, world.theme), (by_font, world.font),
                     (by_kind, c["kind"])):
            d[k][0] += hit
            d[k][1] += 1
    return {**_rate(hits, len(cases)),
            "per_resolution": {k: _rate(*v) for k, v in sorted(by_res.items())},
            "per_theme": {k: _rate(*v) for k, v in sorted(by_theme.items())},
            # faces never trained on (data.HELD_OUT_FONTS) against the trained ones
            "per_font": {k: _rate(*v) for k, v in sorted(by_font.items())},
            "unseen_fonts": _rate(*[sum(by_font[f][j] for f in HELD_OUT_FONTS) for j in (0, 1)]),
            "per_task": {k: _rate(*v) for k, v in sorted(by_kind.items())}}


def crop_grounding(rt: Runtime, cases: list[dict], side_px: int | None = None) -> dict:
    """The RoI crop stage alone (needs ``rt.decode_view`` and a FOCUS-capable vocabulary)."""
    from ..runtime.roi import crop_view
    from ..runtime.vlm import preprocess

    s = rt.image_size
    side = side_px or s
    hits, chance = 0, 0.0
    by_res: dict = defaultdict(lambda: [0, 0])
    for c in cases:
        world = _world(c)
        frame = np.ascontiguousarray(world.render())
        b = c["box"]
        crop = crop_around((b[0] + b[2] - 1) / 2, (b[1] + b[3] - 1) / 2, side, world.width, world.height,
                           random.Random(c["crop_rng"]))
        decoded, _ = rt.decode_view([preprocess(frame, s), crop_view(frame, crop, s)], world.instruction)
        hit = False
        a = decoded.action
        if a is not None and a.type in POINT_KINDS:
            x, y = crop_to_frame(a.x, a.y, crop)
            hit = inside(b, *to_pixels(x, y, world.width, world.height))
        hits += hit
        # chance: a uniformly random click in the crop lands in the target's box
        cb = (crop[0] * world.width / 1000, crop[1] * world.height / 1000, crop[2] * world.width / 1000,
              crop[3] * world.height / 1000)
        ix = max(0.0, min(b[2], cb[2]) - max(b[0], cb[0]))
        iy = max(0.0, min(b[3], cb[3]) - max(b[1], cb[1]))
        chance += ix * iy / max(1e-9, (cb[2] - cb[0]) * (cb[3] - cb[1]))
        k = f"{world.width}x{world.height}"
        by_res[k][0] += hit
        by_res[k][1] += 1
    return {**_rate(hits, len(cases)), "chance_rate": chance / len(cases) if cases else None, "crop_side_px": side,
            "per_resolution": {k: _rate(*v) for k, v in sorted(by_res.items())}}


class LoopMemory:
    """The daemon's loop around a policy, on sim time: ``Pipeline``'s verifier and stuck watchdog, fed the
    executor's feedback, each decision waiting for the last action's verdict (``loop.await_verdict``),
    dead actions passed on as ``avoid`` and the watchdog's review applied to what is sent."""

    def __init__(self, cfg: LoopConfig | None = None):
        self.cfg = cfg or LoopConfig()
        self.verifier = Verifier(self.cfg)
        self.watchdog = StuckWatchdog(self.cfg, now=0.0)
        self.seq = 0

    @property
    def waiting(self) -> bool:
        return bool(self.verifier.pending)

    def see(self, image: np.ndarray, t: float) -> tuple[Frame, np.ndarray]:
        thumb = grey_thumb(image)
        frame = Frame(image=image, stream="eval", seq=self.seq, t_capture=t, wall_ts=t)
        self.seq += 1
        for v in self.verifier.observe(frame, now=t, thumb=thumb):
            self.watchdog.on_verdict(v, now=t)
        return frame, thumb

    def send(self, frame: Frame, thumb: np.ndarray, action: Action, t: float) -> tuple[Action | None, str | None]:
        """What the pipeline would send for the policy's ``action`` (None: nothing) and its message id."""
        sent, _ = self.watchdog.review(action, now=t)
        if sent is None:
            return None, None
        msg = ActionMessage(**sent.fields(), seq=frame.seq, stream="eval", frame_ts=t, published_ts=t,
                            deadline=t + 1.0, model="eval", latency_ms={})
        self.verifier.track(frame, msg, now=t, thumb=thumb)
        return sent, msg.id

    def executed(self, action_id: str, status: str, t: float) -> None:
        for v in self.verifier.feedback(Feedback(v=1, action_id=action_id, status=status, ts=t), now=t):
            self.watchdog.on_verdict(v, now=t)


def closed_loop(rt: Runtime, n_tasks: int, seed: int = 0, max_steps: int = 15, dt: float = 0.3,
                resolutions=EVAL_RESOLUTIONS, stages: list | None = None,
                on_step: Callable | None = None, loop: LoopConfig | None = None,
                kinds: tuple[str, ...] = TASK_KINDS) -> dict:
    """Held-out tasks (every kind in turn); ``on_step(world, action)`` sees every visited state (DAgger).
    ``loop``: run the policy inside the daemon's loop (``LoopMemory``); None: act on every frame, no memory."""
    rng = random.Random(f"edge-vla-eval:closed:{seed}")
    per_kind: dict = defaultdict(lambda: {"n": 0, "success": 0, "steps": 0, "sim_s": 0.0, "wall_s": 0.0})
    tot = {"n": 0, "success": 0, "steps": 0, "sim_s": 0.0, "wall_s": 0.0}
    for i in range(n_tasks):
        w, h = resolutions[i % len(resolutions)]
        kind = kinds[i % len(kinds)]
        world = SimWorld(seed=rng.randrange(1 << 29) * 2 + 1, width=w, height=h, theme=rng.choice(THEMES),
                         task=kind)
        _reset(rt)
        memory = LoopMemory(loop) if loop is not None else None
        t0, steps = time.perf_counter(), 0
        # waiting for verdicts takes sim time, not steps; the verify window bounds each wait
        for _ in range(max_steps * 16):
            if steps >= max_steps or world.success:
                break
            frame = np.ascontiguousarray(world.render())
            if memory is not None:
                seen, thumb = memory.see(frame, world.time)
                if memory.waiting:
                    world.advance(dt)
                    continue
            if on_step is not None:
                on_step(world, frame)
            if memory is not None:
                memory.watchdog.on_state(thumb)  # as the pipeline: the screen, then the decision on it
                action, st = rt.infer(frame, world.instruction, memory.watchdog.avoid())
            else:
                action, st = rt.infer(frame, world.instruction)
            if stages is not None:
                stages.append(st)
            steps += 1
            if action.type == "done":
                break
            sent, msg_id = (action, None) if memory is None else memory.send(seen, thumb, action, world.time)
            if sent is not None and sent.type not in ("wait", "done"):
                result = world.execute(sent)
                if memory is not None and msg_id is not None:
                    memory.executed(msg_id, result.status, world.time)
            world.advance(dt)
        wall = time.perf_counter() - t0
        for d in (per_kind[kind], tot):
            d["n"] += 1
            d["success"] += int(world.success)
            d["steps"] += steps
            d["sim_s"] += world.time
            d["wall_s"] += wall

    def summary(d: dict) -> dict:
        n = max(1, d["n"])
        return {"n": d["n"], "success": d["success"], "success_rate": d["success"] / n if d["n"] else None,
                "mean_steps": d["steps"] / n, "mean_sim_s": d["sim_s"] / n, "mean_wall_s": d["wall_s"] / n}

    return {**summary(tot), "max_steps": max_steps, "dt": dt, "loop_memory": loop is not None,
            "per_task": {k: summary(v) for k, v in sorted(per_kind.items())}}


def latency(stages: list[dict]) -> dict:
    keys = sorted({k for s in stages for k in s})
    out = {}
    for k in keys:
        v = np.array([s.get(k, 0.0) for s in stages])
        out[k] = {"p50_ms": float(np.percentile(v, 50)), "p95_ms": float(np.percentile(v, 95)), "n": int(len(v))}
    tot = np.array([sum(s.values()) for s in stages]) if stages else np.zeros(0)
    if len(tot):
        out["total"] = {"p50_ms": float(np.percentile(tot, 50)), "p95_ms": float(np.percentile(tot, 95)),
                        "n": int(len(tot))}
    return out


def through_daemon(bundle: str, n_tasks: int, seed: int = 0, seconds: float = 10.0, width: int = 1280,
                   height: int = 720, threads: int = 2, kv_cache: str | None = None,
                   policy: str = "onnx", kinds: tuple[str, ...] = TASK_KINDS) -> dict:
    """Closed-loop success through the shipped path: ``edge-vla demo``'s loop (sim source -> sampler ->
    policy worker -> MQTT broker -> the simulator's executor -> feedback), one daemon per held-out task.

    A task succeeds when the executor saw the world succeed within ``seconds`` of wall time."""
    import asyncio

    from .. import harness
    from ..config import load_settings

    rng = random.Random(f"edge-vla-eval:daemon:{seed}")
    per_kind: dict = defaultdict(lambda: {"n": 0, "success": 0})
    g2a: list[float] = []
    done, actions = 0, 0
    for i in range(n_tasks):
        kind = kinds[i % len(kinds)]
        settings = load_settings(environ={}, device_id="eval", http={"enabled": False},
                                 log={"format": "json", "level": "warning"},
                                 model={"path": bundle, "intra_threads": threads, "kv_cache": kv_cache},
                                 policy={"kind": policy},
                                 source={"kind": "sim", "seed": rng.randrange(1 << 29) * 2 + 1, "task": kind,
                                         "width": width, "height": height})
        with harness.private_broker(settings) as s:
            obs = asyncio.run(harness.observe(s, seconds))
        ex = obs.daemon.sim_executor.executor if obs.daemon and obs.daemon.sim_executor else None
        ok = bool(ex and ex.tasks_completed >= 1)
        done += ok
        actions += len(obs.actions)
        g2a.extend(obs.glass_to_action)
        per_kind[kind]["n"] += 1
        per_kind[kind]["success"] += int(ok)
    g2a_ms = {"p50": float(np.percentile(g2a, 50)), "p95": float(np.percentile(g2a, 95))} if g2a else {}
    return {"n": n_tasks, "success": done, "success_rate": done / n_tasks if n_tasks else None,
            "seconds_per_task": seconds, "actions": actions, "resolution": f"{width}x{height}",
            "glass_to_action_ms": {**g2a_ms, "n": len(g2a)},
            "per_task": {k: {**v, "success_rate": v["success"] / v["n"]} for k, v in sorted(per_kind.items())}}


def real_page_grounding(rt: Runtime, folder: str) -> dict:
    """Grounding on screenshots of real HTML pages (``tools/real_pages.py``: admin templates from npm,
    rendered in Chromium, target boxes from the DOM). Never tuned on: a check of screens nobody here drew.
    ``rate`` counts a click on the control's own box; ``activating`` also one on a <label> of it, which
    a browser treats as a click on the control (focus a field, toggle a checkbox)."""
    import json
    from pathlib import Path

    from PIL import Image

    cases = json.loads((Path(folder) / "cases.json").read_text())
    by_kind: dict = defaultdict(lambda: [0, 0, 0])
    by_size: dict = defaultdict(lambda: [0, 0, 0])
    hits = active = 0
    for c in cases:
        image = np.asarray(Image.open(Path(folder) / c["image"]).convert("RGB"))
        _reset(rt)
        action, _ = rt.infer(image, c["instruction"])
        w, h = image.shape[1], image.shape[0]
        hit = is_hit(action, tuple(c["box"]), w, h)
        act = hit or any(is_hit(action, tuple(b), w, h) for b in c.get("also", []))
        hits += hit
        active += act
        for d, k in ((by_kind, c["kind"]), (by_size, f"{w}x{h}")):
            d[k][0] += hit
            d[k][1] += 1
            d[k][2] += act

    def rates(v):
        return {**_rate(v[0], v[1]), "activating": round(v[2] / v[1], 4) if v[1] else None}

    return {**_rate(hits, len(cases)), "activating": round(active / len(cases), 4) if cases else None,
            "per_kind": {k: rates(v) for k, v in sorted(by_kind.items())},
            "per_resolution": {k: rates(v) for k, v in sorted(by_size.items())}}
