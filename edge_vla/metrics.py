"""Prometheus metrics, read from the live stats objects at scrape time.

Nothing on the hot path touches a metrics library: stages keep plain counters
and this collector turns them into families when ``/metrics`` is scraped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

if TYPE_CHECKING:
    from .daemon import Daemon

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DaemonCollector:
    def __init__(self, daemon: "Daemon"):
        self.daemon = daemon

    def collect(self) -> Iterable:
        d = self.daemon
        counters = {
            "frames": ("frames received from the source", lambda p: p.slot.written if p.slot else 0),
            "frames_overwritten": ("frames replaced by a newer one before use", lambda p: p.slot.overwritten if p.slot else 0),
            "frames_sampled": ("frames given to the policy", lambda p: p.sampler.stats.sampled),
            "frames_bad": ("frames rejected (wrong size or type)", lambda p: p.stats.bad_frames),
            "decode_errors": ("packets or frames the source could not decode", lambda p: getattr(p.source, "decode_errors", 0)),
            "decisions": ("policy decisions", lambda p: p.stats.decisions),
            "actions_sent": ("actions handed to at least one sink", lambda p: p.stats.actions_sent),
            "actions_stale": ("actions past their deadline before sending", lambda p: p.stats.actions_stale),
            "policy_errors": ("inference errors", lambda p: p.stats.policy_errors),
            "policy_timeouts": ("inferences slower than model.timeout_s", lambda p: p.stats.policy_timeouts),
            "source_errors": ("source failures", lambda p: p.stats.source_errors),
            "policy_restarts": ("model sessions reloaded after repeated failures", lambda p: p.stats.policy_restarts),
            "verdicts_unchanged": ("actions with no visible effect", lambda p: p.verifier.counts["unchanged"] if p.verifier else 0),
            "verdicts_changed": ("actions with a visible effect", lambda p: p.verifier.counts["changed"] if p.verifier else 0),
            "watchdog_escalations": ("stuck-loop escalation steps", lambda p: len(p.watchdog.history)),
        }
        for name, (doc, get) in counters.items():
            fam = CounterMetricFamily(f"edge_vla_{name}", doc, labels=["stream"])
            for stream, p in d.pipelines.items():
                fam.add_metric([stream], get(p))
            yield fam
        fb = CounterMetricFamily("edge_vla_feedback", "executor feedback by status", labels=["stream", "status"])
        for stream, p in d.pipelines.items():
            for status, n in p.stats.feedback.items():
                fb.add_metric([stream, status], n)
        yield fb
        lat = SummaryMetricFamily("edge_vla_stage_latency_ms", "recent per-stage latency (ms)", labels=["stream", "stage"])
        for stream, p in d.pipelines.items():
            for stage, s in p.latency.summary().items():
                lat.add_metric([stream, stage], count_value=s["n"], sum_value=s["mean"] * s["n"])
        yield lat
        q = GaugeMetricFamily("edge_vla_stage_latency_quantile_ms", "recent per-stage latency quantiles (ms)",
                              labels=["stream", "stage", "quantile"])
        for stream, p in d.pipelines.items():
            for stage, s in p.latency.summary().items():
                q.add_metric([stream, stage, "0.5"], s["p50"])
                q.add_metric([stream, stage, "0.95"], s["p95"])
        yield q
        if d.link is not None:
            st = d.link.stats
            for name, value, doc in (
                ("mqtt_published", st.published, "actions published to the broker"),
                ("mqtt_dropped_stale", st.dropped_stale, "actions dropped: deadline passed"),
                ("mqtt_dropped_offline", st.dropped_offline, "actions dropped: broker unreachable or lost in an outage"),
                ("mqtt_bad_payloads", st.bad_payloads, "malformed inbound MQTT payloads"),
                ("mqtt_connects", st.connects, "successful broker connections"),
            ):
                yield CounterMetricFamily(f"edge_vla_{name}", doc, value=value)
            yield GaugeMetricFamily("edge_vla_mqtt_connected", "1 when connected to the broker",
                                    value=1 if d.link.connected else 0)
        gap = GaugeMetricFamily("edge_vla_frame_gap_max_ms", "longest pause between two received frames (WebRTC)",
                                labels=["stream"])
        for stream, p in d.pipelines.items():
            if hasattr(p.source, "max_gap_s"):
                gap.add_metric([stream], p.source.max_gap_s * 1e3)
        yield gap
        yield GaugeMetricFamily("edge_vla_healthy", "1 when the pipeline is healthy", value=1 if d.health()[0] else 0)


def render(daemon: "Daemon") -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon))
    return generate_latest(registry)
