"""The shipped systemd unit, its example configuration and install.sh.

``systemd-analyze verify`` exits 0 on unknown keys and bad values (it only
warns), so its output is parsed as well; ``systemd-analyze security
--offline=true`` scores the sandbox without a running systemd.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_vla.config import EXIT_CONFIG, ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "edge-vla.service"
UNIT_NAME = UNIT.name
MAX_EXPOSURE = 3.0

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd)")


def _console_script() -> Path:
    # The venv's own bin/ folder, next to this interpreter (not PATH: a
    # different edge-vla may be installed system-wide).
    script = Path(sys.executable).parent / "edge-vla"
    assert script.exists(), f"{script} missing: install the package (pip install -e .)"
    return script


def _unit_for_test(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's console script.

    verify checks that ExecStart's binary exists and is executable, and
    /opt/edge-vla is not installed here.
    """
    text = UNIT.read_text()
    exec_lines = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    assert len(exec_lines) == 1, exec_lines
    assert exec_lines[0].startswith("ExecStart=/opt/edge-vla/.venv/bin/edge-vla run ")
    text = text.replace("ExecStart=/opt/edge-vla/.venv/bin/edge-vla", f"ExecStart={_console_script()}")
    out = tmp_path / UNIT_NAME
    out.write_text(text)
    return out


def _analyze(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "",
           "SYSTEMD_LOG_LEVEL": "notice"}
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, env=env)


_OTHER_UNIT = re.compile(r"^(?:/\S+/)?([\w@.\\:-]+\.(?:service|socket|target|mount|automount|swap|"
                         r"path|timer|slice|scope|device))(?::|\s)")


def _verify_problems(output: str, unit_path: Path) -> list[str]:
    """Lines of verify output that concern our unit (or cannot be attributed)."""
    problems = []
    for line in output.splitlines():
        line = line.strip()
        if not line:
            continue
        if str(unit_path) in line or UNIT_NAME in line:
            problems.append(line)
            continue
        m = _OTHER_UNIT.match(line)
        if m and m.group(1) != UNIT_NAME:
            # verify also loads the units ours pulls in (network-online.target,
            # multi-user.target, the slices) from the host's unit paths; on
            # some hosts their vendor files draw warnings (deprecated keys,
            # missing binaries of unrelated services). Those are not ours to fix.
            continue
        problems.append(line)  # unattributed: fail rather than guess
    return problems


@needs_analyze
def test_unit_verifies_cleanly(tmp_path):
    unit = _unit_for_test(tmp_path)
    res = _analyze("verify", "--man=no", str(unit))
    output = res.stdout + res.stderr
    assert res.returncode == 0, f"systemd-analyze verify failed ({res.returncode}):\n{output}"
    problems = _verify_problems(output, unit)
    assert not problems, "systemd-analyze verify complained:\n" + "\n".join(problems)


@needs_analyze
def test_verify_output_parsing_catches_warnings(tmp_path):
    # Guards the test above: an unknown key must show up as a problem.
    unit = _unit_for_test(tmp_path)
    unit.write_text(unit.read_text().replace("[Service]\n", "[Service]\nNoSuchKey=1\nProtectHome=maybe\n", 1))
    res = _analyze("verify", "--man=no", str(unit))
    problems = _verify_problems(res.stdout + res.stderr, unit)
    assert any("NoSuchKey" in p for p in problems), res.stdout + res.stderr
    assert any("ProtectHome" in p or "protect home" in p.lower() for p in problems), problems


def test_verify_output_parsing_ignores_other_units(tmp_path):
    unit = tmp_path / UNIT_NAME
    out = ("/lib/systemd/system/foo.service:7: Unknown key 'Bar' in section [Service], ignoring.\n"
           "snapd.service: Command /usr/lib/snapd/snapd is not executable: No such file or directory\n")
    assert _verify_problems(out, unit) == []
    assert _verify_problems(f"{unit}:3: Unknown key 'X'\n", unit) == [f"{unit}:3: Unknown key 'X'"]
    assert _verify_problems("edge-vla.service: Command x is not executable\n", unit)
    assert _verify_problems("Failed to load something\n", unit)


@needs_analyze
def test_security_exposure_is_low(tmp_path):
    unit = _unit_for_test(tmp_path)
    res = _analyze("security", "--no-pager", "--offline=true", str(unit))
    output = res.stdout + res.stderr
    if res.returncode != 0 and re.search(r"unrecognized option|unknown option", output, re.I):
        pytest.skip("this systemd-analyze has no --offline (needs systemd >= 250)")
    m = re.search(r"Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?)", output)
    assert m, f"no exposure level in systemd-analyze security output (rc {res.returncode}):\n{output}"
    exposure = float(m.group(1))
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{output}"


def _unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_keeps_the_contract():
    s = _unit_settings()
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["ExecStart"] == ["/opt/edge-vla/.venv/bin/edge-vla run --config /etc/edge-vla/edge-vla.toml"]
    assert s["EnvironmentFile"] == ["-/etc/edge-vla/edge-vla.env"]
    assert s["WatchdogSec"] == ["10"]
    assert s["Restart"] == ["on-failure"]
    assert s["RestartPreventExitStatus"] == ["78"]  # edge_vla.config.EXIT_CONFIG
    assert s["KillSignal"] == ["SIGTERM"]
    assert s["DevicePolicy"] == ["closed"]
    assert s["StateDirectory"] == ["edge-vla"] and s["CacheDirectory"] == ["edge-vla"]
    assert "EDGE_VLA_MEMORY__PATH=%S/edge-vla/memory.db" in s["Environment"]
    assert s["CapabilityBoundingSet"] == [""]
    assert EXIT_CONFIG == 78


def _systemd_env_value(raw: str) -> str:
    """An EnvironmentFile= value the way systemd reads it (the subset the example uses)."""
    raw = raw.strip()
    if raw.startswith("'"):
        end = raw.index("'", 1)
        return raw[1:end]
    if raw.startswith('"'):
        out, i = [], 1
        while raw[i] != '"':
            if raw[i] == "\\" and raw[i + 1] in '"\\`$':
                i += 1
            out.append(raw[i])
            i += 1
        return "".join(out)
    return re.sub(r"\\(.)", r"\1", raw)


def _example_env() -> dict[str, str]:
    """The commented-out examples of systemd/edge-vla.env, uncommented."""
    env = {}
    for line in (SYSTEMD / "edge-vla.env").read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        assert stripped.startswith("#"), f"edge-vla.env must only hold commented examples: {line!r}"
        m = re.match(r"^#\s?(EDGE_VLA_[A-Z0-9_]+)=(.*)$", stripped)
        if m:
            env[m.group(1)] = _systemd_env_value(m.group(2))
    return env


def test_example_config_and_env_validate():
    toml = SYSTEMD / "edge-vla.toml"
    env = _example_env()
    assert {"EDGE_VLA_MQTT__HOST", "EDGE_VLA_MQTT__PASSWORD", "EDGE_VLA_HTTP__TOKEN"} <= env.keys()

    # The file alone, the environment alone, and both (environment wins).
    from_file = load_settings(config_file=toml, environ={})
    assert from_file.mqtt.host == "localhost"
    load_settings(config_file=None, environ=env)
    both = load_settings(config_file=toml, environ=env)
    assert both.mqtt.host == env["EDGE_VLA_MQTT__HOST"]
    assert both.mqtt.password is not None
    assert both.mqtt.password.get_secret_value() == env["EDGE_VLA_MQTT__PASSWORD"]
    assert both.model.providers[0] == "TensorrtExecutionProvider"

    # What the unit itself sets (EDGE_VLA_MEMORY__PATH) validates too.
    unit_env = {}
    for value in _unit_settings()["Environment"]:
        key, _, val = value.partition("=")
        if key.startswith("EDGE_VLA_"):
            unit_env[key] = val.replace("%S", "/var/lib").replace("%C", "/var/cache")
    assert unit_env
    s = load_settings(config_file=toml, environ={**unit_env, **env})
    assert str(s.memory.path) == "/var/lib/edge-vla/memory.db"


def test_config_validation_rejects_a_bad_key(tmp_path):
    # The test above would be meaningless if unknown keys slipped through.
    bad = tmp_path / "bad.toml"
    bad.write_text((SYSTEMD / "edge-vla.toml").read_text().replace("[mqtt]\n", "[mqtt]\nhots = \"x\"\n", 1))
    with pytest.raises(ConfigError):
        load_settings(config_file=bad, environ={})
    with pytest.raises(ConfigError):
        load_settings(config_file=None, environ={"EDGE_VLA_MQTT__HOTS": "x"})


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_install_script_dry_run_changes_nothing(tmp_path):
    prefix, etc, units = tmp_path / "opt" / "edge-vla", tmp_path / "etc" / "edge-vla", tmp_path / "units"
    res = subprocess.run(
        ["bash", str(SYSTEMD / "install.sh"), "--dry-run", "--prefix", str(prefix), "--etc", str(etc),
         "--unit-dir", str(units), "--python", sys.executable],
        capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "systemctl enable --now edge-vla" in res.stdout
    assert f"{prefix}/.venv/bin/python -m pip install" in res.stdout
    assert list(tmp_path.iterdir()) == []
    bad = subprocess.run(["bash", str(SYSTEMD / "install.sh"), "--bogus"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "unknown option" in bad.stderr
