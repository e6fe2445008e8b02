"""The vlm runtime over really exported tiny bundles: validity, KV codecs, speculative decoding, RoI."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # the export extra; without it these tests skip
pytest.importorskip("onnxscript")

from edge_vla.actions import InvalidAction, signature, validate_action
from edge_vla.runtime.families import load_runtime
from edge_vla.runtime.kv_eval import agreement
from edge_vla.runtime.vlm import CachedSteps, preprocess

from .conftest import model_cfg

WORDS = ["click", "the", "ok", "button", "type", "hello", "scroll", "down", "open", "settings", "press", "enter"]


def test_thousand_random_images_only_valid_actions(exported):
    """predict-equivalent: load_runtime + infer + the JSON fields, 1,000 random frames and instructions."""
    rt = load_runtime(model_cfg(exported("student")))
    rng = np.random.default_rng(1234)
    invalid, kinds = 0, set()
    for _ in range(1000):
        h, w = int(rng.integers(32, 120)), int(rng.integers(32, 200))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        action, _ = rt.infer(img, " ".join(rng.choice(WORDS, int(rng.integers(1, 6)))))
        try:
            validate_action(action.fields())
        except InvalidAction:
            invalid += 1
        kinds.add(action.type)
    assert invalid == 0
    assert len(kinds) >= 2  # the random model does emit different actions


def _prompts(rt, n=32, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.integers(0, 256, (72, 128, 3), dtype=np.uint8)
        instr = " ".join(rng.choice(WORDS, 4))
        out.append(rt.engine.prompt_embeds(rt.prompt, rt.engine.encode(preprocess(img, rt.image_size)),
                                           rt.tokenizer.encode(instr)))
    return out


# Measured on the tiny random student (36-token prompts, 32 inputs; see the issue note):
# fp16 agreement 1.0 KL ~3e-11; int8 1.0 / ~2e-8; int4 KIVI with no fp16 window 1.0 / ~2.3e-6 mean.
# Thresholds leave headroom for other CPUs' float rounding, not for a broken codec (see the control).
THRESHOLDS = {("fp16", 32): (1.0, 1e-8), ("int8", 32): (0.97, 1e-6), ("int4", 32): (0.97, 1e-6),
              ("int4", 0): (0.9, 5e-5)}


@pytest.mark.parametrize("codec,residual", list(THRESHOLDS))
def test_kv_codec_agreement(exported, codec, residual):
    rt = load_runtime(model_cfg(exported("student")))
    r = agreement(rt.engine, rt.grammar, _prompts(rt), codec, residual=residual)
    min_agree, max_kl = THRESHOLDS[(codec, residual)]
    assert r["action_agreement"] >= min_agree and r["kl_mean"] <= max_kl, r


def test_kv_agreement_detects_a_broken_codec(exported, monkeypatch):
    from edge_vla.runtime import kv

    rt = load_runtime(model_cfg(exported("student")))
    orig = kv.KiviLayer.materialize

    def broken(self):
        k, v = orig(self)
        return k, np.zeros_like(v)

    monkeypatch.setattr(kv.KiviLayer, "materialize", broken)
    r = agreement(rt.engine, rt.grammar, _prompts(rt, 16), "int4", residual=0)
    assert r["kl_mean"] > THRESHOLDS[("int4", 0)][1]


def test_runtime_uses_configured_codec(exported):
    rt = load_runtime(model_cfg(exported("student"), kv_cache="int4"))
    assert rt.codec == "int4"
    action, _ = rt.infer(np.zeros((50, 50, 3), np.uint8), "click ok")
    validate_action(action.fields())


@pytest.mark.parametrize("draft_seed,focus", [(0, False), (1, False), (0, True)])
def test_speculative_output_identical_to_greedy(exported, draft_seed, focus):
    """draft_seed 0: the draft equals the target (high acceptance); 1: an unrelated random draft;
    focus: through the RoI passes, where the draft reads the pixels of the full view itself."""
    import tempfile

    from edge_vla.export.exporter import export_model
    from edge_vla.export.families import tiny
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        out = export_model(tiny("student"), Path(d) / "b", draft=tiny("student", seed=draft_seed), parity_steps=2,
                           focus=focus)
        plain = load_runtime(model_cfg(out))
        spec = load_runtime(model_cfg(out, speculative=True, speculate_k=3))
        rng = np.random.default_rng(7)
        for _ in range(40):
            img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
            instr = " ".join(rng.choice(WORDS, 3))
            for rt in (spec, plain):
                if rt.roi is not None:
                    rt.roi.box = None
            assert spec.infer(img, instr)[0] == plain.infer(img, instr)[0]
        rate = spec.draft.acceptance_rate
        if draft_seed == 0:
            assert rate > 0.95
        assert spec.draft.totals["verify_calls"] > 0


@pytest.mark.parametrize("focus", [False, True])
def test_a_dead_action_is_steered_around_and_nothing_else_changes(exported, focus):
    """The loop's dead actions (``avoid``) move the exported student to another valid action; with
    nothing dead the decode is the plain greedy one (the search's cache branching leaves it intact)."""
    rt = load_runtime(model_cfg(exported("student", focus=focus)))
    rng = np.random.default_rng(7)
    steered = 0
    for _ in range(12):
        img = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
        instr = " ".join(rng.choice(WORDS, 3))

        def infer(avoid=frozenset()):
            if rt.roi is not None:
                rt.roi.box = None  # the same start for every call
            return rt.infer(img, instr, avoid)[0]

        first = infer()
        if first.type in ("wait", "done"):  # done is never dead; RoI gives up with wait after re-aiming
            continue
        other = infer(frozenset({signature(first)}))
        validate_action(other.fields())
        assert signature(other) != signature(first)
        assert infer() == first and infer(frozenset({("key", (None, None), "f13", None, None, None)})) == first
        steered += 1
    assert steered >= 3


@pytest.mark.parametrize("type_text", ["instruction", "free"])
def test_typed_text_is_a_span_of_the_instruction(exported, type_text):
    """model.type_text: by default a TYPE writes only a span of the instruction (in its own case); 'free'
    lets the random student spell whatever it likes, which shows the constraint is what keeps it there."""
    rt = load_runtime(model_cfg(exported("student"), roi="off", type_text=type_text))
    tid = rt.vocab.type_id("type")
    rng = np.random.default_rng(7)
    spans = 0
    for _ in range(40):
        img = rng.integers(0, 256, (72, 128, 3), dtype=np.uint8)
        instr = f"Fill Name with \"{rng.choice(WORDS)}\" and click {rng.choice(WORDS).upper()}"
        embeds = rt.engine.prompt_embeds(rt.prompt, rt.engine.encode(preprocess(img, rt.image_size)),
                                         rt.tokenizer.encode(instr))
        cache = rt.engine.new_cache()
        rt.engine.step(embeds, cache)  # prefill
        step = CachedSteps(rt.engine, cache)
        g, tokens = rt.grammar_for(instr), [tid]  # a TYPE, whatever the random model would start with
        while not g.done(tokens):
            tokens.append(g.pick(step(tokens), tokens))
        text = g.to_decoded(tokens).action.text
        assert text
        spans += text in instr
    assert spans == 40 if type_text == "instruction" else spans < 40
    if type_text == "instruction":
        assert tid not in rt.grammar_for("\u00e9\u00e9").allowed([])  # nothing typable: no TYPE at all
