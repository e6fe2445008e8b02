"""The student for training: presets, the batch loss (action tokens + pointer), a torch runtime shim.

Sequence layout = what ``edge-vla export`` writes in the manifest and ``VLMRuntime``
feeds: ``[BOS] + image tokens of each view + instruction bytes (+4) + action tokens``.

The auxiliary pointer loss: a query from the decoder's last prompt state (the
one that predicts the first action token; it has read the image and the
instruction) scores every image token of the view that holds the target
(dot product of two small projections); cross-entropy says "the target is in
one of these cells". It is a training-only head: the exported graphs are the
student's own, the pointer only shapes them. With image tokens before the
instruction the query alone carries "what to look for"; with ``text_first`` each
image token has read the instruction too and scores itself (``PointerHead.cell``).

The reading loss: a linear read-out of each image token's features (what the
vision tower hands the decoder) says which letters and digits are written in
its cell (``data.cell_chars``), a dense target on every token of every view.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..export.student import EdgeVlaStudent, EdgeVlaStudentConfig
from ..runtime.avoid import DeadAwareDecoder, dead_tokens
from ..runtime.grammar import ActionGrammar, ActionVocab
from ..runtime.roi import RoiState
from ..runtime.vlm import Tokenizer, image_start, prompt_ids, prompt_spec
from .data import BYTES_TOKENIZER, CHARSET, Sample

BOS, IMAGE_TOKEN, ACTION_START = 1, 3, 260  # bytes tokenizer ids 4..259 sit below the action block

PRESETS: dict[str, dict] = {
    # tests: seconds on a CPU
    "tiny": dict(image_size=64, patch=8, v_hidden=32, v_layers=1, v_heads=2, hidden=64, layers=2, heads=4, kv=2),
    "tiny-read": dict(image_size=64, patch=8, v_hidden=32, v_layers=1, v_heads=2, hidden=64, layers=2, heads=4, kv=2,
                      conv_stem=True, text_first=True),
    # smoke runs on 2 shared cores: 16 tokens a view
    "smoke": dict(image_size=128, patch=16, v_hidden=128, v_layers=3, v_heads=4, hidden=192, layers=3, heads=4, kv=2),
    # s1: 8x8 tokens a view at 192 px (24 px patches, no merge): clicking at a token's
    # cell centre inside a runtime-sized crop hits 97% of held-out targets (4x4 tokens: 60%)
    "edge": dict(image_size=192, patch=24, merge=1, v_hidden=160, v_layers=3, v_heads=4, hidden=192, layers=3,
                 heads=3, kv=1),
    # s2 and the shipped s3 (s2 + the reading loss): "edge" reading its instruction first (every image
    # token sees what is asked for, and a per-token pointer loss says which cells hold it: the probe of
    # the field notes) and a conv stem
    "edge-read": dict(image_size=192, patch=24, merge=1, v_hidden=160, v_layers=3, v_heads=4, hidden=192,
                      layers=3, heads=3, kv=1, conv_stem=True, text_first=True),
    # its first stage (same tower and decoder shapes, 4x4 tokens): what "edge" was initialised from
    "edge-coarse": dict(image_size=192, patch=24, v_hidden=160, v_layers=3, v_heads=4, hidden=192, layers=3,
                        heads=3, kv=1),
    # short runs on 2 cores: 36 tokens a view
    "small": dict(image_size=192, patch=16, v_hidden=192, v_layers=4, v_heads=4, hidden=256, layers=4, heads=4, kv=2),
    # the shipping candidate (field notes: ~23M params, vision 14 ms + prefill 42 ms fp32 on 2 threads)
    "base": dict(image_size=224, patch=16, v_hidden=256, v_layers=6, v_heads=4, hidden=384, layers=6, heads=6, kv=2),
}


def action_vocab() -> ActionVocab:
    return ActionVocab(start=ACTION_START, bins=200, focus=True)


def student_config(preset: str = "small") -> EdgeVlaStudentConfig:
    p = PRESETS[preset]
    av = action_vocab()
    vocab = ACTION_START + av.size
    return EdgeVlaStudentConfig(
        vision_config=dict(hidden_size=p["v_hidden"], intermediate_size=p["v_hidden"] * 4,
                           num_hidden_layers=p["v_layers"], num_attention_heads=p["v_heads"],
                           image_size=p["image_size"], patch_size=p["patch"]),
        text_config=dict(vocab_size=vocab, hidden_size=p["hidden"], intermediate_size=p["hidden"] * 3,
                         num_hidden_layers=p["layers"], num_attention_heads=p["heads"],
                         num_key_value_heads=p["kv"], head_dim=p["hidden"] // p["heads"],
                         max_position_embeddings=1024, tie_word_embeddings=False, bos_token_id=BOS,
                         eos_token_id=2, pad_token_id=0, rope_theta=10000.0),
        merge=p.get("merge", 2), image_token_id=IMAGE_TOKEN, action_start=ACTION_START, action_bins=av.bins,
        pos_code=True, conv_stem=p.get("conv_stem", False), text_first=p.get("text_first", False),
    )


def build_student(preset: str = "small", seed: int = 0) -> EdgeVlaStudent:
    torch.manual_seed(seed)
    cfg = student_config(preset)
    cfg._attn_implementation = "sdpa"
    return EdgeVlaStudent(cfg)


def init_from(model: EdgeVlaStudent, checkpoint: str) -> list[str]:
    """Copy every weight of another student checkpoint whose name and shape match (a coarser first
    stage, say); returns the names left at their fresh initialisation."""
    other = EdgeVlaStudent.from_pretrained(checkpoint, local_files_only=True, dtype=torch.float32).state_dict()
    own = model.state_dict()
    fresh = [k for k, v in own.items() if k not in other or other[k].shape != v.shape]
    model.load_state_dict({k: other[k] for k in own if k not in fresh}, strict=False)
    return fresh


def grid_size(model: EdgeVlaStudent) -> int:
    vc = model.config.vision_config
    return vc.image_size // vc.patch_size // model.config.merge


class PointerHead(nn.Module):
    def __init__(self, hidden: int, dim: int = 64):
        super().__init__()
        self.q = nn.Linear(hidden, dim)
        self.k = nn.Linear(hidden, dim)
        self.cell = nn.Linear(hidden, 1)  # text-first prompts: each image token's own "I hold the target"
        self.chars = nn.Linear(hidden, len(CHARSET))  # the reading loss: letters written in a token's cell
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query [D], keys [N, D] -> scores [N]."""
        return (self.k(keys) @ self.q(query)) * self.scale


_TOKENIZER = Tokenizer(BYTES_TOKENIZER, Path("."))


def prompt_layout(model: EdgeVlaStudent) -> dict:
    """The manifest's ``prompt`` entry that ``edge-vla export`` writes for this student."""
    c = model.config
    return prompt_spec([BOS], IMAGE_TOKEN, grid_size(model) ** 2, c.text_first, c.text_config.eos_token_id)


def collate(samples: list[Sample], prompt: dict) -> dict:
    """Token ids, labels (aligned with positions), padding mask, where each sample's prompt ends and
    its image tokens start."""
    seqs, labels, qpos, starts = [], [], [], []
    for s in samples:
        instr = _TOKENIZER.encode(s.instruction)
        ids = prompt_ids(prompt, instr, len(s.views))
        seqs.append(ids + s.tokens[:-1])
        labels.append([-100] * (len(ids) - 1) + s.tokens)
        qpos.append(len(ids) - 1)
        starts.append(image_start(prompt, len(instr)))
    T = max(len(x) for x in seqs)
    ids = torch.zeros(len(seqs), T, dtype=torch.long)
    lab = torch.full((len(seqs), T), -100, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, (s, l) in enumerate(zip(seqs, labels)):
        ids[i, : len(s)] = torch.tensor(s)
        lab[i, : len(l)] = torch.tensor(l)
        mask[i, : len(s)] = 1
    pixels = torch.from_numpy(np.concatenate([s.views for s in samples])).float().div_(255.0)
    chars = None
    if all(s.cell_chars is not None for s in samples):
        chars = torch.from_numpy(np.concatenate([s.cell_chars for s in samples])).float()
    return {"ids": ids, "labels": lab, "mask": mask, "qpos": qpos, "image_start": starts, "pixels": pixels,
            "pointer": [(s.pointer_view, s.pointer_cells) for s in samples], "cell_chars": chars}


def input_embeds(model: EdgeVlaStudent, ids: torch.Tensor, pixels: torch.Tensor):
    """Decoder input embeddings [B, T, D] with the image features [views, cells, D] in place of the image
    tokens; pixels in 0..1 (the student's normalisation is HALF)."""
    embeds = model.language_model.get_input_embeddings()(ids)
    feats = None
    if pixels.shape[0]:
        feats = model.get_image_features((pixels - 0.5) / 0.5).to(embeds.dtype)
        img = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(img, feats.reshape(-1))
    return embeds, feats


def hidden_states(model: EdgeVlaStudent, ids: torch.Tensor, pixels: torch.Tensor,
                  mask: torch.Tensor | None = None, attentions: bool = False):
    """Final (normed) decoder states [B, T, D]. With ``attentions``: also the last layer's attention
    weights [B, H, T, T] (eager attention)."""
    return decode(model, input_embeds(model, ids, pixels)[0], mask, attentions)


def decode(model: EdgeVlaStudent, embeds: torch.Tensor, mask: torch.Tensor | None = None,
           attentions: bool = False):
    lm = model.language_model
    if not attentions:
        return lm.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
    impl = lm.config._attn_implementation
    lm.config._attn_implementation = "eager"  # sdpa does not return weights; same maths
    try:
        out = lm.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False, output_attentions=True)
    finally:
        lm.config._attn_implementation = impl
    return out.last_hidden_state, out.attentions[-1]


def is_bin_token(ids: torch.Tensor) -> torch.Tensor:
    """Which ids are coordinate-bin tokens of the action vocabulary."""
    lo = action_vocab().bin_id(0)
    return (ids >= lo) & (ids < lo + action_vocab().bins)


def soft_targets(tgt: torch.Tensor, vocab_size: int, sigma: float) -> torch.Tensor:
    """One-hot rows, except coordinate bins: a Gaussian over neighbouring bins (sigma in bins).

    Hard cross-entropy over 200 bins calls a near miss as wrong as the far corner, which
    is the plateau of the field notes; the Gaussian says how close, and its mode is the
    target bin, so greedy decoding still aims at the centre."""
    v = action_vocab()
    lo = v.bin_id(0)
    out = F.one_hot(tgt, vocab_size).float()
    is_bin = is_bin_token(tgt)
    if sigma > 0 and bool(is_bin.any()):
        k = torch.arange(v.bins, device=tgt.device, dtype=torch.float32)
        centre = (tgt[is_bin] - lo).float()[:, None]
        g = torch.exp(-0.5 * ((k[None, :] - centre) / sigma) ** 2)
        rows = torch.zeros(int(is_bin.sum()), vocab_size, device=tgt.device)
        rows[:, lo: lo + v.bins] = g / g.sum(-1, keepdim=True)
        out[is_bin] = rows
    return out


def batch_loss(model: EdgeVlaStudent, head: PointerHead, batch: dict, aux_weight: float = 1.0,
               device: str | torch.device = "cpu", bin_sigma: float = 0.0,
               attn_weight: float = 0.0, read_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    n_image = grid_size(model) ** 2
    ids, labels, mask = batch["ids"].to(device), batch["labels"].to(device), batch["mask"].to(device)
    embeds, feats = input_embeds(model, ids, batch["pixels"].to(device))
    if attn_weight > 0:
        h, attn = decode(model, embeds, mask, attentions=True)
    else:
        h, attn = decode(model, embeds, mask), None
    sel = labels != -100
    logits = model.language_model.lm_head(h[sel])
    tgt = labels[sel]
    if bin_sigma > 0:
        ce = -(soft_targets(tgt, logits.shape[-1], bin_sigma) * F.log_softmax(logits.float(), -1)).sum(-1).mean()
    else:
        ce = F.cross_entropy(logits.float(), tgt)
    # per-token-kind accuracy, cheap diagnostics
    acc = (logits.argmax(-1) == tgt).float().mean()
    ptr_losses, ptr_hits = [], []
    text_first = bool(model.config.text_first)
    for b, (view, cells) in enumerate(batch["pointer"]):
        if view < 0 or not cells:
            continue
        start = batch["image_start"][b] + view * n_image
        keys = h[b, start: start + n_image]
        scores = head(h[b, batch["qpos"][b]], keys).float()
        target = torch.tensor(cells, device=scores.device)
        ptr_losses.append(torch.logsumexp(scores, 0) - torch.logsumexp(scores[target], 0))
        if text_first:  # the image tokens have read the instruction: each says whether it holds the target
            own = head.cell(keys).squeeze(-1).float()
            ptr_losses[-1] = ptr_losses[-1] + torch.logsumexp(own, 0) - torch.logsumexp(own[target], 0)
        ptr_hits.append(float(int(scores.argmax()) in cells))
    ptr = torch.stack(ptr_losses).mean() if ptr_losses else ce.new_zeros(())
    loss = ce + aux_weight * ptr
    info = {"ce": float(ce.detach()), "pointer": float(ptr.detach()), "token_acc": float(acc),
            "pointer_acc": float(np.mean(ptr_hits)) if ptr_hits else None}
    if read_weight > 0 and feats is not None and batch.get("cell_chars") is not None:
        # summed over the letters, averaged over cells: a cell's whole label is one target
        logits_c = head.chars(feats).float()
        read = F.binary_cross_entropy_with_logits(logits_c, batch["cell_chars"].to(device),
                                                  reduction="none").sum(-1).mean()
        loss = loss + read_weight * read
        info["read"] = float(read.detach())
    if attn is not None:
        att = attention_pointer_loss(attn, labels, batch["pointer"], batch["image_start"], n_image)
        loss = loss + attn_weight * att
        info["attn"] = float(att.detach())
    return loss, info


def attention_pointer_loss(attn: torch.Tensor, labels: torch.Tensor, pointer: list, starts: list[int],
                           n_image: int) -> torch.Tensor:
    """Head 0 of the last decoder layer, at every position that predicts a coordinate bin, should put its
    weight on the image tokens of the target's cells: -log(mass there).

    This is what makes coordinates learnable: that head's output is then the target tokens' values,
    which carry their cell code, and the bin logits become a linear read-out of it (the auxiliary
    pointer head alone shapes the states but leaves the decoder to find this route by itself)."""
    is_bin = is_bin_token(labels)
    terms = []
    for b, (view, cells) in enumerate(pointer):
        if view < 0 or not cells:
            continue
        pos = is_bin[b].nonzero().flatten()
        if not len(pos):
            continue
        keys = torch.tensor([starts[b] + view * n_image + c for c in cells], device=attn.device)
        mass = attn[b, 0][pos][:, keys].sum(-1)
        terms.append(-torch.log(mass.float() + 1e-6).mean())
    return torch.stack(terms).mean() if terms else attn.new_zeros(())


# ----------------------------------------------------------------------------- decoding like the runtime
class _Cfg:
    def __init__(self, roi_crop_scale: float):
        self.roi_crop_scale = roi_crop_scale


class TorchRuntime:
    """Duck-types ``VLMRuntime`` (``infer``, ``decode_view``, ``image_size``, ``roi``) over a torch model:
    greedy decoding under the same grammar, RoI through the runtime's own ``RoiState``."""

    def __init__(self, model: EdgeVlaStudent, roi: bool = True, crop_scale: float = 0.35, device: str = "cpu"):
        from ..runtime.vlm import preprocess

        self.model, self.device = model, device
        self.name = "torch-student"
        self.image_size = model.config.vision_config.image_size
        self.vocab = action_vocab()
        self.grammar = ActionGrammar(self.vocab)
        self.cfg = _Cfg(crop_scale)
        self.roi = RoiState(self) if roi else None
        self.prompt = prompt_layout(model)
        self._preprocess = preprocess
        self.last: dict = {}

    def encode_view(self, pixels: np.ndarray) -> np.ndarray:
        """The view as it is: the tower runs inside every step here (``VLMRuntime`` encodes once)."""
        return pixels

    @torch.no_grad()
    def decode_view(self, pixels, instruction: str, dead=None):
        import time

        t0 = time.perf_counter()
        views = pixels if isinstance(pixels, list) else [pixels]
        px = torch.from_numpy(np.concatenate(views)).float().to(self.device)
        prompt = prompt_ids(self.prompt, _TOKENIZER.encode(instruction), len(views))
        was_training = self.model.training
        self.model.eval()

        def step(tokens: list[int]) -> np.ndarray:
            ids = torch.tensor([prompt + tokens], device=self.device)
            h = hidden_states(self.model, ids, px)
            return self.model.language_model.lm_head(h[0, -1]).float().cpu().numpy()

        try:
            grammar = self.grammar.copying(instruction)  # as the runtime's default (model.type_text)
            tokens = DeadAwareDecoder(grammar).decode(step([]), step, dead)
        finally:
            self.model.train(was_training)
        dt = (time.perf_counter() - t0) * 1e3
        return grammar.to_decoded(tokens), {"model": dt}

    def infer(self, image: np.ndarray, instruction: str, avoid=frozenset()):
        if self.roi is not None:
            return self.roi.infer(image, instruction, avoid)
        from ..actions import Action

        dead = dead_tokens(self.grammar, avoid)
        decoded, st = self.decode_view(self._preprocess(image, self.image_size), instruction, dead)
        return (decoded.action or Action(type="wait")), st
