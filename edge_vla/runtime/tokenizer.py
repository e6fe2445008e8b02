"""Instruction tokenizers named by the bundle manifest (``tokenizer.kind``)."""

from __future__ import annotations

import numpy as np


class ByteTokenizer:
    """UTF-8 bytes shifted by ``offset`` (ids below it are reserved), padded to ``max_tokens``.

    Needs no vocabulary file, so a bundle is usable offline and the same ids
    come out on every machine.
    """

    def __init__(self, max_tokens: int = 64, offset: int = 4, pad_id: int = 0):
        self.max_tokens = max_tokens
        self.offset = offset
        self.pad_id = pad_id
        self.vocab_size = 256 + offset

    def encode(self, text: str) -> np.ndarray:
        ids = np.frombuffer(text.lower().encode("utf-8")[: self.max_tokens], dtype=np.uint8).astype(np.int64)
        out = np.full((1, self.max_tokens), self.pad_id, dtype=np.int64)
        out[0, : ids.size] = ids + self.offset
        return out


def make_tokenizer(spec: dict) -> ByteTokenizer:
    kind = spec.get("kind")
    if kind == "bytes":
        return ByteTokenizer(max_tokens=int(spec.get("max_tokens", 64)), offset=int(spec.get("offset", 4)))
    raise ValueError(f"unknown tokenizer kind {kind!r}")
