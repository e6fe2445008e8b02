"""A plain paho subscriber for tests: records every message with its arrival time."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    t_wall: float
    properties: object

    @property
    def text(self) -> str:
        return self.payload.decode()


class Collector:
    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), host: str = "127.0.0.1"):
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv5)
        self._topics = topics
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._pending: set[int] = set()
        self._connected = threading.Event()
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._connected.wait(5):
            raise RuntimeError("collector could not connect")

    def _on_connect(self, client, *_):
        # ready only once the broker acknowledged every subscription
        for t in self._topics:
            self._pending.add(client.subscribe(t, qos=1)[1])

    def _on_subscribe(self, _c, _u, mid, *_):
        self._pending.discard(mid)
        if not self._pending:
            self._connected.set()

    def _on_message(self, _c, _u, msg):
        with self._cond:
            self.messages.append(Received(msg.topic, msg.payload, bool(msg.retain), time.time(), msg.properties))
            self._cond.notify_all()

    def on(self, topic_suffix: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    def wait_for(self, pred: Callable[[list[Received]], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
