"""Fixtures for real services: a mosquitto broker per test, a tiny model bundle, settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from edge_vla.broker import Mosquitto
from edge_vla.config import load_settings
from edge_vla.runtime.heads import build_heads_bundle

from .mqtt_collector import Collector

ROOT = Path(__file__).resolve().parent.parent
EDGE_VLA = str(Path(sys.executable).parent / "edge-vla")


@pytest.fixture
def broker(tmp_path):
    workdir = tmp_path / "mqtt"
    workdir.mkdir()
    b = Mosquitto(workdir=workdir).start()
    yield b
    b.close()


@pytest.fixture
def collector(broker):
    c = Collector(broker.port)
    yield c
    c.close()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A random-weight bundle built here from a seed: no downloads."""
    return build_heads_bundle(tmp_path_factory.mktemp("bundle") / "tiny", seed=1)


@pytest.fixture
def clean_env(monkeypatch):
    """No EDGE_VLA_* leaking in from the developer's shell."""
    for key in list(os.environ):
        if key.upper().startswith("EDGE_VLA_"):
            monkeypatch.delenv(key)


@pytest.fixture
def make_settings(clean_env, tiny_bundle):
    def make(broker=None, **overrides):
        base = {"device_id": "test-dev", "model": {"path": str(tiny_bundle)},
                "http": {"enabled": False}, "log": {"format": "json"}}
        if broker is not None:
            base["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        return load_settings(environ={}, **base)
    return make
