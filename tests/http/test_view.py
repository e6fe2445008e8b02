"""The live view's server side against the daemon running in-process: token rules, the socket's
messages, goals, slow and many viewers. The browser test is test_view_browser.py."""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import aiohttp
import psutil
import pytest

from edge_vla.broker import free_port
from edge_vla.daemon import Daemon
from edge_vla.http import view as view_mod

from .test_whip import wait_until

TOKEN = "view-secret-token-456"
MQTT_PASSWORD = "mqtt-secret-pw-789"


async def start_daemon(settings) -> tuple[Daemon, asyncio.Task, str]:
    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run())
    base = f"http://127.0.0.1:{settings.http.port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(base + "/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    return daemon, task, base


@pytest.fixture
async def sim_daemon(make_settings, broker):
    """The simulator at a small size, the tiny model, HTTP on loopback with no token."""
    s = make_settings(broker=broker, source={"kind": "sim", "width": 320, "height": 240},
                      http={"enabled": True, "port": free_port()}, sampler={"min_fps": 5, "max_fps": 10},
                      loop={"await_verdict": False})
    daemon, task, base = await start_daemon(s)
    daemon.base = base
    yield daemon
    daemon.stop()
    await asyncio.wait_for(task, 15)


@pytest.fixture
async def guarded_daemon(make_settings, broker, tmp_path):
    """Bound beyond loopback, so the config demands a token; an MQTT password that must not leak."""
    port = free_port()
    s = make_settings(broker=broker, source={"kind": "sim", "width": 320, "height": 240},
                      mqtt={"host": "127.0.0.1", "port": broker.port, "username": "u", "password": MQTT_PASSWORD},
                      http={"enabled": True, "host": "0.0.0.0", "port": port, "token": TOKEN},
                      memory={"enabled": True, "path": str(tmp_path / "memory.db")})
    daemon, task, base = await start_daemon(s)
    daemon.base = base
    yield daemon
    daemon.stop()
    await asyncio.wait_for(task, 15)


def split_frame(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack(">I", data[:4])
    return json.loads(data[4:4 + n]), data[4 + n:]


async def read_until(ws, pred, timeout=20.0):
    """Messages (JSON dicts, or (header, jpeg) for pictures) until ``pred(seen)`` holds; all of them."""
    seen: list = []

    async def read():
        async for msg in ws:
            seen.append(json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else split_frame(msg.data))
            if pred(seen):
                return
        raise AssertionError(f"socket closed before the expected message; got {seen[-5:]}")

    try:
        await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no expected message in {timeout} s; got {seen[-5:]}") from None
    return seen


def kind(m) -> str:
    return "picture" if isinstance(m, tuple) else m.get("type", "?")


async def test_off_loopback_the_page_and_socket_need_the_token(guarded_daemon):
    base = guarded_daemon.base
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            for path in ("/", "/view/app.js", "/view/memory/recent", "/view/memory/similar", "/view/memory/thumb/1"):
                async with http.get(base + path, headers=headers) as r:
                    assert r.status == 401, (path, headers)
                    assert r.headers["WWW-Authenticate"] == "Bearer"
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await http.ws_connect(base + "/view/ws", headers=headers)
            assert exc.value.status == 401
        async with http.get(base + "/?token=wrong", allow_redirects=False) as r:
            assert r.status == 401 and "set-cookie" not in {k.lower() for k in r.headers}
        # the WHIP rule is the view's rule: the same token opens both
        async with http.post(base + "/whip/x", data="v=0", headers={"Content-Type": "application/sdp"}) as r:
            assert r.status == 401


async def test_with_the_token_the_view_works_and_never_shows_a_secret(guarded_daemon):
    base = guarded_daemon.base
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    texts = []
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/view/app.js"):
            async with http.get(base + path, headers=bearer) as r:
                assert r.status == 200
                texts.append(await r.text())
        async with http.ws_connect(base + "/view/ws", headers=bearer) as ws:
            await ws.send_json({"op": "watch", "stream": "default"})
            seen = await read_until(ws, lambda ms: kind(ms[-1]) == "decision")
            texts += [json.dumps(m) for m in seen if isinstance(m, dict)]
        # a browser trades the token for a cookie once; the cookie is not the token
        async with http.get(base + f"/?token={TOKEN}", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/"
            cookie = r.cookies[view_mod.VIEW_COOKIE]
            assert TOKEN not in cookie.value and cookie["httponly"] and cookie["samesite"] == "Strict"
    async with aiohttp.ClientSession(cookies={view_mod.VIEW_COOKIE: cookie.value}) as browser:
        async with browser.get(base + "/") as r:
            assert r.status == 200
        async with browser.ws_connect(base + "/view/ws") as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello" and [s["stream"] for s in hello["streams"]] == ["default"]
            texts.append(json.dumps(hello))
    for text in texts:
        assert TOKEN not in text and MQTT_PASSWORD not in text


async def test_a_socket_from_another_site_is_refused(sim_daemon):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await http.ws_connect(sim_daemon.base + "/view/ws", headers={"Origin": "https://evil.example"})
        assert exc.value.status == 403
        port = sim_daemon.settings.http.port
        async with http.ws_connect(sim_daemon.base + "/view/ws", headers={"Origin": f"http://127.0.0.1:{port}"}) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "hello"


async def test_nothing_is_encoded_until_someone_watches(sim_daemon):
    hub = sim_daemon.view
    p = sim_daemon.pipelines["default"]
    assert await wait_until(lambda: p.stats.actions_sent >= 3, 20)
    assert hub.frames_encoded == 0 and not hub._pending
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(sim_daemon.base + "/view/ws") as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello"
            row = hello["streams"][0]
            assert row["stream"] == "default" and row["source"] == "sim" and row["healthy"] is True
            await ws.send_json({"op": "watch", "stream": "default"})
            seen = await read_until(ws, lambda ms: sum(kind(m) == "picture" for m in ms) >= 2
                                    and any(kind(m) == "decision" for m in ms))
    frames = [m for m in seen if isinstance(m, tuple)]
    header, jpeg = frames[-1]
    assert header["stream"] == "default" and (header["w"], header["h"]) == (320, 240)
    assert jpeg[:3] == b"\xff\xd8\xff" and frames[0][0]["seq"] != frames[-1][0]["seq"]
    decisions = [m for m in seen if isinstance(m, dict) and m.get("type") == "decision"]
    assert decisions and decisions[0]["action"]["type"] and "instruction" in decisions[0]
    assert hub.frames_encoded >= 2
    assert await wait_until(lambda: not hub.viewers and not hub._watching)


async def test_a_goal_from_the_page_takes_the_mqtt_goal_path(sim_daemon, collector):
    goal = "click the blue square"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(sim_daemon.base + "/view/ws") as ws:
            await ws.send_json({"op": "watch", "stream": "default"})
            await ws.send_json({"op": "goal", "stream": "default", "instruction": f"  {goal} "})
            seen = await read_until(ws, lambda ms: kind(ms[-1]) == "goal")
            assert seen[-1] == {"type": "goal", "stream": "default", "instruction": goal, "ok": True}
            # the stream decides under it, and the broker holds it as P/S/goal (retained), as if it came from there
            seen = await read_until(ws, lambda ms: kind(ms[-1]) == "decision" and ms[-1]["instruction"] == goal)
            await ws.send_json({"op": "goal", "stream": "nope", "instruction": "x"})
            await ws.send_json({"op": "goal", "stream": "default", "instruction": "{\"instruction\": 3}"})
            bad = await read_until(ws, lambda ms: sum(kind(m) == "goal" for m in ms) >= 2)
    replies = [m for m in bad if kind(m) == "goal"]
    assert [r["ok"] for r in replies] == [False, False]
    assert "no stream 'nope'" in replies[0]["error"] and "instruction" in replies[1]["error"]
    assert collector.wait_for(lambda ms: any(m.topic == "edge-vla/test-dev/default/goal"
                                             and json.loads(m.payload) == {"instruction": goal} for m in ms), 5)


def raw_ws_client(port: int) -> socket.socket:
    """A WebSocket client that asks for a stream's pictures and then never reads again."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /view/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = json.dumps({"op": "watch", "stream": "default"}).encode()
    mask = b"\x01\x02\x03\x04"
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return s


async def test_a_viewer_that_stops_reading_holds_one_picture_not_a_queue(make_settings, broker):
    s = make_settings(broker=broker, source={"kind": "sim", "width": 1280, "height": 720},
                      http={"enabled": True, "port": free_port()}, sampler={"min_fps": 10, "max_fps": 10},
                      loop={"await_verdict": False})
    daemon, task, _ = await start_daemon(s)
    daemon.view.heartbeat_s = 120  # the heartbeat would close it; here it must stay to be looked at
    client = await asyncio.to_thread(raw_ws_client, s.http.port)
    try:
        assert await wait_until(lambda: len(daemon.view.viewers) == 1, 5)
        (viewer,) = daemon.view.viewers
        assert await wait_until(lambda: viewer.stream == "default", 5)
        most = 0
        for _ in range(600):  # up to 30 s for the socket buffers to fill and pictures to pile up
            most = max(most, len(viewer.messages))
            if viewer.frames_replaced >= 5:
                break
            await asyncio.sleep(0.05)
        assert viewer.frames_replaced >= 5, (viewer.frames_sent, daemon.view.frames_encoded)
        assert most <= view_mod.MAX_MESSAGES
        assert daemon.pipelines["default"].stats.actions_sent > 0
    finally:
        # the daemon stops even with the stalled viewer still connected (it cannot take a close frame)
        daemon.stop()
        await asyncio.wait_for(task, 15)
        assert not daemon.view.viewers
        client.close()


def open_sockets(port: int) -> list:
    return [c for c in psutil.Process().net_connections(kind="tcp")
            if (c.laddr and c.laddr.port == port) or (c.raddr and c.raddr.port == port)
            if c.status not in (psutil.CONN_LISTEN, psutil.CONN_TIME_WAIT)]


async def test_fifty_viewers_come_and_go_without_leaking_tasks_or_sockets(sim_daemon):
    hub = sim_daemon.view
    port = sim_daemon.settings.http.port
    tasks_before = {t.get_name() for t in asyncio.all_tasks()}
    polite, rude = aiohttp.ClientSession(), aiohttp.ClientSession()
    sockets = []
    for i in range(50):
        ws = await (polite if i % 2 else rude).ws_connect(sim_daemon.base + "/view/ws")
        await ws.send_json({"op": "watch", "stream": "default"})
        sockets.append(ws)
    assert await wait_until(lambda: len(hub.viewers) == 50 and hub._watching.get("default") == 50, 10)
    for ws in sockets:  # each gets the stream list and at least one picture
        await read_until(ws, lambda ms: any(kind(m) == "picture" for m in ms), timeout=30)
    assert len([t for t in asyncio.all_tasks() if t.get_name() == "view-sender"]) == 50
    for ws in sockets[1::2]:
        await ws.close()  # half say goodbye
    await rude.close()  # half just drop the connection
    await polite.close()
    assert await wait_until(lambda: not hub.viewers and not hub._watching, 15), len(hub.viewers)
    assert await wait_until(lambda: not open_sockets(port), 10), open_sockets(port)
    leaked = {t.get_name() for t in asyncio.all_tasks()} - tasks_before
    assert not leaked, leaked
    assert not hub._pending
    # and the view still works for the next one
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(sim_daemon.base + "/view/ws") as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "hello"


async def test_visual_memory_frames_by_time_and_by_likeness(make_settings, broker, tmp_path):
    s = make_settings(broker=broker, source={"kind": "sim", "width": 320, "height": 240},
                      http={"enabled": True, "port": free_port()}, loop={"await_verdict": False},
                      memory={"enabled": True, "path": str(tmp_path / "memory.db"), "flush_interval_s": 0.2})
    daemon, task, base = await start_daemon(s)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(base + "/view/ws") as ws:
                assert (await ws.receive_json(timeout=5))["memory"] is True
            hits = []
            for _ in range(100):  # until the writer has stored a few frames
                async with http.get(base + "/view/memory/recent?stream=default&seconds=600&limit=5") as r:
                    if r.status == 200:
                        hits = (await r.json())["hits"]
                        if len(hits) >= 3:
                            break
                await asyncio.sleep(0.2)
            assert len(hits) >= 3, hits
            assert [h["ts"] for h in hits] == sorted((h["ts"] for h in hits), reverse=True)  # newest first
            assert all(h["stream"] == "default" and h["kind"] == "live" for h in hits)
            async with http.get(base + f"/view/memory/thumb/{hits[0]['thumb']}") as r:
                assert r.status == 200 and r.content_type == "image/jpeg"
                assert (await r.read())[:3] == b"\xff\xd8\xff"
            async with http.get(base + "/view/memory/similar?stream=default&k=4") as r:
                assert r.status == 200, await r.text()
                alike = (await r.json())["hits"]
            assert alike and [h["distance"] for h in alike] == sorted(h["distance"] for h in alike)
            async with http.get(base + "/view/memory/similar?stream=nope") as r:
                assert r.status == 404
            async with http.get(base + "/view/memory/recent?seconds=soon") as r:
                assert r.status == 400
            async with http.get(base + "/view/memory/thumb/99999999") as r:
                assert r.status == 404
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 15)
