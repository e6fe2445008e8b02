"""The fleet store: golden runs and devices' keyframes in a shared Qdrant database (qdrant-client).

``FleetStore`` answers the same calls as ``MemoryStore`` that golden runs, regression and retrieval
use (create_run, write_batch, run_info, run_frames, frame_vector, frame_tiles, frame_text, thumb, knn,
count, stats), so ``GoldenRun.load(fleet, name)`` works on any device. It talks to a Qdrant server
(``http(s)://``) or to qdrant-client's local mode (a folder or ``:memory:``) through the same code.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import structlog

from .embed import FRAME_DIM, tiles_from_bytes, tiles_to_bytes
from .store import ActionRecord, FrameRecord, Hit, MemoryStoreError

log = structlog.get_logger(__name__)

FLEET_EXTRA = "pip install 'edge-vla[fleet]'"


class FleetStoreError(MemoryStoreError):
    """The fleet store refused a request (bad key, bad request, missing run): retrying will not help."""


class FleetUnavailable(FleetStoreError):
    """The fleet store did not answer (timeouts, 5xx, cut connections) after the configured retries."""


def point_id(*parts: object) -> int:
    """A stable 63-bit id from ``parts``: the same frame always gets the same id, so a resent
    upsert overwrites itself (idempotent) instead of adding a copy."""
    h = hashlib.blake2b("\x00".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") >> 1


def golden_point_id(run: str, stream: str, seq: int) -> int:
    # golden run names are fleet-wide: a run recorded again under the same name replaces it
    return point_id("golden", run, stream, seq)


def live_point_id(device: str, epoch: str, local_id: int) -> int:
    # epoch: the local database's creation stamp, so a new local file never reuses old ids
    return point_id("live", device, epoch, local_id)


@dataclass
class FleetFrame:
    """One frame as the fleet store holds it (built from a FrameRecord or a local database row)."""

    id: int
    vector: np.ndarray
    payload: dict[str, Any]


@dataclass
class FleetStats:
    calls: int = 0
    retries: int = 0
    failures: int = 0
    upserted: int = 0
    bytes_sent: int = 0  # JSON payload + vector bytes of upserted points (what a server would receive)
    by_call: dict[str, int] = field(default_factory=dict)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def frame_payload(*, device: str, stream: str, seq: int, ts: float, kind: str, run: str | None, width: int,
                  height: int, instruction: str | None, tiles: bytes, thumb: bytes | None, thumb_fmt: str,
                  thumb_size: tuple[int, int], text: str | None, actions: list[dict],
                  local_id: int | None = None) -> dict[str, Any]:
    return {"device": device, "stream": stream, "seq": int(seq), "ts": float(ts), "kind": kind, "run": run,
            "width": int(width), "height": int(height), "instruction": instruction, "tiles": _b64(tiles),
            "thumb": _b64(thumb), "thumb_fmt": thumb_fmt, "thumb_size": list(thumb_size),
            "text": text, "actions": actions, "local_id": local_id}


def _transient(exc: BaseException) -> bool:
    """Errors worth another try: the network, timeouts, a server that answered 5xx or 429."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429
    if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError, OSError)):
        return True
    try:
        import httpx

        return isinstance(exc, httpx.TransportError)
    except ImportError:  # pragma: no cover
        return False


def make_client(uri: str, *, api_key: str | None = None, ca_file: Path | None = None, timeout_s: float = 5.0):
    """A QdrantClient for ``uri``: http(s)://HOST:PORT (server), ``:memory:``, or a folder (local mode)."""
    try:
        from qdrant_client import QdrantClient
    except ImportError:
        raise FleetStoreError(f"memory.fleet_uri is set but qdrant-client is not installed ({FLEET_EXTRA})") from None
    if uri.startswith(("http://", "https://")):
        kwargs: dict[str, Any] = {}
        if ca_file is not None:
            if not Path(ca_file).exists():
                raise FleetStoreError(f"fleet store: CA file {ca_file} does not exist")
            kwargs["verify"] = ssl.create_default_context(cafile=str(ca_file))
        if api_key and uri.startswith("http://"):
            log.warning("fleet.insecure_api_key", uri=uri)
        # check_compatibility would ask the server at construction: a device that starts while the
        # fleet store is down must still start
        return QdrantClient(url=uri, api_key=api_key or None, timeout=max(1, math.ceil(timeout_s)),
                            check_compatibility=False, **kwargs)
    if uri == ":memory:":
        return QdrantClient(location=":memory:")
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    Path(path).mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=path)
    except RuntimeError as exc:  # local mode: one process per folder (portalocker)
        raise FleetStoreError(f"fleet store {uri}: {exc}") from None


class FleetStore:
    """Golden runs and keyframes in two Qdrant collections: PREFIX_frames (256-d cosine) and PREFIX_runs."""

    def __init__(self, uri: str, *, device_id: str, api_key: str | None = None, ca_file: Path | None = None,
                 collection: str = "edge_vla", timeout_s: float = 5.0, retries: int = 2,
                 client: Any = None, sleep: Callable[[float], None] = time.sleep):
        self.uri = uri
        self.device_id = device_id
        self.frames_col = f"{collection}_frames"
        self.runs_col = f"{collection}_runs"
        self.retries = retries
        self.timeout_s = timeout_s
        self.local = not uri.startswith(("http://", "https://"))
        self.stats_ = FleetStats()
        self._sleep = sleep
        self._ready = False
        self._cache: dict[int, tuple[np.ndarray, dict]] = {}  # run_frames' points, for the per-frame reads
        self.client = client if client is not None else make_client(uri, api_key=api_key, ca_file=ca_file,
                                                                    timeout_s=timeout_s)

    # -- plumbing ------------------------------------------------------------------------------
    def call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn`` with retries on transient errors (exponential, 0.2 s doubling); FleetUnavailable after."""
        self.stats_.calls += 1
        self.stats_.by_call[name] = self.stats_.by_call.get(name, 0) + 1
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if isinstance(exc, FleetStoreError):
                    raise
                if not _transient(exc):
                    raise FleetStoreError(f"fleet store {self.uri}: {name} refused: {type(exc).__name__}: "
                                          f"{str(exc)[:300]}") from None
                if attempt == self.retries:
                    self.stats_.failures += 1
                    raise FleetUnavailable(f"fleet store {self.uri}: {name} failed after {attempt + 1} tries: "
                                           f"{type(exc).__name__}: {str(exc)[:200]}") from None
                self.stats_.retries += 1
                log.info("fleet.retry", call=name, attempt=attempt + 1, error=f"{type(exc).__name__}: {str(exc)[:120]}")
                self._sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _has(self, col: str) -> bool:
        return bool(self.call("collection_exists", self.client.collection_exists, col))

    def ensure(self) -> None:
        """Create the collections (and, on a server, the payload indexes filters use) if missing."""
        if self._ready:
            return
        from qdrant_client.http import models as m

        for col, size in ((self.frames_col, FRAME_DIM), (self.runs_col, 1)):
            if not self._has(col):
                try:
                    self.call("create_collection", self.client.create_collection, col,
                              vectors_config=m.VectorParams(size=size, distance=m.Distance.COSINE))
                except FleetStoreError:
                    if not self._has(col):  # another device created it at the same moment
                        raise
                if not self.local and col == self.frames_col:  # local mode ignores indexes (and warns)
                    for key, schema in (("run", m.PayloadSchemaType.KEYWORD), ("device", m.PayloadSchemaType.KEYWORD),
                                        ("kind", m.PayloadSchemaType.KEYWORD), ("stream", m.PayloadSchemaType.KEYWORD),
                                        ("ts", m.PayloadSchemaType.FLOAT)):
                        self.call("create_payload_index", self.client.create_payload_index, col, key, schema)
        self._ready = True

    @staticmethod
    def _filter(**eq: Any):
        from qdrant_client.http import models as m

        must = [m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in eq.items() if v is not None]
        return m.Filter(must=must) if must else None

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass

    def __enter__(self) -> "FleetStore":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- writes ------------------------------------------------------------------------------
    def upsert(self, frames: Sequence[FleetFrame]) -> None:
        """Write points (same id: overwritten, so a resend after a crash adds nothing)."""
        if not frames:
            return
        from qdrant_client.http import models as m

        self.ensure()
        points = [m.PointStruct(id=f.id, vector=np.asarray(f.vector, np.float32).tolist(), payload=f.payload)
                  for f in frames]
        self.call("upsert", self.client.upsert, self.frames_col, points=points, wait=True)
        self.stats_.upserted += len(points)
        self.stats_.bytes_sent += sum(len(json.dumps(f.payload, separators=(",", ":"))) + 4 * FRAME_DIM + 8
                                      for f in frames)

    def put_run(self, name: str, stream: str, width: int, height: int, info: dict | None = None,
                created: float | None = None, device: str | None = None) -> None:
        from qdrant_client.http import models as m

        self.ensure()
        payload = {"name": name, "stream": stream, "created": created or time.time(), "width": width,
                   "height": height, "info": info or {}, "device": device or self.device_id}
        self.call("upsert_run", self.client.upsert, self.runs_col,
                  points=[m.PointStruct(id=point_id("run", name), vector=[1.0], payload=payload)], wait=True)

    def create_run(self, name: str, stream: str, width: int, height: int, info: dict | None = None,
                   replace: bool = False) -> None:
        self.ensure()
        if self._run_payload(name) is not None:
            if not replace:
                raise FleetStoreError(f"golden run {name!r} exists already in the fleet store (use --replace)")
            self.delete_run(name)
        self.put_run(name, stream, width, height, info)

    def delete_run(self, name: str) -> None:
        from qdrant_client.http import models as m

        self.ensure()
        self.call("delete_frames", self.client.delete, self.frames_col,
                  points_selector=m.FilterSelector(filter=self._filter(run=name)), wait=True)
        self.call("delete_run", self.client.delete, self.runs_col,
                  points_selector=m.PointIdsList(points=[point_id("run", name)]), wait=True)

    def write_batch(self, frames: Sequence[FrameRecord], actions: Sequence[ActionRecord] = (),
                    verdicts: Sequence[tuple[str, str]] = (),
                    seq_ids: dict[tuple[str, int], int] | None = None,
                    outbox: Sequence[bool] | None = None) -> list[int]:
        """``MemoryStore.write_batch`` for the fleet store (``outbox`` has no meaning here): golden frames get golden ids, live ones
        ids from (device, stream, seq, ts); actions travel inside their frame's payload."""
        seq_ids = {} if seq_ids is None else seq_ids
        verdict_of = dict(verdicts)
        by_seq: dict[tuple[str, int], list[dict]] = {}
        late: list[ActionRecord] = []
        in_batch = {(f.stream, f.seq) for f in frames}
        for a in actions:
            act = dict(a.action)
            if a.id in verdict_of:
                act["verdict"] = verdict_of.pop(a.id)
            if (a.stream, a.seq) in in_batch:
                by_seq.setdefault((a.stream, a.seq), []).append(act)
            else:
                late.append(ActionRecord(a.id, a.stream, a.seq, a.ts, act, a.frame_id))
        out, ids = [], []
        for f in frames:
            fid = golden_point_id(f.run, f.stream, f.seq) if f.run else point_id("live", self.device_id, f.stream,
                                                                                  f.seq, repr(f.ts))
            text = None if f.text is None else json.dumps([[*b, t, c] for b, t, c in f.text], separators=(",", ":"))
            out.append(FleetFrame(fid, f.embedding.frame, frame_payload(
                device=self.device_id, stream=f.stream, seq=f.seq, ts=f.ts, kind=f.kind, run=f.run, width=f.width,
                height=f.height, instruction=f.instruction, tiles=tiles_to_bytes(f.embedding.tiles), thumb=f.thumb,
                thumb_fmt=f.thumb_fmt, thumb_size=f.thumb_size, text=text,
                actions=by_seq.get((f.stream, f.seq), []))))
            ids.append(fid)
            seq_ids[(f.stream, f.seq)] = fid
        self.upsert(out)
        for a in late:  # an action on a frame written in an earlier batch
            fid = a.frame_id if a.frame_id is not None else seq_ids.get((a.stream, a.seq))
            if fid is not None:
                self._add_actions(fid, [a.action])
        return ids

    def _add_actions(self, fid: int, acts: list[dict]) -> None:
        got = self.call("retrieve", self.client.retrieve, self.frames_col, [fid], with_payload=["actions"])
        if got:
            self.call("set_payload", self.client.set_payload, self.frames_col,
                      payload={"actions": (got[0].payload or {}).get("actions", []) + acts}, points=[fid], wait=True)

    # -- reads ---------------------------------------------------------------------------------
    def _run_payload(self, name: str) -> dict | None:
        if not self._has(self.runs_col):
            return None
        got = self.call("retrieve_run", self.client.retrieve, self.runs_col, [point_id("run", name)],
                        with_payload=True)
        return dict(got[0].payload) if got else None

    def runs(self) -> list[str]:
        if not self._has(self.runs_col):
            return []
        pts, _ = self.call("scroll_runs", self.client.scroll, self.runs_col, limit=10_000, with_payload=["name", "created"])
        return [p.payload["name"] for p in sorted(pts, key=lambda p: p.payload.get("created", 0))]

    def run_info(self, name: str) -> dict[str, Any]:
        p = self._run_payload(name)
        if p is None:
            raise FleetStoreError(f"no golden run {name!r} in the fleet store {self.uri}; known: "
                                  f"{', '.join(self.runs()) or 'none'}")
        return {k: p.get(k) for k in ("name", "stream", "created", "width", "height", "info", "device")}

    def scroll(self, flt=None, with_vectors: bool = False, page: int = 256, payload: Any = True) -> list:
        if not self._has(self.frames_col):
            return []
        out, offset = [], None
        while True:
            pts, offset = self.call("scroll", self.client.scroll, self.frames_col, scroll_filter=flt, limit=page,
                                    offset=offset, with_payload=payload, with_vectors=with_vectors)
            out += pts
            if offset is None:
                return out

    def _hit(self, pid: int, p: dict, distance: float = 0.0) -> Hit:
        return Hit(frame_id=int(pid), stream=p["stream"], ts=p["ts"], kind=p["kind"], distance=distance,
                   thumb=int(pid) if p.get("thumb") else None, seq=p.get("seq", -1), run=p.get("run"),
                   instruction=p.get("instruction"), actions=list(p.get("actions") or []))

    def run_frames(self, name: str) -> list[Hit]:
        """The run's frames in time order; their vectors and payloads stay cached for the per-frame reads."""
        pts = self.scroll(self._filter(run=name), with_vectors=True)
        pts.sort(key=lambda p: (p.payload["ts"], p.payload.get("seq", 0)))
        for p in pts:
            self._cache[int(p.id)] = (np.asarray(p.vector, np.float32), p.payload)
        return [self._hit(p.id, p.payload) for p in pts]

    def _point(self, fid: int) -> tuple[np.ndarray, dict]:
        if fid not in self._cache:
            got = self.call("retrieve", self.client.retrieve, self.frames_col, [fid], with_payload=True,
                            with_vectors=True) if self._has(self.frames_col) else []
            if not got:
                raise KeyError(fid)
            self._cache[fid] = (np.asarray(got[0].vector, np.float32), got[0].payload)
        return self._cache[fid]

    def frame_vector(self, frame_id: int) -> np.ndarray:
        return self._point(frame_id)[0].copy()

    def frame_tiles(self, frame_id: int) -> np.ndarray:
        return tiles_from_bytes(base64.b64decode(self._point(frame_id)[1]["tiles"]))

    def frame_text(self, frame_id: int) -> list | None:
        raw = self._point(frame_id)[1].get("text")
        if raw is None:
            return None
        try:
            return [(tuple(int(v) for v in r[:4]), str(r[4]), float(r[5])) for r in json.loads(raw)]
        except (ValueError, TypeError, IndexError) as exc:
            raise FleetStoreError(f"fleet store: frame {frame_id}: bad text layer ({exc})") from None

    def thumb(self, thumb_id: int) -> tuple[str, bytes]:
        p = self._point(thumb_id)[1]
        if not p.get("thumb"):
            raise KeyError(thumb_id)
        return p.get("thumb_fmt", "jpeg"), base64.b64decode(p["thumb"])

    def thumb_image(self, thumb_id: int) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(self.thumb(thumb_id)[1])).convert("RGB"))

    def knn(self, vector: np.ndarray, k: int = 5, stream: str | None = None, t_from: float | None = None,
            t_to: float | None = None, kind: str | None = None, device: str | None = None) -> list[Hit]:
        from qdrant_client.http import models as m

        if not self._has(self.frames_col):
            return []
        flt = self._filter(stream=stream, kind=kind, device=device)
        if t_from is not None or t_to is not None:
            rng = m.FieldCondition(key="ts", range=m.Range(gte=t_from, lte=t_to))
            flt = m.Filter(must=[*(flt.must if flt else []), rng])
        res = self.call("query", self.client.query_points, self.frames_col,
                        query=np.asarray(vector, np.float32).tolist(), query_filter=flt, limit=int(k),
                        with_payload=True)
        return [self._hit(p.id, p.payload, 1.0 - float(p.score)) for p in res.points]

    def count(self, kind: str | None = None, device: str | None = None) -> int:
        if not self._has(self.frames_col):
            return 0
        return int(self.call("count", self.client.count, self.frames_col,
                             count_filter=self._filter(kind=kind, device=device), exact=True).count)

    def ids(self, device: str | None = None, kind: str | None = None) -> list[int]:
        """Every point id (checks: a keyframe stored exactly once)."""
        return [int(p.id) for p in self.scroll(self._filter(device=device, kind=kind), payload=False, page=2048)]

    def stats(self) -> dict[str, Any]:
        return {"uri": self.uri, "frames": self.count(), "golden_frames": self.count("golden"),
                "live_frames": self.count("live"), "runs": self.runs(),
                "calls": self.stats_.calls, "retries": self.stats_.retries, "failures": self.stats_.failures}


def open_fleet(memory, device_id: str, **kwargs: Any) -> FleetStore:
    """The fleet store named by ``memory.fleet_uri`` (MemoryConfig), with its API key and CA."""
    from ..config import fleet_api_key_path

    if not memory.fleet_uri:
        raise FleetStoreError("memory.fleet_uri is not set (no fleet store configured)")
    key = None
    key_path = fleet_api_key_path(memory)
    if key_path is not None:
        try:
            key = Path(key_path).read_text().strip()
        except OSError as exc:
            raise FleetStoreError(f"fleet store API key file {key_path}: {exc.strerror}") from None
        if not key:
            raise FleetStoreError(f"fleet store API key file {key_path} is empty")
    return FleetStore(memory.fleet_uri, device_id=device_id, api_key=key, ca_file=memory.fleet_ca_file,
                      collection=memory.fleet_collection, timeout_s=memory.fleet_timeout_s,
                      retries=memory.fleet_retries, **kwargs)
