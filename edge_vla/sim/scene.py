"""The simulator's scene: public value types and the mutable widgets a task lays out.

Widgets hold layout (pixel boxes, x0, y0, x1, y1 with exclusive end) and state;
tasks create them, the world mutates them, the renderer draws them. Values that
leave the package (``Element``, ``ExecResult``) are frozen dataclasses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar, Literal

Box = tuple[int, int, int, int]
Status = Literal["executed", "failed", "rejected"]


@dataclass(frozen=True)
class Element:
    """A visible element. ``enabled`` is False when disabled or blocked by a modal."""

    kind: str  # button, text_field, checkbox, list_item, list, chart, dialog, text, error, status
    label: str
    box: Box
    enabled: bool = True


@dataclass(frozen=True)
class ExecResult:
    status: Status
    detail: str = ""


def inside(box: Box, x: int, y: int) -> bool:
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def centre(box: Box) -> tuple[float, float]:
    """Centre in pixel-index coordinates (what ``to_normalized`` expects)."""
    return (box[0] + box[2] - 1) / 2, (box[1] + box[3] - 1) / 2


def clip(box: Box, to: Box) -> Box | None:
    x0, y0 = max(box[0], to[0]), max(box[1], to[1])
    x1, y1 = min(box[2], to[2]), min(box[3], to[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


@dataclass(eq=False, kw_only=True)
class Widget:
    kind: ClassVar[str] = "text"
    interactive: ClassVar[bool] = False

    box: Box
    label: str = ""
    enabled: bool = True
    live: bool = False  # drawn every frame instead of into the cached static layer

    def parts(self) -> list[tuple[str, str, Box]]:
        """(kind, label, box) of what this widget shows as elements."""
        return [(self.kind, self.label, self.box)]

    def update(self, t: float) -> bool:
        """Advance to sim time ``t``; True when something visible changed."""
        return False


@dataclass(eq=False, kw_only=True)
class Panel(Widget):
    """Decoration: header bar, sidebar, card. Never an element."""

    kind: ClassVar[str] = "panel"
    style: str = "card"

    def parts(self) -> list[tuple[str, str, Box]]:
        return []


@dataclass(eq=False, kw_only=True)
class Text(Widget):
    role: str = "body"  # logo, nav, title, heading, body, muted, label
    size: int = 14
    bold: bool = False


@dataclass(eq=False, kw_only=True)
class Button(Widget):
    kind: ClassVar[str] = "button"
    interactive: ClassVar[bool] = True
    style: str = "primary"  # primary, secondary, ghost, danger, close
    size: int = 14


@dataclass(eq=False, kw_only=True)
class TextField(Widget):
    kind: ClassVar[str] = "text_field"
    interactive: ClassVar[bool] = True
    live: bool = True
    value: str = ""
    placeholder: str = ""
    focused: bool = False
    select_all: bool = False  # after ctrl+a: the next keystroke replaces the value
    size: int = 14
    submit: Button | None = None  # what Enter presses
    max_len: int = 80


@dataclass(eq=False, kw_only=True)
class Checkbox(Widget):
    """``box`` covers the tick box and its label: both toggle, as on real forms."""

    kind: ClassVar[str] = "checkbox"
    interactive: ClassVar[bool] = True
    live: bool = True
    checked: bool = False
    size: int = 14
    side: int = 16  # tick box edge in px


@dataclass(eq=False, kw_only=True)
class ListView(Widget):
    """A scrolling list; ``box`` is the viewport, rows scroll by ``offset`` px."""

    kind: ClassVar[str] = "list"
    interactive: ClassVar[bool] = True
    live: bool = True
    items: list[tuple[str, str]] = field(default_factory=list)  # (label, meta)
    row_h: int = 36
    offset: int = 0
    selected: int | None = None
    size: int = 14

    @property
    def max_offset(self) -> int:
        return max(0, len(self.items) * self.row_h - (self.box[3] - self.box[1]))

    def row_box(self, i: int) -> Box:
        """Row ``i`` on screen, unclipped (may lie outside the viewport)."""
        y = self.box[1] + i * self.row_h - self.offset
        return (self.box[0], y, self.box[2], y + self.row_h)

    def visible_box(self, i: int) -> Box | None:
        return clip(self.row_box(i), self.box)

    def fully_visible(self, i: int) -> bool:
        r = self.row_box(i)
        return r[1] >= self.box[1] and r[3] <= self.box[3]

    def row_at(self, y: int) -> int | None:
        i = (y - self.box[1] + self.offset) // self.row_h
        return i if 0 <= i < len(self.items) else None

    def parts(self) -> list[tuple[str, str, Box]]:
        out = [(self.kind, self.label, self.box)]
        first = self.offset // self.row_h
        for i in range(first, len(self.items)):
            vis = self.visible_box(i)
            if vis is None:
                break
            out.append(("list_item", self.items[i][0], vis))
        return out


@dataclass(eq=False, kw_only=True)
class Chart(Widget):
    """A live price line; ticks on its own rng so ticks never disturb layout randomness."""

    kind: ClassVar[str] = "chart"
    live: bool = True
    prices: list[float] = field(default_factory=list)
    interval: float = 0.5
    next_tick: float = 0.0
    vol: float = 0.004
    size: int = 14
    rng: random.Random = field(default_factory=random.Random)

    def update(self, t: float) -> bool:
        if t < self.next_tick:
            return False
        n = int((t - self.next_tick) // self.interval) + 1
        self.next_tick += n * self.interval
        keep = len(self.prices)
        # Each tick draws from the rng, so the series depends only on total sim time, not on
        # how advance() was sliced; the cap only bounds the work of an absurd dt.
        for _ in range(min(n, 10_000)):
            self.prices.append(round(self.prices[-1] * (1 + self.rng.gauss(0.0, self.vol)), 2))
        del self.prices[:-keep]
        return True


@dataclass(eq=False, kw_only=True)
class Banner(Widget):
    """Validation errors, toasts, success notes. Hidden once sim time reaches ``until``."""

    live: bool = True
    tone: str = "error"  # error, success, info
    visible: bool = True
    until: float | None = None
    size: int = 14

    def parts(self) -> list[tuple[str, str, Box]]:
        if not self.visible:
            return []
        return [("error" if self.tone == "error" else "status", self.label, self.box)]

    def update(self, t: float) -> bool:
        if self.visible and self.until is not None and t >= self.until:
            self.visible = False
            return True
        return False


@dataclass(eq=False, kw_only=True)
class Dialog(Widget):
    """A modal pop-up: while visible, the overlay swallows every click outside it."""

    kind: ClassVar[str] = "dialog"
    visible: bool = True
    appear_at: float | None = None
    children: list[Widget] = field(default_factory=list)  # texts and buttons, drawn on top
    close: Button | None = None
    dismissers: list[Button] = field(default_factory=list)  # buttons that close it

    def parts(self) -> list[tuple[str, str, Box]]:
        out = [(self.kind, self.label, self.box)]
        for c in self.children:
            out.extend(c.parts())
        return out

    def update(self, t: float) -> bool:
        if not self.visible and self.appear_at is not None and t >= self.appear_at:
            self.visible = True
            self.appear_at = None
            return True
        return False
