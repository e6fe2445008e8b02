"""Regression by what the screen says: golden text lines against live ones (real OCR on the simulator)."""

from __future__ import annotations

import random

import pytest

from edge_vla.memory.golden import SimScenario, record_frames
from edge_vla.memory.regress import GoldenRun, LiveRegressor, regress_frames
from edge_vla.memory.store import MemoryStore
from edge_vla.memory.textdiff import reader, text_changes
from edge_vla.sim.defects import Clock, compress, hide_dialog, inject_defect

W, H = 1280, 720


def test_text_changes_compares_words_not_pixels():
    golden = [((100, 100, 200, 130), "Buy now", 0.99), ((100, 300, 260, 330), "Total: 42", 0.98),
              ((500, 500, 600, 530), "Help", 0.97), ((700, 700, 900, 730), "Terms of service", 0.95)]
    live = [((102, 101, 199, 131), "buy  now", 0.97),   # the same words, read with other spacing and case
            ((100, 300, 262, 331), "Totel: 42", 0.96),  # one letter off: within what a misread does
            ((500, 500, 560, 530), "Sell", 0.98),       # other words in the same place
            ((700, 700, 900, 730), "Tmsfsvc", 0.6)]     # an unsure reading (small text, lossy frame)
    changes = text_changes(golden, live)
    by_golden = {c.golden: c for c in changes}
    assert set(by_golden) == {"Help"}, changes
    price = text_changes([((10, 10, 90, 30), "Total: 42", 0.99)], [((10, 10, 90, 30), "Total: 43", 0.99)])
    assert [c.live for c in price] == ["Total: 43"]  # digits are compared exactly
    assert by_golden["Help"].live == "Sell" and by_golden["Help"].box == (500, 500, 600, 530)
    gone = text_changes([((10, 10, 50, 30), "Cancel", 0.9)], [])
    assert gone and gone[0].live == ""
    # the reader split a line in two: the joined live lines say the golden words
    split = text_changes([((100, 100, 400, 130), "Save and close", 0.9)],
                         [((100, 100, 200, 130), "Save and", 0.9), ((210, 100, 400, 130), "close", 0.9)])
    assert split == []
    # ... or merged two golden lines into one: the golden lines under it, joined, say its words
    golden2 = [((100, 10, 180, 40), "Dashboard", 0.96), ((185, 10, 260, 40), "Analytics", 0.99)]
    assert text_changes(golden2, [((100, 10, 260, 40), "Dashboard Analytics", 0.95)]) == []


def scenario(live: bool, at=None, seed=21):
    def setup(world):
        hide_dialog(world)
        Clock(world, 30000 if not live else 41234)
    return SimScenario(seed=seed, width=W, height=H, task="click_button", seconds=2.0, fps=4, action_times=(1.2,),
                       phase=0.05 if live else 0.0, setup=setup, at=at or {},
                       post=(lambda im: compress(im, 70)) if live else None)


@pytest.fixture(scope="module")
def read_golden(tmp_path_factory):
    st = MemoryStore(tmp_path_factory.mktemp("t") / "m.db")
    record_frames(st, "g", scenario(False).frames(), reader=reader())
    yield GoldenRun.load(st, "g")
    st.close()


def test_golden_frames_store_their_text(read_golden):
    assert all(f.text is not None for f in read_golden.frames)
    assert any(len(f.text) >= 3 for f in read_golden.frames)


def test_benign_live_run_reads_the_same(read_golden):
    rep = regress_frames(read_golden, (f.image for f in scenario(True).frames()), reader=reader())
    assert rep["regressions"] == 0, rep["first_regression"]
    assert not [c for s in rep["steps"] for c in s["changes"] if c.get("text")]


def test_changed_label_is_named_and_boxed_by_its_line(read_golden):
    got = {}

    def inject(world):
        got["d"] = inject_defect(world, "changed_label", random.Random(5))
    reg = LiveRegressor(read_golden, reader=reader())
    hits = [c for f in scenario(True, at={0.5: inject}).frames() for c in reg.step(f.image, ts=f.ts).changes if c.text]
    d = got["d"]
    assert d is not None and hits, "the changed label was not read as a change"
    new = d.detail.split("-> ")[1].strip("'\"")
    assert any(new.lower().replace(" ", "") in t.live.lower().replace(" ", "") for c in hits for t in c.text), \
        [t.as_dict() for c in hits for t in c.text]
    tx0, ty0, tx1, ty1 = d.truth[0]
    truth = (tx0 * 1000 / W, ty0 * 1000 / H, tx1 * 1000 / W, ty1 * 1000 / H)
    box = hits[-1].box
    assert box[0] <= truth[2] and truth[0] <= box[2] and box[1] <= truth[3] and truth[1] <= box[3]


def test_a_run_recorded_without_reading_compares_pixels_only(tmp_path):
    with MemoryStore(tmp_path / "m.db") as st:
        record_frames(st, "p", scenario(False).frames())
        g = GoldenRun.load(st, "p")
        assert all(f.text is None for f in g.frames)
        rep = regress_frames(g, (f.image for f in scenario(True).frames()), reader=reader())
        assert rep["regressions"] == 0
