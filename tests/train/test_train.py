"""The training machinery (issue 5): data labels vs the oracle, loss, resume, teachers, evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_vla.actions import Action, crop_to_frame, signature, to_normalized, to_pixels  # noqa: E402
from edge_vla.config import LoopConfig  # noqa: E402
from edge_vla.runtime.grammar import ActionGrammar  # noqa: E402
from edge_vla.sim.scene import inside  # noqa: E402
from edge_vla.train import evaluate as ev  # noqa: E402
from edge_vla.train.data import (CHARSET, HELD_OUT_FONTS, Curriculum, Stream, cell_chars,  # noqa: E402
                                 cells_for_box, history_to_typing, label_chars, last_click, replay,
                                 vocab_action)
from edge_vla.train.loop import Trainer, TrainConfig  # noqa: E402
from edge_vla.train.model import (PointerHead, TorchRuntime, action_vocab, batch_loss, build_student,  # noqa: E402
                                  collate, prompt_layout)

ROOT = Path(__file__).resolve().parents[2]
VOCAB = action_vocab()
GRAMMAR = ActionGrammar(VOCAB)


def tiny_stream(split="train", seed=0, **kw) -> Stream:
    return Stream(VOCAB, 64, 4, seed=seed, split=split, curriculum=Curriculum(100), **kw)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    """A random tiny student exported with the FOCUS token (what the trainer ships).

    Seed 0: with random weights the exporter's greedy parity decode may pick the image token id
    (seed 3 does), which its reference forward cannot take; trained weights do not."""
    from edge_vla.export.exporter import export_model

    return export_model(build_student("tiny", seed=0), tmp_path_factory.mktemp("b") / "tiny", focus=True)


def test_text_first_conv_stem_student_exports_and_decodes_like_training(tmp_path):
    """The exported bundle lays out the prompt as training does (instruction, then image, then EOS)
    and its conv stem survives export: ONNX runtime and the torch model pick the same actions."""
    from edge_vla.export.exporter import export_model
    from edge_vla.config import ModelConfig
    from edge_vla.runtime.bundle import Bundle
    from edge_vla.runtime.vlm import VLMRuntime, preprocess

    model = build_student("tiny-read", seed=1)
    assert type(model.vision_tower.vision_model.embeddings.patch_embedding).__name__ == "ConvStem"
    out = export_model(model, tmp_path / "read", focus=True)
    prompt = Bundle.load(out).manifest.inputs["prompt"]
    assert prompt["text_first"] is True and prompt["suffix"] == [2]
    rt = VLMRuntime(Bundle.load(out), ModelConfig(path=str(out), kv_cache="fp32"))
    ref = TorchRuntime(model, roi=False)
    rng = np.random.default_rng(0)
    for instr in ("click Submit", "close the pop-up", "type hello into Name"):
        view = preprocess(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8), rt.image_size)
        assert rt.decode_view(view, instr)[0].tokens == ref.decode_view(view, instr)[0].tokens


# ----------------------------------------------------------------------------- data
def test_stream_is_deterministic_and_splits_are_disjoint():
    a, b = tiny_stream().state(5), tiny_stream().state(5)
    assert [s.tokens for s in a] == [s.tokens for s in b]
    assert all(np.array_equal(x.views, y.views) for x, y in zip(a, b))
    assert [s.instruction for s in a] == [s.instruction for s in b]
    c = tiny_stream().state(6)
    assert a[0].meta["spec"] != c[0].meta["spec"]
    train = {tiny_stream().state(i)[0].meta["spec"]["seed"] % 2 for i in range(8)}
    held = {tiny_stream("heldout").state(i)[0].meta["spec"]["seed"] % 2 for i in range(8)}
    assert train == {0} and held == {1}
    # two faces are never trained on; held-out worlds draw from every face
    train_fonts = {replay(tiny_stream().state(i)[0].meta["spec"], []).font for i in range(24)}
    assert train_fonts and not train_fonts & set(HELD_OUT_FONTS)
    held_fonts = {replay(tiny_stream("heldout").state(i)[0].meta["spec"], []).font for i in range(40)}
    assert held_fonts & set(HELD_OUT_FONTS)


def test_labels_agree_with_the_oracle():
    stream = tiny_stream(samples_per_state=3)
    checked = {"point": 0, "focus": 0, "other": 0}
    for i in range(40):
        for s in stream.state(i):
            m = s.meta
            world = replay(m["spec"], m["history"])  # the labelled state, rebuilt
            want = vocab_action(world.oracle(), VOCAB)
            d = GRAMMAR.to_decoded(s.tokens)
            assert s.tokens == d.tokens and GRAMMAR.done(s.tokens)
            if m["label"] == "point":
                box = world.target.box
                assert list(box) == m["box_px"]
                x, y = crop_to_frame(d.action.x, d.action.y, tuple(m["crop"]))
                assert inside(box, *to_pixels(x, y, world.width, world.height)), (m, d.action)
                assert s.pointer_view == 1 and s.pointer_cells and len(s.views) == 2
                checked["point"] += 1
            elif m["label"] == "focus":
                box = world.target.box
                cx, cy = to_normalized((box[0] + box[2] - 1) / 2, (box[1] + box[3] - 1) / 2, world.width,
                                       world.height)
                fb = d.focus_box
                assert fb[0] <= cx <= fb[2] and fb[1] <= cy <= fb[3], (fb, cx, cy)
                assert s.pointer_view == 0 and s.pointer_cells
                checked["focus"] += 1
            else:
                assert d.action == want, (d.action, want)
                assert s.pointer_view == -1
                checked["other"] += 1
    assert min(checked.values()) >= 3, checked


def test_after_a_click_the_crop_is_where_the_runtime_keeps_it():
    """The runtime's crop stays around its last click (a field it focused) until a non-point action, so
    a 'type into the focused field' sample is cut there, not around the frame's centre."""
    stream = tiny_stream(samples_per_state=4)
    seen = 0
    for i in range(400):
        if seen >= 4:
            break
        for s in stream.state(i):
            m = s.meta
            after = last_click(m["history"])
            if m["stage"] != "crop" or after is None or m["label"] in ("point", "focus"):
                continue
            c = m["crop"]
            assert c[0] <= after[0] <= c[2] and c[1] <= after[1] <= c[3], (m, after)
            seen += 1
    assert seen >= 4
    assert last_click([[0.1, None], [0.2, {"type": "click", "x": 5, "y": 9}], [0.3, None]]) == (5, 9)
    assert last_click([[0.2, {"type": "click", "x": 5, "y": 9}], [0.3, {"type": "key", "key": "tab"}]]) is None


def test_typing_states_stop_where_the_teacher_types():
    import random

    from edge_vla.sim.world import SimWorld

    for seed in (1, 3, 5, 7):
        spec = {"seed": seed, "width": 1280, "height": 720, "theme": "light", "task": "fill_and_submit"}
        world = SimWorld(**spec)
        hist = history_to_typing(world, random.Random(seed), VOCAB)
        assert vocab_action(world.oracle(), VOCAB).type == "type", hist
        assert replay(spec, hist).render().tobytes() == world.render().tobytes()


def test_vocab_mapping_and_cells():
    assert vocab_action(Action(type="key", key="ctrl+a"), VOCAB) == Action(type="key", key="backspace")
    sc = vocab_action(Action(type="scroll", x=5, y=5, dx=0, dy=-37), VOCAB)
    assert sc == Action(type="scroll", dx=0, dy=-VOCAB.scroll_step)
    assert GRAMMAR.to_decoded(GRAMMAR.encode(sc)).action == sc
    assert cells_for_box((0, 0, 250, 250), 4) == [0]
    assert cells_for_box((260, 510, 760, 740), 4) == [9, 10, 11]
    assert cells_for_box((10, 10, 10, 20), 4) == []


def test_cell_chars_say_which_letters_each_view_cell_shows():
    texts = [("Save as", (0, 0, 40, 20)), ("Go 2", (60, 60, 100, 100))]
    full = cell_chars(texts, (0, 0, 1000, 1000), 100, 100, 4)
    assert full.shape == (16, len(CHARSET))
    assert [c for c in range(16) if full[c].any()] == [0, 1, 10, 11, 14, 15]
    assert "".join(CHARSET[i] for i in np.nonzero(full[0])[0]) == "aesv"
    assert (full[15] == label_chars("go2")).all()
    # a crop of the bottom-right quarter: "Go 2" covers all but its top and left edge, "Save as" is out of view
    crop = cell_chars(texts, (500, 500, 1000, 1000), 100, 100, 4)
    assert (crop == label_chars("go 2")).all()
    crop = cell_chars(texts, (700, 700, 1000, 1000), 100, 100, 4)
    assert (crop == label_chars("go 2")).all()
    crop = cell_chars(texts, (0, 500, 500, 1000), 100, 100, 4)
    assert not crop.any()
    # the stream's samples carry them for every view; the target's own cells show its label's letters
    checked = 0
    for i in range(40):
        for s in tiny_stream().state(i):
            assert s.cell_chars.shape == (len(s.views), 16, len(CHARSET)) and s.cell_chars.dtype == np.uint8
            if s.pointer_view >= 0 and s.pointer_cells:
                world = replay(s.meta["spec"], s.meta["history"])
                want = label_chars(world.target.label)
                on = s.cell_chars[s.pointer_view][s.pointer_cells]
                assert (on | want == on).all(), (world.target.label, s.meta)
                checked += 1
    assert checked >= 10


# ----------------------------------------------------------------------------- loss and resume
@pytest.mark.parametrize("preset", ["tiny", "tiny-read"])
def test_loss_step_decreases_loss_on_a_tiny_model(preset):
    torch.set_num_threads(1)
    model = build_student(preset, seed=0).train()
    head = PointerHead(model.config.text_config.hidden_size)
    samples = [s for i in range(6) for s in tiny_stream().state(i)]
    batch = collate(samples, prompt_layout(model))
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=3e-3)
    losses = []
    reads = []
    for _ in range(6):
        loss, info = batch_loss(model, head, batch, bin_sigma=2.0, attn_weight=1.0, read_weight=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        reads.append(info["read"])
    assert info["pointer"] > 0 and info["ce"] > 0 and info["attn"] > 0
    assert losses[-1] < losses[0] * 0.8, losses
    assert reads[-1] < reads[0] * 0.95, reads  # the reading head learns too (small weight: slower)


def test_soft_bins_and_attention_pointer_losses():
    from edge_vla.train.model import attention_pointer_loss, soft_targets

    lo = VOCAB.bin_id(0)
    t = soft_targets(torch.tensor([lo + 50, 5]), 700, sigma=2.0)
    assert abs(float(t[0].sum()) - 1) < 1e-6 and int(t[0].argmax()) == lo + 50
    assert float(t[0, lo + 51]) > float(t[0, lo + 55]) > 0 and float(t[0, lo + 80]) < 1e-6
    assert float(t[1, 5]) == 1.0  # not a coordinate: one-hot
    # one sample: 4 image tokens (positions 1..4), the bin label at position 6; target cell 2
    labels = torch.full((1, 8), -100)
    labels[0, 6] = lo + 10
    attn = torch.full((1, 1, 8, 8), 1 / 8)
    on = attn.clone()
    on[0, 0, 6] = 0.0
    on[0, 0, 6, 1 + 2] = 1.0
    off = attn.clone()
    off[0, 0, 6] = 0.0
    off[0, 0, 6, 1 + 1] = 1.0
    ptr = [(0, [2])]
    assert float(attention_pointer_loss(on, labels, ptr, [1], 4)) < 1e-4
    assert float(attention_pointer_loss(attn, labels, ptr, [1], 4)) == pytest.approx(np.log(8), rel=1e-4)
    assert float(attention_pointer_loss(off, labels, ptr, [1], 4)) > 10


def _cfg(**kw) -> TrainConfig:
    base = dict(preset="tiny", batch_states=3, samples_per_state=2, eval_every=10**9, eval_cases=0,
                eval_full_cases=0, dagger_start=6, dagger_every=10**9, dagger_tasks=1, dagger_max_steps=2,
                dagger_frac=0.34, threads=1, warmup_steps=2)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_gives_identical_next_steps(tmp_path):
    out = tmp_path / "run"
    tr = Trainer(out, _cfg(), log=lambda *_: None)
    tr.run(max_samples=12, final_eval=False)  # step 1, a DAgger round, step 2 (with DAgger states)
    assert (out / "checkpoint" / "config.json").is_file() and (out / "train_config.json").is_file()
    assert tr.dagger_rounds == 1 and tr.dagger
    first = [tr.train_step()["loss"] for _ in range(2)]  # batches mix stream and DAgger states
    tr2 = Trainer(out, None, resume=True, log=lambda *_: None)
    assert tr2.seen == 12 and tr2.step_n == 2 and tr2.dagger == tr.dagger
    second = [tr2.train_step()["loss"] for _ in range(2)]
    assert first == pytest.approx(second, abs=1e-6, rel=1e-6)
    with pytest.raises(FileExistsError):
        Trainer(out, _cfg(), log=lambda *_: None)


def test_resume_keeps_the_runs_settings_unless_a_flag_gives_them(tmp_path, monkeypatch):
    import importlib.util

    out = tmp_path / "run"
    Trainer(out, _cfg(eval_every=7, threads=1), log=lambda *_: None).save()
    spec = importlib.util.spec_from_file_location("train_student", ROOT / "tools" / "train_student.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    seen: list[TrainConfig] = []
    real = Trainer.__init__

    def spy(self, *a, **kw):
        real(self, *a, **kw)
        seen.append(self.cfg)

    monkeypatch.setattr(Trainer, "__init__", spy)
    argv = ["--out", str(out), "--resume", "--max-samples", "0", "--no-final-eval"]
    assert tool.main(argv) == 0
    assert tool.main(argv + ["--eval-every", "50", "--threads", "2"]) == 0
    assert (seen[0].eval_every, seen[0].threads) == (7, 1)   # kept: no flag given
    assert (seen[1].eval_every, seen[1].threads) == (50, 2)  # given again: replaced
    assert seen[1].preset == "tiny" and seen[1].batch_states == 3  # what to learn never changes


def test_run_logs_a_learning_curve(tmp_path):
    out = tmp_path / "run"
    tr = Trainer(out, _cfg(eval_every=6, eval_cases=2, eval_full_cases=1, dagger_every=0), log=lambda *_: None)
    tr.run(max_samples=6)
    rows = [json.loads(x) for x in (out / "curve.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["final"] is True
    for r in rows:
        assert r["samples"] == 6 and 0 <= r["crop_hit"] <= 1 and 0 <= r["full_hit"] <= 1
        assert r["train_cpu_s"] > 0 and r["samples_per_s"] > 0


# ----------------------------------------------------------------------------- teachers and evaluation
def test_bundle_teacher_labels_states(tiny_bundle):
    from edge_vla.train.teacher import BundleTeacher

    teacher = BundleTeacher(tiny_bundle, VOCAB)
    samples = [s for i in range(3) for s in tiny_stream(teacher=teacher).state(i)]
    for s in samples:
        d = GRAMMAR.to_decoded(s.tokens)  # whatever the random teacher says, it is a valid target
        assert d.action is not None or d.focus_box is not None


class _Fixed:
    """A runtime that clicks where ``where(box)`` says for each grounding case, in order."""

    def __init__(self, cases, where):
        self.boxes = iter([c for c in cases])
        self.where = where

    def infer(self, image, instruction):
        c = next(self.boxes)
        h, w = image.shape[:2]
        px, py = self.where(c["box"])
        x, y = to_normalized(px, py, w, h)
        return Action(type="click", x=x, y=y), {"model": 1.0}


def test_grounding_accuracy_is_computed_correctly():
    cases = ev.grounding_cases(8, seed=3, resolutions=((390, 844), (1920, 1080)))
    assert len(cases) == 8
    perfect = ev.grounding(_Fixed(cases, lambda b: ((b[0] + b[2] - 1) / 2, (b[1] + b[3] - 1) / 2)), cases)
    assert perfect["rate"] == 1.0 and perfect["hits"] == 8
    outside = ev.grounding(_Fixed(cases, lambda b: (b[2], b[3])), cases)  # one pixel past the box
    assert outside["rate"] == 0.0
    flip = iter(range(100))
    half = ev.grounding(_Fixed(cases, lambda b: (b[0], b[1]) if next(flip) % 2 == 0 else (b[2] + 3, b[1])), cases)
    assert half["hits"] == 4 and half["rate"] == 0.5
    assert sum(v["n"] for v in half["per_resolution"].values()) == 8
    assert sum(v["hits"] for v in half["per_theme"].values()) == 4
    assert sum(v["hits"] for v in half["per_font"].values()) == 4
    unseen = sum(v["n"] for k, v in half["per_font"].items() if k in HELD_OUT_FONTS)
    assert half["unseen_fonts"]["n"] == unseen


def test_closed_loop_oracle_succeeds_and_idle_fails():
    class Oracle:
        world = None

        def infer(self, image, instruction):
            return vocab_action(self.world.oracle(), VOCAB) or Action(type="wait"), {"model": 0.1}

    o = Oracle()
    res = ev.closed_loop(o, 6, seed=1, max_steps=15, resolutions=((1280, 720),),
                         on_step=lambda w, f: setattr(o, "world", w))
    assert res["success_rate"] == 1.0 and res["n"] == 6 and set(res["per_task"]) == set(ev.TASK_KINDS)

    class Idle:
        def infer(self, image, instruction):
            return Action(type="wait"), {}

    idle = ev.closed_loop(Idle(), 3, seed=1, max_steps=3, resolutions=((1280, 720),))
    assert idle["success_rate"] == 0.0 and idle["mean_steps"] == 3


def test_closed_loop_with_the_daemons_loop_memory_gets_past_a_dead_guess():
    """A policy whose first guess is a dead spot (the header's corner): bare, it clicks there for ever;
    inside the daemon's loop (real verifier + watchdog on sim time) the dead spot reaches it as ``avoid``
    after one unchanged verdict, and it goes on with the oracle's action. (Tasks of one or two clicks:
    each change clears the watchdog's memory, and this policy then wastes a step on the corner again.)"""
    blank = Action(type="click", x=998, y=3)

    class FirstGuessDead:
        world = None
        avoided: list = []

        def infer(self, image, instruction, avoid=frozenset()):
            self.avoided.append(signature(blank) in avoid)
            if signature(blank) not in avoid:
                return blank, {}
            return vocab_action(self.world.oracle(), VOCAB) or Action(type="wait"), {}

    g = FirstGuessDead()
    kw = dict(seed=1, max_steps=15, resolutions=((1280, 720),), on_step=lambda w, f: setattr(g, "world", w),
              kinds=("click_button", "checkbox", "dismiss_popup_then_buy", "wait_then_submit"))
    bare = ev.closed_loop(g, 8, **kw)
    assert bare["success_rate"] == 0.0 and not any(g.avoided) and not bare["loop_memory"]
    looped = ev.closed_loop(g, 8, loop=LoopConfig(), **kw)
    assert looped["success_rate"] == 1.0 and looped["loop_memory"] and any(g.avoided)


def test_eval_tool_on_a_tiny_exported_bundle(tiny_bundle, tmp_path):
    out = tmp_path / "eval.json"
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "eval_policy.py"), str(tiny_bundle), "--cases", "4",
                        "--closed-loop", "2", "--max-steps", "2", "--threads", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert res == json.loads(p.stdout)
    g = res["grounding"]
    assert g["n"] == 4 and 0 <= g["hits"] <= 4 and g["rate"] == g["hits"] / 4
    assert sum(v["n"] for v in g["per_resolution"].values()) == 4
    assert res["roi"] == "focus" and res["crop_grounding"]["n"] == 4
    assert res["closed_loop"]["n"] == 2 and 0 <= res["closed_loop"]["success_rate"] <= 1
    assert {"vision", "prefill", "decode", "total"} <= set(res["latency_ms"])


def test_through_the_daemon_counts_successes_over_mqtt(tiny_bundle):
    """The shipped path (sim -> daemon -> broker -> executor): the oracle policy succeeds, which a
    task the executor never saw finish could not."""
    ok = ev.through_daemon(str(tiny_bundle), 2, seed=5, seconds=6.0, width=640, height=480, policy="oracle")
    assert ok["n"] == 2 and ok["success_rate"] == 1.0 and ok["actions"] >= 2
    assert ok["glass_to_action_ms"]["n"] == ok["actions"]
    # random weights cannot type the value and then submit in two seconds
    idle = ev.through_daemon(str(tiny_bundle), 1, seed=5, seconds=2.0, width=640, height=480,
                             kinds=("fill_and_submit",))
    assert idle["success_rate"] == 0.0
