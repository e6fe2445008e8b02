"""tools/real_pages.py end to end: a few real template pages -> cases.json whose boxes lie in the PNGs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "real_pages.py"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CACHE = Path(os.environ.get("REAL_PAGES_CACHE", ROOT / ".cache" / "real-pages"))


def _tool():
    spec = importlib.util.spec_from_file_location("real_pages", TOOL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["real_pages"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_real_pages_small_run(tmp_path):
    pytest.importorskip("playwright.sync_api")
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    rp = _tool()
    if not rp.ensure_installed(CACHE, [t for t in rp.TEMPLATES if rp.SETS["dev"](t)]):  # first use needs npm and the registry
        pytest.skip("no admin template could be installed (offline?)")

    out = tmp_path / "rp"
    r = subprocess.run([sys.executable, str(TOOL), "--out", str(out), "--cache", str(CACHE),
                        "--max-cases", "8", "--chromium", CHROMIUM],
                       capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "total" in r.stdout

    from PIL import Image

    cases = json.loads((out / "cases.json").read_text())
    assert 1 <= len(cases) <= 8
    keys = {"image", "width", "height", "instruction", "box", "kind", "text", "page", "also"}
    for c in cases:
        assert set(c) == keys
        assert c["kind"] in {"field", "checkbox"} or c["also"] == []  # only controls have labels
        for b in c["also"]:
            assert 0 <= b[0] < b[2] <= c["width"] and 0 <= b[1] < b[3] <= c["height"]
        assert c["kind"] in {"button", "link", "field", "checkbox", "icon"}
        assert (c["width"], c["height"]) in rp.VIEWPORTS
        with Image.open(out / c["image"]) as im:
            assert im.size == (c["width"], c["height"])
        x0, y0, x1, y1 = c["box"]
        assert all(isinstance(v, int) for v in c["box"])
        assert 0 <= x0 < x1 <= c["width"] and 0 <= y0 < y1 <= c["height"]
        assert x1 - x0 >= rp.MIN_SIDE and y1 - y0 >= rp.MIN_SIDE
        assert 2 <= len(c["text"]) <= 30 and c["text"] in c["instruction"]
        assert c["page"].endswith(".html")
    # the same seed gives the same cases
    out2 = tmp_path / "rp2"
    r = subprocess.run([sys.executable, str(TOOL), "--out", str(out2), "--cache", str(CACHE),
                        "--max-cases", "8", "--chromium", CHROMIUM],
                       capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out2 / "cases.json").read_text()) == cases
