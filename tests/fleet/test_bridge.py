"""The documented mosquitto bridge (deploy/mosquitto/edge-vla-bridge.conf) between two real brokers:
a device broker bridged to a central one, the central one going away and coming back."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_vla.broker import Mosquitto, free_port
from edge_vla.config import MqttConfig
from edge_vla.fleet.status import FleetView, format_report, watch
from edge_vla.mqtt import MqttLink

from ..mqtt_collector import Collector

SNIPPET = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "edge-vla-bridge.conf"


def bridge_conf(central_port: int, device: str) -> str:
    """The shipped snippet, pointed at the test's central broker (no TLS on loopback), retrying fast."""
    text = SNIPPET.read_text().replace("DEVICE_ID", device)
    text = re.sub(r"^address .*$", f"address 127.0.0.1:{central_port}", text, flags=re.M)
    return re.sub(r"^restart_timeout .*$", "restart_timeout 1 1", text, flags=re.M)


def wait(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def action(seq: int) -> bytes:
    now = time.time()
    return json.dumps({"v": 1, "id": f"a{seq}", "seq": seq, "stream": "default", "type": "click", "x": 1, "y": 2,
                       "frame_ts": now - 0.05, "published_ts": now, "deadline": now + 2, "model": "m",
                       "latency_ms": {"total": 50.0}}).encode()


@pytest.fixture
def brokers(tmp_path):
    cport = free_port()
    (tmp_path / "central").mkdir()
    (tmp_path / "device").mkdir()
    central = Mosquitto(port=cport, workdir=tmp_path / "central").start()
    device = Mosquitto(workdir=tmp_path / "device", extra_conf=bridge_conf(cport, "dev1")).start()
    yield central, device
    device.close()
    central.close()


def test_actions_reach_central_and_status_survives_a_central_outage(brokers):
    central, device = brokers
    sub = Collector(central.port, topics=("edge-vla/#",))
    try:
        # the device's daemon-side link: retained online, last will offline, to its LOCAL broker only
        link = MqttLink(MqttConfig(host="127.0.0.1", port=device.port), "dev1", client_id="dev1-daemon",
                        loop=asyncio.new_event_loop())
        link.start()
        assert link._connected.wait(5)
        assert wait(lambda: any(m.topic == "edge-vla/dev1/status" and m.text == "online" for m in sub.messages))
        pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="dev1-actions", protocol=paho.MQTTv5)
        pub.connect("127.0.0.1", device.port)
        pub.loop_start()
        for i in range(20):
            pub.publish("edge-vla/dev1/default/action", action(i), qos=1).wait_for_publish(5)
        assert wait(lambda: sum(m.topic.endswith("/action") for m in sub.messages) == 20)
        got = [json.loads(m.payload)["seq"] for m in sub.messages if m.topic.endswith("/action")]
        assert got == list(range(20))

        # the central broker goes away (no persistence: it forgets every retained message)
        central.stop()
        # the device keeps working against its local broker: every publish is acknowledged locally
        infos = [pub.publish("edge-vla/dev1/default/action", action(100 + i), qos=1) for i in range(50)]
        for info in infos:
            info.wait_for_publish(5)
            assert info.is_published()
        link.event("watchdog_reset", reason="test outage")
        link.stop()  # offline ...
        link2 = MqttLink(MqttConfig(host="127.0.0.1", port=device.port), "dev1", client_id="dev1-daemon",
                        loop=asyncio.new_event_loop())
        link2.start()  # ... and online again, all while the central broker is down
        assert link2._connected.wait(5)
        pub.loop_stop()
        pub.disconnect()

        central.start()
        # the restarted central broker learns the device's latest status from the bridge ...
        early = Collector(central.port, topics=("edge-vla/#",))
        try:
            assert wait(lambda: any(m.topic == "edge-vla/dev1/status" for m in early.messages))
            # the bridge's session queued what was published meanwhile, the event included (QoS 0,
            # queue_qos0_messages); actions are not checked one by one: a QoS 1 message in flight when
            # the central broker died with no persistence can be lost (seen: 1 of 50), and real actions
            # expire after <= 2 s anyway
            assert wait(lambda: any(m.topic == "edge-vla/dev1/events" for m in early.messages))
            assert wait(lambda: sum(m.topic.endswith("/action") for m in early.messages) >= 40)
            assert [m.text for m in early.messages if m.topic == "edge-vla/dev1/status"][-1] == "online"
        finally:
            early.close()
        # ... and keeps it retained for whoever subscribes later
        late = Collector(central.port, topics=("edge-vla/+/status",))
        try:
            assert wait(lambda: any(m.topic == "edge-vla/dev1/status" for m in late.messages))
            last = [m for m in late.messages if m.topic == "edge-vla/dev1/status"][-1]
            assert last.text == "online" and last.retain
        finally:
            late.close()
        rep = watch("127.0.0.1", central.port, "edge-vla", 0.5)
        assert rep["devices"]["dev1"]["status"] == "online"
        print(format_report(rep))
        link2.stop()
        assert wait(lambda: watch("127.0.0.1", central.port, "edge-vla", 0.2)["devices"]["dev1"]["status"]
                    == "offline")
    finally:
        sub.close()


def test_fleet_view_folds_status_actions_verdicts_and_errors():
    v = FleetView("edge-vla")
    v.feed("edge-vla/a/status", b"online")
    v.feed("edge-vla/b/status", b"offline")
    for i in range(4):
        v.feed("edge-vla/a/cam/action", action(i))
    v.feed("edge-vla/a/cam/verdict", json.dumps({"v": 1, "action_id": "a1", "result": "changed"}).encode())
    v.feed("edge-vla/a/events", json.dumps({"v": 1, "kind": "memory_disabled", "reason": "disk full"}).encode())
    v.feed("edge-vla/a/events", json.dumps({"v": 1, "kind": "regression", "run": "r"}).encode())
    v.feed("edge-vla/a/cam/action", b"{not json")
    rep = v.report(2.0)
    a = rep["devices"]["a"]
    assert a["status"] == "online" and rep["devices"]["b"]["status"] == "offline"
    assert a["streams"]["cam"]["actions_per_s"] == 2.0 and a["streams"]["cam"]["glass_to_action_p50_ms"] == 50.0
    assert a["streams"]["cam"]["verdicts"] == {"changed": 1} and a["regressions"] == 1
    assert a["last_error"] == {"kind": "memory_disabled", "reason": "disk full"} and rep["malformed"] == 1
    assert "disk full" in format_report(rep)


def test_fleet_status_cli_against_a_broker(broker, capsys):
    from edge_vla.cli import main

    link = MqttLink(MqttConfig(host="127.0.0.1", port=broker.port), "devx", client_id="devx",
                    loop=asyncio.new_event_loop())
    link.start()
    assert link._connected.wait(5)
    try:
        assert main(["fleet", "status", "--broker", f"mqtt://127.0.0.1:{broker.port}", "--seconds", "0.3",
                     "--json"]) == 0
        out = capsys.readouterr().out
        rep = json.loads(out[out.index("{\n"):])  # structlog lines of the device link come first
        assert rep["devices"]["devx"]["status"] == "online"
        assert main(["fleet", "status", "--broker", "http://x", "--seconds", "0"]) == 2
    finally:
        link.stop()
