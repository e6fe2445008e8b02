"""WHIP ingest with real aiortc peers over loopback, against the daemon running in-process."""

from __future__ import annotations

import asyncio
import gc
import json

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from edge_vla.actions import ActionMessage
from edge_vla.broker import free_port
from edge_vla.daemon import Daemon
from edge_vla.publisher import PictureTrack, WhipPublisher, moving_pattern

TOKEN = "test-token-123"


@pytest.fixture
async def whip(make_settings, broker):
    port = free_port()
    s = make_settings(broker=broker, source={"kind": "webrtc"},
                      http={"enabled": True, "port": port, "token": TOKEN, "rate_per_s": 1000},
                      webrtc={"host_addresses": ["127.0.0.1"], "max_peers": 3, "peer_timeout_s": 3},
                      sampler={"min_fps": 5, "max_fps": 10}, loop={"verify_window_s": 0.5})
    daemon = Daemon(s)
    task = asyncio.create_task(daemon.run())
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(base + "/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    daemon.base = base
    yield daemon
    daemon.stop()
    await asyncio.wait_for(task, 15)


def publisher(daemon, stream, token=TOKEN, codec="vp8", size=(320, 240)):
    return WhipPublisher(f"{daemon.base}/whip/{stream}", PictureTrack(moving_pattern(*size)),
                         token=token, codec=codec)


def live_peer_connections() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection) and o.connectionState != "closed")


async def wait_until(pred, timeout=15.0):
    for _ in range(int(timeout / 0.05)):
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_two_peers_get_actions_on_data_channel_and_mqtt(whip, collector, codec):
    tasks_before = {t.get_name() for t in asyncio.all_tasks()}
    pubs = [publisher(whip, "cam-a", codec=codec), publisher(whip, "cam-b", codec=codec)]
    for p in pubs:
        await p.start()
    assert await wait_until(lambda: all(len(p.actions) >= 3 for p in pubs), 40), [len(p.actions) for p in pubs]
    for p, stream in zip(pubs, ("cam-a", "cam-b")):
        for _, data in p.actions:
            ActionMessage.model_validate(data)
            assert data["stream"] == stream
            assert data["latency_ms"]["arrival_to_action"] > 0
    assert collector.wait_for(lambda m: {x.topic.split("/")[-2] for x in m if x.topic.endswith("/action")}
                              >= {"cam-a", "cam-b"}, 10)
    # feedback over the data channel reaches the stream's pipeline
    pubs[0].send_feedback({"v": 1, "action_id": pubs[0].actions[0][1]["id"], "status": "executed", "ts": 1.0})
    assert await wait_until(lambda: whip.pipelines["cam-a"].stats.feedback["executed"] == 1)
    for p in pubs:
        assert await p.stop() == 200
    assert await wait_until(lambda: not whip.pipelines and not whip.whip.sessions)
    await asyncio.sleep(0.5)
    assert live_peer_connections() == 0
    leaked = {t.get_name() for t in asyncio.all_tasks()} - tasks_before
    assert not {n for n in leaked if n.startswith("stream-") or n.startswith("source-")}, leaked


def offer_with_codec(real_offer: str, codec: str) -> str:
    lines = []
    for line in real_offer.splitlines():
        if line.startswith("a=rtpmap:") and ("VP8" in line or "H264" in line):
            line = line.replace("VP8", codec).replace("H264", codec)
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


async def real_offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver(PictureTrack(moving_pattern(64, 64)), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def post(whip, body, stream="cam", token=TOKEN, ctype="application/sdp"):
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{whip.base}/whip/{stream}", data=body, headers=headers) as r:
            return r.status, await r.text(), dict(r.headers)


async def test_bad_requests_get_clear_4xx(whip):
    offer = await real_offer()
    assert (await post(whip, "hello there"))[:1] == (400,)
    assert (await post(whip, "v=0\r\ngarbage\r\n"))[0] in (400, 422)
    status, text, _ = await post(whip, offer_with_codec(offer, "VP9"))
    assert status == 422 and "VP8 or H.264" in text
    status, _, headers = await post(whip, offer, token=None)
    assert status == 401 and headers.get("WWW-Authenticate") == "Bearer"
    assert (await post(whip, offer, token="wrong"))[0] == 401
    assert (await post(whip, offer, ctype="text/plain"))[0] == 415
    assert (await post(whip, "v=0\r\n" + "a=x\r\n" * 40000))[0] == 413
    assert (await post(whip, offer, stream="bad name!"))[0] in (400, 404)
    async with aiohttp.ClientSession() as http:
        h = {"Authorization": f"Bearer {TOKEN}"}
        async with http.delete(f"{whip.base}/whip/cam/nope", headers=h) as r:
            assert r.status == 404
        async with http.patch(f"{whip.base}/whip/cam/nope", headers=h) as r:
            assert r.status == 405
        async with http.options(f"{whip.base}/whip/cam", headers={"Origin": "http://example.test"}) as r:
            assert r.status == 204 and "Location" in r.headers["Access-Control-Expose-Headers"]
    assert not whip.whip.sessions and not whip.pipelines


async def test_peer_limit_and_duplicate_stream(whip):
    pubs = [publisher(whip, f"s{i}") for i in range(3)]
    for p in pubs:
        await p.start()
    status, text, _ = await post(whip, await real_offer(), stream="s9")
    assert status == 503
    for p in pubs:
        await p.stop()
    dup = [publisher(whip, "same"), publisher(whip, "same")]
    await dup[0].start()
    with pytest.raises(RuntimeError, match="409"):
        await dup[1].start()
    await dup[0].stop()
    await dup[1].pc.close()


async def test_fifty_rapid_cycles_leak_nothing(whip):
    tasks_before = len(asyncio.all_tasks())
    for i in range(50):
        p = publisher(whip, "churn", size=(64, 64))
        await p.start()
        assert await p.stop() == 200
    assert await wait_until(lambda: not whip.whip.sessions and not whip.pipelines)
    await asyncio.sleep(1.0)
    assert live_peer_connections() == 0
    assert len(asyncio.all_tasks()) <= tasks_before + 2, [t.get_name() for t in asyncio.all_tasks()]
    assert whip.whip.counts["created"] == whip.whip.counts["closed"] == 50


async def test_silent_peer_is_closed_and_health_recovers(whip):
    p = publisher(whip, "quiet")
    await p.start()
    assert await wait_until(lambda: "quiet" in whip.pipelines)
    await p.pc.close()  # vanish without DELETE
    assert await wait_until(lambda: not whip.whip.sessions, timeout=10)
    assert "quiet" not in whip.pipelines and whip.health()[0]


async def test_whip_publish_tool_closes_the_loop_on_the_simulator(whip):
    import sys

    from ..conftest import ROOT
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "tools" / "whip_publish.py"), f"{whip.base}/whip/tool", "--source", "sim", "--execute",
        "--seconds", "5", "--quiet", "--token", TOKEN, "--host-address", "127.0.0.1",
        "--width", "480", "--height", "320", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])["summary"]
    assert summary["actions"] >= 3 and summary["executed"] == summary["actions"]
    assert summary["delete_status"] == 200
    ended = [p for p in whip.ended if p.stream == "tool"]
    assert ended and sum(ended[0].stats.feedback.values()) >= 3
