"""``edge-vla fleet status``: devices and streams seen on a broker, from what they already publish.

Reads retained ``P/status`` (online/offline) and, for ``--seconds``, the live ``P/S/action``,
``P/S/verdict`` and ``P/events`` traffic: actions per second, glass-to-action p50 (frame capture
to publish, on the device's own clock, so clock skew between devices and the broker cannot bend it),
verdicts and the last error. Works on a device's local broker or on the central one (bridged).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import structlog

log = structlog.get_logger(__name__)

ERROR_HINTS = ("error", "disabled", "unavailable", "reset", "stuck", "dropped", "failed")


@dataclass
class StreamView:
    actions: int = 0
    g2a_ms: list[float] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)
    last_action_ts: float | None = None


@dataclass
class DeviceView:
    status: str | None = None  # online / offline (retained); None: never said
    streams: dict[str, StreamView] = field(default_factory=dict)
    events: int = 0
    regressions: int = 0
    last_error: dict | None = None
    last_seen: float | None = None
    bridge: bool | None = None  # the device's bridge to this broker is up (notifications)


class FleetView:
    """Folds messages into per-device state; ``feed`` is all a test or a tool needs."""

    def __init__(self, prefix: str = "edge-vla"):
        self.prefix = prefix
        self.devices: dict[str, DeviceView] = {}
        self.malformed = 0

    def feed(self, topic: str, payload: bytes, now: float | None = None) -> None:
        parts = topic.split("/")
        pre = self.prefix.split("/")
        if parts[:len(pre)] != pre or len(parts) < len(pre) + 2:
            return
        rest = parts[len(pre):]
        dev = self.devices.setdefault(rest[0], DeviceView())
        dev.last_seen = time.time() if now is None else now
        try:
            if rest[1:] == ["status"]:
                dev.status = payload.decode(errors="replace").strip() or None
            elif rest[1:] == ["bridge"]:  # the device broker's bridge notification (deploy/mosquitto)
                dev.bridge = payload.decode(errors="replace").strip() == "1"
            elif rest[1:] == ["events"]:
                ev = json.loads(payload)
                dev.events += 1
                kind = str(ev.get("kind", ""))
                if kind == "regression":
                    dev.regressions += 1
                elif any(h in kind for h in ERROR_HINTS):
                    dev.last_error = {k: ev[k] for k in ("kind", "reason", "error", "ts") if k in ev}
            elif len(rest) == 3 and rest[2] in ("action", "verdict"):
                st = dev.streams.setdefault(rest[1], StreamView())
                msg = json.loads(payload)
                if rest[2] == "action":
                    st.actions += 1
                    if "frame_ts" in msg and "published_ts" in msg:
                        st.g2a_ms.append((float(msg["published_ts"]) - float(msg["frame_ts"])) * 1e3)
                    st.last_action_ts = msg.get("published_ts")
                else:
                    r = str(msg.get("result"))
                    st.verdicts[r] = st.verdicts.get(r, 0) + 1
        except (ValueError, TypeError, AttributeError):
            self.malformed += 1  # someone else's payload on our topics: counted, never fatal

    def report(self, seconds: float) -> dict[str, Any]:
        out = {}
        for name, d in sorted(self.devices.items()):
            streams = {}
            for s, v in sorted(d.streams.items()):
                streams[s] = {"actions_per_s": round(v.actions / seconds, 2) if seconds > 0 else None,
                              "actions": v.actions,
                              "glass_to_action_p50_ms": round(statistics.median(v.g2a_ms), 1) if v.g2a_ms else None,
                              "verdicts": v.verdicts}
            out[name] = {"status": d.status or "unknown", "streams": streams, "events": d.events,
                         "regressions": d.regressions, "last_error": d.last_error, "bridge": d.bridge}
        return {"prefix": self.prefix, "seconds": round(seconds, 2), "devices": out, "malformed": self.malformed}


def parse_broker(url: str) -> tuple[str, int, bool]:
    """mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (or HOST[:PORT]) -> host, port, tls."""
    u = urlparse(url if "://" in url else f"mqtt://{url}")
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    tls = u.scheme in ("mqtts", "ssl")
    if not u.hostname:
        raise ValueError(f"broker URL {url!r}: no host")
    return u.hostname, u.port or (8883 if tls else 1883), tls


def watch(host: str, port: int, prefix: str, seconds: float, *, tls: bool = False, ca_file: str | None = None,
          username: str | None = None, password: str | None = None) -> dict[str, Any]:
    """Subscribe, listen for ``seconds`` (retained status arrives at once), return the report."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    view = FleetView(prefix)
    lock = threading.Lock()
    connected = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-vla-fleet-{uuid.uuid4().hex[:8]}",
                    protocol=paho.MQTTv5)
    if username:
        c.username_pw_set(username, password)
    if tls:
        import ssl

        c.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)

    def on_connect(client, _u, _f, rc, _p=None):
        if not rc.is_failure:
            client.subscribe([(f"{prefix}/+/status", 1), (f"{prefix}/+/events", 1),
                              (f"{prefix}/+/+/action", 0), (f"{prefix}/+/+/verdict", 0)])
            connected.set()

    def on_message(_c, _u, msg):
        with lock:
            view.feed(msg.topic, msg.payload)

    c.on_connect, c.on_message = on_connect, on_message
    c.connect(host, port, keepalive=15)
    c.loop_start()
    try:
        if not connected.wait(5):
            raise ConnectionError(f"broker {host}:{port}: no connection within 5 s")
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
    finally:
        c.disconnect()
        c.loop_stop()
    with lock:
        return view.report(elapsed)


def format_report(rep: dict[str, Any]) -> str:
    lines = [f"{'device':<20} {'status':<8} {'stream':<12} {'act/s':>6} {'g2a p50 ms':>10} "
             f"{'verdicts':<28} last error"]
    for name, d in rep["devices"].items():
        err = "-"
        if d["last_error"]:
            e = d["last_error"]
            err = e.get("kind", "?") + (f": {e.get('reason') or e.get('error')}" if e.get("reason") or e.get("error") else "")
        streams = d["streams"] or {"-": None}
        for s, v in streams.items():
            if v is None:
                lines.append(f"{name:<20} {d['status']:<8} {'-':<12} {'-':>6} {'-':>10} {'-':<28} {err}")
                continue
            verdicts = ",".join(f"{k}={n}" for k, n in sorted(v["verdicts"].items())) or "-"
            p50 = "-" if v["glass_to_action_p50_ms"] is None else f"{v['glass_to_action_p50_ms']:.1f}"
            lines.append(f"{name:<20} {d['status']:<8} {s:<12} {v['actions_per_s']:>6} {p50:>10} {verdicts:<28} {err}")
    n_on = sum(1 for d in rep["devices"].values() if d["status"] == "online")
    lines.append(f"{len(rep['devices'])} devices ({n_on} online), listened {rep['seconds']} s")
    return "\n".join(lines)


def cmd_status(args) -> int:
    import sys

    from ..cli import _settings

    s = _settings(args)
    if args.broker:
        try:
            host, port, tls = parse_broker(args.broker)
        except ValueError as exc:
            print(f"edge-vla fleet status: {exc}", file=sys.stderr)
            return 2
    else:
        host, port, tls = s.mqtt.host, s.mqtt.port, s.mqtt.tls
    pw = s.mqtt.password.get_secret_value() if s.mqtt.password else None
    try:
        rep = watch(host, port, s.mqtt.topic_prefix, args.seconds, tls=tls,
                    ca_file=str(s.mqtt.ca_file) if s.mqtt.ca_file else None, username=s.mqtt.username, password=pw)
    except (OSError, ConnectionError) as exc:
        print(f"edge-vla fleet status: broker {host}:{port}: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0


def add_parser(sub, with_config) -> None:
    fl = sub.add_parser("fleet", help="the fleet seen from a (central) broker")
    fsub = fl.add_subparsers(dest="fleet_command", required=True)
    st = with_config(fsub.add_parser("status", help="devices and streams: online/offline, actions/s, "
                                                    "glass-to-action p50, verdicts, last error"))
    st.add_argument("--broker", help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (default: mqtt.host/mqtt.port)")
    st.add_argument("--seconds", type=float, default=3.0, help="how long to listen for actions and events")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
