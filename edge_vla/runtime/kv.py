"""KV-cache codecs: how the runtime stores the decoder's past keys and values.

The decoder graph takes every layer's past K/V as float32 and returns only the
new tokens' K/V, so the cache lives here and each codec decides its storage:

- ``fp32``: the reference (no loss).
- ``fp16``: half precision.
- ``int8``: symmetric per (head, token) over the head dimension, fp16 scale.
- ``int4`` (KIVI, arXiv 2402.02750): keys per channel (the group runs over 32
  tokens of one channel), values per token (the group runs over 32 channels of
  one token), asymmetric with fp16 scale and zero, two 4-bit codes per byte,
  the most recent ``residual`` tokens kept in fp16. Keys have outlier
  channels, so a per-channel grouping keeps their error small; values are
  mixed per token by attention, so per-token grouping suits them.

Tensors are laid out [1, heads, tokens, head_dim], as the decoder graph uses.
"""

from __future__ import annotations

import numpy as np

GROUP = 32
RESIDUAL = 32


# ---------------------------------------------------------------- 4-bit helpers
def pack_int4(q: np.ndarray) -> np.ndarray:
    """Codes 0..15 (uint8), last axis even -> two per byte (low nibble first)."""
    if q.shape[-1] % 2:
        raise ValueError("pack_int4 needs an even last axis")
    q = q.astype(np.uint8)
    return (q[..., 0::2] & 0x0F) | ((q[..., 1::2] & 0x0F) << 4)


def unpack_int4(p: np.ndarray) -> np.ndarray:
    out = np.empty(p.shape[:-1] + (p.shape[-1] * 2,), dtype=np.uint8)
    out[..., 0::2] = p & 0x0F
    out[..., 1::2] = p >> 4
    return out


def _fp16_down(x: np.ndarray) -> np.ndarray:
    """fp16 value <= x (so the zero point never sits above the group minimum)."""
    h = x.astype(np.float16)
    over = h.astype(np.float32) > x
    h[over] = np.nextafter(h[over], np.float16(-np.inf))
    return h


def quantize_asym(x: np.ndarray, axis: int, bits: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric min/max quantization along ``axis``; scale and zero in fp16.

    The fp16 zero is rounded down and the fp16 scale up, so every value is
    representable: the error of each element is at most half a step (scale/2).
    """
    levels = (1 << bits) - 1
    lo = x.min(axis=axis, keepdims=True)
    hi = x.max(axis=axis, keepdims=True)
    zero = _fp16_down(lo)
    z32 = zero.astype(np.float32)
    scale = ((hi - z32) / levels).astype(np.float16)
    s32 = scale.astype(np.float32)
    short = z32 + levels * s32 < hi
    if short.any():
        scale[short] = np.nextafter(scale[short], np.float16(np.inf))
        s32 = scale.astype(np.float32)
    safe = np.where(s32 > 0, s32, 1.0)
    q = np.clip(np.rint((x - z32) / safe), 0, levels).astype(np.uint8)
    return q, scale, zero


def dequantize_asym(q: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scale.astype(np.float32) + zero.astype(np.float32)


# ---------------------------------------------------------------- layer caches
class _Layer:
    """One layer's K and V in some storage; ``materialize`` gives float32 for the graph."""

    def __init__(self, heads: int, dim: int):
        self.heads, self.dim = heads, dim
        self.length = 0

    def empty(self) -> np.ndarray:
        return np.zeros((1, self.heads, 0, self.dim), dtype=np.float32)


class PlainLayer(_Layer):
    def __init__(self, heads: int, dim: int, dtype):
        super().__init__(heads, dim)
        self.dtype = dtype
        self.k = np.zeros((1, heads, 0, dim), dtype=dtype)
        self.v = np.zeros((1, heads, 0, dim), dtype=dtype)

    def append(self, k: np.ndarray, v: np.ndarray) -> None:
        self.k = np.concatenate([self.k, k.astype(self.dtype)], axis=2)
        self.v = np.concatenate([self.v, v.astype(self.dtype)], axis=2)
        self.length = self.k.shape[2]

    def truncate(self, n: int) -> None:
        self.k, self.v = self.k[:, :, :n], self.v[:, :, :n]
        self.length = n

    def materialize(self) -> tuple[np.ndarray, np.ndarray]:
        return self.k.astype(np.float32, copy=False), self.v.astype(np.float32, copy=False)

    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


class Int8Layer(_Layer):
    """Symmetric int8 per (head, token), fp16 scale."""

    def __init__(self, heads: int, dim: int):
        super().__init__(heads, dim)
        self.kq = np.zeros((1, heads, 0, dim), np.int8)
        self.vq = np.zeros((1, heads, 0, dim), np.int8)
        self.ks = np.zeros((1, heads, 0, 1), np.float16)
        self.vs = np.zeros((1, heads, 0, 1), np.float16)

    @staticmethod
    def _q(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = (np.abs(x).max(axis=-1, keepdims=True) / 127.0).astype(np.float16)
        s32 = s.astype(np.float32)
        q = np.clip(np.rint(x / np.where(s32 > 0, s32, 1.0)), -127, 127).astype(np.int8)
        return q, s

    def append(self, k: np.ndarray, v: np.ndarray) -> None:
        kq, ks = self._q(k)
        vq, vs = self._q(v)
        self.kq = np.concatenate([self.kq, kq], axis=2)
        self.vq = np.concatenate([self.vq, vq], axis=2)
        self.ks = np.concatenate([self.ks, ks], axis=2)
        self.vs = np.concatenate([self.vs, vs], axis=2)
        self.length = self.kq.shape[2]

    def truncate(self, n: int) -> None:
        self.kq, self.vq, self.ks, self.vs = (a[:, :, :n] for a in (self.kq, self.vq, self.ks, self.vs))
        self.length = n

    def materialize(self) -> tuple[np.ndarray, np.ndarray]:
        return (self.kq.astype(np.float32) * self.ks.astype(np.float32),
                self.vq.astype(np.float32) * self.vs.astype(np.float32))

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.kq, self.vq, self.ks, self.vs))


class KiviLayer(_Layer):
    """KIVI int4: quantized groups of ``group`` tokens plus an fp16 residual of recent tokens.

    After each append, while the residual holds at least ``residual + group``
    tokens, its oldest ``group`` tokens are quantized. So at least ``residual``
    recent tokens are always in fp16, and truncating up to that many (the
    rejected tokens of a speculative step) never touches quantized data.
    """

    def __init__(self, heads: int, dim: int, group: int = GROUP, residual: int = RESIDUAL):
        super().__init__(heads, dim)
        self.group = group
        self.cgroup = min(group, dim)  # channel group for values
        if dim % self.cgroup or dim % 2:
            raise ValueError(f"head_dim {dim} must be even and a multiple of the group {self.cgroup}")
        self.residual = residual
        self.kq: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # packed [1,H,G,D/2], scale/zero [1,H,1,D]
        self.vq: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # packed [1,H,G,D/2], scale/zero [1,H,G,D/cg]
        self.rk = np.zeros((1, heads, 0, dim), np.float16)
        self.rv = np.zeros((1, heads, 0, dim), np.float16)
        self.quantized = 0
        self._deq: tuple[np.ndarray, np.ndarray] | None = None

    def append(self, k: np.ndarray, v: np.ndarray) -> None:
        # the fp16 residual and the quantizer both see the float32 values (no double rounding)
        rk32 = np.concatenate([self.rk.astype(np.float32), k.astype(np.float32)], axis=2)
        rv32 = np.concatenate([self.rv.astype(np.float32), v.astype(np.float32)], axis=2)
        while rk32.shape[2] >= self.residual + self.group:
            g = self.group
            self._quantize_group(rk32[:, :, :g], rv32[:, :, :g])
            rk32, rv32 = rk32[:, :, g:], rv32[:, :, g:]
        self.rk, self.rv = rk32.astype(np.float16), rv32.astype(np.float16)
        self.length = self.quantized + self.rk.shape[2]

    def _quantize_group(self, k: np.ndarray, v: np.ndarray) -> None:
        qk, sk, zk = quantize_asym(k, axis=2)  # per channel, over the group's tokens
        h, t, d = v.shape[1], v.shape[2], v.shape[3]
        vg = v.reshape(1, h, t, d // self.cgroup, self.cgroup)
        qv, sv, zv = quantize_asym(vg, axis=4)  # per token, over groups of channels
        self.kq.append((pack_int4(qk), sk, zk))
        self.vq.append((pack_int4(qv.reshape(1, h, t, d)), sv[..., 0], zv[..., 0]))
        self.quantized += t
        self._deq = None

    def truncate(self, n: int) -> None:
        if n < self.quantized:
            raise ValueError(f"cannot truncate to {n}: {self.quantized} tokens are already quantized")
        keep = n - self.quantized
        self.rk, self.rv = self.rk[:, :, :keep], self.rv[:, :, :keep]
        self.length = n

    def _dequantized(self) -> tuple[np.ndarray, np.ndarray]:
        ks, vs = [], []
        for (pk, sk, zk), (pv, sv, zv) in zip(self.kq, self.vq):
            ks.append(dequantize_asym(unpack_int4(pk), sk, zk))
            h, t, d = pv.shape[1], pv.shape[2], pv.shape[3] * 2
            qv = unpack_int4(pv).reshape(1, h, t, d // self.cgroup, self.cgroup)
            vs.append(dequantize_asym(qv, sv[..., None], zv[..., None]).reshape(1, h, t, d))
        if not ks:
            return self.empty(), self.empty()
        return np.concatenate(ks, axis=2), np.concatenate(vs, axis=2)

    def materialize(self) -> tuple[np.ndarray, np.ndarray]:
        # Dequantizing is done per call (what a fused kernel would do on the fly); only the
        # packed data and the fp16 residual are held between calls.
        qk, qv = self._dequantized()
        return (np.concatenate([qk, self.rk.astype(np.float32)], axis=2),
                np.concatenate([qv, self.rv.astype(np.float32)], axis=2))

    def nbytes(self) -> int:
        n = self.rk.nbytes + self.rv.nbytes
        for group in self.kq + self.vq:
            n += sum(a.nbytes for a in group)
        return n


CODECS = ("fp32", "fp16", "int8", "int4")


class KVCache:
    """All layers' caches for one sequence, in one codec."""

    def __init__(self, codec: str, layers: int, heads: int, dim: int, group: int = GROUP, residual: int = RESIDUAL):
        if codec not in CODECS:
            raise ValueError(f"unknown KV-cache codec {codec!r}; known: {', '.join(CODECS)}")
        self.codec = codec
        make = {"fp32": lambda: PlainLayer(heads, dim, np.float32),
                "fp16": lambda: PlainLayer(heads, dim, np.float16),
                "int8": lambda: Int8Layer(heads, dim),
                "int4": lambda: KiviLayer(heads, dim, group, residual)}[codec]
        self.layers = [make() for _ in range(layers)]

    @property
    def length(self) -> int:
        return self.layers[0].length

    def append(self, new: list[np.ndarray]) -> None:
        """``new`` is the graph's output order: k0, v0, k1, v1, ..."""
        for i, layer in enumerate(self.layers):
            layer.append(new[2 * i], new[2 * i + 1])

    def truncate(self, n: int) -> None:
        for layer in self.layers:
            layer.truncate(n)

    def feeds(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for layer in self.layers:
            out.extend(layer.materialize())
        return out

    def nbytes(self) -> int:
        return sum(layer.nbytes() for layer in self.layers)


def bytes_per_token(codec: str, layers: int, heads: int, dim: int, group: int = GROUP) -> float:
    """Steady-state bytes per cached token (quantized part; excludes the fp16 residual window)."""
    hd = heads * dim
    if codec == "fp32":
        per = 2 * hd * 4
    elif codec == "fp16":
        per = 2 * hd * 2
    elif codec == "int8":
        per = 2 * (hd + heads * 2)
    elif codec == "int4":
        cg = min(group, dim)
        per = (hd / 2 + hd * 4 / group) + (hd / 2 + heads * (dim // cg) * 4)
    else:
        raise ValueError(codec)
    return per * layers
