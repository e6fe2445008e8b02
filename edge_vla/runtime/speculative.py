"""Speculative decoding: a small draft model proposes up to k action tokens, the target verifies them in one pass.

Both models decode under the same action grammar. The target is fed the
tokens it has not seen plus the k proposals in a single decoder call and
returns logits at each of those positions; the longest prefix of proposals
that equals the target's own constrained greedy choice is accepted, and the
target's choice at the first mismatch (or after the last proposal) follows as
a bonus token. Each emitted token is therefore exactly what greedy decoding
with the target alone would emit. Rejected tokens are dropped from both
runtime-owned caches by truncation.

When it pays: a verify call costs about one decode step when k tokens fit in
one matmul pass, so the gain is (accepted + 1) target tokens per (1 target +
k draft) calls. Actions are short (TYPE X Y END, and END is forced), so on
tiny targets, where a draft step costs nearly as much as a target step, it
does not pay; it pays for long TYPE text and for large targets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .bundle import BundleError
from .grammar import ActionGrammar, Decoded
from .kv import KVCache
from .vlm import DECODER, Engine, preprocess


def load_draft(folder: Path, runtime, cfg) -> "Speculator":
    meta = folder / "draft.json"
    if not (folder / DECODER).is_file() or not meta.is_file():
        raise BundleError(f"speculative decoding: no draft model in {folder} (export with --draft DIR)")
    info = json.loads(meta.read_text())
    eng = Engine.from_folder(folder, info["kv"], cfg.intra_threads)
    if eng.embed.shape[0] != runtime.engine.embed.shape[0]:
        raise BundleError(f"draft {folder}: vocabulary {eng.embed.shape[0]} != target "
                          f"{runtime.engine.embed.shape[0]}")
    return Speculator(runtime.engine, eng, runtime.grammar, info["prompt"], int(info["image_size"]),
                      k=cfg.speculate_k, codec=runtime.codec)


class Speculator:
    def __init__(self, target: Engine, draft: Engine, grammar: ActionGrammar, draft_prompt: dict,
                 draft_image_size: int, k: int = 4, codec: str = "fp16"):
        self.target, self.draft, self.grammar = target, draft, grammar
        self.prompt, self.size, self.k, self.codec = draft_prompt, draft_image_size, k, codec
        self.totals = {"proposed": 0, "accepted": 0, "verify_calls": 0, "draft_calls": 0}

    def decode(self, pixels: np.ndarray, instr: list[int], t_cache: KVCache, t_logits: np.ndarray,
               stats: dict | None = None, grammar: ActionGrammar | None = None) -> Decoded:
        g, d = grammar or self.grammar, self.draft
        if pixels.shape[-1] != self.size:
            pixels = preprocess((pixels[0].transpose(1, 2, 0) * 255).round().astype(np.uint8), self.size)
        d_cache = KVCache(self.codec, d.layers, d.kv_heads, d.head_dim)
        d.step(d.prompt_embeds(self.prompt, d.encode(pixels), instr), d_cache)
        t_base, d_base = t_cache.length, d_cache.length
        tokens: list[int] = []
        nxt = t_logits
        d_fed = 0
        s = {"proposed": 0, "accepted": 0, "verify_calls": 0, "draft_calls": 0}
        while True:
            tokens.append(g.pick(nxt, tokens))
            g.append_forced(tokens)
            if g.done(tokens):
                break
            t_fed = t_cache.length - t_base
            # draft proposes
            seq = list(tokens)
            prop: list[int] = []
            while len(prop) < self.k and not g.done(seq):
                dl = d.step(d.embed_ids(seq[d_fed:]), d_cache)[-1]
                s["draft_calls"] += 1
                d_fed = len(seq)
                p = g.pick(dl, seq)
                prop.append(p)
                seq.append(p)
                n0 = len(seq)
                g.append_forced(seq)
                prop.extend(seq[n0:])
            # target verifies all proposals in one call
            feed = tokens[t_fed:] + prop
            first = len(tokens) - t_fed - 1
            logits = self.target.step(self.target.embed_ids(feed), t_cache,
                                      list(range(first, first + len(prop) + 1)))
            s["verify_calls"] += 1
            s["proposed"] += len(prop)
            n_acc = 0
            for i, p in enumerate(prop):
                if g.pick(logits[i], tokens + prop[:i]) != p:
                    break
                n_acc += 1
            s["accepted"] += n_acc
            tokens.extend(prop[:n_acc])
            t_cache.truncate(t_base + len(tokens))
            keep = min(d_fed, len(tokens))
            d_cache.truncate(d_base + keep)
            d_fed = keep
            if g.done(tokens):
                break
            nxt = logits[n_acc]
        for key, v in s.items():
            self.totals[key] += v
        if stats is not None:
            stats.update(s, tokens=len(tokens))
        return g.to_decoded(tokens)
    @property
    def acceptance_rate(self) -> float:
        return self.totals["accepted"] / max(1, self.totals["proposed"])
