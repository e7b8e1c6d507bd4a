"""The locked service under load: valid requests with refused ones mixed in, against a clean run.

    python benchmarks/privacy_service.py [--rps 100] [--bad-share 0.1] [--blocks 8]
        [--block-seconds 20] [--serve-arg checkpoint=... ...] [--label NAME]

Starts ``recsys-serve`` with tokens (``auth.tokens_file``: an ingest, a read, an operator and a
"flood" token limited to one request per 5 s), ``auth.recommend_open=false`` and a 64 kB body
limit, then runs blocks of the serving benchmark's request mix (``harness.request_mix``:
``/recommend`` with the read token, 10% ``/events`` batches with the ingest token) at
``--rps``, alternating *clean* blocks with *mixed* ones (order clean, mixed, mixed, clean, ...
so a drift of the shared machine falls on both). A mixed block sends the same valid schedule
plus refused requests making ``--bad-share`` of all: events without a token or with a wrong one
(401), a recommendation with the ingest token (403), an over-size events body (413) and the
flood token over its rate (429). Valid requests' latency counts from the time each was due.

Nothing unauthorised may be ingested: ``/healthz`` counts the events the service judged
(accepted + rejected by its rules; each worker its own, so it is asked 40 times, for every
worker to answer); over the run that must equal the events of the valid ``/events`` requests
answered 200, and every refused kind is counted by its status.

Writes ``benchmarks/results/privacy_service[_label].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from harness.loadgen import LoadConfig, run_open_loop
from harness.processes import HOST, ServerProcess
from harness.request_mix import LiveWorld, MixConfig, RequestMix
from serving import get_json, live_world, redact, serve_config, wait_healthy, world_root

RESULTS = Path(__file__).resolve().parent / "results"
SERVE = {"log_level": "warning", "auth.recommend_open": "false", "admission.max_body_bytes": 65536}
BAD_KINDS = ("no_token", "wrong_token", "wrong_scope", "over_size", "over_rate")
MARKED_USER = 4_242_424_242  # the user id of every event a refused request carries


@dataclass(frozen=True, slots=True)
class Request:
    """``harness.http_client.HttpRequest`` with extra headers (the bearer token)."""

    method: str
    target: str
    body: bytes = b""
    label: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, host: str) -> bytes:
        head = f"{self.method} {self.target} HTTP/1.1\r\nHost: {host}\r\n"
        if self.body or self.method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self.headers)
        return (head + "\r\n").encode("ascii") + self.body


def tokens_file(folder: Path) -> dict[str, str]:
    """Fresh random tokens, stored by their SHA-256 only; returns name -> token."""
    tokens = {name: secrets.token_urlsafe(24) for name in ("ingest", "read", "ops", "flood")}
    scopes = {"ingest": "[ingest]", "read": "[read]", "ops": "[operator]", "flood": "[read]"}
    lines = []
    for n, t in tokens.items():
        limit = ", rate_per_s: 0.2, burst: 1" if n == "flood" else ""
        digest = hashlib.sha256(t.encode()).hexdigest()
        lines.append(f"- {{name: {n}, scopes: {scopes[n]}, sha256: {digest}{limit}}}")
    (folder / "tokens.yaml").write_text("\n".join(lines) + "\n")
    return tokens


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("Authorization", f"Bearer {token}"),)


def valid(mix: RequestMix, n: int, rps: float, now: int, tokens: dict) -> list[Request]:
    out = []
    for r in mix.requests(n, rps, now):
        token = tokens["ingest"] if r.label == "events" else tokens["read"]
        out.append(Request(r.method, r.target, r.body, r.label, bearer(token)))
    return out


def bad(kind: str, world: LiveWorld, now: int, tokens: dict, rng) -> Request:
    session, streamer = (int(x) for x in world.rooms[rng.integers(len(world.rooms))])
    event = {"ts": now, "user_id": MARKED_USER, "event_type": "enter", "session_id": session,
             "streamer_id": streamer}  # fmt: skip
    body = json.dumps({"events": [event]}).encode()
    label = f"bad_{kind}"
    if kind == "no_token":
        return Request("POST", "/events", body, label)
    if kind == "wrong_token":
        return Request("POST", "/events", body, label, bearer(secrets.token_urlsafe(24)))
    if kind == "over_size":
        big = json.dumps({"events": [event] * 700}).encode()  # ~80 kB over the 64 kB limit
        return Request("POST", "/events", big, label, bearer(tokens["ingest"]))
    user = int(world.users[rng.integers(len(world.users))])
    token = tokens["ingest"] if kind == "wrong_scope" else tokens["flood"]
    return Request("GET", f"/recommend?user={user}&k=20", b"", label, bearer(token))


def block(condition: str, args, mix, world, tokens, now, rng) -> tuple[list[Request], float]:
    n_valid = int(args.rps * args.block_seconds)
    requests = valid(mix, n_valid, args.rps, now, tokens)
    if condition == "clean":
        return requests, args.rps
    n_bad = round(n_valid * args.bad_share / (1.0 - args.bad_share))
    kinds = [BAD_KINDS[i % len(BAD_KINDS)] for i in range(n_bad)]
    mixed = requests + [bad(k, world, now, tokens, rng) for k in kinds]
    order = rng.permutation(len(mixed))
    return [mixed[i] for i in order], args.rps / (1.0 - args.bad_share)


def events_in(request: Request) -> int:
    return len(json.loads(request.body)["events"]) if request.label == "events" else 0


def judged(health: dict) -> int:
    return int(health["events_accepted"]) + int(health["events_rejected"])


def judged_by_workers(port: int, polls: int = 40) -> int:
    """The events every worker judged: each worker counts its own, so ``/healthz`` is asked
    until each worker has answered (the kernel hands each new connection to one of them)."""
    latest: dict[int, int] = {}
    for _ in range(polls):
        health = get_json(port, "/healthz")
        latest[int(health.get("worker_pid", 0))] = judged(health)
    return sum(latest.values())


async def run_block(server: ServerProcess, requests: list[Request], rate: float, args) -> dict:
    """One block: latency of the valid requests, refused ones by kind and status, the server's
    CPU time, and the events the service judged against those the valid requests carried."""
    port = server.port
    before, cpu = judged_by_workers(port), server.cpu_seconds()
    config = LoadConfig(rps=rate, max_in_flight=args.max_in_flight, connections=16, timeout_s=2.0)
    result = await run_open_loop(HOST, port, requests, config)
    cpu = server.cpu_seconds() - cpu
    after = judged_by_workers(port)
    labels, ok = result.labels, result.outcome == "ok"
    is_valid = np.isin(labels, ["recommend", "events"])
    sent_events = sum(events_in(requests[i]) for i in np.flatnonzero((labels == "events") & ok))
    refused = {}
    for kind in BAD_KINDS:
        rows = labels == f"bad_{kind}"
        codes = np.where(result.status[rows] > 0, result.status[rows].astype(str),
                         result.outcome[rows].astype(str))  # fmt: skip
        values, counts = np.unique(codes, return_counts=True)
        refused[kind] = {str(v): int(c) for v, c in zip(values, counts, strict=True)}
    return {
        "due_ms": ((result.done - result.scheduled)[is_valid & ok] * 1e3).tolist(),
        "sent_ms": ((result.done - result.sent)[is_valid & ok] * 1e3).tolist(),
        "server_cpu_s": round(cpu, 3),
        "bad": int((~is_valid).sum()),
        "valid": int(is_valid.sum()),
        "valid_ok": int((is_valid & ok).sum()),
        "valid_errors": _outcomes(result, is_valid & ~ok),
        "refused": refused,
        "events_sent_valid": sent_events,
        "events_judged": after - before,
        "load_1m": round(os.getloadavg()[0], 2),
    }


def _outcomes(result, rows) -> dict:
    codes = np.where(result.status[rows] > 0, result.status[rows].astype(str),
                     result.outcome[rows].astype(str))  # fmt: skip
    values, counts = np.unique(codes, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def percentiles(ms: list[float]) -> dict:
    if not ms:
        return {"count": 0}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"count": len(ms), "p50": round(float(p50), 2), "p90": round(float(p90), 2),
            "p99": round(float(p99), 2)}  # fmt: skip


def _merged(counts: list[dict]) -> dict:
    out: dict[str, int] = {}
    for c in counts:
        for k, n in c.items():
            out[k] = out.get(k, 0) + n
    return out


def summarise(blocks: list[dict]) -> dict:
    out = {}
    for condition in ("clean", "mixed"):
        bs = [b for b in blocks if b["condition"] == condition]
        refused = {k: _merged([b["refused"][k] for b in bs]) for k in BAD_KINDS}
        out[condition] = {
            "blocks": len(bs),
            "valid": sum(b["valid"] for b in bs),
            "valid_ok": sum(b["valid_ok"] for b in bs),
            "due_ms": percentiles([x for b in bs for x in b["due_ms"]]),
            "sent_ms": percentiles([x for b in bs for x in b["sent_ms"]]),
            "valid_errors": _merged([b["valid_errors"] for b in bs]),
            "refused": refused if condition == "mixed" else {},
            "events_sent_valid": sum(b["events_sent_valid"] for b in bs),
            "events_judged": sum(b["events_judged"] for b in bs),
            "server_cpu_s": round(sum(b["server_cpu_s"] for b in bs), 2),
            "bad": sum(b["bad"] for b in bs),
        }
    clean, mixed = out["clean"]["due_ms"], out["mixed"]["due_ms"]
    out["p99_ratio_mixed_over_clean"] = round(mixed["p99"] / clean["p99"], 3)
    out["p50_ratio_mixed_over_clean"] = round(mixed["p50"] / clean["p50"], 3)
    pairs = [(blocks[i], blocks[i + 1]) for i in range(0, len(blocks) - 1, 2)]
    out["p99_ratio_per_pair"] = [
        round(percentiles(m["due_ms"])["p99"] / percentiles(c["due_ms"])["p99"], 3)
        for c, m in (sorted(p, key=lambda b: b["condition"]) for p in pairs)
    ]
    # The same valid schedule in both: the extra CPU of a mixed block is its refusals'.
    extra = out["mixed"]["server_cpu_s"] - out["clean"]["server_cpu_s"]
    out["server_cpu_ms_per_refusal"] = round(extra * 1e3 / max(out["mixed"]["bad"], 1), 3)
    out["server_cpu_ms_per_valid"] = round(
        out["clean"]["server_cpu_s"] * 1e3 / max(out["clean"]["valid"], 1), 3
    )
    out["unauthorised_events_ingested"] = sum(
        b["events_judged"] - b["events_sent_valid"] for b in blocks
    )
    return out


def markdown(result: dict) -> str:
    s, c, m = result["summary"], result["summary"]["clean"], result["summary"]["mixed"]
    row = "| {} | {} | {} | {} | {} | {} | {} |".format
    lines = [
        "# The locked service under load: clean and mixed runs side by side",
        "",
        f"`{result['command']}`",
        "",
        f"Server: `recsys-serve {' '.join(result['server_args'])}`. {result['blocks']} blocks of "
        f"{result['block_seconds']} s, clean and mixed alternating (C M M C ...), valid requests "
        f"at {result['rps']} rps in both; mixed blocks add {result['bad_share']:.0%} refused "
        f"requests. Machine: {result['machine']}, load {result['load_before']} -> "
        f"{result['load_after']} (shared with other jobs); server and client share the CPUs.",
        "",
        "Valid requests (latency from the time each was due, ms):",
        "",
        "| run | valid | answered 200 | p50 | p90 | p99 | p99 from send |",
        "|---|---|---|---|---|---|---|",
        row("clean", c["valid"], c["valid_ok"], c["due_ms"]["p50"], c["due_ms"]["p90"],
            c["due_ms"]["p99"], c["sent_ms"]["p99"]),
        row("mixed", m["valid"], m["valid_ok"], m["due_ms"]["p50"], m["due_ms"]["p90"],
            m["due_ms"]["p99"], m["sent_ms"]["p99"]),
        "",
        f"Valid requests not answered 200 (shed by admission control when the worker falls "
        f"behind): clean {c['valid_errors']}, mixed {m['valid_errors']}.",
        "",
        f"p99 mixed / clean: **{s['p99_ratio_mixed_over_clean']}** (p50: "
        f"{s['p50_ratio_mixed_over_clean']}); per adjacent clean-mixed pair: "
        f"{s['p99_ratio_per_pair']}. Server CPU: {s['server_cpu_ms_per_valid']} ms per valid "
        f"request (clean blocks); per refused one (the mixed blocks' extra CPU over their "
        f"refusals): {_refusal_cpu(s['server_cpu_ms_per_refusal'])}.",
        "",
        "Refused requests of the mixed blocks, by kind: answers (status: count)",
        "",
        "| kind | answers |",
        "|---|---|",
    ]  # fmt: skip
    lines += [f"| {k} | {v} |" for k, v in m["refused"].items()]
    lines += [
        "",
        f"Ingestion: the valid `/events` requests answered 200 carried "
        f"{c['events_sent_valid'] + m['events_sent_valid']} events; the service judged "
        f"{c['events_judged'] + m['events_judged']} (accepted + refused by its rules). Events of "
        f"unauthorised requests that reached ingestion: **{s['unauthorised_events_ingested']}**.",
    ]
    return "\n".join(lines) + "\n"


def _refusal_cpu(ms: float) -> str:
    if ms <= 0:
        return (
            f"not measurable ({ms} ms: lost in the blocks' noise, e.g. fewer valid requests shed)"
        )
    return f"{ms} ms"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rps", type=float, default=100.0)
    p.add_argument("--bad-share", type=float, default=0.1)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--block-seconds", type=float, default=20.0)
    p.add_argument("--warmup-seconds", type=float, default=5.0)
    p.add_argument("--events-share", type=float, default=0.1)
    p.add_argument("--max-in-flight", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--start-timeout-s", type=float, default=300.0)
    p.add_argument("--label", default="")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    return p.parse_args(argv)


async def measure(args, server: ServerProcess, tokens: dict) -> list[dict]:
    cfg = serve_config(server.args[:-2])
    now = get_json(server.port, "/healthz")["now"]
    world = live_world(world_root(cfg.world), now)
    mix = RequestMix(world, MixConfig(k=20, events_share=args.events_share, seed=args.seed))
    rng = np.random.default_rng(args.seed)
    n_warm = int(args.rps * args.warmup_seconds)
    await run_open_loop(HOST, server.port, valid(mix, n_warm, args.rps, now, tokens),
                        LoadConfig(rps=args.rps))  # fmt: skip
    blocks = []
    for b in range(args.blocks):
        condition = "clean" if b % 4 in (0, 3) else "mixed"
        now = get_json(server.port, "/healthz")["now"]
        requests, rate = block(condition, args, mix, world, tokens, now, rng)
        stats = await run_block(server, requests, rate, args)
        print(f"block {b} {condition}: p99 {percentiles(stats['due_ms']).get('p99')} ms, "
              f"load {stats['load_1m']}", flush=True)  # fmt: skip
        blocks.append({"condition": condition, **stats})
    return blocks


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="privacy_service_"))
    tokens = tokens_file(folder)
    overrides = [*args.serve_arg, f"auth.tokens_file={folder / 'tokens.yaml'}"]
    server = ServerProcess(overrides, SERVE, folder)
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        wait_healthy(server, args.start_timeout_s, 1)
        blocks = asyncio.run(measure(args, server, tokens))
    finally:
        server.stop()
    result = {
        "command": " ".join(["python", "benchmarks/privacy_service.py", *map(redact, argv)]),
        "server_args": [redact(a) for a in server.args if not a.startswith(("host=", "port="))],
        "rps": args.rps, "bad_share": args.bad_share, "blocks": args.blocks,
        "block_seconds": args.block_seconds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
        "summary": summarise(blocks),
        "per_block": [{k: v for k, v in b.items() if k not in ("due_ms", "sent_ms")}
                      | {"p99_ms": percentiles(b["due_ms"]).get("p99")} for b in blocks],
    }  # fmt: skip
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / ("privacy_service" + (f"_{args.label}" if args.label else ""))
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"server log: {folder / 'serve.log'}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
