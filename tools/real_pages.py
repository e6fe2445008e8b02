#!/usr/bin/env python3
"""Held-out grounding cases from real admin-template HTML pages (screens we did not design).

Owns: installing a few pinned npm admin templates into a cache folder, serving them on
127.0.0.1 (all other hosts blocked), rendering chosen pages at 1280x720, 1920x1080 and
390x844 in headless Chromium (Playwright), and turning the visible, unoccluded buttons,
links, labelled fields, checkboxes and labelled icons into plain-English grounding cases.
Why: the simulator's screens are ours; this set measures whether the model reads screens
written by other people. Output: PNG screenshots plus ``cases.json`` (a list of
{image, width, height, instruction, box [x0, y0, x1, y1) in viewport px, kind, text, page, also:
the boxes of the control's <label>s, whose click activates it too}).

    .venv/bin/python tools/real_pages.py --out /tmp/rp [--cache .cache/real-pages] [--seed 0] [--max-cases N]

Needs npm (first run only, to fill the cache), the playwright Python package and a
Chromium binary (default /usr/bin/chromium, or --chromium / $CHROMIUM).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

VIEWPORTS = [(1280, 720), (1920, 1080), (390, 844)]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PER_SCREEN = 3          # at most this many cases per screenshot
MIN_SIDE = 8            # px, both sides of the clipped box
MIN_IN_VIEW = 0.75      # fraction of the element's area that must lie inside the viewport
NAV_TIMEOUT_MS = 15_000
OP_TIMEOUT_MS = 10_000
SETTLE_MS = 400

# Vendor folders that stisla's pages load from ./node_modules (its package.json also names
# git-hosted dependencies, so a plain `npm install stisla` fails offline; we install the
# tarball without dependencies and these into a side prefix instead).
STISLA_VENDOR = ["bootstrap@4.6.2", "@fortawesome/fontawesome-free@5.15.4", "jquery@3.7.1",
                 "popper.js@1.16.1", "tooltip.js@1.3.3", "nicescroll@3.7.4", "moment@2.30.1",
                 "bootstrap-social@5.1.1", "chart.js@2.9.4", "jquery-sparkline@2.4.0",
                 "selectric@1.13.0"]


@dataclass
class Template:
    name: str                       # short name, used in image file names
    package: str                    # npm package (the "page" field is "<package>/<html file>")
    version: str
    root: str                       # served folder, relative to the cache dir
    pages: list[str]                # html files, relative to root
    mounts: dict[str, str] = field(default_factory=dict)  # url prefix -> folder (relative to cache)
    via_pack: bool = False          # install with `npm pack` (no dependencies) instead of npm install
    vendor: list[str] = field(default_factory=list)       # extra npm packages for a side prefix
    held_out: bool = False          # the "fresh" set: added after the model was built, never inspected


TEMPLATES = [
    Template("sb-admin-2", "startbootstrap-sb-admin-2", "4.1.4",
             "node_modules/startbootstrap-sb-admin-2",
             ["login.html", "register.html", "forgot-password.html", "index.html", "buttons.html",
              "cards.html", "tables.html", "404.html"]),
    Template("sneat", "sneat-bootstrap-html-admin-template-free", "1.0.0",
             "node_modules/sneat-bootstrap-html-admin-template-free",
             ["html/auth-login-basic.html", "html/auth-register-basic.html", "html/index.html",
              "html/forms-basic-inputs.html", "html/form-layouts-vertical.html", "html/ui-buttons.html",
              "html/tables-basic.html", "html/pages-account-settings-account.html"]),
    Template("gentelella", "gentelella", "4.2.0", "node_modules/gentelella/dist",
             ["production/login.html", "production/register.html", "production/index.html",
              "production/form.html", "production/form_buttons.html", "production/tables.html",
              "production/settings.html", "production/user_management.html"]),
    Template("stisla", "stisla", "2.3.0", "stisla/package",
             ["auth-login.html", "auth-register.html", "auth-forgot-password.html", "index-0.html",
              "bootstrap-buttons.html", "bootstrap-form.html", "components-table.html",
              "features-setting-detail.html"],
             mounts={"/node_modules/": "stisla-vendor/node_modules"}, via_pack=True, vendor=STISLA_VENDOR),
    # The fresh set: two more generators (Bootstrap 5 and Material styles), added in session 9 and
    # only ever scored, never looked at case by case, so it stays a clean held-out check.
    Template("sb-admin", "startbootstrap-sb-admin", "7.0.7", "node_modules/startbootstrap-sb-admin/dist",
             ["login.html", "register.html", "password.html", "index.html", "tables.html", "charts.html",
              "401.html", "layout-static.html"], held_out=True),
    Template("material", "material-dashboard", "3.1.0", "node_modules/material-dashboard",
             ["pages/sign-in.html", "pages/sign-up.html", "pages/dashboard.html", "pages/billing.html",
              "pages/profile.html", "pages/tables.html", "pages/notifications.html"], held_out=True),
]
SETS = {"dev": lambda t: not t.held_out, "fresh": lambda t: t.held_out, "all": lambda t: True}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- install

def _npm(args: list[str], timeout: int = 600) -> bool:
    cmd = ["npm", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"  npm timed out: {' '.join(cmd)}")
        return False
    if r.returncode != 0:
        tail = "\n    ".join((r.stderr or r.stdout).strip().splitlines()[-4:])
        log(f"  npm failed ({r.returncode}): {' '.join(cmd)}\n    {tail}")
    return r.returncode == 0


def _installed(cache: Path, t: Template) -> bool:
    if not (cache / t.root / t.pages[0]).is_file():
        return False
    return all((cache / d).is_dir() for d in t.mounts.values())


def ensure_installed(cache: Path, templates: list[Template]) -> list[Template]:
    """Install what is missing (idempotent); return the templates that are usable."""
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / ".gitignore").exists():   # the default cache lives inside the repo
        (cache / ".gitignore").write_text("*\n")
    missing = [t for t in templates if not _installed(cache, t)]
    if missing and shutil.which("npm") is None:
        log("error: npm not found on PATH; it is needed once to fill the cache "
            f"({cache}) with: {', '.join(t.package for t in missing)}")
        return [t for t in templates if t not in missing]
    plain = [t for t in missing if not t.via_pack]
    if plain:
        specs = [f"{t.package}@{t.version}" for t in plain]
        log(f"installing into {cache}: {' '.join(specs)}")
        base = ["install", "--prefix", str(cache), "--no-audit", "--no-fund"]
        if not _npm(base + specs) and len(specs) > 1:
            for s in specs:       # one broken package must not sink the others
                _npm(base + [s])
    for t in missing:
        if not t.via_pack:
            continue
        log(f"installing {t.package}@{t.version} (tarball, no dependencies) into {cache}")
        dest = cache / Path(t.root).parts[0]
        pack_dir = cache / "_pack"
        pack_dir.mkdir(exist_ok=True)
        if _npm(["pack", f"{t.package}@{t.version}", "--pack-destination", str(pack_dir)]):
            tgz = pack_dir / f"{t.package}-{t.version}.tgz"
            dest.mkdir(parents=True, exist_ok=True)
            with tarfile.open(tgz) as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, filter="data")
                else:  # pragma: no cover - Python < 3.10.12
                    tf.extractall(dest)
        if t.vendor:
            vdir = cache / Path(next(iter(t.mounts.values()))).parts[0]
            _npm(["install", "--prefix", str(vdir), "--no-audit", "--no-fund", *t.vendor])
    ok = []
    for t in templates:
        if _installed(cache, t):
            ok.append(t)
        else:
            log(f"warning: {t.package} is not usable (install failed?); skipped")
    return ok


# ---------------------------------------------------------------- serving

class _Handler(SimpleHTTPRequestHandler):
    mounts: list[tuple[str, Path]] = []   # longest prefix first; "/" last

    def translate_path(self, path: str) -> str:
        p = unquote(urlsplit(path).path)
        for prefix, folder in self.mounts:
            if p.startswith(prefix):
                rel = p[len(prefix):]
                parts = [s for s in rel.split("/") if s not in ("", ".", "..")]
                return str(folder.joinpath(*parts))
        return str(self.mounts[-1][1])

    def log_message(self, *args) -> None:  # quiet
        pass


def serve(cache: Path, t: Template) -> tuple[ThreadingHTTPServer, str]:
    mounts = [(pre, (cache / d).resolve()) for pre, d in t.mounts.items()]
    mounts.sort(key=lambda m: -len(m[0]))
    mounts.append(("/", (cache / t.root).resolve()))
    handler = type(f"H_{t.name.replace('-', '_')}", (_Handler,), {"mounts": mounts})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"


# ---------------------------------------------------------------- DOM scan

NO_MOTION_CSS = ("*,*::before,*::after{animation-duration:0s!important;animation-delay:0s!important;"
                 "transition:none!important;caret-color:transparent!important;scroll-behavior:auto!important}")

# Returns every visible, unoccluded candidate plus the texts of all visible controls (for the
# uniqueness test, which counts controls that fail the other filters too).
SCAN_JS = r"""
({minSide, minInView}) => {
  const W = window.innerWidth, H = window.innerHeight;
  const norm = s => (s || '').replace(/\s+/g, ' ').trim();
  const vis = el => !!el && el.checkVisibility({opacityProperty: true, visibilityProperty: true});
  const clip = r => {
    const x0 = Math.max(0, r.left), y0 = Math.max(0, r.top);
    const x1 = Math.min(W, r.right), y1 = Math.min(H, r.bottom);
    return (x1 > x0 && y1 > y0) ? [x0, y0, x1, y1] : null;
  };
  const area = b => (b[2] - b[0]) * (b[3] - b[1]);
  // Text of el that is actually painted: text nodes with a real box inside the viewport and
  // inside every clipping ancestor (drops .sr-only / .visually-hidden text); badge and counter
  // text ("New", "3+") is left out so that "Charts" is not called "Charts New".
  const isBadge = e => /(^|\s)(badge|badge-\S+|menu-badge|nav-badge)(\s|$)/.test(typeof e.className === 'string' ? e.className : '');
  const paintedText = el => {
    const out = [];
    const tw = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = tw.nextNode(); n; n = tw.nextNode()) {
      if (!norm(n.nodeValue) || !vis(n.parentElement)) continue;
      const rg = document.createRange(); rg.selectNodeContents(n);
      const r = rg.getBoundingClientRect();
      let x0 = r.left, y0 = r.top, x1 = r.right, y1 = r.bottom, badge = false;
      for (let a = n.parentElement; a; a = a.parentElement) {
        if (isBadge(a)) { badge = true; break; }
        const cs = getComputedStyle(a);
        if (cs.overflow !== 'visible' || cs.clip !== 'auto' || cs.clipPath !== 'none') {
          const ar = a.getBoundingClientRect();
          const ci = cs.clip.match(/^rect\(([-\d.]+)px,? ([-\d.]+)px,? ([-\d.]+)px,? ([-\d.]+)px\)$/);
          if (ci && +ci[2] - +ci[4] < 2) { x1 = x0; break; }
          x0 = Math.max(x0, ar.left); y0 = Math.max(y0, ar.top);
          x1 = Math.min(x1, ar.right); y1 = Math.min(y1, ar.bottom);
        }
        if (a === el) break;
      }
      if (badge) continue;
      const cr = clip({left: x0, top: y0, right: x1, bottom: y1});
      if (cr && cr[2] - cr[0] >= 2 && cr[3] - cr[1] >= 4) out.push(n.nodeValue);
    }
    return norm(out.join(' '));
  };
  const squash = s => s.replace(/\s+/g, '').toLowerCase();
  const renderedText = el => {
    const inner = norm(el.innerText), painted = paintedText(el);
    if (!painted) return '';
    return squash(inner) === squash(painted) ? inner : painted;  // innerText keeps text-transform
  };
  const hits = (el, b) => {
    const cx = (b[0] + b[2]) / 2, cy = (b[1] + b[3]) / 2;
    const h = document.elementFromPoint(cx, cy);
    return !!h && (h === el || el.contains(h));
  };
  const boxOf = el => {
    if (!vis(el)) return null;
    const r = el.getBoundingClientRect();
    if (r.width <= 0 || r.height <= 0) return null;
    const b = clip(r);
    if (!b || area(b) < minInView * r.width * r.height) return null;
    if (b[2] - b[0] < minSide || b[3] - b[1] < minSide) return null;
    return b;
  };
  const labelText = lab => norm(renderedText(lab).replace(/[*:]+\s*$/, ''));
  // A click on a <label> of a control activates that control (focus for a field, toggle for a
  // checkbox): those boxes count as hits too, in the "activating" score.
  const labelBoxes = el => Array.from(el.labels || []).map(l => {
    const lb = vis(l) ? clip(l.getBoundingClientRect()) : null;
    return lb && hits(l, lb) ? lb : null;
  }).filter(Boolean);
  const out = [], seen = new Set(), allTexts = [];

  // buttons and links
  const clickSel = 'a[href], button, input[type=submit], input[type=button], input[type=reset], [role=button], [role=link], [role=tab], [role=menuitem]';
  const clickables = Array.from(document.querySelectorAll(clickSel));
  const isClickable = el => el.matches(clickSel);
  for (const el of clickables) {
    // the outermost clickable wins (a <button> inside an <a> is one control)
    let p = el.parentElement, nested = false;
    while (p) { if (isClickable(p)) { nested = true; break; } p = p.parentElement; }
    if (nested || seen.has(el)) continue;
    seen.add(el);
    const b = boxOf(el);
    const r0 = el.getBoundingClientRect();
    if (!vis(el) || !clip(r0)) continue;  // not on screen at all
    let text = el.tagName === 'INPUT' ? norm(el.value) : renderedText(el);
    let kind;
    if (text.length >= 2) {
      const cls = (el.className && el.className.baseVal === undefined) ? el.className : '';
      kind = (el.tagName === 'A' && !/\bbtn\b/.test(cls) && el.getAttribute('role') !== 'button') ? 'link' : 'button';
    } else {
      text = norm(el.getAttribute('aria-label') || el.getAttribute('title') || '');
      kind = 'icon';
    }
    if (!text) continue;
    allTexts.push(text);  // partly visible controls still make a text ambiguous
    if (!b || text.length > 30 || (kind === 'icon' && /[:;|]/.test(text))) continue;
    if (!hits(el, b)) continue;
    out.push({kind, text, box: b, tag: el.tagName.toLowerCase()});
  }

  // text fields
  const fieldSel = 'textarea, input:not([type]), input[type=text], input[type=email], input[type=password], input[type=search], input[type=tel], input[type=url], input[type=number]';
  for (const el of document.querySelectorAll(fieldSel)) {
    if (el.disabled || el.readOnly) continue;
    const b = boxOf(el);
    if (!b) continue;
    let text = '', src = '';
    for (const lab of (el.labels || [])) {
      if (!vis(lab)) continue;
      const t = labelText(lab);
      if (t.length >= 2) { text = t; src = 'label'; break; }
    }
    if (!text && norm(el.placeholder).length >= 2) { text = norm(el.placeholder); src = 'placeholder'; }
    if (!text) continue;
    allTexts.push(text);
    if (text.length > 30 || !hits(el, b)) continue;
    out.push({kind: 'field', text, box: b, tag: el.tagName.toLowerCase(), src, also: labelBoxes(el)});
  }

  // checkboxes (the box itself when painted; else the label plus its ::before box, which is
  // how Bootstrap 4 "custom-control" checkboxes are drawn)
  for (const el of document.querySelectorAll('input[type=checkbox]')) {
    if (el.disabled) continue;
    let lab = null, text = '';
    for (const l of (el.labels || [])) {
      if (!vis(l)) continue;
      const t = labelText(l);
      if (t.length >= 2) { lab = l; text = t; break; }
    }
    if (!lab) continue;
    let b = boxOf(el), target = el;
    if (!b || !hits(el, b)) {
      const lr = lab.getBoundingClientRect();
      let r = {left: lr.left, top: lr.top, right: lr.right, bottom: lr.bottom};
      const cs = getComputedStyle(lab, '::before');
      if (cs.content !== 'none' && cs.position === 'absolute' && getComputedStyle(lab).position !== 'static') {
        const l = parseFloat(cs.left), t = parseFloat(cs.top), w = parseFloat(cs.width), h = parseFloat(cs.height);
        if ([l, t, w, h].every(Number.isFinite) && w > 0 && h > 0) {
          r = {left: Math.min(r.left, lr.left + l), top: Math.min(r.top, lr.top + t),
               right: Math.max(r.right, lr.left + l + w), bottom: Math.max(r.bottom, lr.top + t + h)};
        }
      }
      r.width = r.right - r.left; r.height = r.bottom - r.top;
      b = vis(lab) ? clip(r) : null;
      if (!b || area(b) < minInView * r.width * r.height || b[2] - b[0] < minSide || b[3] - b[1] < minSide) continue;
      const lb = clip(lr);
      if (!lb || !hits(lab, lb)) continue;
      target = lab;
    }
    allTexts.push(text);
    if (text.length > 30) continue;
    out.push({kind: 'checkbox', text, box: b, tag: target.tagName.toLowerCase(), src: el.checked ? 'checked' : '',
              also: labelBoxes(el)});
  }
  return {cands: out, texts: allTexts, W, H};
}
"""

TEMPLATES_TEXT = {
    "button": ["Click {t}", "Press the {t} button", "Tap {t}", "Click the {t} button", "Select {t}", "Hit {t}"],
    "link": ["Click {t}", "Open {t}", "Go to {t}", "Click the {t} link", "Tap {t}", "Select {t}"],
    "field": ["Click the {t} field", "Click into {t}", "Click in the {t} box", "Tap the {t} field",
              "Put the cursor in the {t} field"],
    "field_ph": ["Click the field that says '{t}'", "Click into the '{t}' box", "Tap the '{t}' field"],
    "checkbox": ["Tick '{t}'", "Check the box next to {t}", "Click the {t} checkbox", "Tick the {t} box"],
    "checkbox_on": ["Untick '{t}'", "Uncheck the box next to {t}", "Click the {t} checkbox", "Clear the {t} box"],
    "icon": ["Click the {t} icon", "Press the {t} button", "Tap {t}", "Click {t}"],
}


def instruction(kind: str, text: str, src: str, rng: random.Random) -> str:
    key = {("field", "placeholder"): "field_ph", ("checkbox", "checked"): "checkbox_on"}.get((kind, src), kind)
    return rng.choice(TEMPLATES_TEXT[key]).format(t=text)


def int_box(b: list[float], w: int, h: int) -> list[int]:
    x0, y0 = max(0, math.floor(b[0])), max(0, math.floor(b[1]))
    x1, y1 = min(w, math.ceil(b[2])), min(h, math.ceil(b[3]))
    return [x0, y0, x1, y1]


def choose(cands: list[dict], texts: list[str], rng: random.Random, k: int) -> list[dict]:
    """Unique-text candidates, round-robin over kinds so fields/checkboxes are not drowned out."""
    counts: dict[str, int] = {}
    for t in texts:
        counts[t.lower()] = counts.get(t.lower(), 0) + 1
    ok = [c for c in cands if counts.get(c["text"].lower(), 0) == 1 and 2 <= len(c["text"]) <= 30]
    by_kind: dict[str, list[dict]] = {}
    for c in ok:
        by_kind.setdefault(c["kind"], []).append(c)
    kinds = sorted(by_kind)
    rng.shuffle(kinds)
    for kd in kinds:
        rng.shuffle(by_kind[kd])
    picked: list[dict] = []
    while len(picked) < k and any(by_kind[kd] for kd in kinds):
        for kd in kinds:
            if by_kind[kd] and len(picked) < k:
                picked.append(by_kind[kd].pop())
    return picked


# ---------------------------------------------------------------- render

def _route(route) -> None:
    host = urlsplit(route.request.url).hostname or ""
    if host in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


def render(chromium: str, cache: Path, templates: list[Template], out: Path, seed: int,
           max_cases: int | None, per_screen: int) -> tuple[list[dict], dict]:
    try:
        from playwright.sync_api import Error as PWError
        from playwright.sync_api import TimeoutError as PWTimeout
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("error: the playwright Python package is missing (pip install playwright)")

    servers = {t.name: serve(cache, t) for t in templates}
    stats = {t.name: {"pages": set(), "screens": 0, "cases": 0, "failed": []} for t in templates}
    cases: list[dict] = []
    # interleave templates page by page so that a --max-cases cut keeps every template
    jobs = []
    for i in range(max(len(t.pages) for t in templates)):
        for t in templates:
            if i < len(t.pages):
                jobs.append((t, t.pages[i]))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                                        timeout=30_000)
            try:
                for t, page_file in jobs:
                    if max_cases is not None and len(cases) >= max_cases:
                        break
                    url = servers[t.name][1] + page_file
                    page_id = f"{t.package}/{page_file}"
                    for vw, vh in VIEWPORTS:
                        if max_cases is not None and len(cases) >= max_cases:
                            break
                        rng = random.Random(f"{seed}:{page_id}:{vw}x{vh}")
                        ctx = browser.new_context(viewport={"width": vw, "height": vh}, device_scale_factor=1,
                                                  service_workers="block", reduced_motion="reduce",
                                                  locale="en-US")
                        try:
                            ctx.set_default_timeout(OP_TIMEOUT_MS)
                            ctx.set_default_navigation_timeout(NAV_TIMEOUT_MS)
                            ctx.route("**/*", _route)
                            page = ctx.new_page()
                            try:
                                page.goto(url, wait_until="load", timeout=NAV_TIMEOUT_MS)
                            except PWTimeout:
                                log(f"  {page_id} {vw}x{vh}: load timed out; using what rendered")
                            page.add_style_tag(content=NO_MOTION_CSS)
                            page.wait_for_timeout(SETTLE_MS)
                            scan = page.evaluate(SCAN_JS, {"minSide": MIN_SIDE, "minInView": MIN_IN_VIEW})
                            stem = Path(page_file).with_suffix("").as_posix().replace("/", "_")
                            img = f"{t.name}__{stem}__{vw}x{vh}.png"
                            shot = page.screenshot(full_page=False, animations="disabled", caret="hide",
                                                   timeout=OP_TIMEOUT_MS)
                            # keep only targets that did not move while the screenshot was taken
                            again = page.evaluate(SCAN_JS, {"minSide": MIN_SIDE, "minInView": MIN_IN_VIEW})
                        except (PWError, PWTimeout) as e:
                            msg = str(e).splitlines()[0][:160]
                            log(f"  {page_id} {vw}x{vh}: failed: {msg}")
                            stats[t.name]["failed"].append(f"{page_file} {vw}x{vh}: {msg}")
                            continue
                        finally:
                            ctx.close()
                        stable = {(c["kind"], c["text"], tuple(int_box(c["box"], vw, vh))) for c in again["cands"]}
                        cands = [c for c in scan["cands"]
                                 if (c["kind"], c["text"], tuple(int_box(c["box"], vw, vh))) in stable]
                        picked = choose(cands, scan["texts"], rng, per_screen)
                        if max_cases is not None:
                            picked = picked[: max_cases - len(cases)]
                        stats[t.name]["pages"].add(page_file)
                        if not picked:
                            continue
                        (out / img).write_bytes(shot)
                        stats[t.name]["screens"] += 1
                        for c in picked:
                            cases.append({
                                "image": img, "width": vw, "height": vh,
                                "instruction": instruction(c["kind"], c["text"], c.get("src", ""), rng),
                                "box": int_box(c["box"], vw, vh), "kind": c["kind"], "text": c["text"],
                                "also": [int_box(b, vw, vh) for b in c.get("also", [])],
                                "page": page_id,
                            })
                            stats[t.name]["cases"] += 1
            finally:
                browser.close()
    finally:
        for srv, _ in servers.values():
            srv.shutdown()
            srv.server_close()
    return cases, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="output folder (PNGs + cases.json)")
    ap.add_argument("--cache", type=Path, default=Path(".cache/real-pages"), help="npm install prefix")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", default="dev", choices=sorted(SETS),
                    help="dev: the four templates used while building m2/m3; fresh: two later ones, never inspected")
    ap.add_argument("--max-cases", type=int, default=None, help="stop after this many cases")
    ap.add_argument("--per-screen", type=int, default=PER_SCREEN, help="at most this many cases per screenshot")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                    help="Chromium executable (default $CHROMIUM or /usr/bin/chromium)")
    args = ap.parse_args(argv)

    chromium = shutil.which(args.chromium) or args.chromium
    if not Path(chromium).is_file():
        log(f"error: Chromium not found at {args.chromium} (install it, e.g. apt-get install chromium, "
            "or pass --chromium PATH)")
        return 2
    t0 = time.monotonic()
    templates = ensure_installed(args.cache.resolve(), [t for t in TEMPLATES if SETS[args.set](t)])
    if not templates:
        log("error: no template could be installed")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.png"):
        old.unlink()
    cases, stats = render(chromium, args.cache.resolve(), templates, args.out, args.seed,
                          args.max_cases, args.per_screen)
    (args.out / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")

    for t in templates:
        s = stats[t.name]
        extra = f", {len(s['failed'])} failed" if s["failed"] else ""
        print(f"{t.name:12s} pages {len(s['pages']):3d}  screenshots {s['screens']:3d}  cases {s['cases']:4d}{extra}")
    by_kind: dict[str, int] = {}
    by_vp: dict[str, int] = {}
    for c in cases:
        by_kind[c["kind"]] = by_kind.get(c["kind"], 0) + 1
        vp = f"{c['width']}x{c['height']}"
        by_vp[vp] = by_vp.get(vp, 0) + 1
    print(f"{'total':12s} pages {sum(len(s['pages']) for s in stats.values()):3d}  "
          f"screenshots {sum(s['screens'] for s in stats.values()):3d}  cases {len(cases):4d}  "
          f"({time.monotonic() - t0:.0f} s) -> {args.out / 'cases.json'}")
    print("by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())))
    print("by viewport: " + ", ".join(f"{k} {v}" for k, v in sorted(by_vp.items())))
    if not cases:
        log("error: no cases were produced")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
