"""`benchmarks.policy_server` in quick mode: every quick row measured, positive, and e2e >= the bare call."""

import random
import time

import numpy as np
import pytest

import robot_stack as rs
from benchmarks import policy_server as ps
from robot_stack.clock import Time


def test_probe_keeps_the_first_arrival_per_stamp_since_the_start():
    class Msg:
        def __init__(self, ns):
            self.observation_stamp = Time(ns).to_msg()

    probe = ps.Probe()
    probe(Msg(5))
    probe.start()
    newer = time.time_ns() + 10**9
    for ns in (5, newer, newer, newer + 1):
        probe(Msg(ns))
    assert probe.outputs == 5 and probe.counted == 2
    samples = probe.samples()
    assert sorted(samples) == [newer, newer + 1] and samples[newer] == probe.first[newer]


def test_feed_publishes_each_stream_at_its_rate_with_monotone_stamps():
    stamps = {"a": [], "b": []}
    streams = [ps.Stream(200.0, stamps["a"].append), ps.Stream(50.0, stamps["b"].append)]
    with rs.Context("inproc") as ctx:
        node = rs.Node("bench_feed_test", context=ctx, publish_stats=False)
        ex = rs.Executor(adaptive_spin=False, spin_margin=0.0)
        ex.add_node(node)
        assert ps.feed(ex, streams, lambda: len(stamps["b"]) >= 5, 5.0, random.Random(0))
        node.destroy_node()
    assert (np.diff(stamps["a"]) > 0).all() and (np.diff(stamps["b"]) > 0).all()
    assert len(stamps["a"]) >= len(stamps["b"]) >= 5   # 200 Hz vs 50 Hz over the same span (no timing bounds)


@pytest.mark.slow
def test_quick_run_reports_every_row_and_e2e_includes_the_prediction(monkeypatch):
    monkeypatch.setattr(ps, "write_results", lambda *a, **k: pytest.fail("quick mode must not write results"))
    rows = ps.run(quick=True)
    assert [(r["variant"], r["transport"]) for r in rows] == [(s.name, s.transport) for s in ps.QUICK_ROWS]
    assert {s.transport for s in ps.QUICK_ROWS} == {"inproc", "dds"}
    assert {s.part for s in ps.QUICK_ROWS} == {"chunk", "latent", "fast"}
    for row in rows:
        assert "error" not in row, row
        assert row["n"] >= 5 and 0 < row["obs_used"] <= 1
        assert 0 < row["bare_p50_ms"] and 0 < row["e2e_p50_ms"] <= row["e2e_p99_ms"]
        # every e2e sample contains its in-server prediction (the bare call, timed apart, may vary with load)
        assert row["e2e_p50_ms"] >= 0.9 * row["server_predict_p50_ms"], row
        assert row["overhead_ms"] == pytest.approx(row["e2e_p50_ms"] - row["bare_p50_ms"])
        assert 0 <= row["tick_wait_p50_ms"] < row["e2e_p50_ms"] and row["server_predict_p50_ms"] > 0
