"""Measure a KV-cache codec against the fp32 cache on a fixed set of inputs (numpy + onnxruntime).

For each input: the constrained greedy action with the fp32 cache and with the
codec (agreement = identical token sequences), and the KL divergence
KL(p_fp32 || p_codec) of the next-token distribution at each decode step,
teacher-forced on the fp32 tokens so both see the same prefix.
"""

from __future__ import annotations

import numpy as np

from .grammar import ActionGrammar
from .kv import KVCache
from .avoid import log_softmax
from .vlm import Engine


def _decode(engine: Engine, grammar: ActionGrammar, embeds: np.ndarray, cache: KVCache,
            force: list[int] | None = None):
    logits = engine.step(embeds, cache)[-1]
    tokens: list[int] = []
    rows = []
    while not grammar.done(tokens):
        rows.append(logits)
        tok = grammar.pick(logits, tokens) if force is None else force[len(tokens)]
        tokens.append(tok)
        if not grammar.done(tokens):
            logits = engine.step(engine.embed_ids([tok]), cache)[-1]
    return tokens, rows


def agreement(engine: Engine, grammar: ActionGrammar, prompts: list[np.ndarray], codec: str,
              group: int = 32, residual: int = 32) -> dict:
    """``prompts``: prefill embeddings [1, T, D], one per input."""
    same, kls = 0, []
    for embeds in prompts:
        ref_tokens, ref_rows = _decode(engine, grammar, embeds, KVCache("fp32", engine.layers, engine.kv_heads,
                                                                        engine.head_dim))
        mk = lambda: KVCache(codec, engine.layers, engine.kv_heads, engine.head_dim, group, residual)  # noqa: E731
        tokens, _ = _decode(engine, grammar, embeds, mk())
        same += tokens == ref_tokens
        _, rows = _decode(engine, grammar, embeds, mk(), force=ref_tokens)
        for a, b in zip(ref_rows[1:], rows[1:]):  # step 0 is the prefill: no cache read yet
            p, q = log_softmax(a), log_softmax(b)
            kls.append(float((np.exp(p) * (p - q)).sum()))
    return {"codec": codec, "residual": residual, "inputs": len(prompts), "action_agreement": same / len(prompts),
            "kl_mean": float(np.mean(kls)) if kls else 0.0, "kl_max": float(np.max(kls)) if kls else 0.0}
