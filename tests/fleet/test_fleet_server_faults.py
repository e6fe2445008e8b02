"""The server path of the fleet store (URL, API key, timeouts, retries) against a fake HTTP server
that only misbehaves: 5xx, a hang past the timeout, a cut connection, a refused key.
(No Qdrant server can be installed here; the happy path runs through local mode, same FleetStore code.)"""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from edge_vla.memory.fleet import FleetStore, FleetStoreError, FleetUnavailable


class Faulty(http.server.BaseHTTPRequestHandler):
    mode = "503"
    seen: list = []

    def log_message(self, *a):
        pass

    def _answer(self):
        type(self).seen.append((self.command, self.path, self.headers.get("api-key")))
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        if self.mode == "503":
            self.send_response(503)
            self.send_header("content-type", "application/json")
            body = b'{"status":{"error":"overloaded"}}'
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.mode == "401":
            self.send_response(401)
            self.send_header("content-length", "0")
            self.end_headers()
        elif self.mode == "hang":
            time.sleep(3)
        elif self.mode == "cut":
            self.connection.shutdown(2)  # the connection drops mid-request
            self.connection.close()

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture
def server():
    Faulty.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Faulty)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("mode", ["503", "hang", "cut"])
def test_transient_faults_are_retried_then_reported(server, mode):
    Faulty.mode = mode
    fl = FleetStore(f"http://127.0.0.1:{server.server_address[1]}", device_id="d", api_key="k3y",
                    timeout_s=1, retries=2, sleep=lambda s: None)
    with pytest.raises(FleetUnavailable, match="after 3 tries"):
        fl.count()
    assert fl.stats_.retries == 2 and fl.stats_.failures == 1
    assert len(Faulty.seen) >= 3 and all(key == "k3y" for _, _, key in Faulty.seen)  # the key travels
    fl.close()


def test_a_refused_key_is_not_retried(server):
    Faulty.mode = "401"
    fl = FleetStore(f"http://127.0.0.1:{server.server_address[1]}", device_id="d", api_key="bad",
                    retries=3, sleep=lambda s: None)
    with pytest.raises(FleetStoreError, match="refused") as err:
        fl.count()
    assert not isinstance(err.value, FleetUnavailable) and len(Faulty.seen) == 1
    fl.close()


def test_sync_against_a_dead_server_keeps_the_outbox(server, tmp_path):
    """The daemon's sync thread against a server that answers 503: nothing is marked sent, the state
    and the failure count say so, and stopping it does not hang."""
    from edge_vla.memory.store import MemoryStore
    from edge_vla.memory.sync import FleetSync

    from ..memory.helpers import record

    Faulty.mode = "503"
    with MemoryStore(tmp_path / "m.db") as st:
        st.write_batch([record(i, float(i), seq=i) for i in range(5)], outbox=[True] * 5)
    states = []
    sync = FleetSync(tmp_path / "m.db", lambda: FleetStore(f"http://127.0.0.1:{server.server_address[1]}",
                                                             device_id="d", retries=0, timeout_s=1),
                     "d", backoff_max_s=0.5, on_state=lambda s, f: states.append(s))
    sync.start()
    deadline = time.monotonic() + 20
    while sync.stats.failures < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    sync.stop()
    assert sync.stats.failures >= 2 and states[:1] == ["unavailable"] and sync.stats.sent == 0
    with MemoryStore(tmp_path / "m.db") as st:
        assert st.outbox_counts() == {"pending": 5, "sent": 0}
