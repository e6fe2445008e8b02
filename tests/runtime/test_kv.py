"""KV-cache codecs: exact packing, half-step error, KIVI windows, bytes per token (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_vla.runtime.kv import (KiviLayer, KVCache, bytes_per_token, dequantize_asym, pack_int4, quantize_asym,
                                 unpack_int4)


def test_pack_unpack_exact():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 16, size=(3, 5, 64), dtype=np.uint8)
    p = pack_int4(q)
    assert p.dtype == np.uint8 and p.shape == (3, 5, 32)
    assert np.array_equal(unpack_int4(p), q)
    assert np.array_equal(pack_int4(np.array([1, 15], np.uint8)), np.array([0xF1], np.uint8))


@pytest.mark.parametrize("scale", [1e-3, 1.0, 300.0])
def test_error_within_half_a_step(scale):
    rng = np.random.default_rng(1)
    x = (rng.standard_t(3, size=(1, 4, 32, 64)) * scale).astype(np.float32)
    x[0, 0, :, 5] = 7.0  # a constant channel (zero range)
    for axis in (2, 3):
        q, s, z = quantize_asym(x, axis=axis)
        assert q.max() <= 15 and s.dtype == np.float16 and z.dtype == np.float16
        err = np.abs(dequantize_asym(q, s, z) - x)
        half = s.astype(np.float32) / 2
        assert np.all(err <= half * (1 + 1e-3) + 1e-6 * np.abs(x).max())


def test_kivi_keeps_recent_tokens_and_roundtrips():
    rng = np.random.default_rng(2)
    layer = KiviLayer(heads=2, dim=64, group=32, residual=32)
    chunks = [rng.normal(size=(1, 2, n, 64)).astype(np.float32) for n in (37, 1, 1, 30, 1)]
    for c in chunks:
        layer.append(c, c * 2)
    full = np.concatenate(chunks, axis=2)
    k, v = layer.materialize()
    assert k.shape == full.shape == v.shape and layer.length == 70
    assert layer.quantized == 32 and layer.rk.shape[2] == 38  # residual in [32, 64)
    # recent tokens: fp16 exact; quantized part: within half a step of its group range
    np.testing.assert_allclose(k[:, :, 32:], full[:, :, 32:], rtol=1e-3, atol=1e-3)
    assert np.abs(k[:, :, :32] - full[:, :, :32]).max() < (full.max() - full.min()) / 15
    layer.truncate(65)
    assert layer.materialize()[0].shape[2] == 65
    with pytest.raises(ValueError):
        layer.truncate(10)


def test_bytes_per_token_and_measured():
    layers, heads, dim = 6, 2, 64
    fp16 = bytes_per_token("fp16", layers, heads, dim)
    assert bytes_per_token("int8", layers, heads, dim) / fp16 == pytest.approx(0.5 + 1 / dim, rel=1e-6)
    assert bytes_per_token("int4", layers, heads, dim) / fp16 == pytest.approx(0.3125)
    rng = np.random.default_rng(3)
    for codec in ("fp16", "int8", "int4"):
        cache = KVCache(codec, layers, heads, dim, residual=0)
        for _ in range(8):
            kv = [rng.normal(size=(1, heads, 32, dim)).astype(np.float32) for _ in range(2 * layers)]
            cache.append(kv)
        assert cache.nbytes() / 256 == pytest.approx(bytes_per_token(codec, layers, heads, dim), rel=0.01)
