"""The user-facing commands, run as a newcomer would: demo and bench end to end."""

import json
import os
import subprocess

from .conftest import EDGE_VLA


def run(*args, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGE_VLA_")}
    return subprocess.run([EDGE_VLA, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_demo_closes_the_loop_with_the_shipped_model():
    r = run("demo", "--seconds", "8")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    acted = [line for line in lines if line.strip().startswith("#")]
    # a new screen is read whole (hundreds of ms on a loaded CI core) and each action awaits its verdict
    assert len(acted) >= 3 and "glass-to-action" in acted[0]
    assert any(line.startswith("tasks: ") for line in lines)
    assert any(line.strip().startswith("task 1: ") for line in lines)
    summary = next(line for line in lines if " actions in " in line)
    assert "0 invalid" in summary
    assert any(line.startswith("glass_to_action") for line in lines)


def test_bench_json_reports_stages_and_glass_to_action():
    r = run("bench", "--seconds", "4", "--json", "--width", "640", "--height", "360")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    lat = rep["latency_ms"]
    for stage in ("wait", "perceive", "model", "decode", "policy", "total", "glass_to_action"):
        assert lat[stage]["n"] > 0 and lat[stage]["p50"] <= lat[stage]["p95"] <= lat[stage]["max"]
    assert lat["glass_to_action"]["p50"] >= lat["total"]["p50"]
    assert rep["actions_received"] > 0 and rep["invalid_actions"] == 0
    assert rep["peak_rss_mb"] > 0 and rep["streams"]["default"]["frames"] > 30


def test_bench_on_a_lavfi_source_with_the_oracle_rejected():
    r = run("bench", "--seconds", "3", "--source", "lavfi", "--width", "320", "--height", "240")
    assert r.returncode == 0, r.stderr
    assert "glass_to_action" in r.stdout and "frames" in r.stdout
    r = run("bench", "--seconds", "2", "--source", "lavfi", "--policy", "oracle")
    assert r.returncode == 78 and "cannot start: policy.kind=oracle needs source.kind=sim" in r.stderr


def test_demo_view_prints_the_url_of_a_live_page():
    import time
    import urllib.request

    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGE_VLA_")}
    proc = subprocess.Popen([EDGE_VLA, "demo", "--view", "--seconds", "6", "--width", "640", "--height", "360"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[1].startswith("live view: http://127.0.0.1:"), lines
        url = lines[1].split()[2]
        for _ in range(100):  # the daemon starts after the line is printed
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    page = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert "edge-vla live view" in page and "/view/app.js" in page
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and " actions in " in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
