"""`edge-vla memory record` on device A ships the golden run; `memory regress` on device B (its own,
empty local file) reads it from the fleet store and finds an injected defect."""

from __future__ import annotations

import json

from edge_vla.cli import main


def run(monkeypatch, capsys, device, db, fleet, *argv):
    monkeypatch.setenv("EDGE_VLA_DEVICE_ID", device)
    monkeypatch.setenv("EDGE_VLA_MEMORY__PATH", str(db))
    monkeypatch.setenv("EDGE_VLA_MEMORY__FLEET_URI", str(fleet))
    rc = main(["memory", *argv])
    out = capsys.readouterr()
    text = out.out[out.out.find("{\n"):] if "{\n" in out.out else out.out  # structlog lines may come first
    return rc, text, out.err


def test_record_on_a_regress_on_b(tmp_path, monkeypatch, capsys, clean_env):
    fleet = tmp_path / "fleet"
    rc, out, err = run(monkeypatch, capsys, "dev-a", tmp_path / "a.db", fleet, "record", "home", "--sim",
                       "--seconds", "3", "--no-read")
    assert rc == 0, err
    res = json.loads(out)
    assert res["frames"] == 15 and res["fleet"]["sent"] == 15 and res["fleet"]["pending"] == 0
    rc, out, err = run(monkeypatch, capsys, "dev-b", tmp_path / "b.db", fleet, "regress", "home",
                       "--defect", "missing_element", "--no-read")
    rep = json.loads(out)
    assert rc == 1 and rep["source"] == "fleet" and rep["regressions"] > 0, err
    # the same comparison from B (fleet copy) and from A's own file (--local) says the same
    _, out_b, _ = run(monkeypatch, capsys, "dev-b", tmp_path / "b.db", fleet, "regress", "home", "--no-read",
                      "--all-steps")
    _, out_a, _ = run(monkeypatch, capsys, "dev-a", tmp_path / "a.db", fleet, "regress", "home", "--no-read",
                      "--all-steps", "--local")
    b, a = json.loads(out_b), json.loads(out_a)
    assert (b["source"], a["source"]) == ("fleet", "local") and len(b["steps"]) == 15
    assert [s["changes"] for s in b["steps"]] == [s["changes"] for s in a["steps"]]
    # --local: device B's own file has no such run: a clear error, exit 3
    rc, out, err = run(monkeypatch, capsys, "dev-b", tmp_path / "b.db", fleet, "regress", "home", "--local",
                       "--no-read")
    assert rc == 3 and "no golden run 'home'" in err
    # the outbox is resumable from the command line too: nothing left to send
    rc, out, err = run(monkeypatch, capsys, "dev-a", tmp_path / "a.db", fleet, "sync")
    assert rc == 0 and json.loads(out)["sent"] == 0
