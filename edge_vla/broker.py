"""A private mosquitto broker on a free loopback port, for `edge-vla demo`, bench and tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MOSQUITTO_PATHS = ("mosquitto", "/usr/sbin/mosquitto")


class BrokerUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def find_mosquitto() -> str:
    for name in MOSQUITTO_PATHS:
        found = shutil.which(name)
        if found:
            return found
    raise BrokerUnavailable(
        "mosquitto is not installed: run `apt-get install mosquitto` (tools/setup.sh does), "
        "or point edge-vla at an existing broker")


class Mosquitto:
    """``with Mosquitto() as b: b.port``; ``stop()``/``start()`` again keep the port (outage tests)."""

    def __init__(self, port: int | None = None, extra_conf: str = "", workdir: Path | None = None):
        self.binary = find_mosquitto()
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="edge-vla-mqtt-"))
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 5.0) -> "Mosquitto":
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\npersistence false\n"
            # as root mosquitto drops to its own user, which cannot write our temp dir
            "user root\nlog_dest stderr\nlog_type error\nlog_type warning\n"
            + self.extra_conf
        )
        self.log_file = open(self.dir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=self.log_file,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerUnavailable(f"mosquitto exited with {self.proc.returncode}: "
                                        + (self.dir / "mosquitto.log").read_text()[-500:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerUnavailable(f"mosquitto did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log_file", None):
            self.log_file.close()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
