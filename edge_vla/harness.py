"""Run the daemon in-process next to a private broker and an observing subscriber.

Shared by ``edge-vla demo`` and ``edge-vla bench``: the observer is a separate
MQTT client, so glass-to-action is measured where a robot would see it (frame
capture to action received through the real broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .broker import Mosquitto, free_port
from .config import Settings
from .daemon import Daemon
from .latency import summarize
from .mqtt import MqttLink


@dataclass
class Observation:
    actions: list[dict] = field(default_factory=list)
    feedback: list[dict] = field(default_factory=list)
    glass_to_action: list[float] = field(default_factory=list)  # ms
    received_at: list[float] = field(default_factory=list)  # monotonic, same order
    invalid: int = 0
    seconds: float = 0.0
    started: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    daemon: Daemon | None = None


@contextlib.contextmanager
def private_broker(settings: Settings, use_private: bool = True) -> Iterator[Settings]:
    """``settings`` pointed at a fresh loopback mosquitto (or unchanged when not private)."""
    if not use_private:
        yield settings
        return
    with Mosquitto() as broker:
        mqtt = settings.mqtt.model_copy(update={"host": "127.0.0.1", "port": broker.port, "tls": False,
                                                "username": None, "password": None})
        yield settings.model_copy(update={"mqtt": mqtt})


def with_free_http_port(settings: Settings) -> Settings:
    return settings.model_copy(update={"http": settings.http.model_copy(update={"port": free_port()})})


async def _start_publisher(daemon: Daemon, run: asyncio.Task, settings: Settings, seconds: float,
                           codec: str) -> asyncio.subprocess.Process:
    """A WHIP publisher in its own process (its encoder must not share our GIL), streaming the
    simulator with a pixel timecode so capture-to-action can be measured across WebRTC."""
    while daemon.whip is None and not run.done():
        await asyncio.sleep(0.02)
    src = settings.source
    url = f"http://127.0.0.1:{settings.http.port}/whip/{src.stream}"
    cmd = [sys.executable, "-m", "edge_vla.publisher", url, "--source", "sim", "--width", str(src.width),
           "--height", str(src.height), "--fps", str(src.fps), "--codec", codec, "--seconds", str(seconds + 5),
           "--quiet", "--execute", "--seed", str(src.seed)]
    for address in settings.webrtc.host_addresses or []:
        cmd += ["--host-address", address]
    token = settings.http.bearer_token()
    if token:
        cmd += ["--token", token]
    return await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL)


async def _stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


def for_webrtc(settings: Settings) -> Settings:
    """Loopback-only ICE and timecode reading: what a WebRTC benchmark on one machine needs."""
    webrtc = settings.webrtc.model_copy(update={"host_addresses": ["127.0.0.1"], "read_timecode": True})
    return settings.model_copy(update={"webrtc": webrtc})


async def observe(settings: Settings, seconds: float,
                  on_action: Callable[[dict, float], None] | None = None, codec: str = "vp8",
                  on_daemon: Callable[[Daemon], None] | None = None) -> Observation:
    """Run the daemon for ``seconds`` while a separate client records what arrives (``on_daemon``:
    told the daemon before it starts, for tools that drive it meanwhile)."""
    from .actions import ActionMessage

    obs = Observation()
    watcher = MqttLink(settings.mqtt.model_copy(update={"client_id": None}), settings.device_id,
                       client_id=f"edge-vla-observer-{os.getpid()}", availability=False)

    def got_action(_topic: str, payload: bytes) -> None:
        received = time.time()
        data = json.loads(payload)
        try:
            ActionMessage.model_validate(data)
        except Exception:
            obs.invalid += 1
        g2a = (received - data["frame_ts"]) * 1e3
        obs.glass_to_action.append(g2a)
        obs.received_at.append(time.monotonic())
        obs.actions.append(data)
        if on_action:
            on_action(data, g2a)

    watcher.subscribe(watcher.topic("+", "action"), got_action)
    watcher.subscribe(watcher.topic("+", "feedback"), lambda _t, p: obs.feedback.append(json.loads(p)))
    watcher.start()
    await watcher.wait_connected(5)
    daemon = Daemon(settings)
    obs.daemon = daemon
    if on_daemon is not None:
        on_daemon(daemon)
    cpu0, t0 = time.process_time(), time.monotonic()
    obs.started = t0
    publisher = None
    try:
        run = asyncio.create_task(daemon.run(seconds=seconds))
        if settings.source.kind == "webrtc":
            publisher = await _start_publisher(daemon, run, settings, seconds, codec)
        await run
    finally:
        if publisher is not None:
            await _stop_process(publisher)
        obs.seconds = time.monotonic() - t0
        obs.cpu_s = time.process_time() - cpu0
        obs.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        await asyncio.sleep(0.2)  # let the last actions arrive
        await asyncio.to_thread(watcher.stop)
    return obs


def report(obs: Observation) -> dict:
    """Per-stage and glass-to-action latency, throughput, drops, CPU and memory."""
    assert obs.daemon is not None
    pipelines = [*obs.daemon.ended, *obs.daemon.pipelines.values()]
    merged: dict[str, list[float]] = {}
    for p in pipelines:
        for stage, v in p.latency.values().items():
            merged.setdefault(stage, []).extend(v.tolist())
    merged["glass_to_action"] = obs.glass_to_action
    out_streams = {}
    for p in pipelines:
        slot = p.slot
        out_streams[p.stream] = {
            "frames": slot.written if slot else 0,
            "frames_overwritten": slot.overwritten if slot else 0,
            "frames_sampled": p.sampler.stats.sampled,
            "decisions": p.stats.decisions,
            "actions_sent": p.stats.actions_sent,
            "actions_stale": p.stats.actions_stale,
            "policy_errors": p.stats.policy_errors,
            "feedback": dict(p.stats.feedback),
            "decode_errors": getattr(p.source, "decode_errors", 0),
            "max_frame_gap_ms": round(getattr(p.source, "max_gap_s", 0.0) * 1e3, 1),
        }
    by_minute = []
    if obs.seconds >= 120:
        for minute in range(int(obs.seconds // 60)):
            lo, hi = obs.started + 60 * minute, obs.started + 60 * (minute + 1)
            vals = [g for g, t in zip(obs.glass_to_action, obs.received_at) if lo <= t < hi]
            if vals:
                by_minute.append({"minute": minute, **summarize(vals)})
    return {
        "seconds": round(obs.seconds, 2),
        "glass_to_action_by_minute": by_minute,
        "actions_received": len(obs.actions),
        "actions_per_s": round(len(obs.actions) / obs.seconds, 2) if obs.seconds else 0.0,
        "invalid_actions": obs.invalid,
        "latency_ms": {stage: summarize(v) for stage, v in merged.items() if v},
        "streams": out_streams,
        "cpu_percent_of_one_core": round(100 * obs.cpu_s / obs.seconds, 1) if obs.seconds else 0.0,
        "peak_rss_mb": round(obs.peak_rss_mb, 1),
    }
