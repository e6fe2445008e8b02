"""The live view in a real browser: headless Debian Chromium on ``GET /`` of a real ``edge-vla run``
(simulator, shipped model, real mosquitto), then a second stream from a WHIP publisher."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from edge_vla.broker import free_port

from ..conftest import EDGE_VLA
from .test_browser import browser  # noqa: F401 - the Chromium fixture

DEVICE = "viewdev"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def daemon(tmp_path, broker):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGE_VLA_")}
    env.update({
        "EDGE_VLA_DEVICE_ID": DEVICE, "EDGE_VLA_MQTT__HOST": "127.0.0.1", "EDGE_VLA_MQTT__PORT": str(broker.port),
        "EDGE_VLA_SOURCE__KIND": "sim", "EDGE_VLA_SOURCE__WIDTH": "960", "EDGE_VLA_SOURCE__HEIGHT": "540",
        "EDGE_VLA_HTTP__PORT": str(port), "EDGE_VLA_LOG__FORMAT": "json",
        "EDGE_VLA_WEBRTC__HOST_ADDRESSES": '["127.0.0.1"]',  # the WHIP publisher below is on loopback
        "EDGE_VLA_MEMORY__ENABLED": "true", "EDGE_VLA_MEMORY__PATH": str(tmp_path / "memory.db"),
    })
    stderr = tmp_path / "daemon.stderr"
    proc = subprocess.Popen([EDGE_VLA, "run"], env=env, stdout=subprocess.DEVNULL, stderr=open(stderr, "wb"))
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, stderr.read_text()[-3000:]
        time.sleep(0.1)
    yield base, proc, stderr
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def until(page, js: str, timeout: float = 60.0, what: str = "", show: str = "null"):
    """Poll a page expression until it is truthy; its last value otherwise (with the page's state)."""
    value = None
    for _ in range(int(timeout / 0.25)):
        value = await page.evaluate(js)
        if value:
            return value
        await asyncio.sleep(0.25)
    state = await page.evaluate("({frames: edgeVlaView.frames, decisions: edgeVlaView.decisions, "
                                "errors: edgeVlaView.errors, streams: edgeVlaView.streams})")
    raise AssertionError(f"timed out waiting for {what or js}: {value!r}; page state {state}; "
                         f"{await page.evaluate(show)}")


async def test_live_view_in_chromium(daemon, browser, collector, tmp_path):  # noqa: F811
    base, proc, stderr = daemon
    page = await browser.new_page(viewport={"width": 1400, "height": 1100})
    problems = []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    await page.goto(base + "/")

    # the stream is listed, with its state
    row = await until(page, "edgeVlaView.streams.find(s => s.stream === 'default')", what="the stream list")
    assert row["source"] == "sim" and row["model"] == "edge-vla-marks-m3" and row["healthy"] is True
    assert await until(page, "document.querySelector('#streams tbody tr.chosen td')?.textContent === 'default'")

    # the picture updates: two different sampled frames drawn
    await until(page, "new Set(edgeVlaView.frameSeqs).size >= 2", what="two different frames")

    # the overlay: the action point is drawn where the last action points (pixel check on the canvas)
    pixel = await until(page, """(() => {
        const p = edgeVlaView.lastPoint; if (!p) return null;
        const d = document.getElementById('picture').getContext('2d').getImageData(p.x, p.y, 1, 1).data;
        return [d[0], d[1], d[2]];
    })()""", what="an action with a point")
    assert pixel == [255, 0, 255], pixel
    # ... and the candidates it chose among (the marks runtime's element layer)
    shown = await page.evaluate("edgeVlaView.lastDecision")
    assert len(shown["elements"]) >= 3 and all(len(e["box"]) == 4 for e in shown["elements"])

    # the action table fills with verdicts, the chart with points
    await until(page, "document.querySelectorAll('#actions td.v-changed, #actions td.v-unchanged, "
                      "#actions td.v-timeout').length >= 2", what="verdicts in the action table")
    await until(page, "edgeVlaView.chartPoints >= 2", what="chart points")
    lat_cell = await page.evaluate("document.querySelector('#actions tbody tr td:last-child').textContent")
    assert "perceive" in lat_cell and "total" in lat_cell

    # a goal typed into the box reaches the stream: the next decisions are made under it
    # the goal names something on screen now, as the simulator's own goals do (the model may or may not
    # manage it: the screen moves on as the simulator runs its tasks, which is not this test's subject)
    target = await until(page, """(() => {
        const d = edgeVlaView.lastDecision; if (!d) return null;
        const t = d.elements.find(e => e.kind === 'text' && e.text && /^[A-Za-z][A-Za-z ]{3,20}$/.test(e.text));
        return t ? t.text : null;
    })()""", what="a label on screen")
    goal = f"Click {target}"
    decided = None
    for attempt in range(6):
        # the simulator's executor writes P/S/goal too, announcing its next task when an action still in
        # flight completes the current one: then its goal wins, as a later P/S/goal message would; try again
        last = await page.evaluate("edgeVlaView.lastDecision")
        await page.fill("#goal", goal)
        await page.click("#goal-send")
        reply = await until(page, f"edgeVlaView.goals.length > {attempt} && edgeVlaView.goals[{attempt}]",
                            what="the goal reply")
        assert reply["ok"] and reply["instruction"] == goal and reply["stream"] == "default"
        outcome = await until(page, f"""(() => {{
            const fresh = edgeVlaView.decisionLog.filter(d => d.n > {last["n"]});
            const ours = fresh.find(d => d.instruction === {json.dumps(goal)} && d.sent);
            if (ours) return {{ours}};
            const other = fresh.find(d => d.instruction !== {json.dumps(goal)}
                                          && d.instruction !== {json.dumps(last["instruction"])});
            return other ? {{overridden: other.instruction}} : null;
        }})()""", timeout=30, what="a decision after the goal")
        if "ours" in outcome:
            decided = outcome["ours"]
            break
    assert decided is not None, "no action was sent under the goal typed into the page"
    assert collector.wait_for(lambda ms: any(m.topic == f"edge-vla/{DEVICE}/default/goal"
                                             and json.loads(m.payload) == {"instruction": goal} for m in ms), 10)
    assert decided["stream"] == "default"
    # ... and the simulator carries out what was decided under it (its executor answers on P/S/feedback)
    assert collector.wait_for(lambda ms: any(m.topic == f"edge-vla/{DEVICE}/default/feedback"
                                             and json.loads(m.payload)["action_id"] == decided["action"]["id"]
                                             for m in ms), 15)

    # visual memory: frames by time, then by likeness to the current picture, with thumbnails
    assert await page.is_visible("#memory-panel")
    await page.click("#memory-recent")
    await until(page, "edgeVlaView.memoryHits && edgeVlaView.memoryHits.length >= 2 && "
                      "[...document.querySelectorAll('#memory-hits img')].some(i => i.complete && i.naturalWidth > 0)",
                what="remembered frames with thumbnails")
    await page.click("#memory-similar")
    await until(page, "document.getElementById('memory-state').textContent.includes('most alike')",
                what="frames like the current picture")
    hits = await page.evaluate("edgeVlaView.memoryHits")
    assert hits and [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)

    # a second stream from a WHIP publisher: both listed
    pub = subprocess.Popen([sys.executable, "-m", "edge_vla.publisher", f"{base}/whip/cam2", "--source", "sim",
                            "--width", "640", "--height", "360", "--fps", "10", "--seconds", "120", "--quiet",
                            "--host-address", "127.0.0.1", "--seed", "3"], stdout=subprocess.DEVNULL,
                           stderr=open(tmp_path / "publisher.stderr", "wb"))
    try:
        await until(page, "edgeVlaView.streams.map(s => s.stream).sort().join() === 'cam2,default'",
                    what="both streams listed")
        text = await page.evaluate("document.querySelector('#streams tbody').textContent")
        assert "cam2" in text and "webrtc" in text and "default" in text
        await page.click("#streams tbody tr:nth-child(2)")
        await until(page, "edgeVlaView.stream === 'cam2' && edgeVlaView.frames > 0 && "
                          "edgeVlaView.lastFrame && edgeVlaView.lastFrame.stream === 'cam2'",
                    what="a picture of cam2")
        await page.click("#streams tbody tr:nth-child(1)")
        await until(page, "edgeVlaView.lastFrame && edgeVlaView.lastFrame.stream === 'default'")
        await asyncio.sleep(1.5)
        shot = tmp_path / "liveview.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        pub.terminate()
        pub.wait(10)
    assert not problems, problems
    assert not await page.evaluate("edgeVlaView.errors")
    assert proc.poll() is None, stderr.read_text()[-3000:]
    assert not re.search(r'"level": "(error|critical)"', stderr.read_text()), stderr.read_text()[-3000:]
