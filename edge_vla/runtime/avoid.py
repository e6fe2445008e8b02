"""Avoiding dead actions: decode the model's best action that the loop has not found dead.

The closed loop (``loop.verifier`` + ``loop.watchdog``) remembers actions that
had no visible effect; their signatures (``actions.signature``) reach the policy
as ``avoid``. A deterministic model shown the same screen answers with the same
action, so without this it clicks a dead spot until the watchdog steps in with
a generic Escape or scroll. Here the grammar-constrained decode skips any
completion that is dead (for a click: in a dead click's signature cell or a
dead element's box, ``actions.DeadArea``), and
when it had to skip, the best single deviation wins: at each choice of the
greedy path the best token that differs (for a coordinate, by more than
``BIN_SPREAD`` bins; for the action type, every other type) is tried and
decoding continues greedily; the candidate that gave up the least
log-probability at its one deviation is returned.
Nothing dead to avoid: plain greedy decoding, token for token, no extra model call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..actions import ONE_POINT, Action, DeadArea, point_signature, signature
from .grammar import ActionGrammar

BIN_SPREAD = 5  # a coordinate deviation moves at least this many bins (one signature cell at 200 bins)
NEVER_DEAD = frozenset({"done"})  # wait is dead only when the loop says so (loop.wait_patience_s)

Step = Callable[[list[int]], np.ndarray]  # logits after the prompt and these action tokens


def is_dead(action: Action, avoid: Iterable) -> bool:
    """``action`` is one the loop found dead: same signature (a click in the same cell), or a click
    inside a dead element (``DeadArea``)."""
    if action.type in NEVER_DEAD:
        return False
    if action.type in ONE_POINT and action.x is not None and action.y is not None:
        return _point_dead(action.type, action.x, action.y, avoid, _areas(avoid))
    return signature(action) in avoid


def _areas(avoid: Iterable) -> list[DeadArea]:
    return [a for a in avoid if isinstance(a, DeadArea)]


def _point_dead(kind: str, x: int, y: int, avoid, areas: list[DeadArea]) -> bool:
    return point_signature(kind, x, y) in avoid or any(a.holds(kind, x, y) for a in areas)


def dead_tokens(grammar: ActionGrammar, avoid: Iterable,
                to_frame: Callable[[int, int], tuple[int, int]] | None = None) -> Callable[[list[int]], bool] | None:
    """The decode-time test for ``avoid``: does this complete token sequence (an action in the view's
    coordinates, ``to_frame`` maps a point to the frame's) land on a dead action? None: nothing to avoid."""
    avoid = frozenset(avoid)
    if not avoid:
        return None

    areas = _areas(avoid)
    v = grammar.v
    clicks = {v.type_id(t): t for t in v.types if t in ONE_POINT}
    bin0 = v.bin_id(0)

    def dead(tokens: list[int]) -> bool:
        kind = clicks.get(tokens[0])
        if kind is not None:  # most candidates: a click; its signature without building an Action
            x, y = v.bin_centre(tokens[1] - bin0), v.bin_centre(tokens[2] - bin0)
            if to_frame is not None:
                x, y = to_frame(x, y)
            return _point_dead(kind, x, y, avoid, areas)
        action = grammar.to_decoded(tokens).action
        if action is None:  # a focus box only moves the view
            return False
        if to_frame is not None and action.x is not None and action.y is not None:  # a drag's start
            x, y = to_frame(action.x, action.y)
            action = action.model_copy(update={"x": x, "y": y})
        return is_dead(action, avoid)

    return dead


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


@dataclass
class _Path:
    tokens: list[int]
    regret: float = 0.0  # log-probability given up against the greedy choice
    choices: list[tuple[list[int], np.ndarray, np.ndarray, int]] = field(default_factory=list)


class DeadAwareDecoder:
    """Grammar-constrained greedy decoding that steers around dead completions."""

    def __init__(self, grammar: ActionGrammar):
        self.g = grammar
        bins = grammar.v.ids("bins")  # one contiguous block of ids: a range test, nothing built per decode
        self._bins = range(int(bins[0]), int(bins[-1]) + 1)

    def decode(self, logits0: np.ndarray, step: Step, dead: Callable[[list[int]], bool] | None = None) -> list[int]:
        cache: dict[tuple[int, ...], np.ndarray] = {(): logits0}

        def logits(prefix: list[int]) -> np.ndarray:
            key = tuple(prefix)
            if key not in cache:
                cache[key] = step(prefix)
            return cache[key]

        if dead is None:  # the frame -> action hot path: plain greedy, no scores kept
            tokens: list[int] = []
            while not self.g.done(tokens):
                tokens.append(self.g.pick(logits(tokens), tokens))
                self.g.append_forced(tokens)
            return tokens
        first = self._greedy([], 0.0, logits, dead)
        if first is not None and first.regret == 0.0:  # nothing had to be skipped
            return first.tokens
        best = first
        base = first if first is not None else self._greedy([], 0.0, logits, None)
        branches = []
        for prefix, allowed, lp, chosen in base.choices:  # type: ignore[union-attr]
            # the action type: every other kind (a dead keyboard rules out type and key at once);
            # further on, the runner-up
            alts = [i for i in range(len(allowed)) if i != chosen] if not prefix else \
                [a for a in [self._runner_up(allowed, lp, chosen)] if a is not None]
            branches += [(float(lp.max() - lp[a]), prefix + [int(allowed[a])]) for a in alts]
        # regret only grows along a path: a branch that already gives up more than the best is skipped
        for regret, prefix in sorted(branches, key=lambda b: b[0]):
            if best is not None and regret >= best.regret:
                break
            path = self._greedy(prefix, regret, logits, dead)
            if path is not None and (best is None or path.regret < best.regret):
                best = path
        return (best or base).tokens  # type: ignore[union-attr]  # all dead: the watchdog escalates

    def _runner_up(self, allowed: np.ndarray, lp: np.ndarray, chosen: int) -> int | None:
        tok = int(allowed[chosen])
        for i in np.argsort(-lp):
            if i == chosen:
                continue
            other = int(allowed[i])
            if tok in self._bins and other in self._bins and abs(other - tok) <= BIN_SPREAD:
                continue
            return int(i)
        return None

    def _greedy(self, prefix: list[int], regret: float, logits: Step,
                dead: Callable[[list[int]], bool] | None) -> _Path | None:
        g = self.g
        path = _Path(list(prefix), regret)
        g.append_forced(path.tokens)
        if dead is not None and g.done(path.tokens) and dead(path.tokens):
            return None
        while not g.done(path.tokens):
            allowed = g.allowed(path.tokens)
            lp = log_softmax(logits(path.tokens)[allowed])
            for i in np.argsort(-lp):
                cand = path.tokens + [int(allowed[i])]
                g.append_forced(cand)
                if dead is not None and g.done(cand) and dead(cand):
                    continue
                break
            else:
                return None
            path.regret += float(lp.max() - lp[i])
            path.choices.append((list(path.tokens), allowed, lp, int(i)))
            path.tokens = cand
        return path
