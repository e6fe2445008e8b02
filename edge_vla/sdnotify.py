"""The systemd ``sd_notify`` protocol, implemented directly.

systemd (``Type=notify``) hands the service a unix datagram socket in
``NOTIFY_SOCKET``; the service writes newline-separated ``KEY=VALUE`` lines to
it: ``READY=1`` once it serves, ``STATUS=...`` for ``systemctl status``,
``WATCHDOG=1`` pings while healthy (``WatchdogSec=``), ``STOPPING=1`` when it
begins to shut down. The protocol is a dozen lines of socket code, so no
dependency (``systemd-python``, ``sdnotify``) is pulled onto edge devices for it.

Outside systemd (a shell, tests, containers) ``NOTIFY_SOCKET`` is unset and
every method is a cheap no-op. Sending never raises: a daemon must not die
because its supervisor's socket went away; failures are logged as
``sdnotify.error``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)

__all__ = ["Notifier"]


class Notifier:
    """Sends sd_notify messages to the socket systemd gave this process.

    Safe to share between threads (a watchdog thread and the event loop may
    both send): one socket, guarded by a lock.
    """

    def __init__(self, socket_address: str | None = None, watchdog_usec: int | None = None,
                 watchdog_pid: int | None = None) -> None:
        self._address = _parse_address(socket_address)
        # WATCHDOG_PID names the process systemd expects pings from; when this
        # process is someone else (a forked helper that inherited the
        # environment) its pings would be attributed wrongly, so it stays quiet.
        pid_ok = watchdog_pid is None or watchdog_pid == os.getpid()
        self._watchdog_usec = watchdog_usec if (watchdog_usec and watchdog_usec > 0 and pid_ok) else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failing = False  # only the first error of a run of failures is a warning

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Notifier":
        """Build a Notifier from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``."""
        env = os.environ if environ is None else environ
        return cls(
            socket_address=env.get("NOTIFY_SOCKET") or None,
            watchdog_usec=_parse_int(env, "WATCHDOG_USEC"),
            watchdog_pid=_parse_int(env, "WATCHDOG_PID"),
        )

    # -- properties ------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """True when there is a notification socket to talk to."""
        return self._address is not None

    @property
    def watchdog_usec(self) -> int | None:
        """The watchdog timeout systemd set, in microseconds, or None."""
        return self._watchdog_usec if self.enabled else None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the watchdog timeout, or None without a watchdog.

        Half, as sd_watchdog_enabled(3) recommends, so that one late ping (a
        slow inference, a GC pause) does not get the service killed.
        """
        usec = self.watchdog_usec
        return None if usec is None else usec / 2_000_000

    # -- messages --------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd the service is up (ends ``activating``)."""
        return self.notify(READY=1, STATUS=status) if status is not None else self.notify(READY=1)

    def status(self, text: str) -> bool:
        """A one-line human status for ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Ping the watchdog; a no-op when no watchdog is configured for this process."""
        if self.watchdog_usec is None:
            return False
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd a clean shutdown has begun (so a slow drain is not a hang)."""
        return self.notify(STOPPING=1, STATUS=status) if status is not None else self.notify(STOPPING=1)

    def reloading(self) -> bool:
        """Tell systemd a configuration reload has begun; send ``ready()`` when done."""
        return self.notify(RELOADING=1)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more start/stop time (e.g. while a TensorRT engine is being built)."""
        return self.notify(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))

    def notify(self, **fields: Any) -> bool:
        """Send ``KEY=VALUE`` lines; True when the datagram was sent.

        Keys are upper-cased; values are str()-ed with newlines flattened, since
        a newline inside a value would start a bogus field.
        """
        if self._address is None or not fields:
            return False
        payload = "\n".join(
            f"{key.upper()}={_flatten(value)}" for key, value in fields.items()
        ).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    # Never block the event loop on a full socket buffer: a
                    # dropped STATUS is harmless, a stalled loop is not.
                    sock.setblocking(False)
                    self._sock = sock
                self._sock.sendto(payload, self._address)
            except OSError as exc:
                self._report(exc)
                return False
            if self._failing:
                self._failing = False
                log.info("sdnotify.recovered", socket=self._shown_address)
            return True

    def close(self) -> None:
        """Close the socket; later calls reopen it."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> "Notifier":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Notifier(socket={self._shown_address!r}, watchdog_usec={self.watchdog_usec!r})"

    # -- internals -------------------------------------------------------

    @property
    def _shown_address(self) -> str | None:
        if self._address is None:
            return None
        return "@" + self._address[1:] if self._address.startswith("\0") else self._address

    def _report(self, exc: OSError) -> None:
        # A dead socket fails every WATCHDOG ping; one warning per run of
        # failures keeps the journal readable, the rest go to debug.
        level = log.debug if self._failing else log.warning
        self._failing = True
        level("sdnotify.error", socket=self._shown_address, error=f"{type(exc).__name__}: {exc}")
        # Drop the socket: a fresh one is cheap and sidesteps any bad state.
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _parse_address(value: str | None) -> str | None:
    """``/path`` or ``@abstract`` -> a sendto() address; anything else -> None."""
    if not value:
        return None
    if value.startswith("@"):
        # Abstract namespace: the kernel spells the leading '@' as a NUL byte.
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # systemd >= 254 may also hand out vsock: addresses (VMs); not useful on a
    # Jetson, so say so once and behave as if unsupervised.
    log.warning("sdnotify.error", socket=value, error="unsupported NOTIFY_SOCKET address")
    return None


def _parse_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw.strip())
    except ValueError:
        log.warning("sdnotify.error", variable=name, value=raw, error="not an integer")
        return None


def _flatten(value: Any) -> str:
    return str(value).replace("\r", " ").replace("\n", " ")
