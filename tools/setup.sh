#!/usr/bin/env bash
# One-shot install on a fresh Debian/Ubuntu machine: system packages, a venv
# in .venv, and edge-vla with its dev, export and fleet extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# the real-browser WHIP test drives Debian's chromium through Playwright (no browser download)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# the simulator's type faces (edge_vla/sim/render.py FONTS): training data and held-out screens use them
fonts=/usr/share/fonts/truetype
[ -f $fonts/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
[ -f $fonts/dejavu/DejaVuSansCondensed.ttf ] || need_apt+=(fonts-dejavu-extra)
[ -f $fonts/liberation/LiberationSans-Regular.ttf ] || need_apt+=(fonts-liberation)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# export extra: torch==2.13.0 is the CPU wheel here (an unpinned torch pulls a multi-GB CUDA build)
# fleet extra: qdrant-client, so CI runs the fleet store tests (tests/fleet) in its local mode
.venv/bin/pip install -q -e ".[dev,export,fleet]"
echo "edge-vla installed in .venv"
