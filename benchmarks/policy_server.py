"""Policy server end-to-end latency (issue 6): an observation's header stamp -> the first output that used it.

A feeder publishes observations with fresh stamps (`time.time_ns()` at publish) and a probe node
records, with the wall clock, the arrival of every output; a row's sample is, per observation stamp,
the first arrival whose `observation_stamp` equals it (later outputs re-using it and observations the
server never used are not samples; `obs_used` says what share was used). Rows, each with a
random-weight checkpoint saved to a temp dir and served from it (`policies.server.PolicyServerNode`):
- DP at the CPU size of `benchmarks.policies` (down dims 64/128/256, 96x96 image + 6-d state), DDIM 16
  and 8; CARP (scales 1-4); RDP slow (`latent_chunk`): `action_chunk` / `latent_chunk` at the probe;
- RDP fast: `policies.fast.FastDecoderNode`, wrench stamp -> its `action_chunk`. The latent it decodes
  is one `predict_latent` result republished by the feeder at the policy's slow_hz (step 0 = now), so
  the decoder is measured alone, as in its own process (DESIGN.md), not behind the slow diffusion's GIL.
Feeding: state + image together at the policy's `obs_rate` (wrench at its `fast_hz` for RDP), each
sample at a uniformly random phase within its period (monotone stamps, `obs_rate` on average): the
server ticks at its `slow_hz` on its own timer, and with equal rates an exactly periodic feed would lock
one arbitrary phase against the tick. So e2e includes waiting for the next tick; `tick_wait_p50_ms`
(observation stamp -> the server starting that prediction, recorded by a subclass that only timestamps
`run_policy`) shows that part. The server takes the newest aligned window at each tick (its executor
drains the subscriptions queued during a prediction before the next tick), so queued observations are
skipped, not served late. Two more rows run DP DDIM 8 and CARP with the server's `trigger:
observation` (predict as soon as the observation of a new slow period has arrived: no tick wait), and
one RDP fast row with the fast decoder's `trigger: reading` (decode as soon as a new wrench reading
opens a new fast period).
Threads: every server node spins its own executor thread; the feeder and the probe share the main
thread's executor, which sleeps rather than spin-waits (a spinning thread holds the GIL for up to the
5 ms switch interval and would slow the server). Transport `inproc` for every row; `dds` (CycloneDDS,
ROS 2 wire format, loopback discovery, domain 101 + pid % 131 so concurrent runs never clash) for
DP DDIM 8 and RDP fast: the server has its own Context (its own participant) in this process and its
own thread, so a sample includes CDR serialization and cyclone's delivery but not a socket hop
between processes.
Baseline, same process, same policy object, same input: after the run, the bare call the server made
last (`predict_action` / `predict_latent` / `decode`, same arguments, inference mode), timed alone;
overhead = e2e p50 - bare p50 and ratio = e2e p50 / bare p50. `server_predict_p50_ms` is the same call
timed inside the server while it served. torch intra-op threads: `BENCH_SERVER_THREADS` (default 1).
Writes benchmarks/results/policy_server.json. `python -m benchmarks policy_server`; `run(quick=True)`:
a subset of rows, 5 samples (fast rows 25), nothing written (tests/benchmarks/test_policy_server.py).
"""

from __future__ import annotations

import heapq
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import robot_stack as rs
from benchmarks.policies import CAMERA, CAMERA_HW, SIZES, STATE, _features_and_normalizer
from benchmarks.report import percentiles, print_table, write_results
from policies.fast import FastDecoderNode
from policies.obs_buffer import obs_map_parameters
from policies.server import LATENT_CHUNK, PolicyServerNode
from robot_stack import convert, messages
from robot_stack.clock import NS, Time

WRENCH = "observation.wrench"
TOPICS = {STATE: "/joint_states", CAMERA: "/fixed/image_raw", WRENCH: "/wrench"}
JOINTS = [f"j{k}" for k in range(6)]
CHUNKS = int(os.environ.get("BENCH_SERVER_CHUNKS", "200"))         # samples per slow row (fast rows: 5x)
THREADS = int(os.environ.get("BENCH_SERVER_THREADS", "1"))
BARE_ITERS = {"slow": 20, "fast": 200}
WARMUP_OUTPUTS = 3                                                  # outputs before measuring (DDS discovery)


# --- policies and checkpoints ------------------------------------------------------------------
def _seeded(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def save_dp(root: Path, steps: int) -> Path:
    from policies.diffusion import DiffusionConfig, DiffusionPolicy

    features, normalizer = _features_and_normalizer()
    config = DiffusionConfig(obs=(STATE, CAMERA), inference_steps=steps, **SIZES["cpu"])
    return _seeded(lambda: DiffusionPolicy(config, features, normalizer)).save(root / f"dp_ddim{steps}", steps=0)


def save_carp(root: Path) -> Path:
    from policies.carp import CarpConfig, CarpPolicy

    features, normalizer = _features_and_normalizer()
    return _seeded(lambda: CarpPolicy(CarpConfig(obs=(STATE, CAMERA)), features, normalizer)).save(
        root / "carp", steps=0)


def save_rdp(root: Path) -> Path:
    from data.loader import Normalizer
    from policies.base import FeatureSpec
    from policies.rdp import RdpConfig, ReactiveDiffusionPolicy

    features, normalizer = _features_and_normalizer()
    features[WRENCH] = FeatureSpec(WRENCH, "lowdim", (6,))
    stats = {**normalizer.stats, WRENCH: {"kind": "lowdim", "min": [-20.0] * 6, "max": [20.0] * 6,
                                          "mean": [0.0] * 6, "std": [5.0] * 6}}
    config = RdpConfig(obs=(STATE, CAMERA), fast_obs=(WRENCH,))
    policy = _seeded(lambda: ReactiveDiffusionPolicy(config, features, Normalizer.from_stats(stats)))
    return policy.save(root / "rdp", steps=0)


# --- instrumented nodes: `run_policy` also records when each observation's prediction started ----
class _StartTimes:
    """Mixed into a serving node whose `_obs_key()` is the stamp of the observation being predicted from."""

    starts: dict[int, int]
    last_call: tuple[Callable[..., Any], tuple, dict] | None = None

    def run_policy(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.starts.setdefault(self._obs_key(), time.time_ns())
        self.last_call = (fn, args, kwargs)
        return super().run_policy(fn, *args, **kwargs)


class TimedServer(_StartTimes, PolicyServerNode):
    def __init__(self, *args: Any, **kwargs: Any):
        self.starts = {}
        super().__init__(*args, **kwargs)

    def _obs_key(self) -> int:
        return int(self.last_obs_ns or 0)


class TimedFastDecoder(_StartTimes, FastDecoderNode):
    def __init__(self, *args: Any, **kwargs: Any):
        self.starts = {}
        super().__init__(*args, **kwargs)

    def _obs_key(self) -> int:
        return max(self.inputs.newest(n)[0] for n in self.fast_obs)


class NodeThread:
    """One node spinning its own executor on a daemon thread with `threads` torch intra-op threads (set in
    that thread: the OpenMP team size is per thread, so the server's `torch_threads`, applied where it was
    constructed, does not reach it; 2 threads on the busy 2-core machine made a 0.3 ms decode take 24 ms)."""

    def __init__(self, node: rs.Node, threads: int):
        self.executor = rs.Executor()
        self.executor.add_node(node)
        self.threads = threads
        self.thread = threading.Thread(target=self._spin, name=f"spin-{node.get_name()}", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        torch.set_num_threads(self.threads)
        self.executor.spin()

    def stop(self) -> None:
        self.executor.shutdown()
        self.thread.join(10.0)


# --- feeding and probing -----------------------------------------------------------------------
@dataclass
class Stream:
    """A sample every 1/rate_hz on average, each at a random phase within its period."""

    rate_hz: float
    publish: Callable[[int], None]      # stamp_ns -> publish
    count: int = 0


@dataclass
class Probe:
    """The first arrival (wall ns) of an output per observation stamp; `counted`: those stamped >= `since_ns`."""

    first: dict[int, int] = field(default_factory=dict)
    outputs: int = 0
    since_ns: int = 0
    counted: int = 0

    def __call__(self, msg: Any) -> None:
        arrival = time.time_ns()
        stamp = Time.from_msg(msg.observation_stamp).nanoseconds
        self.outputs += 1
        if stamp not in self.first:
            self.first[stamp] = arrival
            self.counted += stamp >= self.since_ns

    def start(self) -> None:
        self.since_ns, self.counted = time.time_ns(), 0

    def samples(self) -> dict[int, int]:
        return {s: a for s, a in self.first.items() if s >= self.since_ns}


def feed(ex: rs.Executor, streams: list[Stream], done: Callable[[], bool], timeout_s: float,
         rng: random.Random) -> bool:
    """Publish `streams` while spinning `ex` until `done()` (True) or the timeout (False)."""
    start = time.perf_counter()
    heap = [(start + rng.uniform(0, 1 / s.rate_hz), k, 0) for k, s in enumerate(streams)]
    heapq.heapify(heap)
    while not done():
        if time.perf_counter() - start > timeout_s:
            return False
        due, k, n = heap[0]
        left = due - time.perf_counter()
        if left > 0:
            ex.spin_once(min(left, 0.01))
            continue
        heapq.heapreplace(heap, (start + (n + 1 + rng.random()) / streams[k].rate_hz, k, n + 1))
        streams[k].publish(time.time_ns())
        streams[k].count += 1
    return True


class Feeder:
    """Publishers for the policy's observations (and, for a fast decoder, its latent)."""

    def __init__(self, node: rs.Node, features: list[str], latent: bool):
        types = {STATE: "sensor_msgs/msg/JointState", CAMERA: "sensor_msgs/msg/Image",
                 WRENCH: "geometry_msgs/msg/WrenchStamped"}
        self.pubs = {f: node.create_publisher(types[f], TOPICS[f], 10) for f in features}
        self.pixels = np.random.default_rng(0).integers(0, 256, (*CAMERA_HW, 3), dtype=np.uint8)
        self.latent_pub = node.create_publisher(LATENT_CHUNK, "/latent_chunk", 10) if latent else None

    def obs(self, stamp_ns: int) -> None:
        """State and camera frame with one stamp (the camera first: the state completes the pair)."""
        t = stamp_ns / NS
        self.pubs[CAMERA].publish(convert.image(self.pixels, "rgb8", stamp=Time(stamp_ns)))
        self.pubs[STATE].publish(convert.joint_state(JOINTS, 0.5 * np.sin(t + np.arange(6)), stamp=Time(stamp_ns)))

    def wrench(self, stamp_ns: int) -> None:
        self.pubs[WRENCH].publish(convert.wrench(np.sin(stamp_ns / NS + np.arange(6)), stamp=Time(stamp_ns)))

    def latent(self, latent: torch.Tensor, policy_id: str, stamp_ns: int) -> None:
        data = latent.detach().to("cpu", torch.float32).contiguous()
        self.latent_pub.publish(messages.make(
            LATENT_CHUNK, header=convert.header(Time(stamp_ns)), observation_stamp=Time(stamp_ns).to_msg(),
            shape=np.asarray(data.shape, np.uint32), data=data.numpy().ravel(), policy_id=policy_id))


# --- one row -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowSpec:
    name: str
    checkpoint: str                     # key of CHECKPOINTS
    part: str = "chunk"                 # "chunk" (action_chunk), "latent" (RDP slow), "fast" (RDP fast decoder)
    transport: str = "inproc"
    trigger: str = "timer"              # the node's `trigger`: "timer", or "observation" (slow) / "reading" (fast)


CHECKPOINTS: dict[str, Callable[[Path], Path]] = {
    "dp16": lambda root: save_dp(root, 16), "dp8": lambda root: save_dp(root, 8), "carp": save_carp, "rdp": save_rdp}
ROWS = [RowSpec("dp-cpu-ddim16", "dp16"), RowSpec("dp-cpu-ddim8", "dp8"), RowSpec("carp-scales4", "carp"),
        RowSpec("rdp-slow-ddim8", "rdp", "latent"), RowSpec("rdp-fast-decode", "rdp", "fast"),
        RowSpec("dp-cpu-ddim8", "dp8", transport="dds"), RowSpec("rdp-fast-decode", "rdp", "fast", "dds"),
        RowSpec("dp-cpu-ddim8", "dp8", trigger="observation"), RowSpec("carp-scales4", "carp", trigger="observation"),
        RowSpec("rdp-fast-decode", "rdp", "fast", trigger="reading")]
QUICK_ROWS = [ROWS[1], ROWS[2], ROWS[3], ROWS[4], ROWS[5], ROWS[7], ROWS[9]]


def dds_domain() -> int:
    from robot_stack.transport.dds_config import MAX_DOMAIN_ID

    return 101 + os.getpid() % (MAX_DOMAIN_ID - 101)


def _context(transport: str) -> rs.Context:
    return rs.Context("dds", domain_id=dds_domain()) if transport == "dds" else rs.Context(transport)


def _server(spec: RowSpec, ckpt: Path, ctx: rs.Context) -> TimedServer | TimedFastDecoder:
    from policies.base import read_checkpoint_meta

    meta = read_checkpoint_meta(ckpt)
    features = [WRENCH] if spec.part == "fast" else list(meta["config"]["obs"])
    if spec.part == "latent":
        features += [f for f in meta["config"].get("fast_obs", ()) if f not in features]
    overrides = {"checkpoint": str(ckpt), "torch_threads": THREADS, "action_names": ["a0", "a1"],
                 "trigger": spec.trigger,
                 **obs_map_parameters({f: TOPICS[f] for f in features})}
    cls = TimedFastDecoder if spec.part == "fast" else TimedServer
    return cls(context=ctx, publish_stats=False, parameter_overrides=overrides)


def _streams(spec: RowSpec, server: Any, feeder: Feeder) -> list[Stream]:
    """The measured stream first: its stamps are the ones outputs carry."""
    cfg = server.config
    if spec.part == "fast":
        from benchmarks.policies import example_obs

        obs = {**example_obs(cfg.n_obs, "cpu"), f"obs.{WRENCH}": torch.zeros(1, cfg.n_obs, 6)}
        with torch.inference_mode():
            latent = server.policy.predict_latent(obs, generator=torch.Generator().manual_seed(0))
        return [Stream(cfg.fast_hz, feeder.wrench),
                Stream(cfg.slow_hz, lambda stamp: feeder.latent(latent, server.policy_id, stamp))]
    streams = [Stream(cfg.obs_rate, feeder.obs)]
    if spec.part == "latent":
        streams.append(Stream(cfg.fast_hz, feeder.wrench))
    return streams


def time_bare(call: tuple[Callable[..., Any], tuple, dict], iters: int) -> list[float]:
    fn, args, kwargs = call
    samples = []
    with torch.inference_mode():
        for k in range(iters + 2):
            t0 = time.perf_counter()
            fn(*args, **kwargs)
            if k >= 2:
                samples.append(time.perf_counter() - t0)
    return samples


def bench_row(spec: RowSpec, ckpt: Path, n: int, bare_iters: int, rng: random.Random) -> dict[str, Any]:
    with _context(spec.transport) as ctx, _context(spec.transport) as server_ctx:
        server = _server(spec, ckpt, server_ctx)
        local = rs.Node("bench_feeder", context=ctx, publish_stats=False)
        feeder = Feeder(local, [WRENCH] if spec.part == "fast" else list(server.inputs.sources), spec.part == "fast")
        probe = Probe()
        out_type, topic = ((LATENT_CHUNK, "/latent_chunk") if spec.part == "latent"
                           else ("robot_stack_msgs/msg/ActionChunk", "/action_chunk"))
        local.create_subscription(out_type, topic, probe, 1000)
        ex = rs.Executor(adaptive_spin=False, spin_margin=0.0)     # sleeps (GIL free) instead of spinning
        ex.add_node(local)
        spinner = NodeThread(server, THREADS)
        streams = _streams(spec, server, feeder)
        try:
            if not feed(ex, streams, lambda: len(probe.first) >= WARMUP_OUTPUTS, 60.0, rng):
                raise TimeoutError(f"no output within 60 s ({server.reason})")
            probe.start()
            published0 = streams[0].count
            tick_hz = server.fast_hz if spec.part == "fast" else server.slow_hz
            timeout = 30.0 + 4 * n / min(streams[0].rate_hz, tick_hz)
            if not feed(ex, streams, lambda: probe.counted >= n, timeout, rng):
                raise TimeoutError(f"{probe.counted} of {n} samples within {timeout:.0f} s ({server.reason})")
        finally:
            spinner.stop()
            local.destroy_node()
        published = streams[0].count - published0
        firsts = probe.samples()
        e2e = [(a - s) / NS for s, a in firsts.items()]
        waits = [(server.starts[s] - s) / NS for s in firsts if s in server.starts]
        bare = time_bare(server.last_call, bare_iters)
        inside = server.latency()["predict"]
        server.destroy_node()
    return _row(spec, server, e2e, waits, bare, inside, len(firsts) / max(published, 1))


def _row(spec: RowSpec, server: Any, e2e: list[float], waits: list[float], bare: list[float],
         inside: dict[str, float], used: float) -> dict[str, Any]:
    cfg = server.config
    p, b, w = percentiles(e2e), percentiles(bare), percentiles(waits)
    rate = cfg.fast_hz if spec.part == "fast" else cfg.obs_rate
    return {"variant": spec.name, "transport": spec.transport, "trigger": spec.trigger, "output": spec.part,
            "feed_hz": rate, "tick_hz": server.fast_hz if spec.part == "fast" else server.slow_hz,
            "e2e_p50_ms": p["p50_us"] / 1e3, "e2e_p99_ms": p["p99_us"] / 1e3, "e2e_max_ms": p["max_us"] / 1e3,
            "bare_p50_ms": b["p50_us"] / 1e3, "bare_p99_ms": b["p99_us"] / 1e3,
            "overhead_ms": (p["p50_us"] - b["p50_us"]) / 1e3, "ratio": p["p50_us"] / b["p50_us"],
            "tick_wait_p50_ms": w["p50_us"] / 1e3, "server_predict_p50_ms": inside["p50_ms"],
            "n": p["n"], "obs_used": used, "threads": THREADS}


def run(quick: bool = False, rows: list[RowSpec] | None = None) -> list[dict[str, Any]]:
    """Every row (quick: a subset, a few samples, nothing written); returns the rows."""
    rows = rows or (QUICK_ROWS if quick else ROWS)
    n_slow = 5 if quick else CHUNKS
    rng = random.Random(0)
    threads = torch.get_num_threads()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpts: dict[str, Path] = {}
        for spec in rows:
            n = n_slow * (5 if spec.part == "fast" else 1)
            kind = "fast" if spec.part == "fast" else "slow"
            iters = BARE_ITERS[kind] // (4 if quick else 1)
            try:
                if spec.checkpoint not in ckpts:
                    ckpts[spec.checkpoint] = CHECKPOINTS[spec.checkpoint](Path(tmp))
                out.append(bench_row(spec, ckpts[spec.checkpoint], n, iters, rng))
            except Exception as exc:     # noqa: BLE001  (a failing row is reported, the others still run)
                out.append({"variant": spec.name, "transport": spec.transport,
                            "error": f"{type(exc).__name__}: {exc}"[:200]})
    torch.set_num_threads(threads)
    columns = ["variant", "transport", "trigger", "output", "feed_hz", "tick_hz", "e2e_p50_ms", "e2e_p99_ms",
               "bare_p50_ms", "overhead_ms", "ratio", "tick_wait_p50_ms", "server_predict_p50_ms", "n", "obs_used",
               "error"]
    print_table("Policy server end-to-end: observation stamp -> first output using it (ms, CPU)", out, columns)
    if not quick:
        path = write_results("policy_server", out, {"torch": torch.__version__, "threads": THREADS,
                                                    "dds_domain": dds_domain()})
        print(f"wrote {path}")
    return out


if __name__ == "__main__":
    run()
