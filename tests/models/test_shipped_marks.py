"""The shipped default: the set-of-marks student (models/edge-marks-*), next to the textmatch baseline.

Floors come from the measurement stored in each bundle's ``eval.json`` under ``ci`` (the same
held-out cases, odd seeds, never trained on, measured with ``tools/ci_gate.py``): a regression
in perception, the model, the decode or the simulator that costs tasks fails here. The student
must also keep beating the baseline in closed loop on the same tasks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_vla.config import SHIPPED_MODEL, LoopConfig, ModelConfig
from edge_vla.runtime.bundle import Bundle
from edge_vla.runtime.families import load_runtime
from edge_vla.train import evaluate as ev

BASELINE = Path(__file__).resolve().parents[2] / "models" / "edge-textmatch"
SLACK_CASES = 2  # cases of slack for onnxruntime builds that round differently; a regression costs more


def ci_numbers(bundle: Path) -> dict:
    return json.loads((bundle / "eval.json").read_text())["ci"]


def floor(ci: dict, metric: str, key: str) -> float:
    return ci[metric][key] - SLACK_CASES / ci[metric]["n"]


def measure(bundle: Path, ci: dict) -> dict:
    rt = load_runtime(ModelConfig(path=bundle, intra_threads=2))
    g = ev.grounding(rt, ev.grounding_cases(ci["grounding"]["n"], seed=ci["seed"]))
    c = ev.closed_loop(rt, ci["closed_loop"]["n"], seed=ci["seed"], loop=LoopConfig())
    return {"grounding": g["rate"], "closed_loop": c["success_rate"]}


@pytest.fixture(scope="module")
def student() -> dict:
    return measure(SHIPPED_MODEL, ci_numbers(SHIPPED_MODEL))


@pytest.fixture(scope="module")
def baseline() -> dict:
    return measure(BASELINE, ci_numbers(BASELINE))


def test_the_marks_student_is_the_default_small_and_pins_its_ocr_weights():
    assert ModelConfig().path == SHIPPED_MODEL
    b = Bundle.load(SHIPPED_MODEL)
    assert b.manifest.family == "marks"
    files = b.manifest.inputs["perception"]["files"]
    assert set(files) == {"det", "rec"} and all(len(f["sha256"]) == 64 for f in files.values())
    size = sum(p.stat().st_size for p in SHIPPED_MODEL.iterdir())
    assert size <= 8 * 2**20, f"shipped bundle is {size / 2**20:.1f} MiB"
    assert (SHIPPED_MODEL / "MODEL_CARD.md").is_file()


@pytest.mark.slow
def test_student_floors(student):
    ci = ci_numbers(SHIPPED_MODEL)
    assert student["grounding"] >= floor(ci, "grounding", "rate"), (student, ci)
    assert student["closed_loop"] >= floor(ci, "closed_loop", "success_rate"), (student, ci)


@pytest.mark.slow
def test_baseline_floors(baseline):
    ci = ci_numbers(BASELINE)
    assert baseline["grounding"] >= floor(ci, "grounding", "rate"), (baseline, ci)
    assert baseline["closed_loop"] >= floor(ci, "closed_loop", "success_rate"), (baseline, ci)


@pytest.mark.slow
def test_the_student_beats_the_baseline_in_closed_loop_and_does_not_lose_on_single_screens(student, baseline):
    assert student["closed_loop"] > baseline["closed_loop"], (student, baseline)
    assert student["grounding"] >= baseline["grounding"], (student, baseline)
