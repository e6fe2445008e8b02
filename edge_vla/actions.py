"""Actions: the typed payload of the contract, its validation, coordinate mapping, and an
executor's feedback on an action.

Coordinates are integers in 0..1000, full-frame normalized, origin top-left.
``to_pixels``/``to_normalized`` are the only place that converts between the two:
resize and rounding bugs are the most reported failure of GUI agents, so every
caller goes through these.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ActionType = Literal[
    "click", "double_click", "right_click", "type", "key", "scroll", "drag", "wait", "reset", "done"
]
ACTION_TYPES: tuple[str, ...] = ActionType.__args__  # type: ignore[attr-defined]
POINT_TYPES = frozenset({"click", "double_click", "right_click", "drag"})
NORM = 1000

# Which optional fields each type needs; anything else must be absent.
_REQUIRED: dict[str, frozenset[str]] = {
    "click": frozenset({"x", "y"}),
    "double_click": frozenset({"x", "y"}),
    "right_click": frozenset({"x", "y"}),
    "drag": frozenset({"x", "y", "x2", "y2"}),
    "type": frozenset({"text"}),
    "key": frozenset({"key"}),
    "scroll": frozenset({"dx", "dy"}),
    "wait": frozenset(),
    "reset": frozenset(),
    "done": frozenset(),
}
_OPTIONAL: dict[str, frozenset[str]] = {"scroll": frozenset({"x", "y"}), "type": frozenset({"x", "y"})}
_TYPE_FIELDS = frozenset({"x", "y", "x2", "y2", "text", "key", "dx", "dy"})

Coord = Field(default=None, ge=0, le=NORM)


class Target(BaseModel):
    """The perceived element an action was chosen on (set-of-marks policies): what was meant, not
    only where. ``box`` is 0..1000, full-frame normalized."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(min_length=1, max_length=32)
    text: str | None = Field(default=None, max_length=256)
    box: tuple[int, int, int, int]

    @model_validator(mode="after")
    def _box_in_frame(self) -> "Target":
        x0, y0, x1, y1 = self.box
        if not (0 <= x0 <= x1 <= NORM and 0 <= y0 <= y1 <= NORM):
            raise ValueError(f"target box {self.box} is not ordered inside 0..{NORM}")
        return self


class Action(BaseModel):
    """What the model decided, before stream metadata is attached."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ActionType
    x: int | None = Coord
    y: int | None = Coord
    x2: int | None = Coord
    y2: int | None = Coord
    text: str | None = Field(default=None, max_length=512)
    key: str | None = Field(default=None, min_length=1, max_length=32)
    dx: int | None = Field(default=None, ge=-NORM, le=NORM)
    dy: int | None = Field(default=None, ge=-NORM, le=NORM)
    target: Target | None = None  # optional on any type: the element meant

    @model_validator(mode="after")
    def _fields_match_type(self) -> "Action":
        present = {f for f in _TYPE_FIELDS if getattr(self, f) is not None}
        required = _REQUIRED[self.type]
        missing = required - present
        if missing:
            raise ValueError(f"{self.type} needs {', '.join(sorted(missing))}")
        extra = present - required - _OPTIONAL.get(self.type, frozenset())
        if extra:
            raise ValueError(f"{self.type} does not take {', '.join(sorted(extra))}")
        return self

    def fields(self) -> dict:
        return self.model_dump(exclude_none=True)


class ActionMessage(Action):
    """The action payload published on ``P/S/action`` and the data channel."""

    v: Literal[1] = 1
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    seq: int = Field(ge=0)
    stream: str = Field(min_length=1)
    frame_ts: float
    published_ts: float
    deadline: float
    model: str
    latency_ms: dict[str, float]

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class InvalidAction(ValueError):
    """An action rejected by validation; ``reason`` says why in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def validate_action(data: dict) -> Action:
    """Validate a raw dict into an Action or raise InvalidAction with a reason."""
    try:
        return Action.model_validate(data)
    except ValidationError as exc:
        raise InvalidAction(_short(exc)) from None


def _short(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "action"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def to_pixels(nx: int, ny: int, width: int, height: int) -> tuple[int, int]:
    """Normalized 0..1000 -> the pixel whose area contains that point.

    0 maps to the first pixel and 1000 to the last, so every normalized value
    lands on the image whatever its size or aspect ratio.
    """
    _check_size(width, height)
    px = min(width - 1, int(math.floor(nx * width / NORM)))
    py = min(height - 1, int(math.floor(ny * height / NORM)))
    return px, py


def to_normalized(px: float, py: float, width: int, height: int) -> tuple[int, int]:
    """Pixel index (fractional for a box centre) -> normalized 0..1000.

    Takes the value nearest the pixel's centre among those that ``to_pixels``
    maps back to the same pixel, so ``to_pixels(*to_normalized(p))`` returns
    ``p`` for every pixel when the image is at most 1000 px on that side.
    """
    _check_size(width, height)
    return _norm_axis(px, width), _norm_axis(py, height)


def _norm_axis(p: float, size: int) -> int:
    n = int(round((p + 0.5) * NORM / size))
    cell = min(size - 1, max(0, int(math.floor(p))))
    low = -(-cell * NORM // size)  # ceil: first value that lands in this pixel
    high = -(-(cell + 1) * NORM // size) - 1
    if low <= high:
        n = min(high, max(low, n))
    return min(NORM, max(0, n))


KEYBOARD = frozenset({"type", "key"})
ONE_POINT = frozenset({"click", "double_click", "right_click"})
SIGNATURE_CELL = 25  # normalized units: clicks closer than this count as the same action


def signature(a: Action) -> tuple:
    """Actions that count as 'the same' (the loop's memory of dead actions): same type, point within
    a ``SIGNATURE_CELL`` cell, same payload - except the keyboard: text and keys go to the focused
    element, so typing or a key that changed nothing says there is none, and other text or keys
    would not find one either."""
    if a.type in KEYBOARD:
        return ("keyboard", (None, None), None, None, None, None)
    if a.type in ONE_POINT:
        return point_signature(a.type, a.x, a.y)
    cell = (None if a.x is None else a.x // SIGNATURE_CELL, None if a.y is None else a.y // SIGNATURE_CELL)
    return (a.type, cell, a.key, a.text, a.dx, a.dy)


def point_signature(kind: str, x: int, y: int) -> tuple:
    """``signature`` of a one-point action (click, double or right click) without building it: the
    dead-aware decoder tests every candidate click this way."""
    return (kind, (x // SIGNATURE_CELL, y // SIGNATURE_CELL), None, None, None, None)


def signature_cell(x: int, y: int) -> tuple[int, int, int, int]:
    """The box (0..1000) of the signature cell holding a point: where clicks count as the same."""
    cx, cy = x // SIGNATURE_CELL * SIGNATURE_CELL, y // SIGNATURE_CELL * SIGNATURE_CELL
    return (cx, cy, cx + SIGNATURE_CELL, cy + SIGNATURE_CELL)


@dataclass(frozen=True)
class DeadArea:
    """A dead element rather than a dead cell: a one-point action of ``kind`` anywhere in ``box``
    (x0, y0, x1, y1 in 0..1000) is dead (``loop.elements`` reads the box from the pixels)."""

    kind: str
    box: tuple[int, int, int, int]

    def holds(self, kind: str, x: int, y: int) -> bool:
        b = self.box
        return kind == self.kind and b[0] <= x < b[2] and b[1] <= y < b[3]


def box_to_normalized(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """A pixel box (exclusive end) -> the smallest 0..1000 box holding it."""
    _check_size(width, height)
    x0, y0, x1, y1 = box
    return (x0 * NORM // width, y0 * NORM // height,
            min(NORM, -(-x1 * NORM // width)), min(NORM, -(-y1 * NORM // height)))


def crop_to_frame(nx: int, ny: int, box: tuple[int, int, int, int]) -> tuple[int, int]:
    """A point normalized inside ``box`` (x0, y0, x1, y1 in full-frame 0..1000) -> full frame."""
    x0, y0, x1, y1 = box
    return (int(round(x0 + nx * (x1 - x0) / NORM)), int(round(y0 + ny * (y1 - y0) / NORM)))


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")


class Feedback(BaseModel):
    """An executor's report on one action (``P/S/feedback``, or the data channel)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1]
    action_id: str = Field(min_length=1, max_length=128)
    status: Literal["executed", "failed", "rejected"]
    ts: float
    detail: str | None = Field(default=None, max_length=1024)


class BadPayload(ValueError):
    pass


def parse_feedback(payload: bytes | str) -> Feedback:
    try:
        return Feedback.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise BadPayload(f"feedback {where}: {first['msg']}") from None
