"""``edge-vla memory``: stats, query, record a golden run, regress against it, sync to the fleet store.

With ``memory.fleet_uri`` set, ``record`` also ships the run to the fleet store and ``regress``
reads the golden run from there (``--local``: this device's database only).

Times on the command line are unix seconds, or negative numbers meaning
"seconds before now" (``--from -600`` is ten minutes ago). Output is JSON.
``regress`` exits 1 when it found a regression (so CI can gate on it).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

EXIT_REGRESSION = 1
EXIT_MEMORY = 3  # the database cannot be used (corrupt, foreign, newer schema, missing)


def _when(value: str | None) -> float | None:
    if value is None:
        return None
    v = float(value)
    return time.time() + v if v <= 0 else v


def _store(args, readonly: bool = False):
    from ..cli import _settings
    from .store import MemoryStore

    path = Path(args.db) if getattr(args, "db", None) else _settings(args).memory.path
    return MemoryStore(path, readonly=readonly)


def _fleet_cfg(args):
    """(memory config, device id) when a fleet store is configured and not refused by --local."""
    from ..cli import _settings

    if getattr(args, "local", False):
        return None
    s = _settings(args)
    return (s.memory, s.device_id) if s.memory.fleet_uri else None


def _sync(args, memory, device_id, db: Path):
    from .fleet import open_fleet
    from .sync import FleetSync

    return FleetSync(db, lambda: open_fleet(memory, device_id), device_id, batch=memory.fleet_batch,
                     backlog_max=memory.fleet_backlog_max, backoff_max_s=memory.fleet_backoff_max_s)


def _db(args) -> Path:
    from ..cli import _settings

    return Path(args.db) if getattr(args, "db", None) else _settings(args).memory.path


def _out(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _guard(fn):
    def run(args: argparse.Namespace) -> int:
        from ..perception.text import PerceptionWeightsError
        from .store import MemoryStoreError

        try:
            return fn(args)
        except (MemoryStoreError, PerceptionWeightsError) as exc:
            print(f"edge-vla memory: {exc}", file=sys.stderr)
            return EXIT_MEMORY
    return run


def _image(path: str):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


@_guard
def cmd_stats(args: argparse.Namespace) -> int:
    with _store(args, readonly=True) as st:
        _out(st.stats())
    return 0


@_guard
def cmd_query(args: argparse.Namespace) -> int:
    from .retrieval import Retriever

    with _store(args, readonly=True) as st:
        r = Retriever(st)
        if args.image:
            hits = r.by_image(_image(args.image), args.k, args.stream, _when(args.t_from), _when(args.t_to), args.kind)
        else:
            hits = st.frames_between(args.stream, _when(args.t_from), _when(args.t_to), args.k, args.kind)
        out = []
        for h in hits:
            d = h.as_dict()
            if args.thumbs and h.thumb is not None:
                fmt, data = st.thumb(h.thumb)
                p = Path(args.thumbs) / f"frame-{h.frame_id}.{'png' if fmt == 'png' else 'jpg'}"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
                d["thumb_path"] = str(p)
            out.append(d)
        _out({"hits": out})
    return 0


def _reader(args: argparse.Namespace):
    """The text reader for recording and regression, unless ``--no-read``."""
    if args.no_read:
        return None
    from .textdiff import reader

    return reader(threads=2)


@_guard
def cmd_record(args: argparse.Namespace) -> int:
    from .golden import SimScenario, promote, record_frames

    fleet = _fleet_cfg(args)
    with _store(args) as st:
        if args.sim:
            sc = SimScenario(seed=args.seed, width=args.width, height=args.height, task=args.task,
                             seconds=args.seconds, fps=args.fps,
                             action_times=tuple(float(x) for x in args.actions.split(",") if x))
            info = {"source": "sim", "seed": args.seed, "task": args.task, "seconds": args.seconds, "fps": args.fps}
            res = record_frames(st, args.name, sc.frames(), stream=args.stream or "default",
                                replace=args.replace, info=info, reader=_reader(args), outbox=fleet is not None)
        else:
            if args.t_from is None:
                print("edge-vla memory record: give --sim, or --from (and --to) to promote stored frames",
                      file=sys.stderr)
                return 2
            res = promote(st, args.name, args.stream or "default", _when(args.t_from),
                          _when(args.t_to) or time.time(), replace=args.replace, outbox=fleet is not None)
    if fleet is not None:  # the run is safe locally; now ship it (a failure here is resumed by `memory sync`)
        sync = _sync(args, *fleet, _db(args))
        try:
            res["fleet"] = sync.drain()
        finally:
            sync.close()
    _out(res)
    return 0


@_guard
def cmd_regress(args: argparse.Namespace) -> int:
    from .golden import SimScenario
    from .regress import GoldenRun, regress_frames

    fleet = _fleet_cfg(args)
    if fleet is not None:
        from .fleet import open_fleet

        ctx = open_fleet(*fleet)
    else:
        ctx = _store(args)
    with ctx as st:
        golden = GoldenRun.load(st, args.name)
        if args.run:
            other = GoldenRun.load(st, args.run)
            images = [f.thumb for f in other.frames]
        elif args.images:
            paths = sorted(p for pat in args.images for p in glob.glob(pat))
            images = (_image(p) for p in paths)
        else:
            info = golden.info.get("info", {}) if isinstance(golden.info, dict) else {}
            seed = args.seed if args.seed is not None else info.get("seed", 0)
            edits = {}
            injected = {}
            if args.defect:
                import random

                from ..sim.defects import inject_defect

                def do(world):
                    injected["d"] = inject_defect(world, args.defect, random.Random(seed))
                edits[args.defect_at] = do
            sc = SimScenario(seed=seed, width=golden.info.get("width") or 1280, height=golden.info.get("height") or 720,
                             task=info.get("task"), seconds=info.get("seconds", 6.0), fps=info.get("fps", 5.0),
                             at=edits)
            images = (f.image for f in sc.frames())
        report = regress_frames(golden, images, reader=_reader(args) if any(f.text for f in golden.frames) else None)
        report["source"] = "fleet" if fleet is not None else "local"
        if not args.all_steps:
            report["steps"] = [s for s in report["steps"] if s["changes"]]
        if args.publish:
            _publish(args, report)
        _out(report)
    return EXIT_REGRESSION if report["regressions"] else 0


@_guard
def cmd_sync(args: argparse.Namespace) -> int:
    """Ship the outbox to the fleet store: until it is empty, or (--follow) until SIGTERM."""
    import signal

    from .fleet import FleetUnavailable

    fleet = _fleet_cfg(args)
    if fleet is None:
        print("edge-vla memory sync: memory.fleet_uri is not set", file=sys.stderr)
        return 2
    sync = _sync(args, *fleet, _db(args))
    if not args.follow:
        try:
            _out(sync.drain())
        except FleetUnavailable as exc:
            print(f"edge-vla memory sync: {exc}", file=sys.stderr)
            _out(sync.summary())
            return 4
        finally:
            sync.close()
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sync.stop(0))
    sync.poll_s = args.poll
    sync.start()
    try:
        while sync._thread.is_alive():
            sync._thread.join(0.5)
    except KeyboardInterrupt:
        sync.stop()
    _out(sync.summary())
    return 0 if sync.stats.state != "disabled" else EXIT_MEMORY


def _publish(args, report: dict) -> None:
    from ..cli import _settings
    from ..mqtt import MqttLink

    s = _settings(args)
    link = MqttLink(s.mqtt, s.device_id, client_id=f"edge-vla-regress-{time.time_ns()}", availability=False)
    import asyncio

    async def go() -> None:
        link.start()
        if await link.wait_connected(5):
            for step in report["steps"]:
                if step["regression"]:
                    link.event("regression", run=report["golden"], **{k: v for k, v in step.items() if k != "regression"})
            await asyncio.sleep(0.3)
        await asyncio.to_thread(link.stop)

    asyncio.run(go())


def add_parser(sub, with_config) -> None:
    """Register ``edge-vla memory ...`` on the top-level subparsers."""
    mem = sub.add_parser("memory", help="visual memory: stats, query, record a golden run, regress against it")
    msub = mem.add_subparsers(dest="memory_command", required=True)

    def common(sp):
        with_config(sp)
        sp.add_argument("--db", help="memory database (default: memory.path)")
        return sp

    common(msub.add_parser("stats", help="what the database holds")).set_defaults(func=cmd_stats)

    q = common(msub.add_parser("query", help="nearest frames to an image, or frames in a time range"))
    q.add_argument("--image", help="find frames that look like this picture")
    q.add_argument("--stream")
    q.add_argument("--from", dest="t_from", help="unix seconds, or negative: seconds ago")
    q.add_argument("--to", dest="t_to")
    q.add_argument("--kind", choices=["live", "golden"])
    q.add_argument("-k", type=int, default=5, help="how many frames")
    q.add_argument("--thumbs", help="write the thumbnails into this folder")
    q.set_defaults(func=cmd_query)

    r = common(msub.add_parser("record", help="store a golden run NAME"))
    r.add_argument("name")
    r.add_argument("--sim", action="store_true", help="record a simulator run driven by the oracle")
    r.add_argument("--stream")
    r.add_argument("--from", dest="t_from", help="promote stored frames from this time (unix s, or negative)")
    r.add_argument("--to", dest="t_to")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--task", help="sim task kind")
    r.add_argument("--seconds", type=float, default=6.0)
    r.add_argument("--fps", type=float, default=5.0)
    r.add_argument("--width", type=int, default=1280)
    r.add_argument("--height", type=int, default=720)
    r.add_argument("--actions", default="2,4", help="sim seconds at which the oracle acts")
    r.add_argument("--replace", action="store_true")
    r.add_argument("--no-read", action="store_true", help="do not store the frames' text lines (no OCR)")
    r.add_argument("--local", action="store_true", help="this device's database only, even with memory.fleet_uri")
    r.set_defaults(func=cmd_record)

    g = common(msub.add_parser("regress", help="compare a run with golden run NAME; exit 1 on a regression"))
    g.add_argument("name")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--run", help="another recorded run")
    src.add_argument("--images", nargs="+", help="screenshots (globs), in order")
    g.add_argument("--seed", type=int, help="sim: world seed (default: the golden run's)")
    g.add_argument("--defect", help="sim: inject this defect (see edge_vla/sim/defects.py)")
    g.add_argument("--defect-at", type=float, default=0.5)
    g.add_argument("--publish", action="store_true", help="publish regressions on P/events (mqtt settings)")
    g.add_argument("--all-steps", action="store_true", help="list unchanged steps too")
    g.add_argument("--no-read", action="store_true", help="compare pixels only, not what the text lines say")
    g.add_argument("--local", action="store_true", help="read the golden run from this device's database, "
                   "even with memory.fleet_uri")
    g.set_defaults(func=cmd_regress)

    y = common(msub.add_parser("sync", help="ship queued keyframes and golden runs to the fleet store "
                                            "(memory.fleet_uri); exit 4 when it is unreachable"))
    y.add_argument("--follow", action="store_true", help="keep shipping until SIGTERM (what the daemon's thread does)")
    y.add_argument("--poll", type=float, default=0.5, help="--follow: seconds between looks at an empty outbox")
    y.set_defaults(func=cmd_sync)
