"""Faults an edge device meets: hung or failing inference, clock jumps, slow peers, secrets, TLS."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time


from edge_vla import policy as policy_registry
from edge_vla.actions import Action, ActionMessage
from edge_vla.broker import Mosquitto
from edge_vla.config import MqttConfig
from edge_vla.daemon import Daemon
from edge_vla.http.whip import DataChannelSink
from edge_vla.mqtt import MqttLink
from edge_vla.pipeline import StreamPipeline
from edge_vla.policy import Decision
from edge_vla.sdnotify import Notifier

from .conftest import EDGE_VLA
from .notify_socket import FakeNotifySocket
from .test_pipeline import ListSink, PatternSource

RELEASE = threading.Event()


class HangingPolicy:
    """Answers a few times, then hangs inside inference until RELEASE is set."""

    name = "hanging"

    def __init__(self, settings, **_):
        self.calls = 0

    def decide(self, frame, instruction):
        self.calls += 1
        if self.calls > 3:
            RELEASE.wait(30)
        return Decision(Action(type="wait"), self.name, {"model": 0.1})

    def close(self):
        RELEASE.set()


async def test_hung_inference_stops_watchdog_pings(make_settings, broker, tmp_path):
    policy_registry.register("hanging-test", "tests.test_faults:HangingPolicy")
    RELEASE.clear()
    s = make_settings(broker=broker, policy={"kind": "hanging-test"}, model={"timeout_s": 0.3},
                      watchdog={"max_policy_age_s": 1.0},
                      source={"kind": "sim", "width": 320, "height": 240}, sampler={"min_fps": 10, "max_fps": 10})
    with FakeNotifySocket(tmp_path, watchdog_usec=400_000) as sock:
        d = Daemon(s, notifier=Notifier.from_env(sock.env))
        run = asyncio.create_task(d.run())
        await asyncio.sleep(0.3)
        assert sock.wait_for("READY", timeout=5)
        pings_before = [m for m in sock.messages(0.5) if "WATCHDOG" in m]
        assert pings_before, "no watchdog pings while healthy"
        await asyncio.sleep(1.5)  # inference is hung now
        sock.messages(0.3)
        silent = [m for m in sock.messages(1.2) if "WATCHDOG" in m]
        assert silent == [], "pings went on while inference hung"
        assert not d.health()[0] and "inference running" in d.health()[1]
        RELEASE.set()
        d.stop()
        await asyncio.wait_for(run, 10)


class FlakyPolicy:
    name = "flaky"

    def __init__(self):
        self.calls = 0
        self.restarts = 0

    def decide(self, frame, instruction):
        self.calls += 1
        if self.restarts == 0:
            raise RuntimeError("CUDA error: an illegal memory access")  # what a wedged session looks like
        return Decision(Action(type="wait"), self.name, {"model": 0.1})

    def restart(self):
        self.restarts += 1

    def close(self):
        pass


async def test_repeated_inference_errors_restart_the_session(make_settings):
    s = make_settings(policy={"restart_after_errors": 3}, sampler={"min_fps": 30, "max_fps": 30})
    flaky = FlakyPolicy()
    sink = ListSink()
    p = StreamPipeline("default", PatternSource(n=30), flaky, s, [sink])
    await asyncio.wait_for(p.run(), 10)
    assert flaky.restarts == 1 and p.stats.policy_restarts == 1 and p.stats.policy_errors == 3
    assert sink.msgs, "no actions after the restart"


async def test_wall_clock_jump_does_not_drop_or_expire_actions(make_settings, monkeypatch):
    s = make_settings(sampler={"min_fps": 10, "max_fps": 10})
    sink = ListSink()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # NTP steps the clock an hour ahead
    from edge_vla.policy import create_policy
    p = StreamPipeline("default", PatternSource(n=20), create_policy(s), s, [sink])
    await asyncio.wait_for(p.run(), 10)
    assert sink.msgs and p.stats.actions_stale == 0


class SlowChannel:
    """The state of a data channel whose peer stopped reading: bytes pile up in its buffer."""

    readyState = "open"

    def __init__(self):
        self.bufferedAmount = 0
        self.sent = []

    def send(self, data):
        self.sent.append(data)
        self.bufferedAmount += 200_000


def test_slow_data_channel_consumer_gets_actions_dropped_not_queued():
    sink = DataChannelSink()
    sink.channel = SlowChannel()
    msg = ActionMessage(type="wait", seq=0, stream="s", frame_ts=0, published_ts=0, deadline=1, model="m",
                        latency_ms={})
    results = [sink.send(msg, time.monotonic() + 1) for _ in range(10)]
    assert results[:2] == [True, True] and not any(results[2:])
    assert sink.dropped_slow == 8 and len(sink.channel.sent) == 2


def test_secrets_never_reach_the_logs(tmp_path, broker, tiny_bundle):
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGE_VLA_")}
    env.update({"EDGE_VLA_MQTT__PORT": str(broker.port), "EDGE_VLA_MQTT__HOST": "127.0.0.1",
                "EDGE_VLA_MQTT__USERNAME": "robot", "EDGE_VLA_MQTT__PASSWORD": "pw-hunter2-secret",
                "EDGE_VLA_HTTP__TOKEN": "tok-s3cret-value", "EDGE_VLA_HTTP__PORT": "0",
                "EDGE_VLA_LOG__LEVEL": "debug", "EDGE_VLA_LOG__FORMAT": "json",
                "EDGE_VLA_MODEL__PATH": str(tiny_bundle), "EDGE_VLA_SOURCE__WIDTH": "320",
                "EDGE_VLA_SOURCE__HEIGHT": "240"})
    proc = subprocess.Popen([EDGE_VLA, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    text = (out + err).decode()
    assert "daemon.ready" in text and proc.returncode == 0
    assert "pw-hunter2-secret" not in text and "tok-s3cret-value" not in text
    bad = subprocess.run([EDGE_VLA, "config", "check"], env={**env, "EDGE_VLA_MQTT__PORT": "nope"},
                         capture_output=True, text=True)
    assert bad.returncode == 78
    assert "pw-hunter2-secret" not in bad.stdout + bad.stderr and "tok-s3cret-value" not in bad.stdout + bad.stderr


def make_certs(folder):
    """A throw-away CA and a server certificate for 127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, key, sign_key, ca, san=None):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(sign_key, hashes.SHA256())

    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-vla test CA")])
    srv_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    ca = cert(ca_name, ca_name, ca_key, ca_key, True)
    srv = cert(srv_name, ca_name, srv_key, ca_key, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(srv.public_bytes(pem))
    (folder / "server.key").write_bytes(srv_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    return folder / "ca.pem"


async def test_mqtt_over_tls(tmp_path):
    ca = make_certs(tmp_path)
    conf = f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.key'}\n"
    work = tmp_path / "mqtt"
    work.mkdir()
    with Mosquitto(extra_conf=conf, workdir=work) as broker:
        link = MqttLink(MqttConfig(host="127.0.0.1", port=broker.port, tls=True, ca_file=ca), "tls-dev")
        link.start()
        assert await link.wait_connected(5), (work / "mosquitto.log").read_text()
        link.stop()
        # a client that does not trust this CA is refused
        untrusted = MqttLink(MqttConfig(host="127.0.0.1", port=broker.port, tls=True), "tls-dev2")
        untrusted.start()
        assert not await untrusted.wait_connected(2)
        untrusted.stop()


async def test_whip_rate_limit(make_settings, broker):
    import aiohttp

    from edge_vla.broker import free_port
    port = free_port()
    s = make_settings(broker=broker, source={"kind": "webrtc"}, http={"enabled": True, "port": port, "rate_per_s": 2})
    d = Daemon(s)
    run = asyncio.create_task(d.run())
    await asyncio.sleep(0.5)
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(6):
            async with http.post(f"http://127.0.0.1:{port}/whip/x", data="junk",
                                 headers={"Content-Type": "application/sdp"}) as r:
                statuses.append(r.status)
    d.stop()
    await asyncio.wait_for(run, 10)
    assert statuses[:2] == [400, 400] and 429 in statuses[2:]
