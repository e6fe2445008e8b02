"""Model families the exporter knows, as adapters over a loaded transformers model (torch only).

Each adapter exposes the pieces the graphs need: the vision feature function
(tower + projector), the image normalisation, the text model and lm_head with
the decoder flavour, the embedding matrix and the image placeholder token, and
``reference_logits`` — the checkpoint's own ``forward`` that the parity check
compares against. ``tiny_*`` build random-weight models from configs (tests,
benchmarks; no downloads).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


class ExportError(Exception):
    """The exporter cannot handle this source (the message says why)."""


@dataclass
class Adapter:
    family: str  # llava | llama4 | student
    model: Any
    vision: Callable[[torch.Tensor], torch.Tensor]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    text_model: Any
    lm_head: Any
    flavour: str
    image_token_id: int
    extra: dict

    @property
    def text_config(self):
        return self.text_model.config

    @property
    def vocab_size(self) -> int:
        return int(self.lm_head.weight.shape[0])

    @property
    def embed_weight(self) -> torch.Tensor:
        return self.text_model.embed_tokens.weight

    @property
    def kv_dims(self) -> tuple[int, int, int]:
        c = self.text_config
        hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        return c.num_hidden_layers, c.num_key_value_heads, hd

    @torch.no_grad()
    def reference_logits(self, input_ids: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """The checkpoint's own forward (no cache), pixels in 0..1."""
        pv = (pixels - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)
        out = self.model(input_ids=input_ids, pixel_values=pv, use_cache=False)
        return out.logits


def adapt(model) -> Adapter:
    """An adapter for a loaded model, by its class."""
    name = type(model).__name__
    model.eval()
    if name == "LlavaForConditionalGeneration":
        cfg = model.config
        tower = cfg.vision_config.model_type
        mean, std = (CLIP_MEAN, CLIP_STD) if tower.startswith("clip") else (HALF, HALF)
        if not hasattr(model.model, "language_model") or model.model.language_model.__class__.__name__ != "LlamaModel":
            raise ExportError(f"LLaVA with a {type(model.model.language_model).__name__} decoder: "
                              "only Llama decoders are supported")

        def vision(pv):
            feats = model.model.get_image_features(pv, cfg.vision_feature_layer, cfg.vision_feature_select_strategy)
            return torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats

        return Adapter("llava", model, vision, cfg.vision_config.image_size, mean, std,
                       model.model.language_model, model.lm_head, "llama", int(cfg.image_token_index),
                       {"vision_tower": tower})
    if name == "Llama4ForConditionalGeneration":
        cfg = model.config

        def vision(pv):
            feats = model.get_image_features(pv, cfg.vision_config.vision_feature_select_strategy)
            flat = feats.reshape(-1, feats.shape[-1])
            return model.multi_modal_projector(flat)[None]

        return Adapter("llama4", model, vision, cfg.vision_config.image_size, HALF, HALF,
                       model.language_model.model, model.language_model.lm_head, "llama4",
                       int(cfg.image_token_index), {"vision_tower": "llama4"})
    if name == "EdgeVlaStudent":
        cfg = model.config
        return Adapter("student", model, model.get_image_features, cfg.vision_config.image_size, HALF, HALF,
                       model.language_model.model, model.language_model.lm_head, "llama",
                       int(cfg.image_token_id), {"vision_tower": "siglip", "merge": cfg.merge,
                                                   "conv_stem": cfg.conv_stem, "text_first": cfg.text_first})
    raise ExportError(f"no exporter for {name}; supported: LlavaForConditionalGeneration (CLIP/SigLIP + Llama), "
                      "Llama4ForConditionalGeneration, EdgeVlaStudent")


def load_checkpoint(folder: str | Path):
    """Load a local Hugging Face checkpoint folder (never downloads) by its config's model_type."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ExportError(f"{folder}: no config.json (expected a Hugging Face checkpoint folder)")
    model_type = json.loads(cfg_path.read_text()).get("model_type")
    kw = {"local_files_only": True, "dtype": torch.float32}
    if model_type == "llava":
        from transformers import LlavaForConditionalGeneration as cls
    elif model_type == "llama4":
        from transformers import Llama4ForConditionalGeneration as cls
    elif model_type == "edge_vla_student":
        from .student import EdgeVlaStudent as cls
    elif model_type in ("idefics3", "smolvlm"):
        raise ExportError(f"{folder}: model_type {model_type!r} (Idefics3/SmolVLM) is not supported yet: its "
                          "image splitting and pixel-shuffle connector need their own vision graph")
    else:
        raise ExportError(f"{folder}: model_type {model_type!r} is not supported "
                          "(llava, llama4, edge_vla_student)")
    try:
        model = cls.from_pretrained(str(folder), **kw)
    except OSError as exc:
        raise ExportError(f"{folder}: cannot load the checkpoint: {exc}") from None
    model.config._attn_implementation = "eager"
    return model.eval()


# ------------------------------------------------------------------ tiny models
def _text(vocab: int, hidden: int, layers: int, **kw) -> dict:
    return dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
                max_position_embeddings=1024, **kw)


def tiny_llava(tower: str = "clip", seed: int = 0, vocab: int = 640, hidden: int = 64, layers: int = 2,
               image_size: int = 32, patch: int = 8):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, SiglipVisionConfig

    vkw = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
               image_size=image_size, patch_size=patch)
    vcfg = CLIPVisionConfig(projection_dim=32, **vkw) if tower == "clip" else SiglipVisionConfig(**vkw)
    cfg = LlavaConfig(vision_config=vcfg, text_config=LlamaConfig(**_text(vocab, hidden, layers)),
                      image_token_index=3, vision_feature_select_strategy="default" if tower == "clip" else "full",
                      vision_feature_layer=-2, attn_implementation="eager")
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(cfg).eval()


def tiny_llama4(seed: int = 0, vocab: int = 640, hidden: int = 64, layers: int = 4, image_size: int = 32,
                patch: int = 8, chunk: int = 16):
    from transformers import Llama4Config, Llama4ForConditionalGeneration

    text = _text(vocab, hidden, layers, intermediate_size_mlp=hidden * 2, num_local_experts=2,
                 num_experts_per_tok=1, interleave_moe_layer_step=2, attention_chunk_size=chunk,
                 no_rope_layers=[1 if (i + 1) % 4 else 0 for i in range(layers)], use_qk_norm=True,
                 attn_temperature_tuning=True, floor_scale=8, attn_scale=0.1, rope_scaling=None,
                 tie_word_embeddings=False)
    vision = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=patch, vision_output_dim=64, pixel_shuffle_ratio=0.5,
                  projector_input_dim=64, projector_output_dim=64, rope_theta=10000)
    cfg = Llama4Config(vision_config=vision, text_config=text, image_token_index=3, boi_token_index=1,
                       eoi_token_index=2, attn_implementation="eager")
    torch.manual_seed(seed)
    model = Llama4ForConditionalGeneration(cfg).eval()
    # random init leaves some Llama 4 params at zero/one; give the experts real weights
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and float(p.abs().sum()) == 0.0:
                p.normal_(0, 0.02)
    return model


def tiny(kind: str, seed: int = 0, **kw):
    if kind in ("llava-clip", "llava-siglip"):
        return tiny_llava(kind.split("-")[1], seed=seed, **kw)
    if kind == "llama4":
        return tiny_llama4(seed=seed, **kw)
    if kind == "student":
        from .student import tiny_student
        return tiny_student(seed=seed, **kw)
    raise ValueError(f"unknown tiny model {kind!r}")
