import io
import json

import pytest
import structlog

from edge_vla import log


@pytest.fixture(autouse=True)
def restore_structlog():
    yield
    structlog.reset_defaults()  # other tests capture logs with the default setup


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_json_lines_by_default_off_a_terminal():
    out = io.StringIO()
    log.configure("info", "auto", stream=out)
    structlog.get_logger("t").bind(stream="cam1").info("frame.rejected", reason="size")
    rec = json.loads(out.getvalue())
    assert rec["event"] == "frame.rejected" and rec["stream"] == "cam1" and rec["level"] == "info"


def test_journald_lines_carry_priority_prefix():
    out = io.StringIO()
    log.configure("debug", "journald", stream=out)
    lg = structlog.get_logger("t")
    lg.warning("mqtt.disconnected")
    lg.error("policy.error")
    lg.debug("action.sent")
    lines = out.getvalue().splitlines()
    assert [line[:3] for line in lines] == ["<4>", "<3>", "<7>"]
    assert json.loads(lines[0][3:])["event"] == "mqtt.disconnected"


def test_level_filters_and_format_choice():
    out = io.StringIO()
    log.configure("warning", "json", stream=out)
    structlog.get_logger("t").info("quiet")
    assert out.getvalue() == ""
    assert log.resolve_format("auto", Tty(), environ={}) == "console"
    assert log.resolve_format("auto", io.StringIO(), environ={"JOURNAL_STREAM": "8:123"}) == "journald"
