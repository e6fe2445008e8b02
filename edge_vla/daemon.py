"""Wiring and lifecycle: build the stages from Settings, run them, stop cleanly.

Startup: policy and source first (a bad model or source is a configuration
error, exit 78), then MQTT (connects in the background; the daemon serves
without a broker and drops actions meanwhile), HTTP, sd_notify READY. The
WATCHDOG ping is sent only while every stream is healthy, so systemd restarts
a daemon whose frames stopped or whose inference hung. SIGTERM/SIGINT: stop
taking frames, let the running inference finish briefly, publish ``offline``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import signal
import threading
import time
from typing import Any

import structlog

from .actions import parse_feedback
from .config import Settings
from .mqtt import MqttLink, parse_goal
from .pipeline import ActionSink, StreamPipeline
from .policy import create_policy
from .sdnotify import Notifier
from .sources import Source, create_source

log = structlog.get_logger(__name__)

DRAIN_S = 1.0


class StartupError(Exception):
    """The daemon cannot start with this configuration (exit 78)."""


class StreamExists(Exception):
    pass


class InferenceExecutor(concurrent.futures.ThreadPoolExecutor):
    """The inference worker, with an ``idle`` event that background work can wait for.

    On two cores every millisecond another thread computes during an inference is
    a millisecond added to that action's latency; side work (memory embedding)
    waits for ``idle`` and so fills the gaps between decisions instead.
    """

    def __init__(self) -> None:
        super().__init__(1, thread_name_prefix="policy")
        self.idle = threading.Event()
        self.idle.set()
        self._busy = 0
        self._lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):
        with self._lock:
            self._busy += 1
            self.idle.clear()
        fut = super().submit(fn, *args, **kwargs)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, _fut) -> None:
        with self._lock:
            self._busy -= 1
            if self._busy == 0:
                self.idle.set()


class Daemon:
    def __init__(self, settings: Settings, notifier: Notifier | None = None):
        self.settings = settings
        self.notifier = notifier or Notifier.from_env()
        self.link: MqttLink | None = None
        self.policy = None
        self.pipelines: dict[str, StreamPipeline] = {}
        self.ended: collections.deque[StreamPipeline] = collections.deque(maxlen=16)  # for reports
        self.extra_links: list[MqttLink] = []
        self.sim_executor = None
        self.whip = None
        self.view = None  # the live view's hub (http.view.ViewHub) when HTTP is enabled
        self.view_memory = None  # its visual memory panel (http.view_memory.MemoryBrowser) when memory is on
        self.memory = None  # MemoryService when memory.enabled
        self._tasks: dict[str, asyncio.Task] = {}
        self._fixed_stream: str | None = None  # the configured source's stream; its end stops the daemon
        self._http = None
        self._stop = asyncio.Event()
        # one inference at a time across all streams: two cores, and ONNX Runtime
        # already spreads one call over model.intra_threads
        self.executor = InferenceExecutor()
        self.started_mono = time.monotonic()

    # -- health -------------------------------------------------------------------
    def stream_health(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, p in self.pipelines.items():
            ok, reason = p.health()
            out[name] = {"healthy": ok, "reason": reason}
        return out

    def health(self) -> tuple[bool, str]:
        if not self.pipelines:
            if self.settings.source.kind == "webrtc":
                return True, "waiting for WHIP publishers"
            return False, "no stream running"
        bad = [f"{n}: {h['reason']}" for n, h in self.stream_health().items() if not h["healthy"]]
        return (False, "; ".join(bad)) if bad else (True, "ok")

    def stop(self) -> None:
        self._stop.set()

    def stream_rows(self) -> list[dict[str, Any]]:
        """One summary per stream for the live view: source, counters, model, last action, health, goal."""
        now = time.monotonic()
        rows = []
        for name, p in self.pipelines.items():
            ok, reason = p.health(now)
            last = p.stats.last_action_mono
            rows.append({"stream": name, "source": p.source.kind, "model": getattr(self.policy, "name", "?"),
                         "frames": p.slot.written if p.slot else 0, "sampled": p.sampler.stats.sampled,
                         "actions": p.stats.actions_sent,
                         "last_action_age_s": None if last is None else round(now - last, 2),
                         "healthy": ok, "reason": reason, "goal": p.goal})
        return rows

    # -- streams ------------------------------------------------------------------
    def add_stream(self, name: str, source: Source, sinks: list[ActionSink] = ()) -> StreamPipeline:
        """Start a pipeline for ``name`` (a WHIP peer, or the configured source)."""
        if name in self.pipelines:
            raise StreamExists(name)
        assert self.link is not None and self.policy is not None
        pipeline = StreamPipeline(name, source, self.policy, self.settings, sinks=[self.link, *sinks],
                                  executor=self.executor, reporter=self.link)
        self.pipelines[name] = pipeline
        if self.memory is not None:
            self.memory.attach(pipeline)
        if self.view is not None:
            self.view.attach(pipeline)
        self._tasks[name] = asyncio.get_running_loop().create_task(pipeline.run(), name=f"stream-{name}")
        log.info("stream.added", stream=name, source=source.kind)
        return pipeline

    async def remove_stream(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        pipeline = self.pipelines.pop(name, None)
        if pipeline is not None and pipeline.slot is not None:
            pipeline.slot.close()  # ends the loop even if a cancellation got lost in a library
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if pipeline is not None:
            self.ended.append(pipeline)
            log.info("stream.removed", stream=name)

    # -- lifecycle ----------------------------------------------------------------
    def build(self) -> Source | None:
        """Create policy, MQTT link and the configured source; a bad model or source is StartupError."""
        s = self.settings
        source = None
        try:
            if s.source.kind != "webrtc":  # WHIP peers bring their own streams
                source = create_source(s.source)
            self.policy = create_policy(s, world=getattr(source, "world", None),
                                        world_lock=getattr(source, "lock", None))
        except Exception as exc:
            raise StartupError(str(exc)) from exc
        self.link = MqttLink(s.mqtt, s.device_id)
        self.link.subscribe(self.link.topic("+", "feedback"), self._on_feedback)
        self.link.subscribe(self.link.topic("+", "goal"), self._on_goal)
        if s.source.kind == "sim" and s.source.execute:
            from .sources.sim import SimExecutorLink

            sim_link = MqttLink(s.mqtt, s.device_id, client_id=f"edge-vla-sim-{s.device_id}", availability=False)
            self.sim_executor = SimExecutorLink(source, sim_link, s.source.stream)
            self.extra_links.append(sim_link)
        if s.memory.enabled:  # failures disable memory with an event; they never stop the daemon
            from .memory.service import MemoryService

            self.memory = MemoryService(self)
        return source

    async def run(self, seconds: float | None = None) -> int:
        source = self.build()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        assert self.link is not None
        self.link.start()
        if self.memory is not None:
            self.memory.start()
        if self.sim_executor is not None:
            self.sim_executor.start()
        if self.settings.http.enabled:
            from .http.app import start_http

            self._http = await start_http(self)
        if source is not None:
            self._fixed_stream = self.settings.source.stream
            self.add_stream(self._fixed_stream, source)
        watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
        self.notifier.ready()
        self.notifier.status(f"serving {len(self.pipelines)} stream(s)")
        log.info("daemon.ready", device_id=self.settings.device_id, streams=list(self.pipelines),
                 source=self.settings.source.kind, model=getattr(self.policy, "name", "?"))
        waits = {asyncio.create_task(self._stop.wait())}
        if self._fixed_stream is not None:
            waits.add(self._tasks[self._fixed_stream])
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self.shutdown(waits | {watchdog})
        return 0

    async def shutdown(self, tasks: set[asyncio.Task]) -> None:
        self.notifier.stopping()
        log.info("daemon.stopping")
        if self.whip is not None:
            await self.whip.close_all()
        for p in self.pipelines.values():
            if p.slot is not None:
                p.slot.close()  # no new frames; an inference already running may still publish
        tasks = tasks | set(self._tasks.values())
        done, pending = await asyncio.wait(tasks, timeout=DRAIN_S)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.policy is not None:
            self.policy.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.memory is not None:
            await self.memory.stop()  # flushes what was sampled
        if self.view is not None:
            await self.view.stop()  # closes the viewers' sockets, which the runner would wait for
        if self.view_memory is not None:
            self.view_memory.close()
        if self._http is not None:
            await self._http.cleanup()
        for link in [*self.extra_links, self.link]:
            if link is not None:
                await asyncio.to_thread(link.stop)
        log.info("daemon.stopped")

    async def _watchdog(self) -> None:
        interval = min(self.notifier.watchdog_interval or 1.0, 1.0)
        was_ok = True
        while True:
            ok, reason = self.health()
            if ok:
                self.notifier.watchdog()
            if ok != was_ok:
                log.log(20 if ok else 30, "daemon.healthy" if ok else "daemon.unhealthy", reason=reason)
                if self.link is not None:
                    self.link.event("healthy" if ok else "unhealthy", reason=reason)
                self.notifier.status("serving" if ok else f"unhealthy: {reason}")
            was_ok = ok
            await asyncio.sleep(interval)

    # -- inbound MQTT -------------------------------------------------------------
    def _stream_of(self, topic: str) -> StreamPipeline | None:
        parts = topic.split("/")
        return self.pipelines.get(parts[-2]) if len(parts) >= 2 else None

    def _on_feedback(self, topic: str, payload: bytes) -> None:
        pipeline = self._stream_of(topic)
        fb = parse_feedback(payload)
        if pipeline is not None:
            pipeline.on_feedback(fb)

    def _on_goal(self, topic: str, payload: bytes) -> None:
        pipeline = self._stream_of(topic)
        goal = parse_goal(payload)
        if pipeline is not None:
            pipeline.set_goal(goal)

    def latest_image(self, stream: str):
        """The stream's newest picture (for the live view's "frames like this one"), or None."""
        pipeline = self.pipelines.get(stream)
        frame = pipeline.slot.latest if pipeline is not None and pipeline.slot is not None else None
        return frame.image if frame is not None else None

    def set_goal(self, stream: str, text: str) -> str | None:
        """A goal from the live view: parsed and applied as a ``P/S/goal`` message is, and published
        there (retained) so the broker, other subscribers and a restarted daemon agree. KeyError: no
        such stream; BadPayload: not a goal."""
        pipeline = self.pipelines.get(stream)
        if pipeline is None:
            raise KeyError(f"no stream {stream!r}")
        goal = parse_goal(text)
        pipeline.set_goal(goal)
        if self.link is not None and goal is not None:
            self.link.publish_json(self.link.topic(stream, "goal"), {"instruction": goal}, qos=1, retain=True)
        return goal

