"""`edge-vla run` as a subprocess against a real mosquitto: lifecycle, health, outages, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from edge_vla.actions import ActionMessage
from edge_vla.broker import free_port

from .conftest import EDGE_VLA
from .notify_socket import FakeNotifySocket

DEVICE = "e2e"


class DaemonProcess:
    def __init__(self, tmp_path, broker_port, model, extra_env=None):
        self.http_port = free_port()
        self.stderr_path = tmp_path / "daemon.stderr"
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGE_VLA_")}
        env.update({
            "EDGE_VLA_DEVICE_ID": DEVICE, "EDGE_VLA_MQTT__HOST": "127.0.0.1",
            "EDGE_VLA_MQTT__PORT": str(broker_port), "EDGE_VLA_MODEL__PATH": str(model),
            "EDGE_VLA_SOURCE__KIND": "sim", "EDGE_VLA_SOURCE__WIDTH": "640", "EDGE_VLA_SOURCE__HEIGHT": "360",
            "EDGE_VLA_HTTP__PORT": str(self.http_port), "EDGE_VLA_LOG__FORMAT": "json",
            "EDGE_VLA_SAMPLER__MIN_FPS": "5",
            **(extra_env or {}),
        })
        self.proc = subprocess.Popen([EDGE_VLA, "run"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.stderr_path, "wb"))

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def log_events(self):
        out = []
        for line in self.stderr_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@pytest.fixture
def daemon_factory(tmp_path, broker, tiny_bundle):
    started = []

    def start(**env):
        d = DaemonProcess(tmp_path, broker.port, tiny_bundle, env)
        started.append(d)
        return d
    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def actions(collector):
    return collector.on(f"{DEVICE}/default/action")


def test_run_serves_actions_then_stops_cleanly(tmp_path, broker, collector, daemon_factory):
    with FakeNotifySocket(tmp_path, watchdog_usec=2_000_000) as notify:
        d = daemon_factory(**notify.env)
        assert notify.wait_for("READY", timeout=20, value="1"), d.stderr_path.read_text()
        assert collector.wait_for(lambda m: any(x.topic == f"edge-vla/{DEVICE}/status" and x.payload == b"online"
                                                for x in m), 10)
        assert collector.wait_for(lambda m: len(actions(collector)) >= 5, 20), d.stderr_path.read_text()
        for m in actions(collector):
            data = json.loads(m.payload)
            ActionMessage.model_validate(data)
            assert data["stream"] == "default" and data["latency_ms"]["total"] > 0 and not m.retain
        # the simulator executes the actions and reports back over MQTT
        assert collector.wait_for(lambda m: any(x.topic.endswith("/default/feedback") for x in m), 10)
        assert notify.wait_for("WATCHDOG", timeout=5, value="1")
        status, body = d.get("/healthz")
        assert status == 200 and json.loads(body)["healthy"] is True
        status, metrics = d.get("/metrics")
        assert status == 200 and 'edge_vla_actions_sent_total{stream="default"}' in metrics
        assert d.stop(signal.SIGTERM) == 0
        assert notify.wait_for("STOPPING", timeout=5, value="1")
    assert collector.wait_for(lambda m: m and [x for x in m if x.topic.endswith("/status")][-1].payload == b"offline", 5)


def test_sigkill_yields_offline_through_last_will(broker, collector, daemon_factory):
    d = daemon_factory()
    assert collector.wait_for(lambda m: any(x.payload == b"online" for x in m), 20), d.stderr_path.read_text()
    d.stop(signal.SIGKILL)
    assert collector.wait_for(lambda m: [x for x in m if x.topic.endswith("/status")][-1].payload == b"offline", 10)


def test_broker_outage_never_delivers_stale_actions(broker, collector, daemon_factory):
    d = daemon_factory(EDGE_VLA_MQTT__RECONNECT_MAX_S="1", EDGE_VLA_SAMPLER__MIN_FPS="10")
    assert collector.wait_for(lambda m: len(actions(collector)) >= 3, 20), d.stderr_path.read_text()
    broker.stop()
    time.sleep(3.5)  # longer than the 2 s action expiry and the 1 s deadline
    broker.start()
    t_back = time.time()
    assert collector.wait_for(
        lambda m: any(x.t_wall > t_back for x in actions(collector)), 20), d.stderr_path.read_text()
    time.sleep(1)
    for m in actions(collector):
        data = json.loads(m.payload)
        assert m.t_wall <= data["deadline"] + 0.05, "an action arrived after its deadline"
    events = {e.get("event") for e in d.log_events()}
    assert "mqtt.disconnected" in events and d.proc.poll() is None
    assert d.stop() == 0


def test_malformed_inbound_messages_do_not_hurt(broker, collector, daemon_factory):
    d = daemon_factory()
    assert collector.wait_for(lambda m: len(actions(collector)) >= 2, 20), d.stderr_path.read_text()
    for payload in (b"{", b"\xff\xfe\x00", b'{"v":1,"action_id":"x","status":"melted","ts":1}', b"[]" * 10000):
        collector.publish(f"edge-vla/{DEVICE}/default/feedback", payload)
    collector.publish(f"edge-vla/{DEVICE}/default/goal", b'{"instruction": 42}')
    n = len(actions(collector))
    assert collector.wait_for(lambda m: len(actions(collector)) >= n + 3, 10)
    assert d.proc.poll() is None
    _, metrics = d.get("/metrics")
    bad = [line for line in metrics.splitlines() if line.startswith("edge_vla_mqtt_bad_payloads_total")]
    assert bad and float(bad[0].split()[-1]) == 5.0
    assert d.stop() == 0


def test_missing_model_is_a_config_error(tmp_path, broker, daemon_factory):
    d = daemon_factory(EDGE_VLA_MODEL__PATH=str(tmp_path / "no-such-model"))
    assert d.proc.wait(30) == 78
    assert "no-such-model: not a folder" in d.stderr_path.read_text()


def test_invalid_config_exits_78(tmp_path, broker, daemon_factory):
    d = daemon_factory(EDGE_VLA_SAMPLER__MAX_FPS="fast")
    assert d.proc.wait(30) == 78
    assert "sampler.max_fps" in d.stderr_path.read_text()


def test_corrupt_file_source_keeps_the_daemon_acting(tmp_path, broker, collector, daemon_factory):
    import numpy as np

    from .sources.test_av import encode

    video = encode(tmp_path / "clip.mp4", 90)
    size = video.stat().st_size
    with open(video, "r+b") as fh:  # mp4 keeps its index at the end: the middle is packet data
        fh.seek(size // 2)
        fh.write(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    d = daemon_factory(EDGE_VLA_SOURCE__KIND="file", EDGE_VLA_SOURCE__URI=str(video),
                       EDGE_VLA_SOURCE__LOOP="true")
    deadline = time.monotonic() + 20
    while not any(e.get("event") == "source.decode_error" for e in d.log_events()):
        assert time.monotonic() < deadline and d.proc.poll() is None, d.stderr_path.read_text()
        time.sleep(0.2)
    n = len(actions(collector))
    assert collector.wait_for(lambda m: len(actions(collector)) >= n + 5, 20), "actions stopped after the damage"
    _, metrics = d.get("/metrics")
    errors = [line for line in metrics.splitlines() if line.startswith("edge_vla_decode_errors_total")]
    assert errors and float(errors[0].split()[-1]) > 0
    assert d.stop() == 0
