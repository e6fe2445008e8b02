"""Frame sources, chosen by ``source.kind``.

A source produces Frames into a FrameSlot and never waits for the consumer.
Backends are named here with their import path, so selecting one imports only
what it needs (PyAV for files and cameras, the simulator for ``sim``).
"""

from __future__ import annotations

from typing import Protocol

from ..config import SourceConfig
from ..frames import FrameSlot
from ..registry import Registry

SOURCES = Registry("source.kind", {
    "file": "edge_vla.sources.av:FileSource",
    "rtsp": "edge_vla.sources.av:LiveSource",
    "camera": "edge_vla.sources.av:LiveSource",
    "lavfi": "edge_vla.sources.av:LavfiSource",
    "sim": "edge_vla.sources.sim:SimSource",
})


class Source(Protocol):
    """What the pipeline needs from a source."""

    kind: str
    decode_errors: int  # frames or packets that could not be decoded, skipped

    async def run(self, slot: FrameSlot) -> None:
        """Produce frames into ``slot`` until the input ends (then close the slot) or the
        task is cancelled. Live inputs reconnect by themselves with backoff."""


register = SOURCES.register


def create_source(cfg: SourceConfig, **extra) -> Source:
    try:
        source = SOURCES.get(cfg.kind)
    except LookupError as exc:
        raise ValueError(str(exc)) from None
    return source(cfg, **extra)
