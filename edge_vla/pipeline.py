"""One stream's loop: source -> sampler -> policy (worker thread) -> action check -> sinks.

The source fills a one-frame slot on its own; this loop takes the newest frame
whenever the policy is free, so a slow policy skips frames instead of queueing
them. Every action carries its latency breakdown, measured from the frame's
capture time with the monotonic clock.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import structlog

from .actions import Action, ActionMessage, Feedback
from .config import Settings
from .frames import BadFrame, Frame, FrameSlot, check_image, grey_thumb
from .latency import LatencyLog
from .loop.verifier import Verdict, Verifier
from .loop.watchdog import StuckWatchdog
from .policy import Decision, DecisionContext, Policy
from .sampler import Sampler
from .sources import Source

log = structlog.get_logger(__name__)


class ActionSink(Protocol):
    """Where actions go: MQTT, a WebRTC data channel. ``send`` must not block."""

    def send(self, msg: ActionMessage, deadline_mono: float) -> bool: ...


class Reporter(Protocol):
    """Where verdicts and events go (MQTT ``P/S/verdict`` and ``P/events``)."""

    def verdict(self, stream: str, payload: dict) -> None: ...

    def event(self, kind: str, **fields) -> None: ...


@dataclass
class StreamStats:
    bad_frames: int = 0
    decisions: int = 0
    actions_sent: int = 0
    actions_stale: int = 0  # decided too late to be useful: never sent
    policy_errors: int = 0
    policy_timeouts: int = 0
    skipped_busy: int = 0  # frames passed over while a hung inference still runs
    policy_restarts: int = 0
    consecutive_failures: int = 0
    source_errors: int = 0
    feedback: dict[str, int] = field(default_factory=lambda: {"executed": 0, "failed": 0, "rejected": 0})
    last_frame_mono: float | None = None
    last_decision_mono: float | None = None
    last_action_mono: float | None = None
    started_mono: float = field(default_factory=time.monotonic)


class StreamPipeline:
    def __init__(self, stream: str, source: Source, policy: Policy, settings: Settings,
                 sinks: list[ActionSink], executor: concurrent.futures.Executor | None = None,
                 reporter: Reporter | None = None):
        self.stream = stream
        self.source = source
        self.policy = policy
        self.settings = settings
        self.sinks = sinks
        self.sampler = Sampler(settings.sampler)
        self.stats = StreamStats()
        self.latency = LatencyLog()
        self.goal: str | None = None
        self.reporter = reporter
        self.verifier = Verifier(settings.loop) if settings.loop.verify else None
        self.watchdog = StuckWatchdog(settings.loop)
        self.verdicts: collections.deque[Verdict] = collections.deque(maxlen=32)
        self._policy_takes_context = "context" in inspect.signature(policy.decide).parameters
        # Side consumers (memory, verification): called on the loop, must only enqueue.
        self.on_sampled: list[Callable[[Frame], None]] = []
        self.on_action: list[Callable[[Frame, ActionMessage], None]] = []
        self.on_feedback_hooks: list[Callable[[Feedback], None]] = []
        # (frame, instruction, decision, the message sent or None when stale or held back)
        self.on_decided: list[Callable[[Frame, str, Decision, ActionMessage | None], None]] = []
        self.on_verdict: list[Callable[[str, Verdict], None]] = []
        self.slot: FrameSlot | None = None
        self._seq = 0
        # the last action that went out, and under which instruction (a stale decision never goes out)
        self._sent: tuple[str, Action] | None = None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"policy-{stream}")
        self._own_executor = executor is None
        self._inflight: concurrent.futures.Future | None = None
        self._inflight_since: float | None = None
        self._log = log.bind(stream=stream)

    # -- health -----------------------------------------------------------------
    def health(self, now: float | None = None) -> tuple[bool, str]:
        now = time.monotonic() if now is None else now
        wd = self.settings.watchdog
        if self._inflight_since is not None and now - self._inflight_since > wd.max_policy_age_s:
            return False, f"inference running for {now - self._inflight_since:.1f}s"
        last_frame = self.stats.last_frame_mono or self.stats.started_mono
        if now - last_frame > wd.max_frame_age_s:
            return False, f"no frame for {now - last_frame:.1f}s"
        last_decision = self.stats.last_decision_mono or self.stats.started_mono
        if now - last_decision > wd.max_policy_age_s:
            return False, f"no policy decision for {now - last_decision:.1f}s"
        return True, "ok"

    # -- inbound ----------------------------------------------------------------
    def on_feedback(self, fb: Feedback) -> None:
        self.stats.feedback[fb.status] += 1
        self._log.debug("feedback.received", action_id=fb.action_id, status=fb.status)
        self._notify(self.on_feedback_hooks, fb)
        if self.verifier is not None:
            self._record(self.verifier.feedback(fb))

    def _record(self, verdicts: list[Verdict]) -> None:
        for v in verdicts:
            self.verdicts.append(v)
            self.watchdog.on_verdict(v)
            self._notify(self.on_verdict, self.stream, v)
            self._log.debug("verdict", action_id=v.action_id, result=v.result, latency_ms=v.latency_ms)
            if self.reporter is not None:
                self.reporter.verdict(self.stream, v.payload())

    def set_goal(self, instruction: str | None) -> None:
        self.goal = instruction
        self._log.info("goal.set", instruction=instruction)

    # -- the loop ---------------------------------------------------------------
    async def run(self) -> None:
        self.slot = FrameSlot()
        source_task = asyncio.create_task(self._run_source(self.slot), name=f"source-{self.stream}")
        last_seq = -1
        try:
            while True:
                frame = await self.slot.next(last_seq)
                if frame is None:
                    self._log.info("stream.ended")
                    break
                last_seq = frame.seq
                await self.handle(frame)
        finally:
            source_task.cancel()
            await asyncio.gather(source_task, return_exceptions=True)
            if self._own_executor:
                self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run_source(self, slot: FrameSlot) -> None:
        try:
            await self.source.run(slot)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.source_errors += 1
            self._log.error("source.failed", error=str(exc), error_type=type(exc).__name__)
        finally:
            slot.close()

    async def handle(self, frame: Frame) -> None:
        self.stats.last_frame_mono = frame.t_capture
        try:
            check_image(frame.image)
        except BadFrame as exc:
            self.stats.bad_frames += 1
            self._log.warning("frame.rejected", error=str(exc), seq=frame.seq)
            return
        if self._inflight is not None:  # an abandoned inference still holds the worker
            if not self._inflight.done():
                self.stats.skipped_busy += 1
                return
            self._inflight = None
            self._inflight_since = None
        thumb = grey_thumb(frame.image)  # one summary per frame, for sampler, verifier and watchdog
        if self.verifier is not None:
            self._record(self.verifier.observe(frame, thumb=thumb))
            if self.settings.loop.await_verdict and self.verifier.pending:
                return  # see the last action's effect before choosing the next
        if not self.sampler.offer(frame, thumb):
            return
        frame = frame.stamp("sampled")
        self.watchdog.on_state(thumb)
        self._notify(self.on_sampled, frame)
        instruction = self.instruction(frame)
        decision = await self._decide(frame)
        if decision is not None:
            msg = self.emit(frame, decision, thumb)
            self._notify(self.on_decided, frame, instruction, decision, msg)

    def instruction(self, frame: Frame) -> str:
        return self.goal or frame.instruction or self.settings.policy.default_instruction

    async def _decide(self, frame: Frame) -> Decision | None:
        instruction = self.instruction(frame)
        self._inflight_since = time.monotonic()
        if self._policy_takes_context:
            sent = self._sent[1] if self._sent is not None and self._sent[0] == instruction else None
            context = DecisionContext(verdicts=tuple(self.verdicts), avoid=self.watchdog.avoid(), sent=sent)
            fut = self._executor.submit(self.policy.decide, frame, instruction, context=context)
        else:
            fut = self._executor.submit(self.policy.decide, frame, instruction)
        # asyncio.wait, not wait_for: wait_for can swallow a cancellation that races
        # with the result (Python < 3.12), and a removed stream would then run on
        pending = asyncio.wrap_future(fut)
        done, _ = await asyncio.wait({pending}, timeout=self.settings.model.timeout_s)
        if not done:
            self.stats.policy_timeouts += 1
            self._inflight = fut  # keep it: no new work until the hung call returns
            self._log.error("policy.timeout", timeout_s=self.settings.model.timeout_s, seq=frame.seq)
            self._failed()
            return None
        try:
            decision = pending.result()
        except Exception as exc:
            self.stats.policy_errors += 1
            self._inflight_since = None
            self._log.error("policy.error", error=str(exc), error_type=type(exc).__name__, seq=frame.seq)
            self._failed()
            return None
        self._inflight_since = None
        self.stats.consecutive_failures = 0
        self.stats.decisions += 1
        self.stats.last_decision_mono = time.monotonic()
        return decision

    def _failed(self) -> None:
        """Count a failed inference; after too many in a row, reload the model session."""
        self.stats.consecutive_failures += 1
        restart = getattr(self.policy, "restart", None)
        if self.stats.consecutive_failures >= self.settings.policy.restart_after_errors and restart is not None:
            self.stats.consecutive_failures = 0
            self.stats.policy_restarts += 1
            self._log.warning("policy.restart", restarts=self.stats.policy_restarts)
            if self.reporter is not None:
                self.reporter.event("policy_restart", stream=self.stream, restarts=self.stats.policy_restarts)
            try:
                restart()
            except Exception as exc:
                self._log.error("policy.restart_failed", error=str(exc))

    def emit(self, frame: Frame, decision: Decision, thumb=None) -> ActionMessage | None:
        now = time.monotonic()
        deadline_mono = frame.t_capture + self.settings.policy.action_deadline_s
        if now >= deadline_mono:
            self.stats.actions_stale += 1
            self._log.warning("action.stale", age_ms=(now - frame.t_capture) * 1e3, seq=frame.seq)
            return None
        sampled = frame.stamps["sampled"]
        arrival = frame.stamps.get("arrival", frame.t_capture)
        latency = {"wait": (sampled - arrival) * 1e3, **decision.stages_ms,
                   "policy": (now - sampled) * 1e3, "total": (now - frame.t_capture) * 1e3}
        if "arrival" in frame.stamps:  # a network source: capture (from the picture) to arrival, and after
            latency["transport"] = (arrival - frame.t_capture) * 1e3
            latency["arrival_to_action"] = (now - arrival) * 1e3
        latency = {k: round(v, 3) for k, v in latency.items()}
        action, step = self.watchdog.review(decision.action)
        model = decision.model
        if step is not None:
            self._log.warning("watchdog.escalation", level=step.level, step=step.kind, reason=step.reason)
            if self.reporter is not None:
                self.reporter.event("watchdog", stream=self.stream, **step.event())
        if action is None:
            return None
        if action is not decision.action:
            model = "watchdog"  # subscribers can tell a substituted action from the model's
        wall_now = time.time()
        msg = ActionMessage(
            **action.fields(), seq=self._seq, stream=self.stream, frame_ts=frame.wall_ts,
            published_ts=wall_now, deadline=frame.wall_ts + self.settings.policy.action_deadline_s,
            model=model, latency_ms=latency,
        )
        self._seq += 1
        self._sent = (self.instruction(frame), action)
        sent = [sink.send(msg, deadline_mono) for sink in self.sinks]
        if any(sent):
            self.stats.actions_sent += 1
        self.stats.last_action_mono = now
        self.latency.add(latency)
        if self.verifier is not None:
            self.verifier.track(frame, msg, thumb=thumb)
        self._log.debug("action.sent", id=msg.id, type=msg.type, total_ms=latency["total"])
        self._notify(self.on_action, frame, msg)
        return msg

    def _notify(self, hooks: list, *args) -> None:
        for hook in hooks:
            try:
                hook(*args)
            except Exception:  # a side consumer must never stop the action loop
                self._log.exception("pipeline.hook_error", hook=getattr(hook, "__qualname__", repr(hook)))
