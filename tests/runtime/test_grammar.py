"""Constrained action decoding: whatever the logits, only valid actions come out (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_vla.actions import Action, validate_action
from edge_vla.runtime.grammar import ActionGrammar, ActionVocab

VOCAB = ActionVocab(start=300, bins=200, focus=True)
G = ActionGrammar(VOCAB)
N = 300 + VOCAB.size + 16


def run(rng: np.random.Generator, grammar=G, vocab_size=N, scale=5.0):
    tokens: list[int] = []
    while not grammar.done(tokens):
        tokens.append(grammar.pick(rng.normal(0, scale, vocab_size).astype(np.float32), tokens))
        assert len(tokens) < 64
    return grammar.to_decoded(tokens)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_logits_decode_to_valid_actions(seed):
    d = run(np.random.default_rng(seed))
    if d.action is not None:
        validate_action(d.action.fields())
    else:
        x0, y0, x1, y1 = d.focus_box
        assert 0 <= x0 < x1 <= 1000 and 0 <= y0 < y1 <= 1000


def test_every_type_reachable_and_valid():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(3000):
        d = run(rng)
        seen.add(d.action.type if d.action else "focus")
    assert seen == set(VOCAB.types) | {"focus"}


def test_logits_mask_only_allows_grammar_tokens():
    m = G.mask([], N)
    assert np.isfinite(m).sum() == len(VOCAB.types) + 1
    click = [VOCAB.type_id("click"), VOCAB.bin_id(10), VOCAB.bin_id(20)]
    assert G.forced(click) == VOCAB.end_id  # END after Y is forced: no model call
    focus = [VOCAB.focus_id, VOCAB.bin_id(50), VOCAB.bin_id(60)]
    assert G.allowed(focus)[0] == VOCAB.bin_id(50)  # x1 >= x0


@pytest.mark.parametrize("action", [
    Action(type="click", x=0, y=1000), Action(type="drag", x=10, y=20, x2=990, y2=500),
    Action(type="type", text="hello, world!"), Action(type="key", key="enter"),
    Action(type="scroll", dx=0, dy=200), Action(type="done"), Action(type="right_click", x=503, y=497)])
def test_encode_decode_round_trip(action):
    back = G.to_decoded(G.encode(action)).action
    assert back.type == action.type
    for f in ("x", "y", "x2", "y2"):
        if getattr(action, f) is not None:  # within half a bin (2.5 units), inclusive of rounding
            assert abs(getattr(back, f) - getattr(action, f)) <= 1000 / VOCAB.bins / 2 + 0.5
    if action.type in ("type", "key", "scroll"):
        assert back == action


def test_vocab_manifest_round_trip_and_size_check():
    d = VOCAB.to_dict()
    assert ActionVocab.from_dict(d) == VOCAB
    with pytest.raises(ValueError):
        ActionVocab.from_dict({**d, "size": d["size"] + 1})


def test_bins_cover_the_frame():
    centres = [VOCAB.bin_centre(i) for i in range(VOCAB.bins)]
    assert centres[0] <= 3 and centres[-1] >= 997 and centres == sorted(centres)
    assert all(VOCAB.to_bin(c) == i for i, c in enumerate(centres))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.text(alphabet="abAB _-'\"1.\u00e9", min_size=1, max_size=24))
def test_copying_grammar_types_only_spans_of_the_source(seed, source):
    g = G.copying(source)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        logits = rng.normal(0, 5.0, N).astype(np.float32)
        tokens = [VOCAB.type_id("type")] if VOCAB.type_id("type") in g.allowed([]) else []
        if not tokens:  # only untypable characters: TYPE is not offered at all
            assert not any(c in VOCAB.text_chars for c in source)
            return
        while not g.done(tokens):
            tokens.append(g.pick(logits + rng.normal(0, 1.0, N), tokens))
        text = g.to_decoded(tokens).action.text
        assert text and text in source and len(text) <= VOCAB.max_text


def test_copying_grammar_keeps_the_other_actions():
    g = G.copying("Type 'x' here")
    assert set(g.allowed([]).tolist()) == set(G.allowed([]).tolist())
    click = [VOCAB.type_id("click"), VOCAB.bin_id(10)]
    assert (g.allowed(click) == G.allowed(click)).all()
    chars = {VOCAB.text_chars[i - VOCAB.ids("text")[0]] for i in g.allowed([VOCAB.type_id("type")])}
    assert chars == set("Type 'xhr")
    assert G.allowed([VOCAB.type_id("type")]).size == len(VOCAB.text_chars)  # the source grammar is unchanged
