"""The ``edge-vla student`` family in transformers terms (torch only).

A small SigLIP vision tower, an optional 2x2 token merge (fewer image tokens:
the student notes show throughput is set by token count), a two-layer MLP
projector, an optional fixed 2-D sinusoidal code of each merged token's grid cell
(``pos_code``: what lets the decoder copy "where" from the token it attends to
into coordinate bins, instead of learning it), optionally a small conv stem in
place of the linear patch embedding (``conv_stem``: translation-equivariant
features, so a letter is learnt once rather than at every offset inside a
24 px patch), and a ``LlamaForCausalLM`` decoder whose vocabulary ends with the
action tokens (``edge_vla.runtime.grammar.ActionVocab``). ``save_pretrained``
writes a normal checkpoint folder (config.json ``model_type:
edge_vla_student`` + safetensors) that ``edge-vla export`` reads. Training is
issue 5; ``tiny_student`` builds one with random weights for tests.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, PretrainedConfig, PreTrainedModel, SiglipVisionConfig
from transformers.models.siglip.modeling_siglip import SiglipVisionModel


class EdgeVlaStudentConfig(PretrainedConfig):
    model_type = "edge_vla_student"
    sub_configs = {"vision_config": SiglipVisionConfig, "text_config": LlamaConfig}

    def __init__(self, vision_config=None, text_config=None, merge: int = 2, image_token_id: int = 3,
                 action_start: int | None = None, action_bins: int = 200, pos_code: bool = False,
                 conv_stem: bool = False, text_first: bool = False, **kwargs):
        if isinstance(vision_config, dict):
            vision_config = SiglipVisionConfig(**vision_config)
        if isinstance(text_config, dict):
            text_config = LlamaConfig(**text_config)
        self.vision_config = vision_config or SiglipVisionConfig()
        self.text_config = text_config or LlamaConfig()
        self.merge = merge
        self.image_token_id = image_token_id
        self.action_start = action_start
        self.action_bins = action_bins
        self.pos_code = pos_code
        self.conv_stem = conv_stem
        self.text_first = text_first  # prompt layout the student is trained on (the exporter's manifest says it)
        super().__init__(**kwargs)


class EdgeVlaStudent(PreTrainedModel):
    config_class = EdgeVlaStudentConfig
    base_model_prefix = "student"
    _supports_sdpa = True

    def __init__(self, config: EdgeVlaStudentConfig):
        super().__init__(config)
        self.vision_tower = SiglipVisionModel(config.vision_config)
        if config.conv_stem:
            vc = config.vision_config
            self.vision_tower.vision_model.embeddings.patch_embedding = ConvStem(vc.patch_size, vc.hidden_size)
        vd = config.vision_config.hidden_size * config.merge * config.merge
        td = config.text_config.hidden_size
        self.projector = nn.Sequential(nn.LayerNorm(vd), nn.Linear(vd, td), nn.GELU(), nn.Linear(td, td))
        self.language_model = LlamaForCausalLM(config.text_config)
        if config.pos_code:
            vc = config.vision_config
            grid = vc.image_size // vc.patch_size // config.merge
            # derived from the config, not a weight: not in the checkpoint, a constant in the export
            self.register_buffer("cell_code", cell_code(grid, td), persistent=False)
        self.post_init()

    def _init_weights(self, module):
        std = 0.02
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, std)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.vision_tower(pixel_values=pixel_values).last_hidden_state  # [B, n*n, C]
        m = self.config.merge
        if m > 1:
            b, n2, c = x.shape
            n = int(round(n2 ** 0.5))
            x = x.view(b, n // m, m, n // m, m, c).permute(0, 1, 3, 2, 4, 5).reshape(b, (n // m) ** 2, m * m * c)
        x = self.projector(x)
        if self.config.pos_code:
            x = x + self.cell_code.to(x.dtype)
        return x

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None, **kwargs):
        embeds = self.language_model.get_input_embeddings()(input_ids)
        if pixel_values is not None:
            feats = self.get_image_features(pixel_values).to(embeds.dtype)
            mask = (input_ids == self.config.image_token_id).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(mask, feats.reshape(-1))
        kwargs["use_cache"] = False
        return self.language_model(inputs_embeds=embeds, **kwargs)


class ConvStem(nn.Module):
    """Patch embedding with the same output grid as a ``patch`` x ``patch`` stride: a 4x4 patchify, a 3x3
    stride-2 conv, then a 3x3 conv striding the rest. About 40M multiply-adds at 192 px (the linear
    24 px patch embedding: 18M); its training step costs ~10% more. Conv stays fp32 in int8 bundles."""

    def __init__(self, patch: int, hidden: int):
        super().__init__()
        if patch % 8:
            raise ValueError(f"conv stem needs a patch size divisible by 8, not {patch}")
        rest = patch // 8
        self.layers = nn.Sequential(
            nn.Conv2d(3, 48, 4, 4), nn.GELU(),
            nn.Conv2d(48, 96, 3, 2, 1), nn.GELU(),
            nn.Conv2d(96, hidden, 3, rest, 1))

    @property
    def weight(self) -> torch.Tensor:  # SiglipVisionEmbeddings reads the dtype from here
        return self.layers[0].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def cell_code(grid: int, dim: int, scale: float = 0.5) -> torch.Tensor:
    """[grid*grid, dim]: half the channels code the cell centre's x, half its y, at log-spaced frequencies."""
    q = dim // 4
    freqs = torch.exp(torch.linspace(0.0, torch.log(torch.tensor(64.0)), q))
    centres = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    def code(v):  # [grid] -> [grid, 2q]
        a = v[:, None] * freqs[None, :] * torch.pi
        return torch.cat([a.sin(), a.cos()], -1)
    c = code(centres)
    out = torch.zeros(grid, grid, dim)
    out[:, :, : 2 * q] = c[None, :, :]  # varies along x (columns)
    out[:, :, 2 * q: 4 * q] = c[:, None, :]  # varies along y (rows)
    return (scale * out).reshape(grid * grid, dim)


def tiny_student_config(vocab: int = 640, hidden: int = 64, layers: int = 2, image_size: int = 64,
                        patch: int = 8, vision_hidden: int = 48, action_start: int = 300) -> EdgeVlaStudentConfig:
    return EdgeVlaStudentConfig(
        vision_config=dict(hidden_size=vision_hidden, intermediate_size=vision_hidden * 2, num_hidden_layers=2,
                           num_attention_heads=2, image_size=image_size, patch_size=patch),
        text_config=dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=hidden // 4, max_position_embeddings=1024, tie_word_embeddings=False),
        merge=2, image_token_id=3, action_start=action_start, action_bins=200,
    )


def tiny_student(seed: int = 0, **kw) -> EdgeVlaStudent:
    torch.manual_seed(seed)
    return EdgeVlaStudent(tiny_student_config(**kw)).eval()
