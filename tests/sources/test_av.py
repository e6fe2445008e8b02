"""PyAV sources against real media made here with PyAV itself: no mocks."""

from __future__ import annotations

import asyncio
import gc
import shutil
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from structlog.testing import capture_logs

from edge_vla.config import SourceConfig
from edge_vla.frames import Frame, FrameSlot
from edge_vla.sources import create_source
from edge_vla.sources.av import FileSource, LavfiSource, LiveSource, SourceError

W, H = 160, 120


def _marker(value: int) -> int:
    return 40 + 2 * value


def encode(path: Path, n: int, fps: int = 30, gop: int = 10) -> Path:
    """An h264 file of ``n`` textured frames; the top 16 rows hold a gray level that
    says which frame it is (see ``_marker``), so a test can tell where it is in the file."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)  # noisy: big packets to damage
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.gop_size = gop  # frequent keyframes: the decoder recovers soon after damage
        for i in range(n):
            img = np.roll(texture, 3 * i, axis=1)
            img[:16] = _marker(i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def marker_of(frame: Frame) -> float:
    return float(frame.image[2:14, 2:-2].mean())


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    return {"3s": encode(d / "3s.mp4", 90), "1s": encode(d / "1s.mp4", 30)}


def file_cfg(path: Path | str, **kw) -> SourceConfig:
    return SourceConfig(kind="file", uri=str(path), stream="cam0", **kw)


async def collect(slot: FrameSlot, timeout: float = 10.0) -> list[Frame]:
    """Every frame the slot hands out until it closes (fast consumer)."""
    frames: list[Frame] = []
    seq = -1
    while (f := await asyncio.wait_for(slot.next(seq), timeout)) is not None:
        frames.append(f)
        seq = f.seq
    return frames


async def run_to_end(src, slot: FrameSlot, timeout: float = 10.0) -> list[Frame]:
    """Run ``src`` to its end while a fast consumer collects; ``run``'s errors surface at once."""
    consumer = asyncio.create_task(collect(slot, timeout))
    try:
        await asyncio.wait_for(src.run(slot), timeout)
        return await consumer
    finally:
        consumer.cancel()


async def wait_for_count(pred, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_registry_builds_these_classes(media):
    assert isinstance(create_source(file_cfg(media["1s"])), FileSource)
    assert isinstance(create_source(SourceConfig(kind="lavfi")), LavfiSource)
    live = create_source(SourceConfig(kind="rtsp", uri="rtsp://x/y"))
    cam = create_source(SourceConfig(kind="camera"))
    assert isinstance(live, LiveSource) and live.kind == "rtsp"
    assert isinstance(cam, LiveSource) and cam.kind == "camera"


async def test_file_fast_reads_everything_and_closes(media):
    src = FileSource(file_cfg(media["3s"], realtime=False))
    slot = FrameSlot()
    frames = await run_to_end(src, slot)
    assert slot.closed
    assert src.frames_read == 90 and slot.written == 90 and src.decode_errors == 0
    assert len(frames) >= 2
    assert [f.seq for f in frames] == sorted(set(f.seq for f in frames))
    assert frames[-1].seq == 89
    assert all(b.t_capture > a.t_capture for a, b in zip(frames, frames[1:]))
    for f in frames:
        assert f.image.shape == (H, W, 3) and f.image.dtype == np.uint8
        assert f.stream == "cam0" and f.source == "file"
    assert marker_of(frames[-1]) == pytest.approx(_marker(89), abs=8)


async def test_realtime_paces_at_native_rate(media):
    async def timed(realtime: bool) -> float:
        slot = FrameSlot()
        t0 = time.monotonic()
        await asyncio.wait_for(FileSource(file_cfg(media["1s"], realtime=realtime)).run(slot), 10)
        assert slot.closed and slot.written == 30
        return time.monotonic() - t0

    paced = await timed(True)
    fast = await timed(False)
    assert 0.7 <= paced <= 2.5
    assert fast < paced / 2


async def test_newest_frame_wins_with_a_slow_consumer(media):
    src = FileSource(file_cfg(media["3s"], realtime=False, loop=True))
    slot = FrameSlot()
    gc.collect()
    # frames kept alive by earlier tests in this process are not this test's business
    baseline = sum(1 for o in gc.get_objects() if isinstance(o, Frame))
    task = asyncio.create_task(src.run(slot))
    seen: list[Frame] = []
    live_frames: list[int] = []
    try:
        seq = -1
        for _ in range(5):
            f = await slot.next(seq)
            assert f is not None
            seen.append(f)
            seq = f.seq
            await asyncio.sleep(0.15)  # much slower than the decoder
            gc.collect()
            live_frames.append(sum(1 for o in gc.get_objects() if isinstance(o, Frame)) - baseline)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert src.frames_read > 100  # looping, flat out: far more than the consumer took
    assert slot.overwritten >= slot.written - len(seen) - 1
    assert slot.overwritten > 50
    # Nothing queues up: besides what this test holds, only the slot's frame (and one
    # in flight to the loop) stay alive.
    assert max(live_frames) <= len(seen) + 3


async def test_corrupt_packets_are_skipped(media, tmp_path):
    damaged = tmp_path / "damaged.mp4"
    shutil.copy(media["3s"], damaged)
    size = damaged.stat().st_size
    with open(damaged, "r+b") as fh:  # mp4 keeps its index at the end: the middle is packet data
        fh.seek(size // 2)
        fh.write(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())

    src = FileSource(file_cfg(damaged, realtime=False))
    slot = FrameSlot()
    with capture_logs() as logs:
        frames = await run_to_end(src, slot)  # finishes without raising
    assert slot.closed
    assert src.decode_errors > 0
    errors = [e for e in logs if e["event"] == "source.decode_error"]
    assert errors and errors[0]["log_level"] == "warning"
    assert errors[0]["stream"] == "cam0" and errors[0]["kind"] == "file"
    # Frames from beyond the damage still came through, up to the last one.
    assert src.frames_read >= 60
    assert frames[-1].seq == src.frames_read - 1
    assert marker_of(frames[-1]) == pytest.approx(_marker(89), abs=8)


async def test_missing_file_raises_source_error(tmp_path):
    missing = tmp_path / "nope.mp4"
    slot = FrameSlot()
    with pytest.raises(SourceError, match="nope.mp4"):
        await asyncio.wait_for(FileSource(file_cfg(missing)).run(slot), 5)
    not_media = tmp_path / "text.mp4"
    not_media.write_text("hello, not a video\n" * 100)
    with pytest.raises(SourceError, match="text.mp4"):
        await asyncio.wait_for(FileSource(file_cfg(not_media)).run(slot), 5)


async def test_lavfi_realtime_runs_at_cfg_fps():
    cfg = SourceConfig(kind="lavfi", width=W, height=H, fps=20, realtime=True, stream="synth")
    src = LavfiSource(cfg)
    slot = FrameSlot()
    task = asyncio.create_task(src.run(slot))
    first = await asyncio.wait_for(slot.next(), 5)
    assert first is not None and first.image.shape == (H, W, 3) and first.source == "lavfi"
    t0, n0 = time.monotonic(), src.frames_read
    await asyncio.sleep(1.0)
    rate = (src.frames_read - n0) / (time.monotonic() - t0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 14 <= rate <= 26
    assert not slot.closed


async def test_live_source_retries_then_recovers_and_never_closes(media, tmp_path):
    target = tmp_path / "cam.mp4"  # does not exist yet: the "camera" is down
    cfg = SourceConfig(kind="rtsp", uri=str(target), stream="door", reconnect_max_s=0.5)
    src = LiveSource(cfg)
    slot = FrameSlot()
    with capture_logs() as logs:
        task = asyncio.create_task(src.run(slot))
        await wait_for_count(lambda: src.reconnects >= 4, 5)
        retries = [e for e in logs if e["event"] == "source.reconnect"]
        assert [e["attempt"] for e in retries[:4]] == [1, 2, 3, 4]
        assert [e["delay_s"] for e in retries[:4]] == [0.2, 0.4, 0.5, 0.5]  # doubling, capped
        assert retries[0]["kind"] == "rtsp" and retries[0]["stream"] == "door"

        shutil.copy(media["1s"], target)  # the camera comes back
        await wait_for_count(lambda: src.frames_read >= 60, 10)  # > one file: it reconnected at EOF
        assert not slot.closed
        assert slot.latest is not None and slot.latest.seq >= 30  # seq keeps counting across reconnects
        opened = [e for e in logs if e["event"] == "source.opened"]
        assert len(opened) >= 2
        # Frames flowed, so the backoff started over: after EOF it is attempt 1 again.
        after_flow = [e for e in logs if e["event"] == "source.reconnect"][len(retries):]
        assert any(e["attempt"] == 1 and e["delay_s"] == 0.2 and e["reason"] == "end of stream"
                   for e in after_flow)

        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 1.0
    assert not slot.closed


async def test_live_source_down_stops_promptly(tmp_path):
    cfg = SourceConfig(kind="rtsp", uri=str(tmp_path / "gone.mp4"), reconnect_max_s=5)
    src = LiveSource(cfg)
    task = asyncio.create_task(src.run(FrameSlot()))
    await wait_for_count(lambda: src.reconnects >= 3, 5)  # now sleeping 0.8 s before the next try
    t0 = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - t0 < 0.5


@pytest.mark.parametrize("realtime", [True, False])
async def test_cancel_mid_stream_is_prompt_and_leaves_no_threads(media, realtime):
    before = threading.active_count()
    src = FileSource(file_cfg(media["3s"], realtime=realtime, loop=True))
    slot = FrameSlot()
    task = asyncio.create_task(src.run(slot))
    await asyncio.sleep(0.3)
    assert src.frames_read > 0
    assert threading.active_count() == before + 1
    t0 = time.monotonic()
    at_cancel = src.frames_read
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - t0 < 1.0
    assert threading.active_count() == before
    if realtime:  # the decoder stopped where it was instead of finishing the file
        assert src.frames_read <= at_cancel + 2
    assert not slot.closed  # cancelled, not ended
