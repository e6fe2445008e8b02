#!/usr/bin/env bash
# Install edge-vla from this checkout as a systemd service. Safe to run again:
# the code and venv are refreshed, the unit is replaced, and existing
# configuration in /etc/edge-vla is never overwritten.
#
#   sudo systemd/install.sh [--prefix /opt/edge-vla] [--dry-run] [options]
#
# Layout:
#   PREFIX/src     a copy of this checkout (code, shipped model, docs)
#   PREFIX/.venv   the virtual environment running the daemon
#   ETC/edge-vla.toml, ETC/edge-vla.env     settings / secrets (kept if present)
#   UNIT_DIR/edge-vla.service
set -euo pipefail

usage() {
  cat <<EOF
usage: $0 [options]
  --prefix DIR          install root for the code and venv (default: /opt/edge-vla)
  --etc DIR             configuration folder (default: /etc/edge-vla)
  --unit-dir DIR        where the unit goes (default: /etc/systemd/system)
  --python PY           interpreter for the venv (default: python3; JetPack 6: python3.10)
  --extras LIST         optional dependency groups, e.g. gpu (default: none)
  --system-site-packages  let the venv see system packages (JetPack's TensorRT,
                        onnxruntime-gpu wheels installed system-wide)
  --pip-args "ARGS"     extra pip arguments, e.g. "--extra-index-url URL"
  --dry-run             print what would be done, change nothing
  -h, --help            this text
EOF
}

PREFIX=/opt/edge-vla
ETC=/etc/edge-vla
UNIT_DIR=/etc/systemd/system
PY=python3
EXTRAS=
VENV_ARGS=()
PIP_ARGS=()
DRY=0

while (($#)); do
  case "$1" in
    --prefix) PREFIX=${2:?--prefix needs a value}; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --etc) ETC=${2:?--etc needs a value}; shift 2 ;;
    --etc=*) ETC=${1#*=}; shift ;;
    --unit-dir) UNIT_DIR=${2:?--unit-dir needs a value}; shift 2 ;;
    --unit-dir=*) UNIT_DIR=${1#*=}; shift ;;
    --python) PY=${2:?--python needs a value}; shift 2 ;;
    --python=*) PY=${1#*=}; shift ;;
    --extras) EXTRAS=${2:?--extras needs a value}; shift 2 ;;
    --extras=*) EXTRAS=${1#*=}; shift ;;
    --system-site-packages) VENV_ARGS+=(--system-site-packages); shift ;;
    --pip-args) read -r -a PIP_ARGS <<<"${2:?--pip-args needs a value}"; shift 2 ;;
    --pip-args=*) read -r -a PIP_ARGS <<<"${1#*=}"; shift ;;
    --dry-run|-n) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$0: unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

for d in "$PREFIX" "$ETC" "$UNIT_DIR"; do
  case "$d" in
    /*) ;;
    *) echo "$0: paths must be absolute: $d" >&2; exit 2 ;;
  esac
done
PREFIX=${PREFIX%/}; ETC=${ETC%/}; UNIT_DIR=${UNIT_DIR%/}

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -f "$SRC/pyproject.toml" ] && [ -d "$SRC/edge_vla" ] || { echo "$0: $SRC is not an edge-vla checkout" >&2; exit 1; }

# Print a command; run it unless --dry-run.
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  ((DRY)) || "$@"
}
note() { printf '%s\n' "$*"; }

if ((!DRY)) && [ "$(id -u)" != 0 ]; then
  # Non-root only works for private prefixes (e.g. trying it out under /tmp).
  for d in "$(dirname "$PREFIX")" "$(dirname "$ETC")" "$(dirname "$UNIT_DIR")"; do
    [ -w "$d" ] || { echo "$0: run as root (or use --dry-run)" >&2; exit 1; }
  done
fi
command -v "$PY" >/dev/null || { echo "$0: $PY not found (use --python)" >&2; exit 1; }

# --- 1. code: copy the checkout to PREFIX/src ----------------------------------
# A copy, not the checkout itself: the service must not run code a developer
# is editing, and ProtectHome= hides checkouts under /home anyway. The copy
# is built beside the old one and swapped in, so a failed copy leaves the
# running install intact.
run install -d -m 0755 "$PREFIX"
if [ "$SRC" = "$PREFIX/src" ]; then
  note "source is already $PREFIX/src; not copying"
else
  run rm -rf "$PREFIX/src.new"
  run install -d -m 0755 "$PREFIX/src.new"
  if ((DRY)); then
    note "+ tar -C $SRC -cf - . | tar -C $PREFIX/src.new -xf -   (without .git, .venv, caches)"
  else
    tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude='*.egg-info' \
        --exclude='__pycache__' --exclude=.pytest_cache --exclude=.mypy_cache \
        --exclude=.ruff_cache --exclude=./build --exclude=./dist -cf - . \
      | tar -C "$PREFIX/src.new" --no-same-owner -xf -
  fi
  run rm -rf "$PREFIX/src.old"
  if [ -e "$PREFIX/src" ]; then run mv "$PREFIX/src" "$PREFIX/src.old"; fi
  run mv "$PREFIX/src.new" "$PREFIX/src"
  run rm -rf "$PREFIX/src.old"
fi

# --- 2. venv and package --------------------------------------------------------
if [ -x "$PREFIX/.venv/bin/python" ]; then
  note "venv $PREFIX/.venv exists; reusing it"
else
  run "$PY" -m venv ${VENV_ARGS[@]+"${VENV_ARGS[@]}"} "$PREFIX/.venv"
fi
spec="$PREFIX/src"
[ -n "$EXTRAS" ] && spec="$spec[$EXTRAS]"
# Editable, from PREFIX/src: the package finds its shipped model relative to
# its own files (src/models/), which a plain wheel install would not carry.
run "$PREFIX/.venv/bin/python" -m pip install --disable-pip-version-check -q ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} -e "$spec"
# The unit sets PYTHONDONTWRITEBYTECODE (the venv is read-only to the
# service), so compile now instead of on every start.
run "$PREFIX/.venv/bin/python" -m compileall -q "$PREFIX/src/edge_vla"
# Root-owned and not writable by the service user; readable by everyone,
# since the DynamicUser uid is not known in advance.
run chmod -R u+rwX,go+rX,go-w "$PREFIX"

# --- 3. configuration: never overwrite what is there -----------------------------
run install -d -m 0755 "$ETC"
if [ -e "$ETC/edge-vla.toml" ]; then
  note "kept $ETC/edge-vla.toml (the shipped example is $PREFIX/src/systemd/edge-vla.toml)"
else
  # Readable by the service: the daemon itself reads --config.
  run install -m 0644 "$SRC/systemd/edge-vla.toml" "$ETC/edge-vla.toml"
fi
if [ -e "$ETC/edge-vla.env" ]; then
  note "kept $ETC/edge-vla.env (the shipped example is $PREFIX/src/systemd/edge-vla.env)"
else
  # Secrets: root only. systemd reads EnvironmentFile= as root.
  run install -m 0600 "$SRC/systemd/edge-vla.env" "$ETC/edge-vla.env"
fi

# --- 4. the unit: point it at this prefix and config folder ------------------------
unit_tmp=$(mktemp)
trap 'rm -f "$unit_tmp"' EXIT
sed_escape() { printf '%s' "$1" | sed -e 's/[#&\\]/\\&/g'; }
sed -e "s#/opt/edge-vla/#$(sed_escape "$PREFIX")/#g" -e "s#/etc/edge-vla/#$(sed_escape "$ETC")/#g" \
  "$SRC/systemd/edge-vla.service" >"$unit_tmp"
run install -d -m 0755 "$UNIT_DIR"
if [ -f "$UNIT_DIR/edge-vla.service" ] && cmp -s "$unit_tmp" "$UNIT_DIR/edge-vla.service"; then
  note "$UNIT_DIR/edge-vla.service is up to date"
else
  run install -m 0644 "$unit_tmp" "$UNIT_DIR/edge-vla.service"
fi
if command -v systemd-analyze >/dev/null && ((!DRY)); then
  # Warnings only: an older systemd may not know every hardening key.
  systemd-analyze verify "$UNIT_DIR/edge-vla.service" || true
fi

# --- 5. tell systemd --------------------------------------------------------------
if [ -d /run/systemd/system ] && [ "$UNIT_DIR" = /etc/systemd/system ]; then
  run systemctl daemon-reload
else
  note "systemd is not running here (or --unit-dir is not /etc/systemd/system): skipped daemon-reload"
fi

cat <<EOF

edge-vla is installed in $PREFIX.
  1. settings:  $ETC/edge-vla.toml      secrets: $ETC/edge-vla.env (mode 0600)
  2. check:     $PREFIX/.venv/bin/edge-vla config check --config $ETC/edge-vla.toml
  3. start:     systemctl enable --now edge-vla
  4. logs:      journalctl -u edge-vla -f
An already running service keeps the old code until: systemctl restart edge-vla
EOF
((DRY)) && note "(dry run: nothing was changed)"
exit 0
