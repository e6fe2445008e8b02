import numpy as np

from edge_vla.latency import LatencyLog, format_table, summarize


def test_ring_keeps_the_last_values_and_a_fixed_size():
    log = LatencyLog(maxlen=100)
    for i in range(1000):
        log.add({"total": float(i), "model": 1.0})
    kept = log.values()["total"]
    assert kept.size == 100 and set(kept.tolist()) == set(float(i) for i in range(900, 1000))
    s = log.summary()["total"]
    assert s["n"] == 100 and s["p50"] == np.percentile(np.arange(900, 1000), 50) and s["max"] == 999.0


def test_summary_and_table():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s["p50"] == 2.5 and s["max"] == 4.0 and s["n"] == 4
    table = format_table({"total": s})
    assert "total" in table and "2.50" in table
