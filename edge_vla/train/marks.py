"""Student v2: learns what to do among the perceived elements (set-of-marks), by behaviour cloning
on the simulator's oracle, then DAgger on the states its own actions reach. Torch only here.

Samples hold exactly what the runtime gives the chooser (``runtime.marks.featurize`` over the real
perception stage's layer), so the student learns on OCR as it reads, quirks included.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..actions import Action, to_normalized, to_pixels
from ..perception.layer import ElementLayer, Perceiver
from ..perception.match import norm, words
from ..perception.text import TextReader
from ..runtime.marks import (CROP_H, CROP_W, MAX_CHARS, MAX_ELEMENTS, MAX_WORDS, N_FEATS, N_GLOBAL, TYPES,
                             featurize)
from ..sim import THEMES, TASK_KINDS, SimWorld
from ..sim.scene import inside
from .data import TRAIN_FONTS

TRAIN_RESOLUTIONS = ((390, 844), (1280, 720), (1920, 1080), (3840, 2160), (1366, 768), (1024, 768))
INPUTS = ("words", "word_mask", "texts", "feats", "crops", "elem_mask", "globals")
OUTPUTS = ("type_logits", "mark_logits", "span_start", "span_end")
PER_MARK = ("texts", "feats", "crops", "elem_mask")


# -- labels --------------------------------------------------------------------------------------

@dataclass
class Sample:
    inputs: dict[str, np.ndarray]
    type_id: int
    marks: np.ndarray  # 1 where clicking that mark does what the oracle wants
    span: tuple[int, int] | None  # words of the instruction the oracle types


def label(world: SimWorld, layer: ElementLayer, elements, action: Action, instruction: str):
    """(type id, correct marks, span) for the oracle's ``action``; None when no perceived mark does it."""
    kind = action.type
    if kind == "scroll":
        kind = "scroll_down" if (action.dy or 0) > 0 else "scroll_up"
    if kind not in TYPES:
        return None
    marks = np.zeros(MAX_ELEMENTS, np.float32)
    span = None
    if kind in ("click", "type", "scroll_down", "scroll_up"):
        target = world.target
        if target is None:
            return None
        box = target.box
        if kind.startswith("scroll"):  # any row of the list holds the pointer over it
            box = next((e.box for e in world.elements if e.kind == "list"), box)
        for i, e in enumerate(elements):
            cx, cy = e.centre()
            marks[i] = float(inside(box, int(cx), int(cy)) and e.kind != "panel")
        if not marks.any():
            return None
    if kind == "type":
        ws = [norm(w) for w in words(instruction)[:MAX_WORDS]]
        want = norm(action.text or "")
        for i in range(len(ws)):
            for j in range(i, min(len(ws), i + 6)):
                if "".join(ws[i:j + 1]) == want:
                    span = (i, j)
                    break
            if span:
                break
        if span is None:
            return None
    return TYPES.index(kind), marks, span


# -- rollouts ------------------------------------------------------------------------------------

# One-step instructions for the click the oracle wants next: the task's own wording is one sentence
# per task kind; people name a control in many more ways.
FIELD_WORDS = ("Click the {x} field", "Click into {x}", "Focus the {x} input", "Go to {x}", "Put the cursor in {x}",
               "Click the {x} box")
CLICK_WORDS = ("Click {x}", "Open {x}", "Choose {x}", "Click on {x}", "Go to {x}", "Press {x}", "Select {x}",
               "Tap the {x} button", "Click the {x} link", "Pick {x}")
CHECK_WORDS = ("Tick '{x}'", "Toggle {x}", "Check {x}", "Click the {x} checkbox")


def _single_step(world: SimWorld, oracle: Action, rng: random.Random) -> str | None:
    target = world.target
    if oracle.type != "click" or target is None or not target.label or target.label == "Close":
        return None
    words = {"text_field": FIELD_WORDS, "checkbox": CHECK_WORDS}.get(target.kind, CLICK_WORDS)
    return rng.choice(words).format(x=target.label)


def rollouts(seed: int, episodes: int, policy: str | None = None, explore: float = 0.3, threads: int = 1,
             max_steps: int = 12, reword: float = 0.0) -> list[Sample]:
    """Episodes on even (training) seeds; each visited state labelled by the oracle. ``policy``
    (a runtime with ``infer``) picks what is executed (DAgger); else the oracle, with ``explore`` odds
    of a random element clicked instead (states a perfect teacher never shows). ``policy``: a bundle folder."""
    rng = random.Random(f"edge-vla-marks:{seed}")
    reader = TextReader(threads=threads)
    if isinstance(policy, str):  # a bundle folder: loaded here, so that worker processes each open their own
        from ..config import ModelConfig
        from ..runtime.families import load_runtime

        policy = load_runtime(ModelConfig(path=policy, intra_threads=threads))
    out: list[Sample] = []
    for ep in range(episodes):
        w, h = rng.choice(TRAIN_RESOLUTIONS)
        world = SimWorld(seed=rng.randrange(1 << 29) * 2, width=w, height=h, theme=rng.choice(THEMES),
                         task=TASK_KINDS[ep % len(TASK_KINDS)], fonts=TRAIN_FONTS)
        world.advance(rng.uniform(0, 1.5))
        perceiver = Perceiver(reader)
        if policy is not None:
            policy.reset()
        last, last_point = "none", None
        for _ in range(max_steps):
            image = np.ascontiguousarray(world.render())
            layer = perceiver.perceive(image)
            oracle = world.oracle()
            inputs, elements = featurize(layer, image, world.instruction, last, last_point, MAX_ELEMENTS)
            lab = label(world, layer, elements, oracle, world.instruction)
            if lab is not None:
                out.append(Sample(inputs, *lab))
            extra = _single_step(world, oracle, rng) if rng.random() < reword else None
            if extra is not None:  # the same screen, asked for its next click in other words
                x, els = featurize(layer, image, extra, "none", None, MAX_ELEMENTS)
                lab = label(world, layer, els, oracle, extra)
                if lab is not None:
                    out.append(Sample(x, *lab))
            if oracle.type == "done":
                break
            if policy is not None and rng.random() < 0.7:  # mostly the student's own choices: DAgger
                act, _ = policy.infer(image, world.instruction, layer=layer)
            elif elements and rng.random() < explore:
                e = rng.choice(elements)
                x, y = to_normalized(*e.centre(), w, h)
                act = Action(type="click", x=x, y=y)
            else:
                act = oracle
            if act.type not in ("wait", "done"):
                world.execute(act)
                last = {"double_click": "click"}.get(act.type, act.type)
                if act.x is not None and act.y is not None and act.type in ("click", "type"):
                    last_point = to_pixels(act.x, act.y, w, h)
            else:
                last = "wait"
            world.advance(rng.uniform(0.3, 0.9))
            if world.success and rng.random() < 0.5:
                break
    return out


def _rollouts_job(args) -> list[Sample]:
    torch.set_num_threads(1)
    return rollouts(*args)


def collect(seed: int, episodes: int, workers: int = 2, **kw) -> list[Sample]:
    if workers <= 1:
        return rollouts(seed, episodes, **kw)  # type: ignore[arg-type]
    import multiprocessing as mp

    per = math.ceil(episodes / workers)
    jobs = [(seed * 1000 + i, per, kw.get("policy"), kw.get("explore", 0.3), 1, 12, kw.get("reword", 0.0))
            for i in range(workers)]
    with mp.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_rollouts_job, jobs)
    return [s for p in parts for s in p]


# -- the model -------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w


class Attention(nn.Module):
    """Self-attention over the set, written out (the fused kernel of nn.MultiheadAttention does not
    export to ONNX); parameters are named as nn.MultiheadAttention's."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, 1 / math.sqrt(d // heads)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d))
        self.out_proj = nn.Linear(d, d)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x, pad):
        B, T, D = x.shape
        q, k, v = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        att = q @ k.transpose(-1, -2) * self.scale
        att = att.masked_fill(pad[:, None, None, :], torch.finfo(x.dtype).min / 2).softmax(-1)
        return self.out_proj((att @ v).transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    """A Llama block (pre-RMSNorm, SwiGLU MLP), attending over the whole set: marks have no order."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.attn = Attention(d, heads)
        self.gate, self.up, self.down = nn.Linear(d, 2 * d, bias=False), nn.Linear(d, 2 * d, bias=False), \
            nn.Linear(2 * d, d, bias=False)

    def forward(self, x, pad):
        h = self.n1(x)
        x = x + self.attn(h, pad)
        h = self.n2(x)
        return x + self.down(nn.functional.silu(self.gate(h)) * self.up(h))


class TextEncoder(nn.Module):
    """Bytes of a word or an element's text -> one vector (a conv over characters, max-pooled)."""

    def __init__(self, d: int):
        super().__init__()
        self.emb = nn.Embedding(256, 32)
        self.conv = nn.Conv1d(32, d, 3, padding=1)

    def forward(self, b):  # [B, N, C] int64
        B, N, C = b.shape
        e = self.emb(b.reshape(B * N, C)).transpose(1, 2)
        h = torch.relu(self.conv(e)).amax(dim=2)
        return h.reshape(B, N, -1)


class Chooser(nn.Module):
    def __init__(self, d: int = 128, layers: int = 3, heads: int = 4):
        super().__init__()
        self.text = TextEncoder(d)
        self.word_pos = nn.Parameter(torch.randn(MAX_WORDS, d) * 0.02)
        self.feat = nn.Sequential(nn.Linear(N_FEATS, d), nn.SiLU(), nn.Linear(d, d))
        # what an element looks like, pooled to 6x12: colour, outline, a tick, a cross (a conv tower over
        # every mark cost 20x the rest of the model on two cores and learnt no more)
        self.crop = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(3 * (CROP_H // 2) * (CROP_W // 2), 64),
                                  nn.SiLU(), nn.Linear(64, d))
        self.glob = nn.Linear(N_GLOBAL, d)
        self.seg = nn.Parameter(torch.randn(3, d) * 0.02)  # decision, word, element
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.norm = RMSNorm(d)
        self.type_head = nn.Linear(d, len(TYPES))
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.start, self.end = nn.Linear(d, 1), nn.Linear(d, 1)
        self.scale = 1 / math.sqrt(d)

    def forward(self, words, word_mask, texts, feats, crops, elem_mask, globals):
        B = words.shape[0]
        w = self.text(words) + self.word_pos[None] + self.seg[1]
        E = texts.shape[1]
        c = self.crop(crops.reshape(B * E, 3, CROP_H, CROP_W)).reshape(B, E, -1)
        e = self.text(texts) + self.feat(feats) + c + self.seg[2]
        g = (self.glob(globals) + self.seg[0])[:, None]
        x = torch.cat([g, w, e], dim=1)
        keep = torch.cat([torch.ones_like(word_mask[:, :1]), word_mask, elem_mask], dim=1)
        pad = keep < 0.5
        for blk in self.blocks:
            x = blk(x, pad)
        x = self.norm(x)
        dec, wh, eh = x[:, 0], x[:, 1:1 + MAX_WORDS], x[:, 1 + MAX_WORDS:]
        neg = torch.finfo(x.dtype).min / 2
        marks = (self.key(eh) @ self.query(dec)[:, :, None])[:, :, 0] * self.scale
        marks = torch.where(elem_mask > 0.5, marks, torch.full_like(marks, neg))
        start = torch.where(word_mask > 0.5, self.start(wh)[:, :, 0], torch.full_like(word_mask, neg))
        end = torch.where(word_mask > 0.5, self.end(wh)[:, :, 0], torch.full_like(word_mask, neg))
        return self.type_head(dec), marks, start, end


# -- training --------------------------------------------------------------------------------------

def _marks_to(a: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad the marks axis (axis 1) to ``n``."""
    if a.shape[1] >= n:
        return a[:, :n]
    pad = [(0, 0)] * a.ndim
    pad[1] = (0, n - a.shape[1])
    return np.pad(a, pad)


def _batch(samples: list[Sample]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch cut to the most marks any of its samples has: padding marks cost as much as real ones."""
    n = max(1, max(int(s.inputs["elem_mask"].sum()) for s in samples))
    x = {k: torch.from_numpy(np.concatenate([_marks_to(s.inputs[k], n) if k in PER_MARK else s.inputs[k]
                                             for s in samples])) for k in INPUTS}
    types = torch.tensor([s.type_id for s in samples])
    marks = torch.from_numpy(np.stack([_marks_to(s.marks[None], n)[0] for s in samples]))
    spans = torch.tensor([s.span if s.span else (-1, -1) for s in samples])
    return x, types, marks, spans


def loss_of(model: Chooser, samples: list[Sample]) -> torch.Tensor:
    x, types, marks, spans = _batch(samples)
    tl, ml, st, en = model(**x)
    loss = nn.functional.cross_entropy(tl, types)
    has = marks.sum(1) > 0
    if has.any():
        lp = torch.log_softmax(ml[has], dim=1)
        loss = loss - torch.logsumexp(lp + torch.log(marks[has].clamp_min(1e-12)), dim=1).mean()
    sp = spans[:, 0] >= 0
    if sp.any():
        loss = loss + nn.functional.cross_entropy(st[sp], spans[sp, 0]) + nn.functional.cross_entropy(en[sp], spans[sp, 1])
    return loss


def train(model: Chooser, samples: list[Sample], epochs: int = 30, batch: int = 64, lr: float = 2e-3,
          seed: int = 0, log=print) -> Chooser:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * (math.ceil(len(samples) / batch) + 8)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
    model.train()
    t0 = time.perf_counter()
    for ep in range(epochs):
        order = list(range(len(samples)))
        rng.shuffle(order)
        # batches of samples with similar mark counts (a batch pads to its largest), in random order
        chunks = [sorted(order[i:i + batch * 8], key=lambda j: int(samples[j].inputs["elem_mask"].sum()))
                  for i in range(0, len(order), batch * 8)]
        batches = [c[i:i + batch] for c in chunks for i in range(0, len(c), batch)]
        rng.shuffle(batches)
        total, n = 0.0, 0
        for idx in batches:
            loss = loss_of(model, [samples[j] for j in idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()) * len(idx), n + len(idx)
        if ep % 5 == 0 or ep == epochs - 1:
            log(f"epoch {ep} loss {total / max(1, n):.4f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return model


# -- export ----------------------------------------------------------------------------------------

def export(model: Chooser, folder, name: str, reference: list[Sample], provenance: dict) -> float:
    """``chooser.onnx`` + manifest, after a parity check on real samples; returns the max abs diff."""
    import onnxruntime as ort

    from pathlib import Path

    from ..runtime.marks import GRAPH, write_bundle

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    x, *_ = _batch(reference[:1])
    path = folder / GRAPH
    marks = {1: "marks"}
    with torch.no_grad():
        torch.onnx.export(model, tuple(x[k] for k in INPUTS), str(path), input_names=list(INPUTS),
                          output_names=list(OUTPUTS), opset_version=17, dynamo=False,
                          dynamic_axes={**{k: marks for k in PER_MARK}, "mark_logits": marks})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for s in reference:
        n = max(1, int(s.inputs["elem_mask"].sum()))  # as the runtime's featurize cuts them
        inputs = {k: np.ascontiguousarray(v[:, :n]) if k in PER_MARK else v for k, v in s.inputs.items()}
        with torch.no_grad():
            ref = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
        got = sess.run(None, inputs)
        for r, g in zip(ref, got):
            fin = np.isfinite(r.numpy()) & (r.numpy() > -1e30)
            worst = max(worst, float(np.abs(r.numpy()[fin] - g[fin]).max()) if fin.any() else 0.0)
        if int(ref[0].argmax()) != int(got[0].argmax()) or int(ref[1].argmax()) != int(got[1].argmax()):
            raise RuntimeError("exported chooser disagrees with torch on a reference sample")
    if worst > 1e-3:
        raise RuntimeError(f"exported chooser differs from torch by {worst:.2e}")
    write_bundle(folder, name, "marks", files=(GRAPH,), provenance={**provenance, "parity_max_abs": worst})
    return worst


def accuracy(model: Chooser, samples: list[Sample]) -> dict:
    with torch.no_grad():
        x, types, marks, _ = _batch(samples)
        tl, ml, *_ = model(**x)
    t_ok = (tl.argmax(1) == types).float()
    has = marks.sum(1) > 0
    m_ok = marks[torch.arange(len(samples)), ml.argmax(1)] > 0
    return {"n": len(samples), "type": float(t_ok.mean()), "mark": float(m_ok[has].float().mean()) if has.any() else None,
            "both": float((t_ok.bool() & (m_ok | ~has)).float().mean())}
