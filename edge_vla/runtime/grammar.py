"""Constrained action decoding: a grammar over action tokens, applied as a logits mask.

The action vocabulary is one contiguous block of token ids (``start`` ..
``start + size``) inside the model's vocabulary, laid out as

    types (one token per action type) | FOCUS (optional) | coordinate bins |
    scroll directions | key names | text characters (printable ASCII) | END

and the grammar, per action type, is

    click/double_click/right_click:  TYPE X Y END
    drag:                            TYPE X Y X2 Y2 END
    scroll:                          TYPE DIR END
    key:                             TYPE KEY END
    type:                            TYPE CHAR{1..max_text} END    (``copying``: a span of the instruction)
    wait/reset/done:                 TYPE END
    FOCUS (region of interest):      FOCUS X0 Y0 X1 Y1 END   with X1 >= X0, Y1 >= Y0

At every step only the tokens the grammar allows are candidates (the argmax is
taken over those), so whatever the weights, the decoded sequence maps to an
``Action`` that passes ``validate_action``. A step with exactly one allowed
token is *forced*: the token is appended without a model call.

Coordinate binning: ``bins`` bins over 0..1000 (default 200, 5 units per bin).
The worst-case quantisation error is half a bin, 2.5 units = 0.25% of the frame:
4.8 px across 1920, 1.8 px down 720 — below half the size of the smallest
clickable targets the simulator draws (about 16 px), while keeping the softmax
over each coordinate at 200 classes rather than 1001 (each class sees five times
the training samples; the student's notes show 100-way bins already learn
slowly). Inside a region-of-interest crop the same bins cover the crop only,
so the full-frame resolution there is finer still.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..actions import ACTION_TYPES, NORM, Action, validate_action

POINT1 = ("click", "double_click", "right_click")
KEYS = ("enter", "tab", "escape", "backspace", "delete", "space", "up", "down", "left", "right",
        "home", "end", "pageup", "pagedown")
SCROLL_DIRS = ("up", "down", "left", "right")
TEXT_CHARS = "".join(chr(c) for c in range(0x20, 0x7F))
FOCUS = "focus"


@dataclass(frozen=True)
class ActionVocab:
    """Where each action token lives in the model's vocabulary (manifest ``action_vocab``)."""

    start: int
    bins: int = 200
    types: tuple[str, ...] = ACTION_TYPES
    focus: bool = False
    max_text: int = 32
    scroll_step: int = 200
    keys: tuple[str, ...] = KEYS
    scroll_dirs: tuple[str, ...] = SCROLL_DIRS
    text_chars: str = TEXT_CHARS
    _off: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.bins < 2 or self.bins > NORM + 1:
            raise ValueError(f"coordinate bins must be 2..{NORM + 1}, got {self.bins}")
        bad = [t for t in self.types if t not in ACTION_TYPES]
        if bad:
            raise ValueError(f"unknown action types {bad}")
        off, n = {}, self.start
        for name, count in (("types", len(self.types)), ("focus", int(self.focus)), ("bins", self.bins),
                            ("dirs", len(self.scroll_dirs)), ("keys", len(self.keys)),
                            ("text", len(self.text_chars)), ("end", 1)):
            off[name] = n
            n += count
        off["stop"] = n
        self._off.update(off)

    @property
    def size(self) -> int:
        return self._off["stop"] - self.start

    @property
    def end_id(self) -> int:
        return self._off["end"]

    @property
    def focus_id(self) -> int:
        if not self.focus:
            raise ValueError("this action vocabulary has no FOCUS token")
        return self._off["focus"]

    def type_id(self, kind: str) -> int:
        return self._off["types"] + self.types.index(kind)

    def bin_id(self, i: int) -> int:
        return self._off["bins"] + i

    def dir_id(self, d: str) -> int:
        return self._off["dirs"] + self.scroll_dirs.index(d)

    def key_id(self, k: str) -> int:
        return self._off["keys"] + self.keys.index(k)

    def char_id(self, c: str) -> int:
        return self._off["text"] + self.text_chars.index(c)

    def ids(self, kind: str) -> np.ndarray:
        nxt = {"types": "focus", "focus": "bins", "bins": "dirs", "dirs": "keys", "keys": "text",
               "text": "end", "end": "stop"}[kind]
        return np.arange(self._off[kind], self._off[nxt], dtype=np.int64)

    # coordinates <-> bins
    def bin_centre(self, i: int) -> int:
        return min(NORM, int(math.floor((i + 0.5) * NORM / self.bins + 0.5)))

    def bin_low(self, i: int) -> int:
        return int(math.floor(i * NORM / self.bins + 0.5))

    def bin_high(self, i: int) -> int:
        return min(NORM, int(math.floor((i + 1) * NORM / self.bins + 0.5)))

    def to_bin(self, v: int) -> int:
        """The bin whose centre is nearest to ``v`` (training targets use this)."""
        return min(self.bins - 1, max(0, int(v * self.bins // (NORM + 1))))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "tokens", "start": self.start, "size": self.size, "bins": self.bins,
                "types": list(self.types), "focus": self.focus, "max_text": self.max_text,
                "scroll_step": self.scroll_step, "keys": list(self.keys),
                "scroll_dirs": list(self.scroll_dirs), "text_chars": self.text_chars}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ActionVocab":
        if d.get("kind") != "tokens":
            raise ValueError(f"action_vocab kind {d.get('kind')!r} is not 'tokens'")
        v = cls(start=int(d["start"]), bins=int(d["bins"]), types=tuple(d["types"]), focus=bool(d.get("focus")),
                max_text=int(d.get("max_text", 32)), scroll_step=int(d.get("scroll_step", 200)),
                keys=tuple(d.get("keys", KEYS)), scroll_dirs=tuple(d.get("scroll_dirs", SCROLL_DIRS)),
                text_chars=str(d.get("text_chars", TEXT_CHARS)))
        if "size" in d and int(d["size"]) != v.size:
            raise ValueError(f"action_vocab size {d['size']} does not match its layout ({v.size})")
        return v


@dataclass
class Decoded:
    """The outcome of one constrained decode: the action (or a focus box) and its tokens."""

    tokens: list[int]
    action: Action | None = None
    focus_box: tuple[int, int, int, int] | None = None


class ActionGrammar:
    """The state machine: which token ids may follow a prefix of action tokens."""

    def __init__(self, vocab: ActionVocab):
        self.v = vocab
        self._types = np.array([vocab.type_id(t) for t in vocab.types]
                               + ([vocab.focus_id] if vocab.focus else []), dtype=np.int64)
        self._bins = vocab.ids("bins")
        self._dirs = vocab.ids("dirs")
        self._keys = vocab.ids("keys")
        self._text = vocab.ids("text")
        self._end = np.array([vocab.end_id], dtype=np.int64)
        self._text_or_end = np.concatenate([self._text, self._end])
        self._kind_of = {vocab.type_id(t): t for t in vocab.types}
        if vocab.focus:
            self._kind_of[vocab.focus_id] = FOCUS
        self._source: str | None = None

    def copying(self, source: str) -> "ActionGrammar":
        """This grammar with a TYPE's text restricted to a span of ``source`` (the instruction, in its own
        case): the model still chooses which span and where it ends, but can never type a character the
        instruction does not hold there. A small student reads a lowercased instruction and copies poorly;
        a field on a robot's screen must not receive invented text. No typable character: no TYPE."""
        g = copy.copy(self)
        g._source = source
        if not any(c in self.v.text_chars for c in source) and "type" in self.v.types:
            g._types = self._types[self._types != self.v.type_id("type")]
        return g

    def _span_next(self, body: list[int]) -> np.ndarray:
        """Characters that continue ``body`` (the text typed so far) along some span of the source."""
        v, src = self.v, self._source or ""
        typed = "".join(v.text_chars[t - self._text[0]] for t in body)
        k = len(typed)
        nxt = {src[i + k] for i in range(len(src) - k) if src.startswith(typed, i)}
        ids = sorted(v.char_id(c) for c in nxt if c in v.text_chars)
        return np.array(ids + ([v.end_id] if k else []), dtype=np.int64)

    def allowed(self, prefix: list[int]) -> np.ndarray:
        """Token ids allowed after ``prefix`` (empty once the action is complete)."""
        if not prefix:
            return self._types
        if prefix[-1] == self.v.end_id:
            return np.empty(0, dtype=np.int64)
        kind = self._kind_of[prefix[0]]
        n = len(prefix) - 1  # tokens after the type token
        if kind in POINT1:
            return self._bins if n < 2 else self._end
        if kind == "drag":
            return self._bins if n < 4 else self._end
        if kind == FOCUS:
            if n in (0, 1):
                return self._bins
            if n in (2, 3):  # x1 >= x0, y1 >= y0: a box of positive size after bin edges
                lo = prefix[n - 1] - self._bins[0]
                return self._bins[lo:]
            return self._end
        if kind == "scroll":
            return self._dirs if n < 1 else self._end
        if kind == "key":
            return self._keys if n < 1 else self._end
        if kind == "type":
            if n >= self.v.max_text:
                return self._end
            if self._source is not None:
                return self._span_next(prefix[1:])
            return self._text if n == 0 else self._text_or_end
        return self._end  # wait, reset, done

    def done(self, prefix: list[int]) -> bool:
        return bool(prefix) and prefix[-1] == self.v.end_id

    def pick(self, logits: np.ndarray, prefix: list[int]) -> int:
        """Greedy choice among the allowed tokens (the logits mask)."""
        allowed = self.allowed(prefix)
        if allowed.size == 1:
            return int(allowed[0])
        return int(allowed[int(np.argmax(logits[allowed]))])

    def mask(self, prefix: list[int], vocab_size: int) -> np.ndarray:
        """The additive mask: 0 where allowed, -inf elsewhere (for callers that want the full row)."""
        m = np.full(vocab_size, -np.inf, dtype=np.float32)
        m[self.allowed(prefix)] = 0.0
        return m

    def forced(self, prefix: list[int]) -> int | None:
        allowed = self.allowed(prefix)
        return int(allowed[0]) if allowed.size == 1 else None

    def append_forced(self, tokens: list[int]) -> None:
        """Append to ``tokens`` (in place) every token that is forced after them."""
        while not self.done(tokens):
            f = self.forced(tokens)
            if f is None:
                return
            tokens.append(f)

    def to_decoded(self, tokens: list[int]) -> Decoded:
        """Map a complete token sequence to an Action (validated) or a focus box."""
        if not self.done(tokens):
            raise ValueError(f"incomplete action sequence {tokens}")
        v = self.v
        kind = self._kind_of[tokens[0]]
        body = tokens[1:-1]
        b = [t - self._bins[0] for t in body]
        if kind == FOCUS:
            box = (v.bin_low(b[0]), v.bin_low(b[1]), v.bin_high(b[2]), v.bin_high(b[3]))
            return Decoded(tokens=tokens, focus_box=box)
        data: dict[str, Any] = {"type": kind}
        if kind in POINT1 or kind == "drag":
            data["x"], data["y"] = v.bin_centre(b[0]), v.bin_centre(b[1])
            if kind == "drag":
                data["x2"], data["y2"] = v.bin_centre(b[2]), v.bin_centre(b[3])
        elif kind == "scroll":
            d = v.scroll_dirs[body[0] - self._dirs[0]]
            step = v.scroll_step
            data["dx"], data["dy"] = {"up": (0, -step), "down": (0, step),
                                      "left": (-step, 0), "right": (step, 0)}[d]
        elif kind == "key":
            data["key"] = v.keys[body[0] - self._keys[0]]
        elif kind == "type":
            data["text"] = "".join(v.text_chars[t - self._text[0]] for t in body)
        return Decoded(tokens=tokens, action=validate_action(data))

    def encode(self, action: Action) -> list[int]:
        """The token sequence for an action (training targets, tests)."""
        v = self.v
        out = [v.type_id(action.type)]
        if action.type in POINT1 or action.type == "drag":
            out += [v.bin_id(v.to_bin(action.x)), v.bin_id(v.to_bin(action.y))]
            if action.type == "drag":
                out += [v.bin_id(v.to_bin(action.x2)), v.bin_id(v.to_bin(action.y2))]
        elif action.type == "scroll":
            d = ("down" if action.dy > 0 else "up") if action.dy else ("right" if action.dx > 0 else "left")
            out.append(v.dir_id(d))
        elif action.type == "key":
            out.append(v.key_id(action.key))
        elif action.type == "type":
            out += [v.char_id(c) for c in action.text[: v.max_text] if c in v.text_chars]
        return out + [v.end_id]
