"""Exported tiny bundles, built once per session from random-weight configs (no downloads)."""

from __future__ import annotations

import pytest

from edge_vla.config import ModelConfig


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """kind -> bundle path; each tiny model is exported at most once per session."""
    from edge_vla.export.exporter import export_model
    from edge_vla.export.families import tiny

    made: dict = {}

    def get(kind: str, **kw):
        key = (kind, tuple(sorted(kw.items())))
        if key not in made:
            out = tmp_path_factory.mktemp("bundles") / kind.replace("/", "_")
            made[key] = export_model(tiny(kind), out, **kw)
        return made[key]
    return get


def model_cfg(path, **kw) -> ModelConfig:
    return ModelConfig(path=path, intra_threads=1, **kw)
