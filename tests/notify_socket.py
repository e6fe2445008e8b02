"""A fake systemd notification socket for tests.

``FakeNotifySocket`` binds a unix datagram socket (a path under a temporary
folder, or an abstract ``@name``) the way systemd does for ``Type=notify``
services, and collects what the code under test sends to it::

    with FakeNotifySocket(tmp_path) as sock:
        run_daemon(environ={**os.environ, **sock.env})
        assert sock.wait_for("READY", timeout=10)["READY"] == "1"

Import it as ``from tests.notify_socket import FakeNotifySocket`` (repo root
on sys.path) or ``from notify_socket import FakeNotifySocket`` (pytest's
default rootdir-less ``tests/`` on sys.path).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["FakeNotifySocket", "parse_message"]


def parse_message(data: bytes) -> dict[str, str]:
    """``b"READY=1\\nSTATUS=x"`` -> ``{"READY": "1", "STATUS": "x"}``."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        if line:
            key, _, value = line.partition("=")
            fields[key] = value
    return fields


class FakeNotifySocket:
    """Receives sd_notify datagrams; ``env`` holds the variables to hand the notifier.

    ``directory``: bind ``notify.sock`` there (a short temporary folder is used
    instead when the path would not fit a unix socket address). ``abstract=True``: bind ``@edge-vla-test-<uuid>``
    in the abstract namespace instead. ``watchdog_usec`` / ``watchdog_pid``
    are added to ``env`` when given (``watchdog_pid=True`` means this process).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, abstract: bool = False,
                 watchdog_usec: int | None = None, watchdog_pid: int | bool | None = None) -> None:
        self._short_dir: str | None = None
        if abstract:
            name = f"edge-vla-test-{uuid.uuid4().hex[:12]}"
            self.address = "@" + name
            bind_to: str = "\0" + name
            self.path: Path | None = None
        else:
            if directory is None:
                raise ValueError("FakeNotifySocket needs a directory unless abstract=True")
            self.path = Path(directory) / "notify.sock"
            if len(os.fsencode(self.path)) > 100:
                # sun_path holds 108 bytes; deep pytest tmp_paths can exceed it.
                self._short_dir = tempfile.mkdtemp(prefix="evn-")
                self.path = Path(self._short_dir) / "notify.sock"
            self.address = str(self.path)
            bind_to = self.address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.env: dict[str, str] = {"NOTIFY_SOCKET": self.address}
        if watchdog_usec is not None:
            self.env["WATCHDOG_USEC"] = str(watchdog_usec)
        if watchdog_pid is True:
            self.env["WATCHDOG_PID"] = str(os.getpid())
        elif watchdog_pid not in (None, False):
            self.env["WATCHDOG_PID"] = str(watchdog_pid)
        self.received: list[dict[str, str]] = []  # every message seen so far, in order

    def messages(self, timeout: float = 1.0) -> list[dict[str, str]]:
        """Collect what arrives until ``timeout`` seconds pass with nothing new.

        Returns the messages received by this call (also appended to ``received``).
        """
        got: list[dict[str, str]] = []
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                break
            msg = parse_message(data)
            got.append(msg)
            self.received.append(msg)
        return got

    def wait_for(self, key: str, timeout: float = 5.0, value: str | None = None) -> dict[str, str] | None:
        """The first message (seen before or arriving within ``timeout``) that has ``key``
        (and, when given, ``key=value``); None if none came."""
        def match(msg: dict[str, str]) -> bool:
            return key in msg and (value is None or msg[key] == value)

        for msg in self.received:
            if match(msg):
                return msg
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                break
            msg = parse_message(data)
            self.received.append(msg)
            if match(msg):
                return msg
        return None

    def close(self) -> None:
        self.sock.close()
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        if self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)

    def __enter__(self) -> "FakeNotifySocket":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
