"""Settings: the only module that reads the environment or the config file.

Precedence (highest first): keyword arguments, ``EDGE_VLA_*`` environment
variables (``__`` separates nesting levels), the TOML file named by ``--config``
or ``EDGE_VLA_CONFIG``, defaults. Unknown keys anywhere are errors.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

if sys.version_info >= (3, 11):
    import tomllib
else:  # JetPack 6 ships Python 3.10
    import tomli as tomllib

ENV_PREFIX = "EDGE_VLA_"
ENV_CONFIG = "EDGE_VLA_CONFIG"
EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus keys on it
# The set-of-marks student we train ourselves (issue 16; models/edge-marks-m3/MODEL_CARD.md says how well it does).
SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "edge-marks-m3"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttConfig(_Section):
    host: str = Field("localhost", description="broker host")
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("edge-vla", min_length=1, pattern=r"^[^#+]+$")
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = Field(False, description="connect with TLS")
    ca_file: Path | None = Field(None, description="CA bundle for TLS; system store when unset")
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(15, ge=2, le=3600)
    action_expiry_s: float = Field(2.0, gt=0, le=2.0, description="message expiry of actions")
    reconnect_min_s: float = Field(0.2, gt=0)
    reconnect_max_s: float = Field(10.0, gt=0)
    client_id: str | None = None


SourceKind = Literal["sim", "file", "camera", "rtsp", "lavfi", "webrtc"]


class SourceConfig(_Section):
    kind: SourceKind = "sim"
    uri: str | None = Field(None, description="file path, rtsp:// URL, /dev/videoN, or lavfi graph")
    stream: str = Field("default", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    realtime: bool = Field(True, description="file sources: pace at the native frame rate")
    loop: bool = Field(False, description="file sources: start again at the end")
    width: int = Field(1280, ge=64, le=7680, description="sim/lavfi/camera frame width")
    height: int = Field(720, ge=64, le=4320, description="sim/lavfi/camera frame height")
    fps: float = Field(30.0, gt=0, le=240)
    seed: int = Field(0, description="sim: world seed")
    task: str | None = Field(None, description="sim: only this task kind (default: every kind in turn)")
    execute: bool = Field(True, description="sim: run the MQTT executor that carries out actions")
    options: dict[str, str] = Field(default_factory=dict, description="extra PyAV/FFmpeg options")
    reconnect_max_s: float = Field(10.0, gt=0, description="live sources: longest backoff")

    @model_validator(mode="after")
    def _uri_when_needed(self) -> "SourceConfig":
        if self.kind in ("file", "rtsp") and not self.uri:
            raise ValueError(f"source.uri is required for source.kind={self.kind}")
        return self


class SamplerConfig(_Section):
    min_fps: float = Field(2.0, gt=0, le=120)
    max_fps: float = Field(10.0, gt=0, le=120)
    motion_low: float = Field(0.002, ge=0, le=1, description="mean abs diff (0..1) treated as still")
    motion_high: float = Field(0.03, ge=0, le=1, description="mean abs diff (0..1) treated as busy")

    @model_validator(mode="after")
    def _ordered(self) -> "SamplerConfig":
        if self.min_fps > self.max_fps:
            raise ValueError("sampler.min_fps must not exceed sampler.max_fps")
        if self.motion_low >= self.motion_high:
            raise ValueError("sampler.motion_low must be below sampler.motion_high")
        return self


class ModelConfig(_Section):
    path: Path = Field(SHIPPED_MODEL, description="model bundle folder")
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    intra_threads: int = Field(2, ge=1, le=64)
    timeout_s: float = Field(5.0, gt=0, description="an inference slower than this is abandoned (a whole new "
                                                    "4K screen is read in about a second on two busy cores)")
    kv_cache: Literal["fp32", "fp16", "int8", "int4"] | None = Field(
        None, description="KV-cache codec for vlm bundles (default: the bundle's manifest)")
    engine_cache_dir: Path | None = Field(
        None, description="TensorRT engine/timing cache folder (systemd: the CacheDirectory); default: in the bundle")
    speculative: bool = Field(False, description="speculative decoding with the bundle's draft model")
    speculate_k: int = Field(4, ge=1, le=16, description="draft tokens proposed per verification step")
    draft_path: Path | None = Field(None, description="draft model folder (default: the bundle's draft/)")
    roi: Literal["auto", "off", "focus"] = Field(
        "auto", description="region of interest: 'focus' encodes a low-res full view + a high-res crop; "
                            "'auto': focus when the bundle's action vocabulary has FOCUS (trained for it)")
    roi_crop_scale: float = Field(0.35, gt=0.05, le=1.0, description="crop side as a fraction of the frame's short side")
    type_text: Literal["instruction", "free"] = Field(
        "instruction", description="what a TYPE action may write: 'instruction': a span of the instruction "
                                   "(the model picks which), 'free': any text the action vocabulary can spell")


class PolicyConfig(_Section):
    kind: str = Field("onnx", description="registered policy name")
    action_deadline_s: float = Field(1.0, gt=0, le=60, description="an action is stale this long after its frame")
    default_instruction: str = "click the highlighted button"
    restart_after_errors: int = Field(5, ge=1, le=1000, description="consecutive inference failures before the model session is reloaded")


class HttpConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    token: SecretStr | None = Field(None, description="bearer token for WHIP")
    token_file: Path | None = Field(None, description="file holding the token (e.g. a systemd credential)")
    cors_origins: list[str] = Field(default_factory=lambda: ["*"], description="origins allowed to publish")
    max_body: int = Field(65536, ge=1024, le=1 << 24, description="largest request body (SDP) in bytes")
    rate_per_s: float = Field(10.0, gt=0, description="WHIP requests per second per client address")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> "HttpConfig":
        loopback = self.host in ("127.0.0.1", "localhost", "::1")
        if self.enabled and not loopback and self.token is None and self.token_file is None:
            raise ValueError("http.token (or http.token_file) is required when http.host is not a loopback address")
        return self

    def bearer_token(self) -> str | None:
        """The WHIP token: ``token``, else the first line of ``token_file``, else None (open)."""
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            return self.token_file.read_text().strip() or None
        return None


class WebRtcConfig(_Section):
    ice_servers: list[str] = Field(default_factory=list, description="STUN/TURN URLs; none by default")
    host_addresses: list[str] | None = Field(
        None, description="addresses for host ICE candidates; unset: every interface but loopback")
    max_peers: int = Field(4, ge=1, le=64, description="concurrent WHIP sessions; more get 503")
    peer_timeout_s: float = Field(5.0, gt=0, description="close a session that sent no frame this long")
    read_timecode: bool = Field(False, description="read the capture time a publisher drew into the frame")


class MemoryConfig(_Section):
    enabled: bool = Field(False, description="store sampled frames (embeddings, thumbnails) and actions")
    path: Path = Field(Path("edge-vla-memory.db"), description="the SQLite + sqlite-vec database file")
    batch_size: int = Field(16, ge=1, le=10_000, description="frames per write transaction")
    flush_interval_s: float = Field(1.0, gt=0, le=60, description="longest a frame waits to be written")
    queue_max: int = Field(256, ge=1, le=100_000, description="frames waiting for the writer; oldest dropped beyond")
    max_age_s: float | None = Field(7 * 86400.0, gt=0, description="live frames older than this are deleted")
    max_bytes: int | None = Field(2 * 1024**3, gt=0, description="database size above which the oldest live frames go")
    retain_every_s: float = Field(60.0, gt=0, description="how often retention runs")
    thumb_width: int = Field(160, ge=0, le=1920, description="live thumbnail width (JPEG); 0: none")
    golden_width: int = Field(640, ge=64, le=3840, description="golden run reference thumbnail width (PNG)")
    record: str | None = Field(None, min_length=1, description="record this run as golden run NAME")
    regress: str | None = Field(None, min_length=1, description="compare the live stream with golden run NAME; "
                                "regressions go to P/events")
    replay_run: str | None = Field(None, min_length=1, description="policy.kind=replay: the golden run to follow")
    read_text: bool = Field(True, description="golden runs store their text lines and regression compares what "
                            "the lines say (OCR in the memory writer thread while recording or regressing)")
    writer_nice: int = Field(10, ge=0, le=19, description="CPU niceness of the memory writer thread")
    # -- the fleet store (issue 19): a shared Qdrant database fed from this file by the sync worker
    fleet_uri: str | None = Field(None, min_length=1, description="a shared vector database for golden runs "
                                  "across devices: http(s)://HOST:6333 (a Qdrant server), or a folder (Qdrant's "
                                  "local mode: one process at a time, for tests and a single box); unset: local only")
    fleet_api_key_file: Path | None = Field(None, description="file holding the fleet store's API key")
    fleet_api_key_credential: str = Field("fleet-api-key", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                                          description="systemd credential (LoadCredential=) holding the API key, "
                                          "used when fleet_api_key_file is unset and $CREDENTIALS_DIRECTORY has it")
    fleet_ca_file: Path | None = Field(None, description="CA bundle for an https fleet_uri; system store when unset")
    fleet_collection: str = Field("edge_vla", min_length=1, pattern=r"^[A-Za-z0-9_-]+$",
                                  description="collection name prefix in the fleet store (PREFIX_frames, PREFIX_runs)")
    fleet_timeout_s: float = Field(5.0, gt=0, le=120, description="fleet store request timeout")
    fleet_retries: int = Field(2, ge=0, le=10, description="retries of one fleet store call (timeouts, 5xx, cut "
                               "connections) before the sync worker backs off")
    fleet_sync: bool = Field(True, description="with fleet_uri: ship keyframes and golden runs to the fleet store")
    fleet_batch: int = Field(64, ge=1, le=4096, description="frames per fleet store upsert")
    fleet_backlog_max: int = Field(50_000, ge=10, le=10_000_000, description="unsent live keyframes kept in the "
                                   "outbox; the oldest are dropped (counted) beyond; golden frames are never dropped")
    fleet_keyframe_delta: float = Field(0.12, gt=0, le=1, description="a frame is a keyframe when some tile changed "
                                        "this much (0..1, largest cell change) since the stream's last keyframe")
    fleet_keyframe_max_s: float = Field(60.0, gt=0, description="a steady screen still sends one keyframe this often")
    fleet_backoff_max_s: float = Field(30.0, gt=0, le=3600, description="longest wait between sync attempts while "
                                       "the fleet store is unreachable")


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console", "journald"] = "auto"


class LoopConfig(_Section):
    """Closed-loop checks: did each action change the picture, and is the agent stuck?"""

    verify: bool = Field(True, description="publish a verdict for every action")
    await_verdict: bool = Field(True, description="decide the next action only once the last one is verified")
    verify_delay_s: float = Field(0.3, ge=0, le=10, description="no executor: look for the effect this long after publishing")
    verify_window_s: float = Field(2.0, gt=0, le=60, description="no change within this long: unchanged (or timeout)")
    local_radius: int = Field(60, ge=5, le=500, description="half-size (0..1000 units) of the area checked around the action point")
    pixel_threshold: float = Field(0.08, gt=0, lt=1, description="grey-level change (0..1) that counts as changed")
    local_fraction: float = Field(0.02, gt=0, le=1, description="changed share of the local area that means 'changed'")
    global_fraction: float = Field(0.05, gt=0, le=1, description="changed share of the whole frame that means 'changed'")
    region_fraction: float = Field(0.1, gt=0, le=1, description="an action with no point (scroll, key): changed share "
                                   "of the most changed area of the local size that means 'changed'")
    avoid_after: int = Field(2, ge=1, le=50, description="same action with no effect this often: the model "
                             "takes its next-best action instead (runtime.avoid)")
    wait_patience_s: float = Field(4.0, gt=0, description="the model waited this long on a screen that did not "
                                   "change: it takes its best other action instead (runtime.avoid); long "
                                   "enough for a validation message to clear (1.5 s cut the student's waits short)")
    max_repeats: int = Field(2, ge=1, le=50, description="same action with no effect this often: try something else")
    alternatives: list[str] = Field(default_factory=lambda: ["key:Escape", "scroll:0:300"],
                                    description="what to try instead of a dead action, in order")
    stuck_after_s: float = Field(3.0, gt=0, description="no visual change for this long while actions fail: stuck")
    escalate_every_s: float = Field(2.0, gt=0, description="time between escalation steps")
    reset_action: str = Field("action:reset", pattern=r"^(action:reset|key:.+|event)$",
                              description="step 2: 'action:reset', 'key:<KEY>' (e.g. key:F5) or 'event' (P/events reset_request)")


class WatchdogConfig(_Section):
    max_frame_age_s: float = Field(5.0, gt=0, description="no frame for this long: unhealthy")
    max_policy_age_s: float = Field(10.0, gt=0, description="no policy answer for this long: unhealthy")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True,
        case_sensitive=False,
    )

    device_id: str = Field(default_factory=socket.gethostname, min_length=1, pattern=r"^[^/#+]+$")
    mqtt: MqttConfig = MqttConfig()
    source: SourceConfig = SourceConfig()
    sampler: SamplerConfig = SamplerConfig()
    model: ModelConfig = ModelConfig()
    policy: PolicyConfig = PolicyConfig()
    http: HttpConfig = HttpConfig()
    webrtc: WebRtcConfig = WebRtcConfig()
    memory: MemoryConfig = MemoryConfig()
    log: LogConfig = LogConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    loop: LoopConfig = LoopConfig()

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain JSON data with every secret masked."""
        return json.loads(self.model_dump_json())  # SecretStr dumps as "**********"


class ConfigError(Exception):
    """Settings that cannot be used; ``lines`` holds one readable message per problem."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


class _DictSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ is used
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"config file {path}: not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path}: not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError([f"config file {path}: {exc.strerror}"]) from None


def load_settings(config_file: str | Path | None = None, environ: dict[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Build Settings from file + environment, or raise ConfigError listing every problem."""
    env = os.environ if environ is None else environ
    path = config_file or env.get(ENV_CONFIG)
    file_data = read_toml(Path(path)) if path else {}

    class _Effective(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                       dotenv_settings, file_secret_settings):
            return (init_settings, env_settings, _DictSource(settings_cls, file_data))

    unknown = sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper() != ENV_CONFIG
                     and k.upper()[len(ENV_PREFIX):].split("__")[0].lower() not in Settings.model_fields)
    if unknown:
        raise ConfigError([f"{k}: unknown key {k[len(ENV_PREFIX):].lower().replace('__', '.')!r}" for k in unknown])

    saved = None
    if environ is not None:  # validate against the given mapping, not the process env
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(environ)
    try:
        return _Effective(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, file_data, path)) from None
    finally:
        if saved is not None:
            os.environ.clear()
            os.environ.update(saved)


def _explain(exc: ValidationError, file_data: dict[str, Any], path: str | Path | None) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-after")]
        key = ".".join(loc) if loc else "(settings)"
        env_name = ENV_PREFIX + "__".join(p.upper() for p in loc) if loc else ""
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key" + (f" in {path}" if path and _has_key(file_data, loc) else f" ({env_name})"))
            continue
        value = err.get("input")
        shown = "" if isinstance(value, dict) or err["type"] == "missing" else f" (got {value!r})"
        if loc and loc[-1] in ("password", "token"):
            shown = " (got **********)"
        where = f"; set it with {env_name}" if env_name else ""
        if path and loc and _has_key(file_data, loc):
            where += f" or in {path}"
        lines.append(f"{key}: {msg}{shown}{where}")
    return lines


def _has_key(data: dict[str, Any], loc: list[str]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def fleet_api_key_path(memory: MemoryConfig, environ: dict[str, str] | None = None) -> Path | None:
    """Where the fleet store's API key is: ``memory.fleet_api_key_file``, else the systemd credential
    ``memory.fleet_api_key_credential`` when ``$CREDENTIALS_DIRECTORY`` holds it (LoadCredential=)."""
    if memory.fleet_api_key_file is not None:
        return memory.fleet_api_key_file
    env = os.environ if environ is None else environ
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds:
        p = Path(creds) / memory.fleet_api_key_credential
        if p.exists():
            return p
    return None
