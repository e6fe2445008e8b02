"""The torch modules that become the bundle's graphs (torch only; imported by the exporter).

``VisionGraph``: pixels in 0..1 [1, 3, S, S] -> image embeddings [1, N, D]
(normalisation and the projector included).

``DecoderGraph``: inputs_embeds [1, T, D], logit_positions [L] (indices into
the T new tokens), and per layer past_key_i / past_value_i [1, kvH, P, hd] ->
logits [1, L, V] and present_key_i / present_value_i [1, kvH, T, hd] for the
*new* tokens only: the runtime owns the cache. Positions are P..P+T-1, taken
from the past's length. It re-implements the attention step around the
checkpoint's own modules (projections, norms, MLP/MoE, lm_head), so a
checkpoint's weights are used as they are:

- ``llama`` flavour (LLaVA's language model, the student): rotate-half RoPE
  from the model's own rotary module, GQA, causal mask.
- ``llama4`` flavour: Llama 4's complex rotary re-implemented with real
  arithmetic on interleaved pairs (ONNX has no complex type), no-RoPE layers
  with attention temperature tuning, L2 QK norm on RoPE layers, chunked
  attention on the layers marked ``chunked_attention``, MoE feed-forward.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class VisionGraph(nn.Module):
    def __init__(self, features, mean, std):
        super().__init__()
        self.features = features  # callable: normalized pixel_values -> [1, N, D]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, pixels):
        return self.features((pixels - self.mean) / self.std)


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class DecoderGraph(nn.Module):
    def __init__(self, text_model, lm_head, flavour: str):
        super().__init__()
        self.text = text_model  # LlamaModel / Llama4TextModel: .layers, .norm, .rotary_emb
        self.lm_head = lm_head
        self.flavour = flavour
        cfg = text_model.config
        self.cfg = cfg
        self.n_layers = cfg.num_hidden_layers
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        if flavour == "llama4":
            rot = text_model.rotary_emb
            self.register_buffer("inv_freq", rot.inv_freq.detach().clone().float(), persistent=False)
            self.rope_scale = float(rot.attention_scaling)
            self.chunk = int(cfg.attention_chunk_size)
        elif flavour != "llama":
            raise ValueError(f"unknown decoder flavour {flavour!r}")

    def forward(self, inputs_embeds, logit_positions, *past):
        h = inputs_embeds
        t = h.shape[1]
        p = past[0].shape[2]
        pos = torch.arange(t, device=h.device) + p  # absolute positions of the new tokens
        kv_pos = torch.arange(p + t, device=h.device)
        causal = kv_pos[None, :] <= pos[:, None]  # [T, P+T]
        neg = torch.finfo(torch.float32).min
        full_mask = torch.where(causal, 0.0, neg)[None, None]
        if self.flavour == "llama":
            cos, sin = self.text.rotary_emb(h, pos[None])
            cos, sin = cos[:, None], sin[:, None]  # [1,1,T,hd]
        else:
            chunked = causal & ((kv_pos[None, :] // self.chunk) == (pos[:, None] // self.chunk))
            chunk_mask = torch.where(chunked, 0.0, neg)[None, None]
            freqs = pos.float()[:, None] * self.inv_freq[None, :]  # [T, hd/2]
            cos4 = (torch.cos(freqs) * self.rope_scale)[None, :, None, :]  # [1,T,1,hd/2]
            sin4 = (torch.sin(freqs) * self.rope_scale)[None, :, None, :]
        presents = []
        for i, layer in enumerate(self.text.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(1, t, self.heads, self.head_dim)
            k = attn.k_proj(x).view(1, t, self.kv_heads, self.head_dim)
            v = attn.v_proj(x).view(1, t, self.kv_heads, self.head_dim).transpose(1, 2)
            mask = full_mask
            if self.flavour == "llama":
                q, k = q.transpose(1, 2), k.transpose(1, 2)
                q = q * cos + _rotate_half(q) * sin
                k = k * cos + _rotate_half(k) * sin
            else:
                if attn.use_rope:
                    q, k = self._rope4(q, cos4, sin4), self._rope4(k, cos4, sin4)
                if hasattr(attn, "qk_norm"):
                    q, k = attn.qk_norm(q), attn.qk_norm(k)
                if attn.attn_temperature_tuning and not attn.use_rope:
                    scales = torch.log1p(torch.floor((pos.float() + 1.0) / attn.floor_scale)) * attn.attn_scale + 1.0
                    q = q * scales.view(1, t, 1, 1)
                q, k = q.transpose(1, 2), k.transpose(1, 2)
                if layer.attention_type == "chunked_attention":
                    mask = chunk_mask
            presents += [k, v]
            kk = torch.cat([past[2 * i], k], dim=2)
            vv = torch.cat([past[2 * i + 1], v], dim=2)
            rep = self.heads // self.kv_heads
            if rep > 1:
                kk = kk.repeat_interleave(rep, dim=1)
                vv = vv.repeat_interleave(rep, dim=1)
            scores = torch.matmul(q, kk.transpose(2, 3)) * attn.scaling + mask
            probs = torch.softmax(scores, dim=-1)
            o = torch.matmul(probs, vv).transpose(1, 2).reshape(1, t, self.heads * self.head_dim)
            h = h + attn.o_proj(o)
            x = layer.post_attention_layernorm(h)
            ff = layer.mlp(x) if hasattr(layer, "mlp") else layer.feed_forward(x)
            if isinstance(ff, tuple):
                ff = ff[0]
            h = h + ff.view(h.shape)
        h = self.text.norm(h)
        h = h.index_select(1, logit_positions)
        return (self.lm_head(h), *presents)

    @staticmethod
    def _rope4(x, cos, sin):
        """Llama 4 rotary on interleaved pairs, in real arithmetic: (a+ib)(c+is)."""
        xs = x.reshape(*x.shape[:-1], -1, 2)
        a, b = xs[..., 0], xs[..., 1]
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


@contextlib.contextmanager
def llama4_vision_real_rope(vision_model):
    """Swap Llama 4's complex vision rotary for a real-valued one while exporting."""
    from transformers.models.llama4 import modeling_llama4 as m4

    rot = vision_model.rotary_embedding
    freqs = rot.freqs_ci  # complex [n, 1, hd/2]
    real = torch.stack([freqs.real, freqs.imag], dim=-1).float()  # [n, 1, hd/2, 2]
    orig_fwd, orig_apply = rot.forward, m4.vision_apply_rotary_emb

    def forward(hidden_states):
        return real.to(hidden_states.device)

    def apply(query, key, freqs_ci):
        c = freqs_ci[..., 0][None]  # [1, n, 1, hd/2] broadcast like reshape_for_broadcast
        s = freqs_ci[..., 1][None]

        def rot_(x):
            xs = x.float().reshape(*x.shape[:-1], -1, 2)
            a, b = xs[..., 0], xs[..., 1]
            return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(3).type_as(x)

        return rot_(query), rot_(key)

    rot.forward = forward
    m4.vision_apply_rotary_emb = apply
    try:
        yield
    finally:
        rot.forward = orig_fwd
        m4.vision_apply_rotary_emb = orig_apply
