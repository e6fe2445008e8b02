"""The visual memory database: SQLite + sqlite-vec ``vec0`` through apsw.

Layout (schema version ``SCHEMA_VERSION``, ``PRAGMA user_version``; the file is
marked ``PRAGMA application_id = APPLICATION_ID`` so a foreign database is
recognised, never migrated):

- ``frame_vec`` (vec0): one frame vector per stored frame; ``stream`` is the
  partition key, ``ts`` and ``kind`` are metadata columns (filtered inside the
  KNN), ``thumb`` is an auxiliary column holding the thumbnail's row id.
- ``frames``: the plain index of the same rows (stream, seq, ts, kind, run,
  tile embeddings as uint8) for time-range queries and retention.
- ``thumbs``: JPEG (live) or PNG (golden reference) thumbnails.
- ``actions``: the actions taken on frames and their verdicts (feedback).
- ``runs``: golden runs (v2); ``frames.text``: a golden frame's text lines (v3).
- ``outbox``: frames waiting for (``sent`` NULL) or shipped to the fleet store (v4, ``memory.sync``).

The stdlib ``sqlite3`` often cannot load extensions (see FIELD-NOTES), so this
uses apsw. Every insert is checked (``changes() == 1``) and the last vector of
each batch is read back and compared, so a broken vec0 fails loudly.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import apsw
import numpy as np
import sqlite_vec

from .embed import FRAME_DIM, Embedding, tiles_from_bytes, tiles_to_bytes

SCHEMA_VERSION = 4
APPLICATION_ID = 0x45564C41  # "EVLA"
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_VEC_VERSION = "v0.1.9"  # pinned in pyproject; a different one must be re-checked first


class MemoryStoreError(Exception):
    """The memory database cannot be used; the message says why and what to do."""


class CorruptDatabase(MemoryStoreError):
    pass


class ForeignDatabase(MemoryStoreError):
    pass


class NewerSchema(MemoryStoreError):
    pass


class WriteFailed(MemoryStoreError):
    pass


# -- schema ------------------------------------------------------------------------------------

_V1 = [
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE frames(
        id INTEGER PRIMARY KEY, stream TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL,
        kind TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, instruction TEXT,
        tiles BLOB NOT NULL, thumb INTEGER)""",
    "CREATE INDEX frames_stream_ts ON frames(stream, ts)",
    "CREATE INDEX frames_kind_ts ON frames(kind, ts)",
    f"""CREATE VIRTUAL TABLE frame_vec USING vec0(
        frame_id INTEGER PRIMARY KEY, stream TEXT PARTITION KEY,
        embedding float32[{FRAME_DIM}] distance_metric=cosine,
        ts FLOAT, kind TEXT, +thumb INTEGER)""",
    "CREATE TABLE thumbs(id INTEGER PRIMARY KEY, fmt TEXT NOT NULL, width INTEGER, height INTEGER, data BLOB NOT NULL)",
    """CREATE TABLE actions(id TEXT PRIMARY KEY, frame_id INTEGER, stream TEXT NOT NULL, ts REAL NOT NULL,
        action TEXT NOT NULL)""",
    "CREATE INDEX actions_frame ON actions(frame_id)",
]

# Migration i takes a database from version i + 1 to i + 2.
_MIGRATIONS: list[list[str]] = [
    [  # 1 -> 2: golden runs, verdicts on actions
        """CREATE TABLE runs(name TEXT PRIMARY KEY, stream TEXT NOT NULL, created REAL NOT NULL,
            width INTEGER, height INTEGER, info TEXT NOT NULL DEFAULT '{}')""",
        "ALTER TABLE frames ADD COLUMN run TEXT",
        "CREATE INDEX frames_run ON frames(run, ts)",
        "ALTER TABLE actions ADD COLUMN verdict TEXT",
    ],
    [  # 2 -> 3: a golden frame's text lines (JSON [[x0, y0, x1, y1, text, conf], ...], 0..1000 boxes)
        "ALTER TABLE frames ADD COLUMN text TEXT",
    ],
    [  # 3 -> 4: the fleet outbox: a row is written in the same transaction as its frame, so a crash
       # can lose neither; ``sent`` is set once the fleet store acknowledged the frame
        "CREATE TABLE outbox(frame_id INTEGER PRIMARY KEY, queued REAL NOT NULL, sent REAL)",
        "CREATE INDEX outbox_unsent ON outbox(sent, frame_id)",
    ],
]


@dataclass
class FrameRecord:
    """One frame to write (built by the ingest thread from a Frame and its embedding)."""

    stream: str
    seq: int
    ts: float
    width: int
    height: int
    embedding: Embedding
    kind: str = "live"
    run: str | None = None
    instruction: str | None = None
    thumb: bytes | None = None
    thumb_fmt: str = "jpeg"
    thumb_size: tuple[int, int] = (0, 0)
    text: list | None = None  # golden frames read at record time: [(box 0..1000, text, confidence), ...]


@dataclass
class ActionRecord:
    id: str
    stream: str
    seq: int  # the frame's seq: resolved to its frame id at write time
    ts: float
    action: dict
    frame_id: int | None = None


@dataclass
class Hit:
    frame_id: int
    stream: str
    ts: float
    kind: str
    distance: float
    thumb: int | None
    seq: int = -1
    run: str | None = None
    instruction: str | None = None
    actions: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"frame_id": self.frame_id, "stream": self.stream, "ts": self.ts, "kind": self.kind,
                "distance": round(self.distance, 5), "thumb": self.thumb, "seq": self.seq, "run": self.run,
                "instruction": self.instruction, "actions": self.actions}


def _load_vec(conn: apsw.Connection) -> None:
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    conn.enable_load_extension(False)


def _check_header(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise MemoryStoreError(f"memory database {path}: cannot read: {exc.strerror}") from None
    if head and head != SQLITE_MAGIC:
        raise ForeignDatabase(f"memory database {path}: not a SQLite database (wrong header); "
                              "move it away or set memory.path to another file")


class MemoryStore:
    """One connection; not shared between threads (the ingest owns its own)."""

    def __init__(self, path: str | Path, *, readonly: bool = False, check: bool = True,
                 vfs: str | None = None):
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.exists():
            raise MemoryStoreError(f"memory database {self.path}: no such file")
        _check_header(self.path)
        flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        try:
            self.conn = apsw.Connection(str(self.path), flags=flags, vfs=vfs) if vfs else \
                apsw.Connection(str(self.path), flags=flags)
            self.conn.set_busy_timeout(5000)
            _load_vec(self.conn)
            self._open(check)
        except apsw.NotADBError as exc:
            raise ForeignDatabase(f"memory database {self.path}: not a SQLite database ({exc})") from None
        except apsw.CorruptError as exc:
            raise CorruptDatabase(f"memory database {self.path}: corrupt ({exc}); move it away to start a new one") from None
        except (apsw.FullError, apsw.IOError, apsw.CantOpenError, apsw.ReadOnlyError) as exc:
            raise MemoryStoreError(f"memory database {self.path}: {type(exc).__name__}: {exc}") from None

    # -- opening, checks, migrations -------------------------------------------------------
    def _one(self, sql: str, args: Sequence = ()) -> Any:
        row = self.conn.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def _open(self, check: bool) -> None:
        version = self._one("SELECT vec_version()")
        if version != SQLITE_VEC_VERSION:
            raise MemoryStoreError(f"sqlite-vec {version} is loaded; edge-vla is checked against "
                                   f"{SQLITE_VEC_VERSION} only (pin it: sqlite-vec==0.1.9)")
        app = self._one("PRAGMA application_id")
        user = self._one("PRAGMA user_version")
        tables = [r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        if app not in (0, APPLICATION_ID) or (app == 0 and tables):
            raise ForeignDatabase(f"memory database {self.path}: not an edge-vla memory database "
                                  f"(application_id {app:#x}, tables {', '.join(tables[:5]) or 'none'}); "
                                  "set memory.path to another file")
        if user > SCHEMA_VERSION:
            raise NewerSchema(f"memory database {self.path}: schema version {user} is newer than this "
                              f"edge-vla understands ({SCHEMA_VERSION}); upgrade edge-vla or use another file")
        if check and tables:
            result = self._one("PRAGMA quick_check")
            if result != "ok":
                raise CorruptDatabase(f"memory database {self.path}: integrity check failed: {result}")
        if self.readonly:
            if user != SCHEMA_VERSION:
                raise MemoryStoreError(f"memory database {self.path}: schema version {user}; open it "
                                       "read-write once to migrate it")
            return
        mode = self._one("PRAGMA journal_mode=WAL")
        if mode != "wal":
            raise MemoryStoreError(f"memory database {self.path}: cannot switch to WAL (got {mode})")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process crash loses nothing committed
        if user == 0:
            with self.conn:
                for sql in _V1:
                    self.conn.execute(sql)
                self.conn.execute("PRAGMA application_id=%d" % APPLICATION_ID)
                self.conn.execute("INSERT INTO meta VALUES('created', ?)", (str(time.time()),))
                self.conn.execute("PRAGMA user_version=1")
            user = 1
        self.migrate(user)

    def migrate(self, current: int) -> None:
        while current < SCHEMA_VERSION:
            with self.conn:  # each step is one transaction: a crash leaves the old version intact
                for sql in _MIGRATIONS[current - 1]:
                    self.conn.execute(sql)
                current += 1
                self.conn.execute("PRAGMA user_version=%d" % current)

    @property
    def schema_version(self) -> int:
        return int(self._one("PRAGMA user_version"))

    def close(self) -> None:
        try:
            self.conn.close()
        except apsw.Error:
            pass

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- writes ------------------------------------------------------------------------------
    def _exec_one(self, sql: str, args: Sequence) -> None:
        self.conn.execute(sql, args)
        if self.conn.changes() != 1:
            raise WriteFailed(f"memory database {self.path}: write did not take effect: {sql.split('(')[0]}")

    def write_batch(self, frames: Sequence[FrameRecord], actions: Sequence[ActionRecord] = (),
                    verdicts: Sequence[tuple[str, str]] = (),
                    seq_ids: dict[tuple[str, int], int] | None = None,
                    outbox: Sequence[bool] | None = None) -> list[int]:
        """One transaction: frames, then actions (linked by (stream, seq)), then verdicts; frames whose
        ``outbox`` flag is set are queued for the fleet store in the same transaction."""
        ids: list[int] = []
        seq_ids = {} if seq_ids is None else seq_ids
        try:
            with self.conn:
                last: tuple[int, bytes] | None = None
                for f in frames:
                    thumb_id = None
                    if f.thumb:
                        self._exec_one("INSERT INTO thumbs(fmt, width, height, data) VALUES(?,?,?,?)",
                                       (f.thumb_fmt, f.thumb_size[0], f.thumb_size[1], f.thumb))
                        thumb_id = self.conn.last_insert_rowid()
                    self._exec_one(
                        "INSERT INTO frames(stream, seq, ts, kind, width, height, instruction, tiles, thumb, run, text)"
                        " VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                        (f.stream, f.seq, f.ts, f.kind, f.width, f.height, f.instruction,
                         tiles_to_bytes(f.embedding.tiles), thumb_id, f.run,
                         None if f.text is None else json.dumps([[*b, t, c] for b, t, c in f.text], separators=(",", ":"))))
                    fid = self.conn.last_insert_rowid()
                    vec = f.embedding.frame.astype(np.float32).tobytes()
                    self._exec_one("INSERT INTO frame_vec(frame_id, stream, embedding, ts, kind, thumb)"
                                   " VALUES(?,?,?,?,?,?)", (fid, f.stream, vec, float(f.ts), f.kind, thumb_id))
                    ids.append(fid)
                    seq_ids[(f.stream, f.seq)] = fid
                    if outbox is not None and outbox[len(ids) - 1]:
                        self._exec_one("INSERT INTO outbox(frame_id, queued) VALUES(?, ?)", (fid, time.time()))
                    last = (fid, vec)
                if last is not None:  # read back: a vec0 that silently drops or mangles rows fails here
                    got = self._one("SELECT embedding FROM frame_vec WHERE frame_id = ?", (last[0],))
                    if got != last[1]:
                        raise WriteFailed(f"memory database {self.path}: vector read back differs from "
                                          "the one written (sqlite-vec problem); memory disabled")
                for a in actions:
                    fid = a.frame_id if a.frame_id is not None else seq_ids.get((a.stream, a.seq))
                    self._exec_one("INSERT OR REPLACE INTO actions(id, frame_id, stream, ts, action) VALUES(?,?,?,?,?)",
                                   (a.id, fid, a.stream, a.ts, json.dumps(a.action, separators=(",", ":"))))
                for action_id, verdict in verdicts:
                    self.conn.execute("UPDATE actions SET verdict = ? WHERE id = ?", (verdict, action_id))
        except apsw.FullError as exc:
            raise WriteFailed(f"memory database {self.path}: disk full ({exc})") from None
        except (apsw.IOError, apsw.ReadOnlyError, apsw.CorruptError) as exc:
            raise WriteFailed(f"memory database {self.path}: write failed: {type(exc).__name__}: {exc}") from None
        return ids

    # -- the fleet outbox (memory.sync) ----------------------------------------------------------
    @property
    def epoch(self) -> str:
        """This database's creation stamp: part of its frames' fleet ids, so a new file never reuses them."""
        return str(self._one("SELECT value FROM meta WHERE key = 'created'"))

    def outbox_pending(self, limit: int) -> list[int]:
        return [r[0] for r in self.conn.execute(
            "SELECT frame_id FROM outbox WHERE sent IS NULL ORDER BY frame_id LIMIT ?", (int(limit),))]

    def outbox_counts(self) -> dict[str, int]:
        return {"pending": int(self._one("SELECT count(*) FROM outbox WHERE sent IS NULL")),
                "sent": int(self._one("SELECT count(*) FROM outbox WHERE sent IS NOT NULL"))}

    def outbox_sent(self, frame_ids: Sequence[int], when: float | None = None) -> None:
        when = time.time() if when is None else when
        with self.conn:
            for fid in frame_ids:
                self.conn.execute("UPDATE outbox SET sent = ? WHERE frame_id = ?", (when, fid))

    def outbox_forget(self, frame_ids: Sequence[int]) -> None:
        with self.conn:
            for fid in frame_ids:
                self.conn.execute("DELETE FROM outbox WHERE frame_id = ?", (fid,))

    def outbox_queue(self, frame_ids: Sequence[int]) -> None:
        """(Re)queue frames for the fleet store (a promoted run)."""
        with self.conn:
            for fid in frame_ids:
                self.conn.execute("INSERT OR REPLACE INTO outbox(frame_id, queued, sent) VALUES(?, ?, NULL)",
                                  (fid, time.time()))

    def outbox_trim(self, max_pending: int) -> int:
        """Drop the oldest unsent live frames beyond ``max_pending`` (golden frames are never dropped)."""
        excess = int(self._one("SELECT count(*) FROM outbox WHERE sent IS NULL")) - max_pending
        if excess <= 0:
            return 0
        with self.conn:
            self.conn.execute(
                "DELETE FROM outbox WHERE frame_id IN (SELECT o.frame_id FROM outbox o JOIN frames f ON f.id = o.frame_id"
                " WHERE o.sent IS NULL AND f.kind = 'live' ORDER BY o.frame_id LIMIT ?)", (excess,))
            return self.conn.changes()

    def fleet_rows(self, frame_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Everything the fleet store keeps of these frames (missing ones are left out)."""
        out = []
        for fid in frame_ids:
            row = self.conn.execute(
                "SELECT f.id, f.stream, f.seq, f.ts, f.kind, f.width, f.height, f.instruction, f.tiles, f.run, f.text,"
                " t.fmt, t.width, t.height, t.data, v.embedding FROM frames f LEFT JOIN thumbs t ON t.id = f.thumb"
                " JOIN frame_vec v ON v.frame_id = f.id WHERE f.id = ?", (fid,)).fetchone()
            if row is None:
                continue
            (i, stream, seq, ts, kind, w, h, instr, tiles, run, text, fmt, tw, th, data, emb) = row
            out.append({"id": i, "stream": stream, "seq": seq, "ts": ts, "kind": kind, "width": w, "height": h,
                        "instruction": instr, "tiles": tiles, "run": run, "text": text, "thumb_fmt": fmt or "jpeg",
                        "thumb_size": (tw or 0, th or 0), "thumb": data, "vector": np.frombuffer(emb, np.float32),
                        "actions": self.actions_of(i)})
        return out

    # -- retention -----------------------------------------------------------------------------
    def used_bytes(self) -> int:
        pages = self._one("PRAGMA page_count")
        free = self._one("PRAGMA freelist_count")
        return int((pages - free) * self._one("PRAGMA page_size"))

    def delete_frames(self, ids: Iterable[int]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        with self.conn:
            for fid in ids:
                row = self.conn.execute("SELECT thumb FROM frames WHERE id = ?", (fid,)).fetchone()
                if row is None:
                    continue
                if row[0] is not None:
                    self.conn.execute("DELETE FROM thumbs WHERE id = ?", (row[0],))
                self.conn.execute("DELETE FROM frame_vec WHERE frame_id = ?", (fid,))
                self.conn.execute("DELETE FROM actions WHERE frame_id = ?", (fid,))
                self.conn.execute("DELETE FROM outbox WHERE frame_id = ?", (fid,))
                self.conn.execute("DELETE FROM frames WHERE id = ?", (fid,))
        return len(ids)

    def retain(self, max_age_s: float | None, max_bytes: int | None, now: float | None = None,
               chunk: int = 500) -> int:
        """Delete live frames older than ``max_age_s``, then the oldest until under ``max_bytes``.

        Golden frames are never deleted by retention.
        """
        now = time.time() if now is None else now
        deleted = 0
        if max_age_s is not None:
            while True:
                ids = [r[0] for r in self.conn.execute(
                    "SELECT id FROM frames WHERE kind = 'live' AND ts < ? ORDER BY ts LIMIT ?",
                    (now - max_age_s, chunk))]
                if not ids:
                    break
                deleted += self.delete_frames(ids)
        if max_bytes is not None:
            while self.used_bytes() > max_bytes:
                ids = [r[0] for r in self.conn.execute(
                    "SELECT id FROM frames WHERE kind = 'live' ORDER BY ts LIMIT ?", (chunk // 5 or 1,))]
                if not ids:
                    break
                deleted += self.delete_frames(ids)
        return deleted

    # -- reads ---------------------------------------------------------------------------------
    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self._one("SELECT count(*) FROM frames"))
        return int(self._one("SELECT count(*) FROM frames WHERE kind = ?", (kind,)))

    def stats(self) -> dict[str, Any]:
        streams = {r[0]: {"frames": r[1], "first_ts": r[2], "last_ts": r[3]} for r in self.conn.execute(
            "SELECT stream, count(*), min(ts), max(ts) FROM frames GROUP BY stream")}
        size = sum(p.stat().st_size for p in (self.path, Path(str(self.path) + "-wal")) if p.exists())
        n = self.count()
        return {"path": str(self.path), "schema_version": self.schema_version, "frames": n,
                "golden_frames": self.count("golden"), "actions": int(self._one("SELECT count(*) FROM actions")),
                "runs": [r[0] for r in self.conn.execute("SELECT name FROM runs ORDER BY created")],
                "streams": streams, "file_bytes": size, "used_bytes": self.used_bytes(),
                "bytes_per_frame": round(self.used_bytes() / n, 1) if n else None}

    def knn(self, vector: np.ndarray, k: int = 5, stream: str | None = None, t_from: float | None = None,
            t_to: float | None = None, kind: str | None = None) -> list[Hit]:
        where, args = ["embedding MATCH ?", "k = ?"], [np.asarray(vector, np.float32).tobytes(), int(k)]
        if stream is not None:
            where.append("stream = ?")
            args.append(stream)
        if t_from is not None:
            where.append("ts >= ?")
            args.append(float(t_from))
        if t_to is not None:
            where.append("ts <= ?")
            args.append(float(t_to))
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        rows = list(self.conn.execute(
            f"SELECT frame_id, stream, ts, kind, distance, thumb FROM frame_vec WHERE {' AND '.join(where)}"
            " ORDER BY distance", args))
        hits = [Hit(*r) for r in rows]
        self._fill(hits)
        return hits

    def _fill(self, hits: list[Hit]) -> None:
        for h in hits:
            row = self.conn.execute("SELECT seq, run, instruction FROM frames WHERE id = ?", (h.frame_id,)).fetchone()
            if row is not None:
                h.seq, h.run, h.instruction = row
            h.actions = self.actions_of(h.frame_id)

    def actions_of(self, frame_id: int) -> list[dict]:
        out = []
        for action, verdict in self.conn.execute(
                "SELECT action, verdict FROM actions WHERE frame_id = ? ORDER BY ts", (frame_id,)):
            a = json.loads(action)
            if verdict is not None:
                a["verdict"] = verdict
            out.append(a)
        return out

    def frames_between(self, stream: str | None, t_from: float | None, t_to: float | None,
                       limit: int = 1000, kind: str | None = None, run: str | None = None) -> list[Hit]:
        where, args = ["1"], []
        for cond, val in (("stream = ?", stream), ("ts >= ?", t_from), ("ts <= ?", t_to), ("kind = ?", kind),
                          ("run = ?", run)):
            if val is not None:
                where.append(cond)
                args.append(val)
        rows = self.conn.execute(
            f"SELECT id, stream, ts, kind, thumb FROM frames WHERE {' AND '.join(where)} ORDER BY ts LIMIT ?",
            (*args, int(limit)))
        hits = [Hit(fid, s, ts, k, 0.0, th) for fid, s, ts, k, th in rows]
        self._fill(hits)
        return hits

    def hit(self, frame_id: int) -> Hit:
        row = self.conn.execute("SELECT id, stream, ts, kind, thumb FROM frames WHERE id = ?", (frame_id,)).fetchone()
        if row is None:
            raise KeyError(frame_id)
        h = Hit(row[0], row[1], row[2], row[3], 0.0, row[4])
        self._fill([h])
        return h

    def frame_vector(self, frame_id: int) -> np.ndarray:
        data = self._one("SELECT embedding FROM frame_vec WHERE frame_id = ?", (frame_id,))
        if data is None:
            raise KeyError(frame_id)
        return np.frombuffer(data, np.float32).copy()

    def frame_tiles(self, frame_id: int) -> np.ndarray:
        data = self._one("SELECT tiles FROM frames WHERE id = ?", (frame_id,))
        if data is None:
            raise KeyError(frame_id)
        return tiles_from_bytes(data)

    def frame_text(self, frame_id: int) -> list | None:
        """The text lines stored with a frame ([(box, text, confidence), ...]); None when it was not read."""
        raw = self._one("SELECT text FROM frames WHERE id = ?", (frame_id,))
        if raw is None:
            return None
        try:
            return [(tuple(int(v) for v in r[:4]), str(r[4]), float(r[5])) for r in json.loads(raw)]
        except (ValueError, TypeError, IndexError) as exc:
            raise MemoryStoreError(f"memory database {self.path}: frame {frame_id}: bad text layer ({exc})") from None

    def thumb(self, thumb_id: int) -> tuple[str, bytes]:
        row = self.conn.execute("SELECT fmt, data FROM thumbs WHERE id = ?", (thumb_id,)).fetchone()
        if row is None:
            raise KeyError(thumb_id)
        return row[0], row[1]

    def thumb_image(self, thumb_id: int) -> np.ndarray:
        from PIL import Image

        _, data = self.thumb(thumb_id)
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    # -- golden runs ---------------------------------------------------------------------------
    def create_run(self, name: str, stream: str, width: int, height: int, info: dict | None = None,
                   replace: bool = False) -> None:
        with self.conn:
            exists = self._one("SELECT count(*) FROM runs WHERE name = ?", (name,))
            if exists and not replace:
                raise MemoryStoreError(f"golden run {name!r} exists already (use --replace)")
            if exists:
                self.delete_run(name)
            self._exec_one("INSERT INTO runs(name, stream, created, width, height, info) VALUES(?,?,?,?,?,?)",
                           (name, stream, time.time(), width, height, json.dumps(info or {})))

    def delete_run(self, name: str) -> None:
        ids = [r[0] for r in self.conn.execute("SELECT id FROM frames WHERE run = ?", (name,))]
        self.delete_frames(ids)
        self.conn.execute("DELETE FROM runs WHERE name = ?", (name,))

    def run_info(self, name: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT name, stream, created, width, height, info FROM runs WHERE name = ?",
                                (name,)).fetchone()
        if row is None:
            known = [r[0] for r in self.conn.execute("SELECT name FROM runs")]
            raise MemoryStoreError(f"no golden run {name!r}; known: {', '.join(known) or 'none'}")
        return {"name": row[0], "stream": row[1], "created": row[2], "width": row[3], "height": row[4],
                "info": json.loads(row[5])}

    def run_frames(self, name: str) -> list[Hit]:
        return self.frames_between(None, None, None, limit=10**9, run=name)

