"""The registry: backends by name, imported only when chosen; unknown names are named clearly."""

from __future__ import annotations

import sys

import pytest

from edge_vla.registry import Registry


def test_a_backend_is_imported_only_when_chosen_and_unknown_names_list_the_known():
    reg = Registry("thing.kind", {"frac": "fractions:Fraction"})
    sys.modules.pop("fractions", None)
    reg.register("dec", "decimal:Decimal")
    assert "fractions" not in sys.modules  # registering imports nothing
    assert reg.get("frac")(1, 2) == 0.5 and "fractions" in sys.modules
    assert reg.names() == ["dec", "frac"]
    with pytest.raises(LookupError, match=r"unknown thing.kind 'nope'; known: dec, frac"):
        reg.get("nope")


def test_the_three_registries_build_what_config_names():
    from edge_vla.config import SourceConfig
    from edge_vla.policy import POLICIES
    from edge_vla.runtime.families import FAMILIES
    from edge_vla.sources import SOURCES, create_source

    assert {"onnx", "oracle", "replay"} <= set(POLICIES.names())
    assert {"marks", "textmatch", "vlm", "heads"} <= set(FAMILIES.names())
    assert {"file", "sim", "lavfi"} <= set(SOURCES.names())
    with pytest.raises(ValueError, match="unknown source.kind 'martian'"):
        create_source(SourceConfig.model_construct(kind="martian"))
