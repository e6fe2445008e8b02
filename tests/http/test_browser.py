"""A real browser as the WHIP peer: headless Debian Chromium publishes canvas.captureStream()."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from edge_vla.actions import ActionMessage

from .test_whip import TOKEN, wait_until, whip  # noqa: F401 - the daemon fixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # loopback-only machine: let WebRTC use 127.0.0.1, and show real addresses instead of mDNS names
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


@pytest.fixture
async def browser():
    playwright = pytest.importorskip("playwright.async_api")
    if not shutil.which("chromium") and not shutil.which(CHROMIUM):
        pytest.fail("chromium is not installed: tools/setup.sh installs Debian's chromium")
    async with playwright.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        await b.close()


async def test_browser_canvas_publishes_and_receives_actions(whip, browser, collector):  # noqa: F811
    page = await browser.new_page()
    await page.goto(f"{whip.base}/publish?autostart=1&source=canvas&stream=browser&token={TOKEN}")
    actions = []
    for _ in range(200):
        actions = await page.evaluate("window.edgeVla.actions")
        error = await page.evaluate("window.edgeVla.error")
        assert error is None, error
        if len(actions) >= 5:
            break
        await asyncio.sleep(0.1)
    assert len(actions) >= 5, await page.evaluate("window.edgeVla.state")
    for a in actions:
        ActionMessage.model_validate(a)
        assert a["stream"] == "browser"
    # the page reports every action as executed over the data channel
    assert await wait_until(lambda: whip.pipelines["browser"].stats.feedback["executed"] >= 3)
    assert collector.wait_for(lambda m: any(x.topic.endswith("/browser/action") for x in m), 5)
    await page.click("#stop")
    assert await wait_until(lambda: not whip.whip.sessions and "browser" not in whip.pipelines)
