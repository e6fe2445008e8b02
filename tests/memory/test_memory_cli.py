"""`edge-vla memory ...` in-process: record, stats, query, regress (exit 1 on a regression), bad files."""

from __future__ import annotations

import json

import apsw
import numpy as np
from PIL import Image

from edge_vla.cli import main
from edge_vla.memory.store import SCHEMA_VERSION, MemoryStore
from edge_vla.sim import SimWorld


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if out.out.strip().startswith("{") else out.out), out.err


def test_record_stats_query_regress(tmp_path, capsys, clean_env):
    db = str(tmp_path / "m.db")
    common = ["--db", db]
    rc, rec, _ = run(capsys, "memory", "record", "home", "--sim", *common, "--seed", "2", "--task", "checkbox",
                     "--width", "640", "--height", "360", "--seconds", "2", "--actions", "1")
    assert rc == 0 and rec == {"run": "home", "frames": 10, "actions": 1}
    rc, stats, _ = run(capsys, "memory", "stats", *common)
    assert rc == 0 and stats["runs"] == ["home"] and stats["golden_frames"] == 10 and stats["schema_version"] == SCHEMA_VERSION
    img = tmp_path / "screen.png"
    Image.fromarray(np.asarray(SimWorld(seed=2, width=640, height=360, task="checkbox").render())).save(img)
    rc, q, _ = run(capsys, "memory", "query", *common, "--image", str(img), "-k", "2", "--thumbs", str(tmp_path / "t"))
    assert rc == 0 and len(q["hits"]) == 2 and q["hits"][0]["distance"] < 0.05
    assert (tmp_path / "t").exists() and q["hits"][0]["thumb_path"].endswith(".png")
    rc, rep, _ = run(capsys, "memory", "regress", "home", *common)  # the same sim run again: clean
    assert rc == 0 and rep["regressions"] == 0
    rc, rep, _ = run(capsys, "memory", "regress", "home", *common, "--defect", "missing_element")
    assert rc == 1 and rep["regressions"] > 0 and rep["first_regression"]["changes"][0]["box"]


def test_cli_refuses_a_newer_database(tmp_path, capsys, clean_env):
    db = tmp_path / "m.db"
    MemoryStore(db).close()
    c = apsw.Connection(str(db))
    c.execute("PRAGMA user_version=5")
    c.close()
    rc, _, err = run(capsys, "memory", "stats", "--db", str(db))
    assert rc == 3 and "schema version 5 is newer" in err
