"""The ``vlm`` family: exported three-graph VLM bundles (numpy + onnxruntime only).

Bundle files: ``vision.onnx`` (pixels 0..1 -> image embeddings, projector
included), ``embed.npy`` (the token embedding matrix), ``decoder.onnx``
(inputs_embeds + logit_positions + per-layer past K/V -> logits + the new
tokens' K/V), ``reference.npz`` (the parity inputs/outputs), tokenizer data in
the manifest (or ``tokenizer.json``). The runtime owns the KV cache (codec from
config or manifest: fp32/fp16/int8/int4-KIVI), runs vision -> prefill ->
constrained decode, and returns one validated Action with stage times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..actions import Action
from ..config import ModelConfig
from .avoid import DeadAwareDecoder, dead_tokens
from .bundle import Bundle, BundleError
from .grammar import ActionGrammar, ActionVocab, Decoded
from .kv import KVCache

VISION, DECODER, EMBED, REFERENCE = "vision.onnx", "decoder.onnx", "embed.npy", "reference.npz"


def session_options(threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def open_graph(path: Path, threads: int = 1, providers: list | None = None):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), sess_options=session_options(threads),
                                    providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise BundleError(f"cannot load {path.name}: {exc}") from None


class Engine:
    """Sessions over one exported model: encode images, run decoder steps on a runtime-owned cache."""

    def __init__(self, vision, decoder, embed: np.ndarray, layers: int, kv_heads: int, head_dim: int):
        self.vision, self.decoder, self.embed = vision, decoder, embed
        self.layers, self.kv_heads, self.head_dim = layers, kv_heads, head_dim
        self._past_names = [n for i in range(layers) for n in (f"past_key_{i}", f"past_value_{i}")]

    @classmethod
    def from_folder(cls, folder: Path, dims: dict, threads: int = 1, providers: list | None = None,
                    mmap: bool = True, graphs: tuple[str, str] = (VISION, DECODER)) -> "Engine":
        embed = np.load(folder / EMBED, mmap_mode="r" if mmap else None)
        return cls(open_graph(folder / graphs[0], threads, providers), open_graph(folder / graphs[1], threads, providers),
                   embed, int(dims["layers"]), int(dims["kv_heads"]), int(dims["head_dim"]))

    def new_cache(self, codec: str = "fp32") -> KVCache:
        return KVCache(codec, self.layers, self.kv_heads, self.head_dim)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        return self.vision.run(None, {"pixels": pixels.astype(np.float32, copy=False)})[0]

    def embed_ids(self, ids) -> np.ndarray:
        return np.asarray(self.embed[np.asarray(ids, dtype=np.int64)], dtype=np.float32)[None]

    def step(self, embeds: np.ndarray, cache: KVCache, logit_positions=None) -> np.ndarray:
        """Run the decoder over ``embeds`` [1, T, D] after the cached tokens; append their K/V.

        Returns logits [L, V] for ``logit_positions`` (default: the last new token).
        """
        t = embeds.shape[1]
        pos = np.array([t - 1] if logit_positions is None else logit_positions, dtype=np.int64)
        feeds = {"inputs_embeds": embeds.astype(np.float32, copy=False), "logit_positions": pos}
        feeds.update(zip(self._past_names, cache.feeds()))
        out = self.decoder.run(None, feeds)
        cache.append(out[1:])
        return out[0][0]

    def prompt_embeds(self, prompt: dict, image_embeds: np.ndarray, instruction_ids) -> np.ndarray:
        image = image_embeds.reshape(1, -1, image_embeds.shape[-1]).astype(np.float32)
        views = image.shape[1] // int(prompt["num_image_tokens"])
        ids = prompt_ids(prompt, instruction_ids, views)
        start = image_start(prompt, len(instruction_ids))
        embeds = self.embed_ids(ids)
        embeds[:, start: start + image.shape[1]] = image
        return embeds


def prompt_spec(prefix: list[int], image_token_id: int, num_image_tokens: int, text_first: bool = False,
                eos: int | None = None) -> dict:
    """The manifest's ``prompt`` entry. Text first ends with ``eos`` after the image, so the first action
    token is predicted from a token that follows the image rather than from one of its cells."""
    prompt = {"prefix": list(prefix), "image_token_id": int(image_token_id),
              "num_image_tokens": int(num_image_tokens), "suffix": []}
    if text_first:
        prompt.update(text_first=True, suffix=[int(eos)])
    return prompt


def prompt_ids(prompt: dict, instruction_ids, views: int = 1) -> list[int]:
    """The prompt as token ids, image tokens as placeholders: ``prefix, images, instruction, suffix``, or with
    ``text_first`` ``prefix, instruction, images, suffix`` (then every image token can attend to the
    instruction, so each cell's state can say "this is what was asked for")."""
    images = [int(prompt["image_token_id"])] * (int(prompt["num_image_tokens"]) * views)
    text = list(instruction_ids)
    body = text + images if prompt.get("text_first") else images + text
    return list(prompt["prefix"]) + body + list(prompt["suffix"])


def image_start(prompt: dict, n_instruction: int) -> int:
    """Index of the first image token in ``prompt_ids``."""
    return len(prompt["prefix"]) + (n_instruction if prompt.get("text_first") else 0)


class CachedSteps:
    """``avoid.Step`` over one KV cache: logits after the prompt and any action-token prefix. Feeds only
    the tokens the cache lacks and truncates it when the search backs up to another branch."""

    def __init__(self, engine: Engine, cache: KVCache):
        self.engine, self.cache = engine, cache
        self.base = cache.length
        self.fed: list[int] = []
        self.calls = 0

    def __call__(self, tokens: list[int]) -> np.ndarray:
        n = 0
        while n < min(len(tokens), len(self.fed)) and tokens[n] == self.fed[n]:
            n += 1
        if n == len(tokens):  # the cache already holds this prefix: step again from one token back
            n -= 1
        if n < len(self.fed):
            self.cache.truncate(self.base + n)
        self.fed = list(tokens)
        self.calls += 1
        return self.engine.step(self.engine.embed_ids(tokens[n:]), self.cache)[-1]


def constrained_decode(engine: Engine, grammar: ActionGrammar, cache: KVCache, logits: np.ndarray,
                       stats: dict | None = None, dead: Callable[[list[int]], bool] | None = None) -> Decoded:
    """Greedy decoding under the grammar, steering around ``dead`` completions (``runtime.avoid``); forced
    tokens go to the model with the next chosen one, without a call of their own."""
    steps = CachedSteps(engine, cache)
    tokens = DeadAwareDecoder(grammar).decode(logits, steps, dead)
    if stats is not None:
        forced = sum(grammar.forced(tokens[:i]) is not None for i in range(len(tokens)))
        stats.update(decode_calls=steps.calls, forced_tokens=forced, tokens=len(tokens))
    return grammar.to_decoded(tokens)


class Tokenizer:
    """Instruction -> token ids: ``bytes`` (UTF-8 bytes + offset) or ``hf-json`` (tokenizer.json)."""

    def __init__(self, spec: dict, folder: Path):
        self.kind = spec.get("kind")
        self.max_tokens = int(spec.get("max_tokens", 64))
        if self.kind == "bytes":
            self.offset = int(spec.get("offset", 4))
        elif self.kind == "hf-json":
            try:
                from tokenizers import Tokenizer as HfTokenizer
            except ImportError:
                raise BundleError("this bundle's tokenizer needs the `tokenizers` package") from None
            self._tok = HfTokenizer.from_file(str(folder / spec.get("file", "tokenizer.json")))
        else:
            raise BundleError(f"unknown tokenizer kind {self.kind!r}")

    def encode(self, text: str) -> list[int]:
        if self.kind == "bytes":
            return [b + self.offset for b in text.lower().encode("utf-8")[: self.max_tokens]]
        return self._tok.encode(text, add_special_tokens=False).ids[: self.max_tokens]


def preprocess(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 RGB -> [1, 3, size, size] float32 in 0..1 (normalisation is inside vision.onnx)."""
    small = Image.fromarray(image).resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    return (np.asarray(small, dtype=np.float32) * (1 / 255)).transpose(2, 0, 1)[None]


class VLMRuntime:
    """The Runtime for ``family: vlm`` bundles."""

    def __init__(self, bundle: Bundle, cfg: ModelConfig):
        from .tensorrt import check_engine, providers_for

        m = bundle.manifest
        self.bundle, self.cfg = bundle, cfg
        self.name = m.name
        inp: dict[str, Any] = m.inputs
        self.image_size = int(inp["image_size"])
        self.prompt = inp["prompt"]
        self.dims = inp["kv"]
        self.tokenizer = Tokenizer(m.tokenizer, bundle.path)
        self.vocab = ActionVocab.from_dict(m.action_vocab)
        self.grammar = ActionGrammar(self.vocab)
        self.copy_text = getattr(cfg, "type_text", "instruction") == "instruction"
        self.codec = getattr(cfg, "kv_cache", None) or (m.kv_cache if m.kv_cache != "none" else "fp16")
        providers = providers_for(cfg, bundle)
        check_engine(bundle, providers)  # refuses an engine built for another TensorRT or GPU
        graphs = (VISION, DECODER)
        if (m.provenance or {}).get("engine") and providers[0][0] == "TensorrtExecutionProvider":
            graphs = ("engines/vision_ctx.onnx", "engines/decoder_ctx.onnx")  # EPContext -> the prebuilt engines
        self.engine = Engine.from_folder(bundle.path, self.dims, cfg.intra_threads, providers, graphs=graphs)
        self.draft = None
        if getattr(cfg, "speculative", False):
            from .speculative import load_draft
            self.draft = load_draft(Path(cfg.draft_path or bundle.path / "draft"), self, cfg)
        self.roi = None
        roi = getattr(cfg, "roi", "off")
        if roi == "auto":  # a model trained with FOCUS answers a single view with FOCUS, never a click
            roi = "focus" if m.action_vocab.get("focus") else "off"
        if roi != "off":
            from .roi import RoiState
            self.roi = RoiState(self)
        self.last: dict = {}

    def infer(self, image: np.ndarray, instruction: str, avoid: Iterable = frozenset(),
              stream: str = "default", sent: Action | None = None) -> tuple[Action, dict[str, float]]:
        """One action for one frame; ``avoid``: what the loop found dead (``runtime.avoid``); stateless
        across frames, so ``stream`` and ``sent`` do not matter."""
        if self.roi is not None:
            return self.roi.infer(image, instruction, avoid)
        return self.infer_view(preprocess(image, self.image_size), instruction, avoid)

    def infer_view(self, pixels: np.ndarray, instruction: str,
                   avoid: Iterable = frozenset()) -> tuple[Action, dict[str, float]]:
        dead = dead_tokens(self.grammar, avoid)
        decoded, stages = self.decode_view(pixels, instruction, dead)
        if decoded.action is None:  # a focus box where no RoI loop is running: nothing to act on
            return Action(type="wait"), stages
        return decoded.action, stages

    def grammar_for(self, instruction: str) -> ActionGrammar:
        """The decode grammar for one instruction (``model.type_text``)."""
        return self.grammar.copying(instruction) if self.copy_text else self.grammar

    def encode_view(self, pixels: np.ndarray) -> np.ndarray:
        """A view's image tokens, [1, T, D], for ``decode_view`` (the RoI passes share the full view's);
        with a speculative draft, which reads the pixels itself, the pixels."""
        return pixels if self.draft is not None else self.engine.encode(pixels)

    def decode_view(self, pixels: np.ndarray | list[np.ndarray], instruction: str,
                    dead: Callable[[list[int]], bool] | None = None) -> tuple[Decoded, dict[str, float]]:
        """Encode one view (or several, their tokens concatenated; a view already encoded, [1, T, D], is
        used as it is), prefill, constrained decode (steering around ``dead`` token sequences)."""
        t0 = time.perf_counter()
        views = pixels if isinstance(pixels, list) else [pixels]
        image_embeds = np.concatenate([self.engine.encode(p) if p.ndim == 4 else p for p in views], axis=1)
        t1 = time.perf_counter()
        instr = self.tokenizer.encode(instruction)
        embeds = self.engine.prompt_embeds(self.prompt, image_embeds, instr)
        cache = self.engine.new_cache(self.codec)
        logits = self.engine.step(embeds, cache)[-1]
        t2 = time.perf_counter()
        stats: dict = {}
        grammar = self.grammar_for(instruction)
        if self.draft is not None and dead is None:
            decoded = self.draft.decode(views[0], instr, cache, logits, stats, grammar)
        else:
            decoded = constrained_decode(self.engine, grammar, cache, logits, stats, dead)
        t3 = time.perf_counter()
        self.last = {**stats, "prompt_tokens": embeds.shape[1], "kv_bytes": cache.nbytes()}
        return decoded, {"vision": (t1 - t0) * 1e3, "prefill": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3}
