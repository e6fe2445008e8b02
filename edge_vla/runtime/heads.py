"""The ``heads`` model family: one ONNX graph, image + instruction -> action logits.

Graph contract: inputs ``pixels`` float32 [1, 3, S, S] (RGB in 0..1) and
``tokens`` int64 [1, T]; outputs ``type_logits`` [1, len(types)], ``x_logits``
and ``y_logits`` [1, bins]. Decoding is constrained to the manifest's action
vocabulary, so whatever the weights, only valid actions come out. A small,
fast family for tests: ``build_heads_bundle`` makes one from a seed (random
weights, needs ``onnx``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from ..actions import Action
from .avoid import is_dead
from ..config import ModelConfig
from .bundle import Bundle, Manifest, file_entry, write_manifest
from .session import open_session
from .tokenizer import make_tokenizer

GRAPH = "policy.onnx"
POINT_TYPES = ("click", "double_click", "right_click")


class HeadsRuntime:
    def __init__(self, bundle: Bundle, cfg: ModelConfig):
        m = bundle.manifest
        self.name = m.name
        self.size = int(m.inputs["image_size"])
        self.types: list[str] = list(m.action_vocab["types"])
        self.bins = int(m.action_vocab["coord_bins"])
        self.scroll_step = int(m.action_vocab.get("scroll_step", 200))
        self.tokenizer = make_tokenizer(m.tokenizer)
        self.session = open_session(bundle.file(GRAPH), cfg)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        small = Image.fromarray(image).resize((self.size, self.size), Image.BILINEAR, reducing_gap=2.0)
        return (np.asarray(small, dtype=np.float32) * (1 / 255)).transpose(2, 0, 1)[None]

    def infer(self, image: np.ndarray, instruction: str, avoid: Iterable = frozenset(),
              stream: str = "default", sent: Action | None = None) -> tuple[Action, dict[str, float]]:
        t0 = time.perf_counter()
        pixels = self.preprocess(image)
        tokens = self.tokenizer.encode(instruction)
        t1 = time.perf_counter()
        type_logits, x_logits, y_logits = self.session.run(None, {"pixels": pixels, "tokens": tokens})
        t2 = time.perf_counter()
        action = self.decode(type_logits[0], x_logits[0], y_logits[0], frozenset(avoid))
        t3 = time.perf_counter()
        return action, {"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3}

    def decode(self, type_logits: np.ndarray, x_logits: np.ndarray, y_logits: np.ndarray,
               avoid: frozenset = frozenset()) -> Action:
        best = self._action(int(np.argmax(type_logits)), int(np.argmax(x_logits)), int(np.argmax(y_logits)))
        if not is_dead(best, avoid):
            return best
        # the heads are independent: the best joint (type, x, y) among the top few of each that is not dead
        lt, lx, ly = (v - np.logaddexp.reduce(v) for v in (type_logits, x_logits, y_logits))
        top = [np.argsort(-v)[:8] for v in (lx, ly)]
        scored = sorted(((lt[t] + lx[x] + ly[y], int(t), int(x), int(y)) for t in range(len(self.types))
                         for x in top[0] for y in top[1]), reverse=True)
        for _, t, x, y in scored:
            action = self._action(t, x, y)
            if not is_dead(action, avoid):
                return action
        return best  # everything near is dead: the watchdog escalates

    def _action(self, ti: int, xi: int, yi: int) -> Action:
        kind = self.types[ti]
        if kind in POINT_TYPES:
            return Action(type=kind, x=self.bin_centre(xi), y=self.bin_centre(yi))
        if kind == "scroll":
            return Action(type="scroll", dx=0, dy=self.scroll_step if yi >= self.bins // 2 else -self.scroll_step)
        return Action(type=kind)

    def bin_centre(self, i: int) -> int:
        return int(round((i + 0.5) * 1000 / self.bins))


def build_heads_bundle(out: Path, seed: int = 0, image_size: int = 96, bins: int = 100,
                       types: tuple[str, ...] = ("click", "scroll", "wait", "done"),
                       name: str = "edge-vla-heads-random") -> Path:
    """Write a random-weight ``heads`` bundle: for tests and as an untrained placeholder."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    c1, c2, d, h, vocab, max_tokens = 16, 32, 32, 64, 260, 64

    def w(name: str, *shape: int, scale: float | None = None) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        std = scale if scale is not None else (2.0 / fan_in) ** 0.5
        return numpy_helper.from_array(rng.normal(0, std, shape).astype(np.float32), name)

    inits = [
        w("conv1_w", c1, 3, 8, 8), w("conv2_w", c2, c1, 3, 3), w("embed", vocab, d, scale=0.5),
        w("fc_w", c2 + d, h), numpy_helper.from_array(np.zeros(h, np.float32), "fc_b"),
        w("type_w", h, len(types)), w("x_w", h, bins), w("y_w", h, bins),
    ]
    nodes = [
        helper.make_node("Conv", ["pixels", "conv1_w"], ["c1"], strides=[8, 8]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "conv2_w"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["img"]),
        helper.make_node("Gather", ["embed", "tokens"], ["tok"]),
        helper.make_node("ReduceMean", ["tok"], ["txt"], axes=[1], keepdims=0),
        helper.make_node("Concat", ["img", "txt"], ["feat"], axis=1),
        helper.make_node("Gemm", ["feat", "fc_w", "fc_b"], ["hid0"]),
        helper.make_node("Relu", ["hid0"], ["hid"]),
        helper.make_node("MatMul", ["hid", "type_w"], ["type_logits"]),
        helper.make_node("MatMul", ["hid", "x_w"], ["x_logits"]),
        helper.make_node("MatMul", ["hid", "y_w"], ["y_logits"]),
    ]
    graph = helper.make_graph(
        nodes, "edge_vla_heads",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, image_size, image_size]),
         helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, max_tokens])],
        [helper.make_tensor_value_info("type_logits", TensorProto.FLOAT, [1, len(types)]),
         helper.make_tensor_value_info("x_logits", TensorProto.FLOAT, [1, bins]),
         helper.make_tensor_value_info("y_logits", TensorProto.FLOAT, [1, bins])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="edge-vla")
    # the newest onnx writes IR 14, which onnxruntime < 1.24 (all that Python 3.10 / JetPack
    # 6 gets) refuses; IR 8 is the lowest that carries opset 17
    model.ir_version = 8
    onnx.checker.check_model(model)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / GRAPH))
    manifest = Manifest(
        name=name, family="heads", files={GRAPH: file_entry(out / GRAPH)},
        inputs={"image_size": image_size, "max_tokens": max_tokens},
        tokenizer={"kind": "bytes", "max_tokens": max_tokens, "offset": 4},
        action_vocab={"types": list(types), "coord_bins": bins, "scroll_step": 200},
        precision="fp32", kv_cache="none",
        provenance={"builder": "edge_vla.runtime.heads.build_heads_bundle", "seed": seed,
                    "weights": "random (untrained)"},
    )
    write_manifest(out, manifest)
    return out
