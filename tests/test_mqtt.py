import asyncio
import json
import time

import pytest

from edge_vla.actions import ActionMessage, BadPayload, parse_feedback
from edge_vla.config import MqttConfig
from edge_vla.mqtt import MqttLink, parse_goal


def action(stream="default", **kw):
    now = time.time()
    return ActionMessage(type="click", x=10, y=20, seq=0, stream=stream, frame_ts=now, published_ts=now,
                         deadline=now + 1, model="m", latency_ms={"total": 1.0}, **kw)


@pytest.fixture
async def link(broker):
    lk = MqttLink(MqttConfig(host="127.0.0.1", port=broker.port), "dev1")
    lk.start()
    assert await lk.wait_connected(5)
    yield lk
    lk.stop()


async def test_status_online_then_offline_retained(broker, collector):
    lk = MqttLink(MqttConfig(host="127.0.0.1", port=broker.port), "dev1")
    lk.start()
    assert collector.wait_for(lambda m: any(x.topic == "edge-vla/dev1/status" and x.payload == b"online" for x in m))
    lk.stop()
    assert collector.wait_for(lambda m: m[-1].payload == b"offline")
    # a fresh subscriber sees the retained value
    from .mqtt_collector import Collector
    late = Collector(broker.port, ("edge-vla/dev1/status",))
    try:
        assert late.wait_for(lambda m: m and m[-1].payload == b"offline" and m[-1].retain)
    finally:
        late.close()


async def test_action_qos1_expiry_and_content_type(link, collector):
    assert link.send(action(), time.monotonic() + 1.0)
    assert collector.wait_for(lambda m: any(x.topic.endswith("/default/action") for x in m))
    msg = collector.on("/default/action")[0]
    assert not msg.retain
    assert 1 <= msg.properties.MessageExpiryInterval <= 2
    assert msg.properties.ContentType == "application/json"
    assert json.loads(msg.payload)["type"] == "click"
    assert link.stats.published == 1


async def test_stale_and_offline_actions_are_dropped_and_counted(broker):
    lk = MqttLink(MqttConfig(host="127.0.0.1", port=broker.port), "dev1")
    assert not lk.send(action(), time.monotonic() + 1)  # not started: offline
    assert lk.stats.dropped_offline == 1
    lk.start()
    assert await lk.wait_connected(5)
    assert not lk.send(action(), time.monotonic() - 0.01)
    assert lk.stats.dropped_stale == 1 and lk.stats.published == 0
    lk.stop()


async def test_bad_inbound_payloads_are_counted_not_fatal(link, collector):
    got = []
    link.subscribe(link.topic("+", "feedback"), lambda t, p: got.append(parse_feedback(p)))
    await asyncio.sleep(0.2)
    for payload in (b"{", b"[]", b'{"v":1}', b'{"v":2,"action_id":"a","status":"executed","ts":1}',
                    b'{"v":1,"action_id":"a","status":"exploded","ts":1}', b"\xff\xfe", b"x" * 100000):
        collector.publish("edge-vla/dev1/default/feedback", payload)
    collector.publish("edge-vla/dev1/default/feedback", b'{"v":1,"action_id":"a","status":"executed","ts":1.5}')
    for _ in range(50):
        if got:
            break
        await asyncio.sleep(0.05)
    assert link.stats.bad_payloads == 7
    assert got and got[0].action_id == "a"


@pytest.mark.parametrize("payload, expect", [
    (b"Click Submit", "Click Submit"),
    (b'{"instruction": "Buy"}', "Buy"),
    (b"  ", None),
])
def test_goal_forms(payload, expect):
    assert parse_goal(payload) == expect


@pytest.mark.parametrize("payload", [b'{"instruction": 3}', b"{oops", b'{"goal": "x"}', b"a" * 2000])
def test_bad_goals(payload):
    with pytest.raises(BadPayload):
        parse_goal(payload)
