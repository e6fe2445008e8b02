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
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .broker import Mosquitto, free_port
from .config import MqttConfig, Settings
from .daemon import Daemon
from .latency import summarize
from .mqtt import MqttLink


@dataclass
class Observation:
    actions: list[dict] = field(default_factory=list)
    feedback: list[dict] = field(default_factory=list)
    glass_to_action: list[float] = field(default_factory=list)  # ms
    invalid: int = 0
    seconds: float = 0.0
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


async def observe(settings: Settings, seconds: float,
                  on_action: Callable[[dict, float], None] | None = None) -> Observation:
    """Run the daemon for ``seconds`` while a separate client records what arrives."""
    from .actions import ActionMessage

    obs = Observation()
    watcher = MqttLink(MqttConfig(**{**settings.mqtt.model_dump(), "client_id": None}), settings.device_id,
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
        obs.actions.append(data)
        if on_action:
            on_action(data, g2a)

    watcher.subscribe(watcher.topic("+", "action"), got_action)
    watcher.subscribe(watcher.topic("+", "feedback"), lambda _t, p: obs.feedback.append(json.loads(p)))
    watcher.start()
    await watcher.wait_connected(5)
    daemon = Daemon(settings)
    obs.daemon = daemon
    cpu0, t0 = time.process_time(), time.monotonic()
    try:
        await daemon.run(seconds=seconds)
    finally:
        obs.seconds = time.monotonic() - t0
        obs.cpu_s = time.process_time() - cpu0
        obs.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        await asyncio.sleep(0.2)  # let the last actions arrive
        await asyncio.to_thread(watcher.stop)
    return obs


def report(obs: Observation) -> dict:
    """Per-stage and glass-to-action latency, throughput, drops, CPU and memory."""
    assert obs.daemon is not None
    merged: dict[str, list[float]] = {}
    for p in obs.daemon.pipelines.values():
        for stage, q in p.latency.samples.items():
            merged.setdefault(stage, []).extend(q)
    merged["glass_to_action"] = obs.glass_to_action
    out_streams = {}
    for name, p in obs.daemon.pipelines.items():
        slot = p.slot
        out_streams[name] = {
            "frames": slot.written if slot else 0,
            "frames_overwritten": slot.overwritten if slot else 0,
            "frames_sampled": p.sampler.stats.sampled,
            "decisions": p.stats.decisions,
            "actions_sent": p.stats.actions_sent,
            "actions_stale": p.stats.actions_stale,
            "policy_errors": p.stats.policy_errors,
            "feedback": dict(p.stats.feedback),
        }
    return {
        "seconds": round(obs.seconds, 2),
        "actions_received": len(obs.actions),
        "actions_per_s": round(len(obs.actions) / obs.seconds, 2) if obs.seconds else 0.0,
        "invalid_actions": obs.invalid,
        "latency_ms": {stage: summarize(v) for stage, v in merged.items() if v},
        "streams": out_streams,
        "cpu_percent_of_one_core": round(100 * obs.cpu_s / obs.seconds, 1) if obs.seconds else 0.0,
        "peak_rss_mb": round(obs.peak_rss_mb, 1),
    }
