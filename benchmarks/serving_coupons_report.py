"""The tables and verdict of ``serving_coupons.py``: per config, per block, and B - A."""

from __future__ import annotations

import numpy as np
from harness.loadgen import ERRORS, LoadResult, latency_stats

CONFIGS = {"A": "without coupons", "B": "with coupons.model and /coupon traffic"}


def _errors(results: list[LoadResult]) -> dict:
    outcome = np.concatenate([r.outcome for r in results])
    counts = {name: int((outcome == name).sum()) for name in ERRORS}
    return {**counts, "total": sum(counts.values())}


def _latency(results: list[LoadResult], label: str, since: str = "scheduled") -> dict:
    parts = []
    for r in results:
        rows = (r.labels == label) & (r.outcome == "ok")
        start = r.scheduled if since == "scheduled" else r.sent
        parts.append(r.done[rows] - start[rows])
    return latency_stats(np.concatenate(parts) if parts else np.array([]))


def _count(results: list[LoadResult], label: str) -> int:
    return int(sum((r.labels == label).sum() for r in results))


def _server_ms(blocks: list[dict]) -> dict:
    """Mean time inside the server per answer, by endpoint, pooled over blocks."""
    total: dict[str, list[float]] = {}
    for b in blocks:
        for endpoint, t in b["server_time"].items():
            acc = total.setdefault(endpoint, [0, 0.0])
            acc[0], acc[1] = acc[0] + t["answers"], acc[1] + t["seconds"]
    return {e: {"answers": n, "mean_ms": round(s * 1e3 / n, 3)} for e, (n, s) in total.items()}


def config_summary(blocks: list[dict]) -> dict:
    """Pooled over a config's blocks: requests, errors, latencies by endpoint, server CPU."""
    results = [b["result"] for b in blocks]
    cpu, wall = sum(b["server_cpu_s"] for b in blocks), sum(b["wall_s"] for b in blocks)
    answered = sum(int(r.status.astype(bool).sum()) for r in results)
    return {
        "blocks": len(blocks),
        "requests": {label: _count(results, label) for label in ("recommend", "events", "coupon")},
        "errors": _errors(results),
        "recommend_ms": _latency(results, "recommend"),
        "recommend_from_send_ms": _latency(results, "recommend", "sent"),
        "events_ms": _latency(results, "events"),
        "coupon_ms": _latency(results, "coupon"),
        "server_mean_ms": _server_ms(blocks),
        "server_cpu_cores": round(cpu / wall, 3),
        "server_cpu_ms_per_answer": round(cpu * 1e3 / max(answered, 1), 3),
        "load_avg_1m": [b["load_avg_1m"] for b in blocks],
    }


def block_row(b: dict) -> dict:
    r = b["result"]
    rec, coupon = _latency([r], "recommend"), _latency([r], "coupon")
    return {
        "pair": b["pair"], "config": b["config"], "load_avg_1m": b["load_avg_1m"],
        "requests": len(r.labels), "errors": _errors([r])["total"],
        "recommend_p50_ms": rec["p50"], "recommend_p99_ms": rec["p99"],
        "coupon_p99_ms": coupon["p99"], "server_cpu_s": b["server_cpu_s"],
        "first_errors": r.first_errors,
    }  # fmt: skip


# Refused or failed requests are left out of the latencies. Below a tenth of the 1% tail the
# p99 is read from, counting them as infinitely slow would move it by less than 0.1 percentile.
MAX_REFUSED_SHARE = 0.001


def verdict(diff: dict, errors: dict, requests: dict, target_ms: float) -> str:
    """MET: the interval's upper end within the target, and each config refused or failed at
    most ``MAX_REFUSED_SHARE`` of its requests; NOT MET: the interval's lower end above the
    target; otherwise not shown (the interval straddles the target, or the service refused
    enough requests at this rate that the latencies of the admitted ones say too little)."""
    low, high = diff["interval_ms"]
    clean = all(errors[c] <= MAX_REFUSED_SHARE * requests[c] for c in CONFIGS)
    outcome = (
        "MET" if high <= target_ms and clean else "NOT MET" if low > target_ms else "NOT SHOWN"
    )
    shed = ", ".join(f"{c} {errors[c]} of {requests[c]}" for c in CONFIGS)
    return (
        f"Target: the coupon decision adds <= {target_ms:g} ms to the /recommend p99: {outcome} "
        f"(B - A {diff['diff_ms']:+.2f} ms, 95% interval [{low:+.2f}, {high:+.2f}] ms over "
        f"resampled block pairs; requests refused or failed: {shed})."
    )


def summarise(blocks: list[dict], report: dict, target_ms: float) -> dict:
    configs = {c: config_summary([b for b in blocks if b["config"] == c]) for c in CONFIGS}
    errors = {c: s["errors"]["total"] for c, s in configs.items()}
    requests = {c: sum(s["requests"].values()) for c, s in configs.items()}
    return {
        "configs": configs,
        "blocks": [block_row(b) for b in blocks],
        "verdict": verdict(report["comparison"]["p99"], errors, requests, target_ms),
    }


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _config_line(name: str, s: dict) -> str:
    rec, send, cp, e = s["recommend_ms"], s["recommend_from_send_ms"], s["coupon_ms"], s["errors"]
    cells = [
        f"{name}: {CONFIGS[name]}", s["requests"]["recommend"], s["requests"]["coupon"],
        f"{e['total']} ({e['status']}/{e['timeout']}/{e['connection']}/{e['dropped']})",
        _ms(rec["p50"]), _ms(rec["p99"]), _ms(send["p99"]), _ms(s["events_ms"]["p99"]),
        _ms(cp["p50"]), _ms(cp["p99"]), s["server_cpu_cores"], s["server_cpu_ms_per_answer"],
    ]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _diff_line(name: str, d: dict) -> str:
    low, high = d["interval_ms"]
    return (
        f"| {name} | {d['a_ms']:.2f} | {d['b_ms']:.2f} | {d['diff_ms']:+.2f} | "
        f"[{low:+.2f}, {high:+.2f}] | {d['per_pair_median_ms']:+.2f} | "
        f"{d['pairs_b_higher']} of {len(d['per_pair_diff_ms'])} |"
    )


def _inside(report: dict) -> str:
    parts = []
    for name in CONFIGS:
        times = report["configs"][name]["server_mean_ms"]
        shown = ", ".join(f"{e} {t['mean_ms']:.2f}" for e, t in sorted(times.items()))
        parts.append(f"{name} {shown}")
    return (
        "Mean time inside the server per answer (arrival to answer, from `/metrics`; no client "
        f"queueing), ms: {'; '.join(parts)}.\n"
    )


def _in_process(d: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(d["reasons"].items()))
    return (
        f"The trigger alone, in the benchmark's process ({d['calls']:,} viewers, clicks up to "
        f"twice the wait back): {d['observe_cpu_us']:.1f} us of CPU per event shown, "
        f"{d['decide_cpu_us']:.1f} us per decision (wall p99 {d['decide_wall_p99_us']:.1f} us); "
        f"decisions: {reasons}.\n"
    )


def markdown(report: dict) -> str:
    s, m, c = report["settings"], report["machine"], report["comparison"]
    blocks = [
        f"| {b['pair']} | {b['config']} | {b['load_avg_1m']} | {b['requests']} | {b['errors']} | "
        f"{_ms(b['recommend_p50_ms'])} | {_ms(b['recommend_p99_ms'])} | {_ms(b['coupon_p99_ms'])} |"
        for b in report["blocks"]
    ]
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(c["coupon_reasons"].items()))
    return "\n".join([
        f"# What the coupon decision adds to /recommend\n\n`{report['command']}`\n",
        f"Servers: A `recsys-serve {' '.join(report['serve_overrides']['A'])}`, B the same with "
        f"`coupons.model`. {s['pairs']} pairs of {s['block_seconds']:g} s blocks at "
        f"{s['rps']:g} requests/s in A B / B A order, both servers up the whole run and driven "
        f"one at a time; B's stream is A's plus {s['coupon_share']:g} of /coupon requests (A "
        f"leaves them out, the rest at the same times); events share {s['events_share']:g}, "
        f"dated up to {s['event_lag_s']} s back; k={s['k']}. Machine: {m['machine']}, "
        f"{m['cpu_count']} CPUs shared with other work, load {report['load_before']} -> "
        f"{report['load_after']}.\n",
        "Latencies in ms from each request's scheduled time (open loop), pooled over blocks.\n",
        "| config | /recommend | /coupon | errors (status/timeout/conn/dropped) | /recommend p50 "
        "| p99 | p99 from send | /events p99 | /coupon p50 | /coupon p99 | server CPU cores "
        "| server CPU ms/answer |",
        "|---" + "|---:" * 11 + "|",
        *(_config_line(n, report["configs"][n]) for n in ("A", "B")),
        "\nB - A of /recommend, 95% interval from resampling whole block pairs "
        f"({s['n_boot']} draws):\n",
        "| statistic | A | B | B - A | 95% interval | per-pair median | pairs B higher |",
        "|---" + "|---:" * 6 + "|",
        _diff_line("p99", c["p99"]), _diff_line("p50", c["p50"]),
        _diff_line("p99 from send", c["p99_from_send"]),
        "\n" + _inside(report),
        _in_process(report["decision_cost"]),
        f"/coupon decisions in B ({sum(c['coupon_reasons'].values())}): {reasons}.\n",
        f"{report['verdict']}\n",
        "Blocks in run order:\n",
        "| pair | config | load 1m | requests | errors | /recommend p50 | p99 | /coupon p99 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
        *blocks, "",
    ])  # fmt: skip
