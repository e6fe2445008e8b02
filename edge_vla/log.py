"""Logging setup: structlog to stderr as JSON lines, journald priorities, or a console view.

One event name per thing that happens (``mqtt.connected``, ``policy.error``...);
per-stream context is bound by the code that owns the stream.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# sd-daemon(3) priority prefixes, so journald files each line at the right level.
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "critical": 2, "exception": 3}


def resolve_format(fmt: str, stream: TextIO, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if fmt != "auto":
        return fmt
    if env.get("JOURNAL_STREAM"):  # set by systemd when stderr goes to the journal
        return "journald"
    return "console" if stream.isatty() else "json"


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    fmt = resolve_format(fmt, out)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    else:
        processors.append(structlog.processors.JSONRenderer())
        if fmt == "journald":
            processors.insert(-1, _drop_timestamp)
            processors.append(_priority_prefix)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def _drop_timestamp(_logger: Any, _name: str, event: dict) -> dict:
    event.pop("timestamp", None)  # journald stamps every line itself
    return event


def _priority_prefix(_logger: Any, name: str, line: str) -> str:
    return f"<{_PRIORITY.get(name, 6)}>{line}"
