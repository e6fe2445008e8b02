"""The 60-second version of the soak: one WHIP stream through the real daemon; fails on obvious growth."""

import json
import subprocess
import sys

import pytest

from .conftest import ROOT


@pytest.mark.timeout(180)
def test_one_minute_soak_shows_no_growth(tiny_bundle):
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "webrtc_load.py"), "--streams", "1", "--seconds", "60",
                        "--width", "480", "--height", "360", "--model", str(tiny_bundle)],
                       capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    s0 = rep["per_stream"]["s0"]
    assert s0["actions"] >= 30, rep
    assert rep["rss_mb"]["end"] - rep["rss_mb"]["start"] < 40, rep["rss_mb"]
    first, last = rep["first_window_ms"], rep["last_window_ms"]
    assert last["p50"] < 2 * first["p50"] + 30, (first, last)
    assert rep["errors"]["policy_errors"] == 0 and rep["errors"]["source_errors"] == 0
    assert rep["publishers"][0]["delete_status"] == 200
