"""What the real-time coupon decision adds to the /recommend latency, side by side in one run.

    python benchmarks/serving_coupons.py --checkpoint RUN/two_tower/checkpoint.pt
        --coupon-model COUPONS/coupon_model.pkl [--serve-arg world.preset=small ...]
        [--rps 100] [--pairs 8] [--block-seconds 30] [--coupon-share 0.1] [--event-lag-s 600]
        [--events-share 0.1] [--k 20] [--seed 0] [--label NAME] [--out-dir DIR]

Two ``recsys-serve`` processes over the same trained pipeline stay up for the whole run: A
without coupons, B with ``coupons.model=`` (``GET /coupon``, and every event accepted on
``POST /events`` tapped into the hesitation trigger). They are driven in turns, one at a time,
in blocks of ``--block-seconds`` at ``--rps``: pairs A B, B A, A B, ... so load drifting on a
shared machine falls on both alike (``harness.paired_blocks``). Both blocks of a pair send the
same seeded request mix (``harness.request_mix``): /recommend, ``--events-share`` of /events
batches dated up to ``--event-lag-s`` back (so clicks are old enough to be hesitations), and
``--coupon-share`` of ``GET /coupon`` for viewers who clicked in a recent batch. A sends the same
stream without the /coupon requests, every other request at its same time: B's extra is the
whole coupon feature (the decisions, their HTTP requests and the tap), so the difference is an
upper bound on what the decision alone adds. Reported: per config the pooled /recommend
p50/p99 (from each request's scheduled time, open loop), /coupon p50/p99 and the decisions'
reasons, errors, server CPU; B - A of the /recommend p99 with a 95% interval from resampling
whole pairs. Target: B - A <= 5 ms at 100 requests/s.

Writes ``<out-dir>/serving_coupons[_label].{json,md}``; the servers' logs go to a temporary
folder (printed), never to the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
from harness.loadgen import LoadConfig, LoadResult, run_open_loop
from harness.paired_blocks import block_order, paired_difference, pooled_percentile
from harness.processes import HOST, ServerProcess, sigterm_unwinds
from harness.request_mix import KINDS, MixConfig, RequestMix
from serving import (
    SERVE_DEFAULTS,
    get_json,
    live_world,
    machine,
    pin_cpus,
    recorded_command,
    redact,
    serve_config,
    wait_healthy,
    world_root,
)
from serving_coupons_report import markdown, summarise

RESULTS = Path(__file__).resolve().parent / "results"
METRIC = re.compile(r'recsys_request_seconds_(sum|count)\{[^}]*endpoint="([^"]+)"[^}]*\} (\S+)')


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a trained two-tower run (recsys-serve's)")
    p.add_argument("--coupon-model", required=True, help="a recsys-coupons coupon_model.pkl")
    p.add_argument("--serve-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--rps", type=float, default=100.0)
    p.add_argument("--pairs", type=int, default=8, help="A/B block pairs")
    p.add_argument("--block-seconds", type=float, default=30.0)
    p.add_argument("--warmup-seconds", type=float, default=10.0, help="per server, not reported")
    p.add_argument("--coupon-share", type=float, default=0.1)
    p.add_argument("--events-share", type=float, default=0.1)
    p.add_argument("--unknown-share", type=float, default=0.03)
    p.add_argument("--event-lag-s", type=int, default=600)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--kind", choices=KINDS, default="all")
    p.add_argument("--max-in-flight", type=int, default=64)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--timeout-s", type=float, default=2.0)
    p.add_argument("--start-timeout-s", type=float, default=300.0)
    p.add_argument(
        "--server-cpus", help="pin both servers to these CPUs (e.g. 0), the client to the others"
    )
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--target-ms", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default="")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    return p.parse_args(argv)


def overrides(args: argparse.Namespace) -> dict[str, list[str]]:
    base = [f"checkpoint={args.checkpoint}", *args.serve_arg]
    return {"A": base, "B": [*base, f"coupons.model={args.coupon_model}"]}


def mix_config(args: argparse.Namespace, seed: int) -> MixConfig:
    return MixConfig(
        k=args.k,
        kind=args.kind,
        events_share=args.events_share,
        unknown_share=args.unknown_share,
        coupon_share=args.coupon_share,
        event_lag_s=args.event_lag_s,
        seed=seed,
    )


def latencies_ms(result: LoadResult, label: str, since: str = "scheduled") -> np.ndarray:
    rows = (result.labels == label) & (result.outcome == "ok")
    start = result.scheduled if since == "scheduled" else result.sent
    return (result.done[rows] - start[rows]) * 1e3


def server_times(port: int) -> dict[str, list[float]]:
    """Per endpoint: [answers, seconds] so far, from arrival to answer inside the server
    (``recsys_request_seconds`` of ``/metrics``; no client or network time in them)."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5.0) as r:
        return parse_server_times(r.read().decode())


def parse_server_times(text: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for kind, endpoint, value in METRIC.findall(text):
        out.setdefault(endpoint, [0.0, 0.0])[kind == "sum"] = float(value)
    return out


def server_delta(before: dict, after: dict) -> dict[str, dict]:
    delta = {}
    for endpoint, (count, seconds) in after.items():
        n = count - before.get(endpoint, [0.0, 0.0])[0]
        if n > 0:
            spent = seconds - before.get(endpoint, [0.0, 0.0])[1]
            delta[endpoint] = {"answers": int(n), "seconds": round(spent, 4)}
    return delta


def reasons(result: LoadResult) -> Counter:
    return Counter(json.loads(body).get("reason", "?") for body in result.bodies.values())


async def run_block(server: ServerProcess, config: str, seed: int, args, world, speed: float):
    """One block: the pair's seeded stream (without /coupon for A) against one server."""
    now = get_json(server.port, "/healthz")["now"]
    n = round(args.rps * args.block_seconds)
    mix = RequestMix(world, mix_config(args, seed))
    requests, schedule = mix.requests(n, args.rps, now, speed), np.arange(n) / args.rps
    if config == "A":
        kept = [i for i, r in enumerate(requests) if r.label != "coupon"]
        requests, schedule = [requests[i] for i in kept], schedule[kept]
    load = LoadConfig(rps=args.rps, max_in_flight=args.max_in_flight,
                      connections=args.connections, timeout_s=args.timeout_s)  # fmt: skip
    cpu, wall, load_avg = server.cpu_seconds(), time.monotonic(), os.getloadavg()[0]
    times = server_times(server.port)
    result = await run_open_loop(HOST, server.port, requests, load, schedule=schedule,
                                 keep_bodies_of=("coupon",))  # fmt: skip
    cpu, wall = server.cpu_seconds() - cpu, time.monotonic() - wall
    return result, {"server_cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                    "load_avg_1m": round(load_avg, 2),
                    "server_time": server_delta(times, server_times(server.port))}  # fmt: skip


async def drive(servers: dict[str, ServerProcess], args, world, speed: float) -> list[dict]:
    """Warm both servers up, then the blocks in A B / B A order; per block its raw latencies."""
    warm = argparse.Namespace(**{**vars(args), "block_seconds": args.warmup_seconds})
    for name, server in servers.items():
        await run_block(server, name, args.seed * 10_007 + 9_999, warm, world, speed)
    blocks = []
    for pair, name in block_order(args.pairs):
        result, cost = await run_block(
            servers[name], name, args.seed * 10_007 + pair, args, world, speed
        )
        blocks.append({"pair": pair, "config": name, "result": result, **cost})
        rec = latencies_ms(result, "recommend")
        print(f"pair {pair} {name}: /recommend p99 {np.percentile(rec, 99):.1f} ms "
              f"({len(rec)} ok), load {cost['load_avg_1m']}", flush=True)  # fmt: skip
    return blocks


def compare(blocks: list[dict], args) -> dict:
    """B - A of the /recommend percentiles, resampling whole pairs."""
    by = {c: [b for b in blocks if b["config"] == c] for c in "AB"}
    out = {}
    for name, q, since in (("p99", 99.0, "scheduled"), ("p50", 50.0, "scheduled"),
                           ("p99_from_send", 99.0, "sent")):  # fmt: skip
        a = [latencies_ms(b["result"], "recommend", since) for b in by["A"]]
        b = [latencies_ms(b["result"], "recommend", since) for b in by["B"]]
        out[name] = paired_difference(a, b, q=q, n_boot=args.n_boot, seed=args.seed).as_dict()
    coupon = [latencies_ms(b["result"], "coupon") for b in by["B"]]
    out["coupon_p50_ms"] = pooled_percentile(coupon, 50)
    out["coupon_p99_ms"] = pooled_percentile(coupon, 99)
    out["coupon_reasons"] = dict(sum((reasons(b["result"]) for b in by["B"]), Counter()))
    return out


def decision_cost(args, cfg, root: Path, now: int, n: int = 20_000) -> dict:
    """The trigger's own cost, in this process with B's settings: CPU per event it is shown
    and per decision (process time: what the work takes, whatever else the machine runs), and
    the decisions' wall-time p99. Viewers click shelf products up to twice the wait back."""
    # Only this in-process timing needs the trigger and the world's full tables here.
    from recsys.coupons.service import load_trigger
    from recsys.data.tables import load_tables

    c, world = cfg.coupons, live_world(root, now)
    trigger = load_trigger(args.coupon_model, load_tables(root), tier=str(c.tier),
                           budget=float(c.budget), wait_s=int(c.wait_s),
                           roi_floor=float(c.roi_floor))  # fmt: skip
    rng = np.random.default_rng(args.seed)
    users = rng.choice(world.users, n).tolist()
    products = rng.choice(world.shelf["product_id"].to_numpy(), n).tolist()
    ages = rng.integers(0, 2 * int(c.wait_s) + 1, n).tolist()
    cpu = time.process_time()
    for user, product, age in zip(users, products, ages, strict=True):
        trigger.observe(user, "click", now - age, product)
    observe_cpu, walls, seen = time.process_time() - cpu, np.empty(n), Counter()
    cpu = time.process_time()
    for i, user in enumerate(users):
        began = time.perf_counter()
        seen[trigger.decide(user, now).reason] += 1
        walls[i] = time.perf_counter() - began
    decide_cpu = time.process_time() - cpu
    return {
        "calls": n,
        "observe_cpu_us": round(observe_cpu * 1e6 / n, 2),
        "decide_cpu_us": round(decide_cpu * 1e6 / n, 2),
        "decide_wall_p99_us": round(float(np.percentile(walls, 99)) * 1e6, 2),
        "reasons": dict(seen),
    }


def start_servers(args, log_dir: Path) -> dict[str, ServerProcess]:
    servers, cpus = {}, pin_cpus(args.server_cpus)
    for name, given in overrides(args).items():
        (log_dir / name).mkdir(parents=True, exist_ok=True)
        servers[name] = ServerProcess(given, SERVE_DEFAULTS, log_dir / name, cpus)
    return servers


def recorded_overrides(server: ServerProcess) -> list[str]:
    return [redact(a) for a in server.args if not a.startswith("port=")]


def settings(args: argparse.Namespace) -> dict:
    """The run's settings, its two files named without this machine's folders."""
    kept = {k: v for k, v in vars(args).items() if k not in ("out_dir", "serve_arg")}
    for key in ("checkpoint", "coupon_model"):
        kept[key] = f"<local>/{Path(kept[key]).name}"
    return kept


def benchmark(args, argv: list[str], log_dir: Path) -> dict:
    cfg = serve_config(overrides(args)["B"])  # bad overrides fail here, before any start
    root, load_before = world_root(cfg.world), [round(x, 2) for x in os.getloadavg()]
    servers = start_servers(args, log_dir)
    try:
        health = {n: wait_healthy(s, args.start_timeout_s, 1) for n, s in servers.items()}
        speed = 1.0 if cfg.clock.start == "wall" else float(cfg.clock.speed)
        world = live_world(root, int(health["B"]["now"]))
        blocks = asyncio.run(drive(servers, args, world, speed))
        memory = {n: s.memory_mib() for n, s in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    in_process = decision_cost(args, cfg, root, int(health["B"]["now"]))
    report = {
        "command": recorded_command(argv, "benchmarks/serving_coupons.py"),
        "serve_overrides": {n: recorded_overrides(s) for n, s in servers.items()},
        "settings": settings(args),
        "machine": machine(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "health_start": health,
        "memory_end": memory,
        "comparison": compare(blocks, args),
        "decision_cost": in_process,
    }
    report.update(summarise(blocks, report, args.target_ms))
    return report


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="recsys-serving-coupons-"))
    print(f"server logs: {log_dir}/{{A,B}}/serve.log", flush=True)
    with sigterm_unwinds():
        report = benchmark(args, argv, log_dir)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "serving_coupons" + (f"_{args.label}" if args.label else "")
    (args.out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
