"""Latency and throughput of the recommendation service under an open-loop request stream.

    python benchmarks/serving.py [--rps 100 | --rps-sweep 50,100,200] [--seconds 60]
        [--warmup-seconds 5] [--k 20] [--kind all] [--events-share 0.1] [--max-in-flight 64]
        [--seed 0] [--serve-arg world.preset=small ...] [--label NAME] [--out-dir DIR]
        [--redis] [--overload 2]

Starts ``recsys-serve`` (with the ``--serve-arg`` Hydra overrides) on a free local port, waits
for ``/healthz``, warms it up, then for each rate: times ``/healthz`` alone at that rate (the
floor: client, HTTP stack and event loop, no recommender work) and then the request mix of
``harness.request_mix`` (``/recommend`` for world users, a few unknown ones, and
``--events-share`` of ``/events`` batches), sent on a fixed schedule by
``harness.loadgen``. Latency counts from the time each request was due (client
queueing included) and from the time it was written; both are reported. The server's CPU
seconds and resident memory come from /proc, summed over its worker processes (``workers=N``),
with the proportional set size showing how much of the workers' memory is shared. Target:
p99 <= 20 ms for ``/recommend`` with k=20 at 200 requests/s and no errors.

``--redis`` starts a private ``redis-server`` for the run and serves with
``state.backend=redis`` (add ``--serve-arg workers=2``). After the sweep, the highest rate whose
``/recommend`` p99 stays within ``--hold-p99-ms`` (50) with no errors is reported, and
``--overload F`` runs once more at F times that rate: the p99 of the admitted requests, and
how fast the shed ones (429) got their answer.

Writes ``<out-dir>/serving[_label].json`` and ``.md``; the server's log goes to a temporary
folder (printed), never to the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from harness.http_client import HttpRequest
from harness.loadgen import LoadConfig, run_open_loop
from harness.processes import HOST, RedisProcess, ServerProcess, children, sigterm_unwinds
from harness.request_mix import KINDS, LiveWorld, MixConfig, RequestMix

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = {"rps": 200.0, "k": 20, "p99_ms": 20.0}
SERVE_DEFAULTS = {"log_level": "warning"}  # per-request access logs would cost server CPU


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rps", type=float, default=100.0)
    p.add_argument("--rps-sweep", help="comma-separated rates, run in one server lifetime")
    p.add_argument("--seconds", type=float, default=60.0, help="measured seconds per rate")
    p.add_argument("--warmup-seconds", type=float, default=5.0)
    p.add_argument("--floor-seconds", type=float, default=10.0, help="/healthz run per rate")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--kind", choices=KINDS, default="all")
    p.add_argument("--events-share", type=float, default=0.1)
    p.add_argument("--unknown-share", type=float, default=0.03)
    p.add_argument("--max-in-flight", type=int, default=64)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--timeout-s", type=float, default=2.0)
    p.add_argument("--start-timeout-s", type=float, default=300.0, help="wait for /healthz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--label", default="")
    p.add_argument(
        "--server-cpus", help="pin the server to these CPUs (e.g. 0), the client to the others"
    )
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--redis", action="store_true", help="serve with state in a private Redis")
    p.add_argument("--hold-p99-ms", type=float, default=50.0)
    p.add_argument("--overload", type=float, default=0.0, help="factor over the highest rate")
    args = p.parse_args(argv)
    args.rates = [float(r) for r in args.rps_sweep.split(",")] if args.rps_sweep else [args.rps]
    return args


def redact(arg: str) -> str:
    """``KEY=/abs/path/name`` -> ``KEY=<local>/name``: results name no machine's paths."""
    key, sep, value = arg.rpartition("=")
    return f"{key}{sep}<local>/{Path(value).name}" if Path(value).is_absolute() else arg


def recorded_command(argv: list[str], script: str = "benchmarks/serving.py") -> str:
    """The command line without ``--out-dir`` and with absolute paths redacted."""
    kept, skip = [], False
    for arg in argv:
        if skip or arg == "--out-dir" or arg.startswith("--out-dir="):
            skip = arg == "--out-dir"
            continue
        kept.append(redact(arg))
    return shlex.join(["python", script, *kept])


def serve_config(overrides: list[str]):
    """The service's config as ``recsys-serve`` will compose it (bad overrides fail here)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("recsys.conf", version_base="1.3"):
        return compose("serve", overrides=overrides)


def world_root(world) -> Path:
    """The served world's folder; a preset is generated here, before the server looks for it."""
    from recsys.datasets import ensure_world

    if world.data_dir:
        return Path(world.data_dir)
    return ensure_world(world.preset, int(world.seed), world.cache_dir)


def live_world(root: Path, now: int) -> LiveWorld:
    """The world's users and live rooms, read without its (large) events table."""
    from recsys.data.schema import TABLES
    from recsys.data.tables import read_table

    names = ("users", "live_sessions", "showcase")
    t = {n: read_table(root / f"{n}.parquet", TABLES[n]) for n in names}
    return LiveWorld.at(t["users"], t["live_sessions"], t["showcase"], now)


def get_json(port: int, path: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


def wait_healthy(server: ServerProcess, timeout_s: float, workers: int) -> dict:
    """/healthz of the server once it answers, all its workers started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            code = server.proc.returncode
            raise RuntimeError(f"recsys-serve exited with {code}:\n{server.tail()}")
        try:
            health = get_json(server.port, "/healthz", timeout=2.0)
            if workers == 1 or len(children(server.proc.pid)) >= workers:
                return health
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"recsys-serve not healthy after {timeout_s} s:\n{server.tail()}")


def load_config(args: argparse.Namespace, rps: float) -> LoadConfig:
    return LoadConfig(
        rps=rps,
        max_in_flight=args.max_in_flight,
        connections=args.connections,
        timeout_s=args.timeout_s,
    )


async def timed_run(
    server: ServerProcess, requests: list[HttpRequest], config: LoadConfig, redis=None
):
    """One load run and what it cost the server (and its Redis, when it has one)."""
    cpu, wall = server.cpu_seconds(), time.monotonic()
    redis_cpu = redis.cpu_seconds() if redis is not None else 0.0
    result = await run_open_loop(HOST, server.port, requests, config)
    cpu, wall = server.cpu_seconds() - cpu, time.monotonic() - wall
    redis_cpu = redis.cpu_seconds() - redis_cpu if redis is not None else None
    answered = int(result.status.astype(bool).sum())  # requests the server responded to
    cost = {
        "server_cpu_s": round(cpu, 2),
        "server_cpu_cores": round(cpu / wall, 3),
        "server_cpu_ms_per_answer": round(cpu * 1e3 / max(answered, 1), 3),
        "redis_cpu_s": None if redis_cpu is None else round(redis_cpu, 2),
        "wall_s": round(wall, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        **server.memory_mib(),
    }
    return result, cost


async def measure_rate(
    server: ServerProcess, mix: RequestMix, args, rps: float, speed: float, redis=None
):
    """The /healthz floor, then the request mix, at one rate."""
    config = load_config(args, rps)
    floor_n = max(1, round(rps * args.floor_seconds))
    floor, _ = await timed_run(
        server, [HttpRequest("GET", "/healthz", label="healthz")] * floor_n, config
    )
    now = get_json(server.port, "/healthz")["now"]
    result, cost = await timed_run(
        server, mix.requests(round(rps * args.seconds), rps, now, speed), config, redis
    )
    return {
        "rps": rps,
        **result.summary(),
        "by_endpoint": {label: result.summary(label) for label in ("recommend", "events")},
        "floor_healthz": floor.summary(),
        "first_errors": result.first_errors,
        "connections_opened": result.connections_opened,
        "client_cpu_s": result.client_cpu_s,
        **cost,
    }


async def run_rates(
    server: ServerProcess, mix: RequestMix, args, speed: float, redis=None
) -> tuple[dict, list, dict | None]:
    now = get_json(server.port, "/healthz")["now"]
    warm_n = round(args.rates[0] * args.warmup_seconds)
    warm, _ = await timed_run(
        server, mix.requests(warm_n, args.rates[0], now, speed), load_config(args, args.rates[0])
    )
    warmup = {"requests": warm_n, "ok": warm.summary()["ok"], "errors": warm.summary()["errors"]}
    rows = []
    for rps in args.rates:
        rows.append(await measure_rate(server, mix, args, rps, speed, redis))
        print(markdown_row(rows[-1]), flush=True)
    best = highest_holding(rows, args.hold_p99_ms)
    overload = None
    if args.overload > 0 and best is not None:
        rps = round(best * args.overload, 1)
        overload = await measure_rate(server, mix, args, rps, speed, redis)
        print(markdown_row(overload), flush=True)
    return warmup, rows, overload


def recommend_p99(row: dict) -> float | None:
    return row["by_endpoint"]["recommend"]["latency_ms"]["from_schedule"]["p99"]


def highest_holding(rows: list[dict], p99_ms: float) -> float | None:
    """The highest rate whose /recommend p99 stayed within ``p99_ms`` with no errors at all
    (no request shed either)."""
    held = [
        r["rps"]
        for r in rows
        if r["errors"]["total"] == 0 and (recommend_p99(r) or float("inf")) <= p99_ms
    ]
    return max(held, default=None)


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def verdict(report: dict) -> str:
    at = [r for r in report["rates"] if r["rps"] == TARGET["rps"]]
    target = f"p99 <= {TARGET['p99_ms']:g} ms for k=20 at {TARGET['rps']:g} rps with no errors"
    if report["settings"]["k"] != TARGET["k"] or not at:
        return f"Target ({target}) not measured by this run."
    p99, errors = recommend_p99(at[0]), at[0]["errors"]["total"]
    met = p99 is not None and p99 <= TARGET["p99_ms"] and errors == 0
    outcome = "MET" if met else "NOT MET"
    return f"Target {target}: {outcome} (/recommend p99 {p99} ms, {errors} errors)."


def overload_text(report: dict) -> str:
    """The highest rate that held, and what twice (``--overload``) of it did."""
    hold, best = report["settings"]["hold_p99_ms"], report["highest_holding"]
    if best is None:
        return f"No rate of this sweep held /recommend p99 <= {hold:g} ms with no errors."
    text = (
        f"Highest rate of this sweep holding /recommend p99 <= {hold:g} ms with no errors: "
        f"{best:g} rps."
    )
    o = report.get("overload")
    if o is None:
        return text
    admitted = o["by_endpoint"]["recommend"]["latency_ms"]["from_schedule"]
    shed, codes = o["shed_latency_ms"], o["status_codes"]
    return (
        f"{text}\n\nOverload at {o['rps']:g} rps ({o['requests']} requests): {o['ok']} answered, "
        f"status codes {codes}, {o['errors']['timeout']} timeouts, "
        f"{o['errors']['connection']} connection errors, {o['errors']['dropped']} dropped by the "
        f"client; admitted /recommend p50 {_ms(admitted['p50'])} / p99 {_ms(admitted['p99'])} ms; "
        f"429 answers p50 {_ms(shed['from_send']['p50'])} / p99 {_ms(shed['from_send']['p99'])} "
        f"ms from send ({_ms(shed['from_schedule']['p99'])} ms p99 from schedule)."
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def markdown_row(r: dict) -> str:
    lat, rec = r["latency_ms"], r["by_endpoint"]["recommend"]["latency_ms"]["from_schedule"]
    sched, sent = lat["from_schedule"], lat["from_send"]
    floor, e = r["floor_healthz"]["latency_ms"]["from_schedule"], r["errors"]
    cells = [
        f"{r['rps']:g}", r["requests"], r["achieved_rps"],
        f"{e['total']} ({e['status']}/{e['timeout']}/{e['connection']}/{e['dropped']})",
        r["status_codes"].get("429", 0),
        *(_ms(sched[q]) for q in ("p50", "p90", "p99", "max")),
        f"{_ms(sent['p50'])} / {_ms(sent['p99'])}", _ms(rec["p99"]),
        f"{_ms(floor['p50'])} / {_ms(floor['p99'])}",
        r["server_cpu_cores"], r["server_cpu_ms_per_answer"],
        f"{r['rss_mib']} / {r.get('pss_mib', '-')}",
    ]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(report: dict) -> str:
    s, m = report["settings"], report["machine"]
    head = (
        "| rps | requests | achieved rps | errors (status/timeout/conn/dropped) | of them 429 "
        "| p50 | p90 | p99 | max | from send p50 / p99 | /recommend p99 | /healthz floor p50 / p99 "
        "| server CPU cores | server CPU ms/answer | server RSS / PSS MiB |"
    )
    return "\n".join(
        [
            f"# Serving latency\n\n`{report['command']}`\n",
            f"Server: `recsys-serve {' '.join(report['serve_overrides'])}`; /healthz: "
            f"`{json.dumps(report['health_start'])}`. k={s['k']}, kind={s['kind']}, events share "
            f"{s['events_share']}, {s['seconds']:g} s per rate. Machine: {m['machine']}, "
            f"{m['cpu_count']} CPUs, load {report['load_before']} -> {report['load_after']}; "
            + (
                f"server pinned to CPU {s['server_cpus']}, the client to the others.\n"
                if s.get("server_cpus")
                else "server and client share the CPUs.\n"
            ),
            "Latencies in ms from each request's scheduled send time (open loop), all requests.\n",
            head,
            "|---:" * 2 + "|---:" * 13 + "|",
            *(markdown_row(r) for r in report["rates"]),
            *([markdown_row(report["overload"])] if report.get("overload") else []),
            f"\n{report['verdict']}\n",
            overload_text(report) + "\n",
        ]
    )


def save(report: dict, out_dir: Path, label: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "serving" + (f"_{label}" if label else "")
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(report))


def mix_config(args: argparse.Namespace) -> MixConfig:
    return MixConfig(
        k=args.k,
        kind=args.kind,
        events_share=args.events_share,
        unknown_share=args.unknown_share,
        seed=args.seed,
    )


def pin_cpus(spec: str | None) -> set[int] | None:
    """The server's CPUs; this process (the client) keeps the rest, so neither preempts the
    other. None: no pinning."""
    if not spec:
        return None
    server = {int(c) for c in spec.split(",")}
    client = set(os.sched_getaffinity(0)) - server
    if not server <= set(os.sched_getaffinity(0)) or not client:
        raise SystemExit(f"--server-cpus {spec}: needs a strict subset of this process's CPUs")
    os.sched_setaffinity(0, client)
    return server


def benchmark(args, argv: list[str], log_dir: Path) -> dict:
    cfg = serve_config(args.serve_arg)
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    root = world_root(cfg.world)
    server_cpus = pin_cpus(args.server_cpus)
    redis = RedisProcess(log_dir, server_cpus) if args.redis else None
    overrides = list(args.serve_arg)
    if redis is not None:
        overrides += ["state.backend=redis", f"state.redis_url={redis.url}"]
    server = ServerProcess(overrides, SERVE_DEFAULTS, log_dir, server_cpus)
    try:
        health = wait_healthy(server, args.start_timeout_s, int(cfg.workers))
        startup_s = round(time.monotonic() - started, 1)
        speed = 1.0 if cfg.clock.start == "wall" else float(cfg.clock.speed)
        mix = RequestMix(live_world(root, int(health["now"])), mix_config(args))
        warmup, rates, overload = asyncio.run(run_rates(server, mix, args, speed, redis))
        health_end = get_json(server.port, "/healthz")
    finally:
        server.stop()
        if redis is not None:
            redis.stop()
    report = {
        "command": recorded_command(argv),
        "serve_overrides": [
            redact(a) for a in server.args if not a.startswith(("port=", "state.redis_url="))
        ],
        "settings": {k: v for k, v in vars(args).items() if k not in ("out_dir", "serve_arg")},
        "machine": machine(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "startup_s": startup_s,  # launch to healthy, generating a missing preset world included
        "health_start": health,
        "health_end": health_end,
        "warmup": warmup,
        "rates": rates,
        "highest_holding": highest_holding(rates, args.hold_p99_ms),
        "overload": overload,
    }
    report["verdict"] = verdict(report)
    return report


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="recsys-serving-"))
    print(f"server log: {log_dir / 'serve.log'}", flush=True)
    with sigterm_unwinds():
        report = benchmark(args, argv, log_dir)
    save(report, args.out_dir, args.label)
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
