"""MQTT link: availability, action publishing, inbound feedback and goals (paho-mqtt 2).

paho's network thread owns the socket and reconnects with backoff; everything
that reaches the rest of edge-vla is handed to the asyncio loop. Actions are
never queued across an outage: one whose deadline passed, or that was still
unacknowledged when the connection dropped, is dropped and counted, because a
stale click is worse than none.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .actions import ActionMessage, BadPayload
from .config import MqttConfig

log = structlog.get_logger(__name__)


def parse_goal(payload: bytes | str) -> str | None:
    """Plain text or ``{"instruction": str}``; empty clears the goal."""
    text = payload.decode("utf-8", "strict") if isinstance(payload, bytes) else payload
    text = text.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadPayload(f"goal: not valid JSON: {exc.msg}") from None
        instruction = data.get("instruction") if isinstance(data, dict) else None
        if not isinstance(instruction, str) or not instruction.strip():
            raise BadPayload("goal: JSON goal needs a non-empty string 'instruction'")
        text = instruction.strip()
    if len(text) > 1024:
        raise BadPayload("goal: longer than 1024 characters")
    return text


@dataclass
class LinkStats:
    published: int = 0
    dropped_stale: int = 0  # deadline passed before publishing
    dropped_offline: int = 0  # broker unreachable, or lost in flight by an outage
    bad_payloads: int = 0
    connects: int = 0
    disconnects: int = 0


Handler = Callable[[str, bytes], None]


class MqttLink:
    """One broker connection for the daemon, the executor or a test subscriber."""

    def __init__(self, cfg: MqttConfig, device_id: str, *, client_id: str | None = None,
                 availability: bool = True, loop: asyncio.AbstractEventLoop | None = None):
        self.cfg = cfg
        self.base = f"{cfg.topic_prefix}/{device_id}"
        self.status_topic = f"{self.base}/status"
        self.stats = LinkStats()
        self._availability = availability
        self._loop = loop
        self._handlers: dict[str, Handler] = {}
        # local listeners of P/events (the live view); called on whichever thread publishes, even offline
        self.event_listeners: list[Callable[[dict], None]] = []
        self._connected = threading.Event()
        self._v5 = cfg.protocol == "5"
        cid = client_id or cfg.client_id or f"edge-vla-{device_id}"
        self._log = log.bind(client_id=cid, broker=f"{cfg.host}:{cfg.port}")
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=cid,
            protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311,
        )
        if cfg.username:
            pw = cfg.password.get_secret_value() if cfg.password else None
            self.client.username_pw_set(cfg.username, pw)
        if cfg.tls:
            self.client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                                cert_reqs=ssl.CERT_REQUIRED)
        if availability:
            self.client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=max(1, int(cfg.reconnect_min_s)),
                                        max_delay=max(1, int(math.ceil(cfg.reconnect_max_s))))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def topic(self, *parts: str) -> str:
        return "/".join((self.base, *parts))

    def start(self) -> None:
        """Connect in the background; returns at once even if the broker is down."""
        self._loop = self._loop or asyncio.get_running_loop()
        props = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0  # no broker-side session: nothing replays later
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                                  clean_start=True if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                                  properties=props)
        self.client.loop_start()

    async def wait_connected(self, timeout: float) -> bool:
        return await asyncio.to_thread(self._connected.wait, timeout)

    def subscribe(self, topic: str, handler: Handler, qos: int = 1) -> None:
        """Route messages matching ``topic`` (wildcards allowed) to ``handler`` on the event loop."""
        self._handlers[topic] = handler
        if self.connected:
            self.client.subscribe(topic, qos=qos)

    def send(self, msg: ActionMessage, deadline_mono: float) -> bool:
        """Publish one action at QoS 1 with message expiry, or drop it (and count why)."""
        remaining = deadline_mono - time.monotonic()
        if remaining <= 0:
            self.stats.dropped_stale += 1
            return False
        if not self.connected:
            self.stats.dropped_offline += 1
            return False
        props = None
        if self._v5:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = max(1, min(int(self.cfg.action_expiry_s), int(remaining)))
            props.ContentType = "application/json"
        info = self.client.publish(self.topic(msg.stream, "action"), msg.to_json(), qos=1,
                                   retain=False, properties=props)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            self.stats.dropped_offline += 1
            return False
        self.stats.published += 1
        return True

    def publish_json(self, topic: str, data: dict, qos: int = 0, retain: bool = False) -> None:
        if self.connected:
            props = None
            if self._v5:
                props = Properties(PacketTypes.PUBLISH)
                props.ContentType = "application/json"
            self.client.publish(topic, json.dumps(data, separators=(",", ":")), qos=qos,
                                retain=retain, properties=props)

    def verdict(self, stream: str, payload: dict) -> None:
        self.publish_json(self.topic(stream, "verdict"), payload, qos=1)

    def event(self, kind: str, **fields) -> None:
        """A ``P/events`` message: watchdog resets, regressions, dropped input, errors."""
        data = {"v": 1, "kind": kind, "ts": time.time(), **fields}
        self.publish_json(self.topic("events"), data)
        for listener in self.event_listeners:
            try:
                listener(data)
            except Exception:  # a listener must never cost the event its publication
                self._log.exception("mqtt.event_listener_error")

    def stop(self, timeout: float = 2.0) -> None:
        """Say ``offline`` ourselves (a clean disconnect does not fire the will), then leave."""
        if self._availability and self.connected:
            info = self.client.publish(self.status_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()

    # paho network thread below -------------------------------------------------
    def _on_connect(self, client, _userdata, _flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            self._log.warning("mqtt.connect_refused", reason=str(reason_code))
            return
        self._drop_inflight_actions()
        self.stats.connects += 1
        self._connected.set()
        self._log.info("mqtt.connected")
        if self._availability:
            client.publish(self.status_topic, "online", qos=1, retain=True)
        for topic in self._handlers:
            client.subscribe(topic, qos=1)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        if self._connected.is_set():
            self.stats.disconnects += 1
            level = self._log.info if reason_code == 0 else self._log.warning  # 0: we asked to leave
            level("mqtt.disconnected", reason=str(reason_code))
        self._connected.clear()

    def _drop_inflight_actions(self) -> None:
        # paho re-sends unacknowledged QoS 1 messages after a reconnect; for actions
        # that would fire clicks decided on frames from before the outage.
        client = self.client
        with client._out_message_mutex:  # noqa: SLF001 - no public API for this
            stale = [mid for mid, m in client._out_messages.items()  # noqa: SLF001
                     if m.topic.endswith("/action")]
            for mid in stale:
                del client._out_messages[mid]  # noqa: SLF001
        if stale:
            self.stats.dropped_offline += len(stale)
            self._log.warning("mqtt.dropped_inflight_actions", count=len(stale))

    def _on_message(self, _client, _userdata, message) -> None:
        for pattern, handler in self._handlers.items():
            if paho.topic_matches_sub(pattern, message.topic):
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._dispatch, handler, message.topic, message.payload)

    def _dispatch(self, handler: Handler, topic: str, payload: bytes) -> None:
        try:
            handler(topic, payload)
        except BadPayload as exc:
            self.stats.bad_payloads += 1
            self._log.warning("mqtt.bad_payload", topic=topic, error=str(exc), size=len(payload))
        except UnicodeDecodeError:
            self.stats.bad_payloads += 1
            self._log.warning("mqtt.bad_payload", topic=topic, error="not UTF-8", size=len(payload))
        except Exception:  # one bad message must never take the daemon down
            self.stats.bad_payloads += 1
            self._log.exception("mqtt.handler_error", topic=topic)
