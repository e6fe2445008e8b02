"""edge_vla.sdnotify against a fake NOTIFY_SOCKET (path and abstract)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import structlog

from edge_vla.sdnotify import Notifier

try:
    from tests.notify_socket import FakeNotifySocket
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from notify_socket import FakeNotifySocket

pytestmark = pytest.mark.skipif(not hasattr(__import__("socket"), "AF_UNIX"), reason="needs unix sockets")


@pytest.fixture
def notify_socket(tmp_path):
    with FakeNotifySocket(tmp_path, watchdog_usec=10_000_000, watchdog_pid=True) as sock:
        yield sock


def test_lifecycle_messages_reach_the_socket(notify_socket):
    n = Notifier.from_env(notify_socket.env)
    assert n.enabled
    assert n.ready() is True
    assert n.status("serving 1 stream") is True
    assert n.watchdog() is True
    assert n.stopping() is True
    assert notify_socket.messages(timeout=0.5) == [
        {"READY": "1"}, {"STATUS": "serving 1 stream"}, {"WATCHDOG": "1"}, {"STOPPING": "1"},
    ]
    n.close()


def test_abstract_socket_address():
    with FakeNotifySocket(abstract=True) as sock:
        assert sock.env["NOTIFY_SOCKET"].startswith("@")
        with Notifier.from_env(sock.env) as n:
            assert n.ready(status="up") is True
            assert sock.wait_for("READY", timeout=2) == {"READY": "1", "STATUS": "up"}


def test_notify_sends_several_fields_in_one_datagram_and_flattens_newlines(notify_socket):
    with Notifier.from_env(notify_socket.env) as n:
        assert n.notify(status="line one\nline two", errno=5) is True
        assert n.reloading() is True
        assert n.extend_timeout(90) is True
    assert notify_socket.messages(timeout=0.5) == [
        {"STATUS": "line one line two", "ERRNO": "5"}, {"RELOADING": "1"},
        {"EXTEND_TIMEOUT_USEC": "90000000"},
    ]


@pytest.mark.parametrize("usec, interval", [("10000000", 5.0), ("3000000", 1.5), (" 500000 ", 0.25)])
def test_watchdog_interval_is_half_of_watchdog_usec(usec, interval):
    n = Notifier.from_env({"NOTIFY_SOCKET": "/nonexistent/notify", "WATCHDOG_USEC": usec})
    assert n.watchdog_interval == pytest.approx(interval)
    assert n.watchdog_usec == int(usec)


@pytest.mark.parametrize("env", [
    {},                                               # no watchdog configured
    {"WATCHDOG_USEC": "0"},                           # zero means off
    {"WATCHDOG_USEC": "ten seconds"},                 # garbage is not a crash
    {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"},  # meant for another process
])
def test_no_watchdog_interval(env):
    n = Notifier.from_env({"NOTIFY_SOCKET": "/nonexistent/notify", **env})
    assert n.watchdog_interval is None


def test_watchdog_pid_mismatch_suppresses_pings(tmp_path):
    other_pid = os.getpid() + 1
    with FakeNotifySocket(tmp_path, watchdog_usec=4_000_000, watchdog_pid=other_pid) as sock:
        n = Notifier.from_env(sock.env)
        assert n.enabled  # the socket is still ours to use for READY/STATUS
        assert n.watchdog_interval is None
        assert n.watchdog() is False
        assert n.ready() is True
        assert sock.messages(timeout=0.3) == [{"READY": "1"}]
        n.close()


def test_watchdog_pid_match_and_absent_both_ping(tmp_path):
    for pid in (True, None):
        with FakeNotifySocket(tmp_path, watchdog_usec=4_000_000, watchdog_pid=pid) as sock:
            with Notifier.from_env(sock.env) as n:
                assert n.watchdog_interval == pytest.approx(2.0)
                assert n.watchdog() is True
            assert sock.wait_for("WATCHDOG", timeout=2) == {"WATCHDOG": "1"}


def test_unset_socket_is_a_noop(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    for n in (Notifier.from_env({}), Notifier.from_env(), Notifier()):
        assert not n.enabled
        assert n.watchdog_interval is None
        assert n._sock is None
        assert n.ready() is False
        assert n.status("x") is False
        assert n.watchdog() is False
        assert n.stopping() is False
        assert n.notify(READY=1) is False
        assert n._sock is None  # not even a socket was created
        n.close()


def test_from_env_defaults_to_os_environ(monkeypatch, tmp_path):
    with FakeNotifySocket(tmp_path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", sock.address)
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        with Notifier.from_env() as n:
            assert n.enabled and n.watchdog_interval is None
            assert n.ready() is True
        assert sock.wait_for("READY", timeout=2) == {"READY": "1"}


def test_unreachable_socket_does_not_raise_and_logs(tmp_path):
    missing = tmp_path / "gone.sock"
    n = Notifier.from_env({"NOTIFY_SOCKET": str(missing), "WATCHDOG_USEC": "2000000"})
    with structlog.testing.capture_logs() as logs:
        assert n.ready() is False
        assert n.watchdog() is False
        assert n.stopping() is False
    errors = [e for e in logs if e["event"] == "sdnotify.error"]
    assert len(errors) == 3
    assert errors[0]["log_level"] == "warning"  # first failure of a run is a warning
    assert {e["log_level"] for e in errors[1:]} == {"debug"}  # repeats don't flood the journal
    assert errors[0]["socket"] == str(missing)


def test_recovers_when_the_socket_appears(tmp_path):
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    with structlog.testing.capture_logs() as logs:
        assert n.status("early") is False
        with FakeNotifySocket(tmp_path) as sock:
            assert n.status("later") is True
            assert sock.wait_for("STATUS", timeout=2) == {"STATUS": "later"}
    assert [e["event"] for e in logs] == ["sdnotify.error", "sdnotify.recovered"]
    n.close()


def test_socket_closed_by_peer_does_not_raise(tmp_path):
    sock = FakeNotifySocket(tmp_path)
    n = Notifier.from_env(sock.env)
    assert n.ready() is True
    sock.close()  # systemd went away (or the socket file was removed)
    with structlog.testing.capture_logs():
        assert n.watchdog() is False
        assert n.status("still alive") is False
    n.close()


def test_unsupported_address_is_disabled():
    with structlog.testing.capture_logs() as logs:
        n = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not n.enabled
    assert n.ready() is False
    assert logs and logs[0]["event"] == "sdnotify.error"


def test_long_tmp_path_still_binds(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    with FakeNotifySocket(deep) as sock:
        with Notifier.from_env(sock.env) as n:
            assert n.ready() is True
        assert sock.wait_for("READY", timeout=2) == {"READY": "1"}
