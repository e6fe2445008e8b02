"""Steering around dead actions: the decoder's choice of alternative, and the heads family."""

from __future__ import annotations

import numpy as np

from edge_vla.actions import Action, DeadArea, signature
from edge_vla.runtime.avoid import DeadAwareDecoder, dead_tokens, is_dead
from edge_vla.runtime.bundle import Bundle
from edge_vla.runtime.grammar import ActionGrammar, ActionVocab
from edge_vla.runtime.heads import HeadsRuntime, build_heads_bundle
from edge_vla.config import ModelConfig

VOCAB = ActionVocab(start=10)
G = ActionGrammar(VOCAB)
SIZE = VOCAB.start + VOCAB.size


class Table:
    """A fake model: logits per decoded prefix, a peak where the test says; counts its calls."""

    def __init__(self, peaks: dict[tuple, dict[int, float]]):
        self.peaks, self.calls = peaks, []

    def __call__(self, prefix: list[int]) -> np.ndarray:
        self.calls.append(list(prefix))
        return self.logits(prefix)

    def logits(self, prefix) -> np.ndarray:
        row = np.zeros(SIZE, np.float32)
        kind = prefix[0] if prefix else None
        for tok, v in self.peaks.get((len(prefix), kind), {}).items():
            row[tok] = v
        return row


def click(x_bin: int, y_bin: int) -> list[int]:
    return [VOCAB.type_id("click"), VOCAB.bin_id(x_bin), VOCAB.bin_id(y_bin), VOCAB.end_id]


def model(wait_logit: float, y_runner_up: float) -> Table:
    c = VOCAB.type_id("click")
    return Table({(0, None): {c: 9.0, VOCAB.type_id("wait"): wait_logit},
                  (1, c): {VOCAB.bin_id(40): 9.0, VOCAB.bin_id(120): 6.0},  # x: 40, runner-up far at 120
                  (2, c): {VOCAB.bin_id(80): 9.0, VOCAB.bin_id(150): y_runner_up}})


def dead_if(*seqs):
    sigs = {signature(G.to_decoded(s).action) for s in seqs}
    return lambda tokens: is_dead(G.to_decoded(tokens).action, sigs)


def test_nothing_dead_is_plain_greedy_with_no_extra_calls():
    m = model(wait_logit=1.0, y_runner_up=6.0)
    dec = DeadAwareDecoder(G)
    assert dec.decode(m.logits([]), m, None) == click(40, 80)
    calls = len(m.calls)
    assert dec.decode(m.logits([]), m, dead_if(click(100, 100))) == click(40, 80)  # dead elsewhere
    assert len(m.calls) == 2 * calls  # the same two model calls again, nothing explored


def test_a_dead_click_gives_the_alternative_that_costs_least():
    dec = DeadAwareDecoder(G)
    # y's runner-up is close behind: same x, other y
    m = model(wait_logit=1.0, y_runner_up=8.5)
    assert dec.decode(m.logits([]), m, dead_if(click(40, 80))) == click(40, 150)
    # y's runner-up is weak, waiting is the model's clear second choice
    m = model(wait_logit=8.0, y_runner_up=2.0)
    assert dec.decode(m.logits([]), m, dead_if(click(40, 80))) == [VOCAB.type_id("wait"), VOCAB.end_id]
    # both clicks in x=40 dead and waiting unlikely: the runner-up x (far away, not a neighbouring bin)
    m = model(wait_logit=-5.0, y_runner_up=8.5)
    out = dec.decode(m.logits([]), m, dead_if(click(40, 80), click(40, 150)))
    assert out[:2] == click(120, 0)[:2]
    # the dead test is the signature: a click in the same 25-unit cell is dead too
    assert is_dead(Action(type="click", x=203, y=402), {signature(Action(type="click", x=210, y=410))})
    assert not is_dead(Action(type="click", x=260, y=402), {signature(Action(type="click", x=210, y=410))})


def test_a_dead_element_is_left_as_a_whole():
    """A dead button spans several signature cells: the search must leave its box, not step one cell
    over onto the same button (here the y runner-up is inside it, the x runner-up outside)."""
    c = VOCAB.type_id("click")
    m = Table({(0, None): {c: 9.0},
               (1, c): {VOCAB.bin_id(40): 9.0, VOCAB.bin_id(120): 6.0},
               (2, c): {VOCAB.bin_id(80): 9.0, VOCAB.bin_id(88): 8.9, VOCAB.bin_id(150): 1.0}})
    button = DeadArea("click", (150, 350, 300, 460))  # bins 40 / 80 / 88 are x 203, y 403 / 443
    cell_only = dead_tokens(G, {signature(G.to_decoded(click(40, 80)).action)})
    assert DeadAwareDecoder(G).decode(m.logits([]), m, cell_only) == click(40, 88)  # the same button again
    out = DeadAwareDecoder(G).decode(m.logits([]), m, dead_tokens(G, {button}))
    assert out[:2] == click(120, 0)[:2]
    assert is_dead(Action(type="click", x=290, y=355), {button})
    assert not is_dead(Action(type="click", x=300, y=400), {button}) and not is_dead(
        Action(type="right_click", x=200, y=400), {button})


def test_a_dead_keyboard_rules_out_typing_and_keys_and_the_next_kind_wins():
    """Text and keys go to the focused element: one that changed nothing makes both dead, and the
    search goes on to the model's third choice of action type (here a click)."""
    t, k, c = VOCAB.type_id("type"), VOCAB.type_id("key"), VOCAB.type_id("click")
    m = Table({(0, None): {t: 9.0, k: 8.0, c: 7.0},
               (1, c): {VOCAB.bin_id(40): 9.0}, (2, c): {VOCAB.bin_id(80): 9.0}})
    typed = Action(type="type", text="alice")
    assert signature(typed) == signature(Action(type="key", key="enter")) == signature(Action(type="type", text="b"))
    dead = frozenset({signature(typed)})
    out = DeadAwareDecoder(G).decode(m.logits([]), m, lambda tokens: is_dead(G.to_decoded(tokens).action, dead))
    assert out == click(40, 80)


def test_done_is_never_dead_and_wait_only_when_the_loop_says_so():
    wait = Action(type="wait")
    assert not is_dead(Action(type="done"), {signature(Action(type="done"))})
    assert not is_dead(wait, {signature(Action(type="click", x=1, y=1))})
    assert is_dead(wait, {signature(wait)})  # the watchdog's loop.wait_patience_s ran out
    m = model(wait_logit=12.0, y_runner_up=2.0)  # the model would rather wait
    dec = DeadAwareDecoder(G)
    assert dec.decode(m.logits([]), m, None) == [VOCAB.type_id("wait"), VOCAB.end_id]
    assert dec.decode(m.logits([]), m, dead_if([VOCAB.type_id("wait"), VOCAB.end_id])) == click(40, 80)


def test_heads_runtime_moves_off_a_dead_action(tmp_path):
    path = build_heads_bundle(tmp_path / "heads", seed=3)
    rt = HeadsRuntime(Bundle.load(path), ModelConfig(path=path, intra_threads=1))
    img = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    first, _ = rt.infer(img, "click ok")
    again, _ = rt.infer(img, "click ok", frozenset({("nothing",)}))
    assert again == first
    other, _ = rt.infer(img, "click ok", frozenset({signature(first)}))
    assert signature(other) != signature(first)


def test_the_onnx_policy_hands_the_loops_dead_actions_to_the_model(make_settings):
    from edge_vla.frames import make_frame
    from edge_vla.policy import DecisionContext
    from edge_vla.policy.onnx import OnnxPolicy

    policy = OnnxPolicy(make_settings())
    frame = make_frame(np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8), stream="s", seq=0)
    first = policy.decide(frame, "click ok").action
    assert policy.decide(frame, "click ok", context=DecisionContext()).action == first
    dead = DecisionContext(avoid=frozenset({signature(first)}))
    assert signature(policy.decide(frame, "click ok", context=dead).action) != signature(first)
