"""SimExecutor: turns contract action payloads into simulator actions and feedback dicts.

Transport-agnostic: whoever receives an action (MQTT, data channel, a test) calls
``handle`` and publishes the returned feedback. It also runs the task sequence:
after a success and a settle delay of sim time it starts the next task.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from edge_vla.actions import Action, InvalidAction, validate_action
from edge_vla.sim.scene import ExecResult
from edge_vla.sim.world import SimWorld

log = logging.getLogger(__name__)

# Only these go to validation; stream metadata (v, id, seq, deadline, ...) and fields added
# to the contract later are not the simulator's business.
ACTION_FIELDS = tuple(Action.model_fields)


class SimExecutor:
    def __init__(self, world: SimWorld, auto_next: bool = True, settle_s: float = 1.0,
                 on_new_task: Callable[[str], None] | None = None):
        self.world = world
        self.auto_next = auto_next
        self.settle_s = settle_s
        self.on_new_task = on_new_task
        self.tasks_completed = 0
        self.steps_per_task: list[int] = []  # steps each completed task took
        self.finished: list[dict] = []  # each task left behind: instruction, success, steps
        self.counts = {"executed": 0, "failed": 0, "rejected": 0}
        self._success_at: float | None = None
        self._lock = threading.RLock()
        # Whoever drives the clock (a video source calling world.advance) also rolls tasks over.
        world.after_advance.append(self.poll)

    @property
    def instruction(self) -> str:
        return self.world.instruction

    def handle(self, payload: object) -> dict:
        """Execute one action payload; always returns a feedback dict, never raises."""
        action_id = ""
        if isinstance(payload, (str, bytes, bytearray)):
            try:
                payload = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                return self._feedback("", ExecResult("rejected", "payload is not valid JSON"))
        if isinstance(payload, dict) and isinstance(payload.get("id"), str):
            action_id = payload["id"]
        with self._lock:
            try:
                result = self._execute(payload)
            except Exception as exc:  # a bug must not take the transport loop down with it
                log.exception("simulator failed on an action")
                result = ExecResult("failed", f"simulator error: {type(exc).__name__}: {exc}")
            self.poll()
        return self._feedback(action_id, result)

    def _execute(self, payload: object) -> ExecResult:
        if not isinstance(payload, dict):
            return ExecResult("rejected", f"payload is a {type(payload).__name__}, expected an object")
        if not isinstance(payload.get("id"), str) or not payload["id"]:
            return ExecResult("rejected", "id: missing or not a non-empty string")
        fields = {k: payload[k] for k in ACTION_FIELDS if payload.get(k) is not None}
        try:
            action = validate_action(fields)
        except InvalidAction as exc:
            return ExecResult("rejected", exc.reason)
        return self.world.execute(action)

    def _feedback(self, action_id: str, result: ExecResult) -> dict:
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        return {"v": 1, "action_id": action_id, "status": result.status, "ts": time.time(),
                "detail": result.detail}

    def advance(self, dt: float) -> None:
        """Advance sim time (same as ``world.advance``: the world calls ``poll`` after it)."""
        self.world.advance(dt)

    def poll(self) -> None:
        """Count a fresh success and start the next task once it has settled."""
        with self._lock:
            w = self.world
            if self._success_at is None:
                if w.success:
                    self._success_at = w.time
                    self.tasks_completed += 1
                    self.steps_per_task.append(w.steps)
                return
            if self.auto_next and w.time - self._success_at >= self.settle_s:
                self.next_task()

    def tasks(self) -> list[dict]:
        """Every task so far, the current one last: instruction, whether it succeeded, steps taken."""
        with self._lock:
            w = self.world
            return [*self.finished, {"instruction": w.instruction, "success": w.success, "steps": w.steps}]

    def next_task(self, task: str | None = None) -> None:
        with self._lock:
            w = self.world
            self.finished.append({"instruction": w.instruction, "success": w.success, "steps": w.steps})
            self.world.new_task(task)
            self._success_at = None
            if self.on_new_task is not None:
                try:
                    self.on_new_task(self.world.instruction)
                except Exception:
                    log.exception("on_new_task callback failed")
