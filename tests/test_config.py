import json
import subprocess

import pytest

from edge_vla.config import EXIT_CONFIG, ConfigError, load_settings

from .conftest import EDGE_VLA


def test_defaults_follow_the_contract(clean_env):
    s = load_settings(environ={})
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.topic_prefix) == ("localhost", 1883, "edge-vla")
    assert (s.http.host, s.http.port) == ("127.0.0.1", 8080)
    assert s.source.kind == "sim" and s.device_id


def test_env_overrides_file_and_nesting(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('device_id = "from-file"\n[mqtt]\nport = 1999\nhost = "file-host"\n')
    s = load_settings(f, environ={"EDGE_VLA_MQTT__PORT": "2001"})
    assert s.device_id == "from-file" and s.mqtt.host == "file-host" and s.mqtt.port == 2001


def test_config_file_from_environment(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('device_id = "via-env"\n')
    assert load_settings(environ={"EDGE_VLA_CONFIG": str(f)}).device_id == "via-env"


@pytest.mark.parametrize("content, expect", [
    ("[mqtt\nport = 1", "not valid TOML"),
    ("[mqtt]\nprot = 1884\n", "mqtt.prot: unknown key"),
    ("colour = 'red'\n", "colour: unknown key"),
    ("[mqtt]\nport = 'many'\n", "mqtt.port: Input should be a valid integer"),
    ("[mqtt]\nport = 70000\n", "mqtt.port: Input should be less than or equal to 65535"),
    ("[sampler]\nmin_fps = 20\nmax_fps = 5\n", "min_fps must not exceed"),
    ("[source]\nkind = 'file'\n", "source.uri is required"),
    ("[http]\nhost = '0.0.0.0'\n", "http.token (or http.token_file) is required"),
])
def test_bad_file_gives_readable_error(tmp_path, content, expect):
    f = tmp_path / "c.toml"
    f.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_settings(f, environ={})
    assert expect in str(err.value)


def test_error_names_key_value_and_env_variable(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"EDGE_VLA_MQTT__PORT": "x"})
    line = err.value.lines[0]
    assert "mqtt.port" in line and "'x'" in line and "EDGE_VLA_MQTT__PORT" in line


def test_unknown_environment_keys_are_errors():
    with pytest.raises(ConfigError, match="EDGE_VLA_FOO"):
        load_settings(environ={"EDGE_VLA_FOO": "1"})
    with pytest.raises(ConfigError, match="mqtt.bar"):
        load_settings(environ={"EDGE_VLA_MQTT__BAR": "1"})


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_settings("/nonexistent/edge-vla.toml", environ={})


def run_cli(*args, env=None):
    return subprocess.run([EDGE_VLA, *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_config_check_masks_secrets():
    r = run_cli("config", "check", env={"EDGE_VLA_MQTT__PASSWORD": "hunter2", "EDGE_VLA_MQTT__USERNAME": "u",
                                        "EDGE_VLA_HTTP__TOKEN": "s3cret-token"})
    assert r.returncode == 0, r.stderr
    assert "hunter2" not in r.stdout + r.stderr and "s3cret-token" not in r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["mqtt"]["password"] == "**********" and data["mqtt"]["username"] == "u"


def test_config_check_errors_exit_78(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[mqtt]\nport = -1\npassword = 'hunter2'\n[nope]\n")
    r = run_cli("config", "check", "--config", str(f))
    assert r.returncode == EXIT_CONFIG
    assert "mqtt.port" in r.stderr and "nope: unknown key" in r.stderr
    assert "hunter2" not in r.stderr


def test_whip_token_from_a_file(tmp_path):
    f = tmp_path / "whip-token"
    f.write_text("from-credential\n")
    s = load_settings(environ={"EDGE_VLA_HTTP__TOKEN_FILE": str(f), "EDGE_VLA_HTTP__HOST": "0.0.0.0"})
    assert s.http.bearer_token() == "from-credential"
    assert load_settings(environ={}).http.bearer_token() is None
