"""SimWorld: the simulator's public face: task sequence, sim clock, UI mechanics, oracle, frames.

Everything random comes from rngs seeded by (seed, task index), and sim time only
moves through ``advance``, so the same seed and the same calls give the same
frames. The world routes actions through generic mechanics (modal blocking, hit
testing, focus, typing, scrolling) to the current task, which judges success.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable, Sequence

import numpy as np

from edge_vla.actions import Action, InvalidAction, to_normalized, to_pixels, validate_action
from edge_vla.sim.layout import Ctx
from edge_vla.sim.render import FONTS, THEMES, Renderer, make_theme
from edge_vla.sim.scene import Button, Checkbox, Element, ExecResult, ListView, TextField, Widget, centre, clip, inside
from edge_vla.sim.tasks import TASK_KINDS, TASKS, Step, Task, element_of

CARET_PERIOD = 0.53
UNSUPPORTED = frozenset({"drag", "right_click"})
_SCROLL_KEYS = {"pagedown": 0.9, "pageup": -0.9, "arrowdown": 0.15, "down": 0.15, "arrowup": -0.15,
                "up": -0.15, "end": 1e9, "home": -1e9, "space": 0.9}

Outcome = tuple[str, str, bool]  # status, detail, visibly changed
# Share of tasks in Pillow's bundled face (what every world looked like before there were faces to pick)
BUNDLED_FONT_SHARE = 0.3


class SimWorld:
    """A seeded 2-D UI world; see the package docstring for the contract."""

    def __init__(self, seed: int = 0, width: int = 1280, height: int = 720,
                 theme: str | None = None, task: str | None = None, fonts: Sequence[str] | None = None):
        if width < 64 or height < 64:
            raise ValueError(f"simulator needs at least 64x64 pixels, got {width}x{height}")
        if theme is not None and theme not in THEMES:
            raise ValueError(f"unknown theme {theme!r}; expected one of {', '.join(THEMES)}")
        _check_kind(task)
        unknown = [f for f in fonts or () if f not in FONTS]
        if unknown or (fonts is not None and not fonts):
            raise ValueError(f"unknown or no fonts {unknown}; expected some of {', '.join(FONTS)}")
        self._fonts = tuple(fonts or FONTS)
        self.seed, self.width, self.height = int(seed), int(width), int(height)
        self._theme_name, self._kind_pin = theme, task
        self._lock = threading.RLock()
        self._renderer = Renderer(self.width, self.height)
        self._frame: np.ndarray | None = None
        self._frame_version = -1
        self._version = 0
        self._frozen = False
        self.time = 0.0
        self.steps = 0
        self._index = -1
        self._kind = ""
        self._focused: TextField | None = None
        self._caret_on = True
        self._caret_next = 0.0
        self._elements: tuple[int, list[Element]] | None = None
        self.after_advance: list[Callable[[], None]] = []  # hooks run after each advance, unlocked
        self._task: Task
        self.new_task(task)

    # --- task lifecycle ---------------------------------------------------------------------

    def new_task(self, task: str | None = None) -> None:
        """Start the next task of the seed's sequence (or of kind ``task``)."""
        _check_kind(task)
        with self._lock:
            self._index += 1
            self._kind = task or self._kind_pin or self._kind_for(self._index)
            self.steps = 0
            self._build()

    def _kind_for(self, index: int) -> str:
        # Shuffled cycles: every kind comes up once per len(TASK_KINDS) tasks, in a seeded order.
        n = len(TASK_KINDS)
        order = random.Random(f"edge-vla-sim:{self.seed}:cycle:{index // n}").sample(TASK_KINDS, n)
        return order[index % n]

    def _build(self) -> None:
        rng = random.Random(f"edge-vla-sim:{self.seed}:task:{self._index}")
        theme = make_theme(self._theme_name or rng.choice(THEMES), rng)
        # a stream of its own, so that a task drawn in the bundled face is laid out as it always was
        frng = random.Random(f"edge-vla-sim:{self.seed}:font:{self._index}")
        bundled = "aileron" in self._fonts and frng.random() < BUNDLED_FONT_SHARE
        others = [f for f in self._fonts if f != "aileron"] or ["aileron"]
        theme = dataclasses.replace(theme, font="aileron" if bundled else frng.choice(others))
        ctx = Ctx(rng=rng, width=self.width, height=self.height, theme=theme, t0=self.time)
        self._task = TASKS[self._kind](ctx)
        self._focused = None
        self._caret_on = True
        self._touch()

    # --- read-only state ----------------------------------------------------------------------

    @property
    def instruction(self) -> str:
        return self._task.instruction

    @property
    def task_kind(self) -> str:
        return self._kind

    @property
    def theme(self) -> str:
        return self._task.theme.name

    @property
    def font(self) -> str:
        return self._task.theme.font

    @property
    def version(self) -> int:
        return self._version

    @property
    def success(self) -> bool:
        return self._task.success

    @property
    def frozen(self) -> bool:
        return self._frozen

    @frozen.setter
    def frozen(self, value: bool) -> None:
        """A hung UI: actions have no effect and timers stop until it is unfrozen."""
        with self._lock:
            self._frozen = bool(value)

    @property
    def elements(self) -> list[Element]:
        with self._lock:
            if self._elements is None or self._elements[0] != self._version:
                self._elements = (self._version, self._collect_elements())
            return list(self._elements[1])

    def _collect_elements(self) -> list[Element]:
        t = self._task
        modal = t.dialog is not None and t.dialog.visible
        parts = [(p, w.enabled and not modal) for w in t.widgets for p in w.parts()]
        if t.toast is not None:
            parts += [(p, True) for p in t.toast.parts()]
        if modal and t.dialog is not None:
            parts += [(p, True) for p in t.dialog.parts()]
        screen = (0, 0, self.width, self.height)
        out = []
        for (kind, label, box), enabled in parts:
            shown = clip(box, screen)  # ground truth is what is on screen
            if shown is not None:
                out.append(Element(kind, label, shown, enabled))
        return out

    # --- time and frames ----------------------------------------------------------------------

    def advance(self, dt: float) -> None:
        if not dt >= 0:
            raise ValueError(f"dt must be a non-negative number of seconds, got {dt!r}")
        with self._lock:
            self._advance(dt)
        # Outside the lock: a hook (the executor rolling over to the next task) may take its own.
        for hook in self.after_advance:
            hook()

    def _advance(self, dt: float) -> None:
        self.time += dt
        if self._frozen:
            return  # timers catch up on the first advance after unfreezing
        changed = self._task.update(self.time)
        if self._focused is not None and self.time >= self._caret_next:
            flips = int((self.time - self._caret_next) // CARET_PERIOD) + 1
            self._caret_next += flips * CARET_PERIOD
            if flips % 2:
                self._caret_on = not self._caret_on
                changed = True
        if changed:
            self._touch()

    def render(self) -> np.ndarray:
        """The current frame, H x W x 3 uint8 RGB, read-only (shared between callers)."""
        with self._lock:
            if self._frame is None or self._frame_version != self._version:
                self._frame = self._renderer.render(self._task, self._caret_on)
                self._frame_version = self._version
            return self._frame

    def _touch(self) -> None:
        self._version += 1

    # --- scene editing hooks (sim/defects.py) ---------------------------------------------------

    @property
    def task(self) -> Task:
        """The current task object: its widgets, dialog and context, for tools that edit the scene."""
        return self._task

    def invalidate(self) -> None:
        """The scene was edited from outside: redraw everything, the cached static layer included."""
        with self._lock:
            self._renderer = Renderer(self.width, self.height)
            self._elements = None
            self._touch()

    # --- the oracle ----------------------------------------------------------------------------

    def _step(self, see_dialogs: bool = True) -> Step:
        t = self._task
        if t.success:
            return Step("done")
        if see_dialogs and t.dialog is not None and t.dialog.visible and t.dialog.close is not None:
            return Step("click", element_of(t.dialog.close))
        return t.oracle()

    def oracle(self, see_dialogs: bool = True) -> Action:
        """The correct next action, from the true state (a privileged teacher).

        ``see_dialogs=False`` is a teacher blind to pop-ups: it goes straight for the
        task's target, the mistake closed-loop verification has to catch.
        """
        with self._lock:
            step = self._step(see_dialogs)
            fields = dict(step.fields)
            if step.type in ("click", "scroll") and step.target is not None:
                fields["x"], fields["y"] = to_normalized(*centre(step.target.box), self.width, self.height)
            return Action(type=step.type, **fields)  # type: ignore[arg-type]

    @property
    def target(self) -> Element | None:
        with self._lock:
            return self._step().target

    # --- actions ---------------------------------------------------------------------------

    def execute(self, action: Action | dict) -> ExecResult:
        """Carry out one action. Never raises for a bad action: it is ``rejected``."""
        with self._lock:
            if isinstance(action, dict):
                try:
                    action = validate_action(action)
                except InvalidAction as exc:
                    return ExecResult("rejected", exc.reason)
            if not isinstance(action, Action):
                return ExecResult("rejected", f"expected an Action, got {type(action).__name__}")
            if action.type in UNSUPPORTED:
                return ExecResult("rejected", f"{action.type} is not supported by the simulator")
            self.steps += 1
            if self._frozen:
                return ExecResult("executed", "ui is frozen: no effect")
            status, detail, changed = self._dispatch(action)
            if changed:
                self._touch()
            return ExecResult(status, detail)  # type: ignore[arg-type]

    def _dispatch(self, a: Action) -> Outcome:
        if a.type in ("click", "double_click"):
            assert a.x is not None and a.y is not None
            return self._click(*to_pixels(a.x, a.y, self.width, self.height))
        if a.type == "type":
            return self._type(a)
        if a.type == "key":
            assert a.key is not None
            return self._key(a.key)
        if a.type == "scroll":
            return self._scroll(a)
        if a.type == "reset":
            self._build()
            return "executed", "task reset to its initial state", True
        return "executed", a.type, False  # wait, done

    def _modal(self) -> bool:
        g = self._task.dialog
        return g is not None and g.visible

    def _click(self, px: int, py: int) -> Outcome:
        t = self._task
        g = t.dialog
        if g is not None and g.visible:
            b = _hit(g.children, px, py)
            if not isinstance(b, Button):
                where = "on the dialog" if inside(g.box, px, py) else "under the modal dialog"
                return "failed", f"nothing clickable at ({px}, {py}) {where}", False
            if b in g.dismissers:
                g.visible = False
                return "executed", f"dismissed the dialog with {b.label}", True
            return "executed", f"pressed {b.label}; the dialog stays open", False
        w = _hit(t.widgets, px, py)
        changed = self._focus(w if isinstance(w, TextField) else None)
        if w is None:
            return "failed", f"nothing clickable at ({px}, {py})", changed
        if not w.enabled:
            return "failed", f"{w.label} is disabled", changed
        if isinstance(w, Button):
            return "executed", t.press(w, self.time), True
        if isinstance(w, TextField):
            w.select_all = False
            return "executed", f"focused {w.label}", True
        if isinstance(w, ListView):
            i = w.row_at(py)
            if i is None:
                return "failed", f"no row at ({px}, {py})", changed
            return "executed", t.select(w, i, self.time), True
        if isinstance(w, Checkbox):
            w.checked = not w.checked
            return "executed", f"{'ticked' if w.checked else 'unticked'} {w.label}", True
        return "failed", f"{w.label} does nothing", changed

    def _focus(self, f: TextField | None) -> bool:
        if f is self._focused:
            return False
        if self._focused is not None:
            self._focused.focused = False
            self._focused.select_all = False
        self._focused = f
        if f is not None:
            f.focused = True
            self._caret_on = True
            self._caret_next = self.time + CARET_PERIOD
        return True

    def _type(self, a: Action) -> Outcome:
        changed = False
        if a.x is not None and a.y is not None:
            status, detail, changed = self._click(*to_pixels(a.x, a.y, self.width, self.height))
            if status != "executed":
                return status, detail, changed
        f = self._focused
        if self._modal():
            return "failed", "typing went to the modal dialog", changed
        if f is None:
            return "failed", "no text field has focus", changed
        text = a.text or ""
        f.value = (text if f.select_all else f.value + text)[: f.max_len]
        f.select_all = False
        self._caret_on = True
        self._caret_next = self.time + CARET_PERIOD
        return "executed", f"typed {len(text)} characters into {f.label}", True

    def _key(self, key: str) -> Outcome:
        k = key.strip().lower().replace("control", "ctrl").replace("command", "cmd").replace(" ", "")
        t, f = self._task, self._focused
        g = t.dialog
        if k in ("escape", "esc") and g is not None and g.visible:
            g.visible = False
            return "executed", "dismissed the dialog with Escape", True
        if self._modal():
            return "failed", f"key {key} went to the modal dialog", False
        if k in ("enter", "return") and f is not None and f.submit is not None:
            return "executed", t.press(f.submit, self.time), True
        if k in ("ctrl+a", "cmd+a", "meta+a") and f is not None and f.value:
            f.select_all = True
            return "executed", f"selected all of {f.label}", True
        if k == "backspace" and f is not None and f.value:
            f.value = "" if f.select_all else f.value[:-1]
            f.select_all = False
            return "executed", f"deleted in {f.label}", True
        if k in ("tab", "shift+tab"):
            fields = [w for w in t.widgets if isinstance(w, TextField)]
            if fields:
                i = fields.index(f) if f in fields else -1
                self._focus(fields[(i + (-1 if k == "shift+tab" else 1)) % len(fields)])
                return "executed", f"focused {self._focused.label if self._focused else ''}", True
        if k in ("escape", "esc") and f is not None:
            self._focus(None)
            return "executed", "blurred the focused field", True
        if len(key) == 1 and f is not None:
            return self._type(Action(type="type", text=key))
        if k in _SCROLL_KEYS:
            lv = _first_list(t.widgets)
            if lv is not None:
                return self._scroll_by(lv, int(_SCROLL_KEYS[k] * (lv.box[3] - lv.box[1])))
        return "failed", f"key {key} has no effect here", False

    def _scroll(self, a: Action) -> Outcome:
        if self._modal():
            return "failed", "scroll blocked by the modal dialog", False
        if a.x is not None and a.y is not None:
            px, py = to_pixels(a.x, a.y, self.width, self.height)
            lv = next((w for w in self._task.widgets if isinstance(w, ListView) and inside(w.box, px, py)), None)
            if lv is None:
                return "failed", f"nothing scrollable at ({px}, {py})", False
        else:
            lv = _first_list(self._task.widgets)
            if lv is None:
                return "failed", "nothing to scroll on this screen", False
        if not a.dy:
            return "failed", "horizontal scrolling is not supported", False
        return self._scroll_by(lv, round((a.dy or 0) * self.height / 1000))

    def _scroll_by(self, lv: ListView, dy_px: int) -> Outcome:
        new = min(max(0, lv.offset + dy_px), lv.max_offset)
        if new == lv.offset:
            return "failed", f"{lv.label} is already at the {'end' if dy_px > 0 else 'top'}", False
        lv.offset = new
        return "executed", f"scrolled {lv.label} by {dy_px} px", True


def _check_kind(task: str | None) -> None:
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASK_KINDS)}")


def _hit(widgets: list[Widget], px: int, py: int) -> Widget | None:
    """The topmost interactive widget at a pixel (later widgets are drawn on top)."""
    for w in reversed(widgets):
        if w.interactive and inside(w.box, px, py):
            return w
    return None


def _first_list(widgets: list[Widget]) -> ListView | None:
    return next((w for w in widgets if isinstance(w, ListView)), None)
