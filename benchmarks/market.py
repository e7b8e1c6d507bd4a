"""Market speed: simulated days with a policy, beside the same days without one.

    python benchmarks/market.py --preset small --days 3
    python benchmarks/market.py --preset small --days 2 --checkpoint RUN/two_tower/best.pt \
        --ranker RUN/rank/ranker.pt      # adds the trained pipeline (a recsys-pipeline run)

For each reference policy, the market runs ``--days`` days of the world into a temporary folder;
the baseline generates and writes the same days of the world's own behaviour alone (what
``recsys-simulate`` does per day). With ``--checkpoint`` the trained pipeline runs too, as the
market calls it (``PipelinePolicy``: a day's requests answered in chunks) and, beside it, the
same service asked once per request as an HTTP client would (``GET /recommend``). Reports
seconds per day, events per second, the ratio to the baseline, and the share of the time spent
inside the policy's methods.

Writes ``benchmarks/results/market_<preset>.{json,md}`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recsys.data.schema import TABLES
from recsys.data.tables import write_table
from recsys.market import Market, MarketConfig, OraclePolicy, PopularityPolicy, RandomPolicy
from recsys.market.policy import Policy, Requests, Slates

RESULTS = Path(__file__).resolve().parent / "results"


class Timed(Policy):
    """A policy whose method calls are timed."""

    def __init__(self, inner: Policy) -> None:
        self.inner, self.name, self.seconds = inner, inner.name, 0.0

    def _timed(self, method: str, *args):
        started = time.perf_counter()
        out = getattr(self.inner, method)(*args)
        self.seconds += time.perf_counter() - started
        return out

    def recommend(self, *args):
        return self._timed("recommend", *args)

    def grant_coupons(self, *args):
        return self._timed("grant_coupons", *args)

    def notify(self, *args):
        return self._timed("notify", *args)

    def observe(self, *args):
        return self._timed("observe", *args)


def baseline(config: MarketConfig, days: int, folder: Path) -> tuple[float, int]:
    """Seconds and events of the world's own days, generated and written as the simulator does."""
    market = Market(config, folder)
    for day in range(config.start_day):
        market.organic.frame(market.organic.events(day))  # the world's state before the first
    started, events = time.perf_counter(), 0
    for day in range(config.start_day, config.start_day + days):
        frame = market.organic.frame(market.organic.events(day))
        write_table(frame, folder / f"part-{day:05d}.parquet", TABLES["events"])
        events += len(frame)
    return time.perf_counter() - started, events


def run_policy(config: MarketConfig, days: int, make, folder: Path) -> dict:
    market = Market(config, folder)
    policy = Timed(make(market))
    market.burn_in()  # the days before the first: the world's own, not timed
    started = time.perf_counter()
    counts = market.run(policy, days=days)
    seconds = time.perf_counter() - started
    events = sum(c["events"] for c in counts)
    requests = sum(c["requests"] for c in counts)
    return {"seconds_per_day": seconds / days, "events_per_s": events / seconds,
            "policy_share": policy.seconds / seconds, "requests": requests,
            "events": events}  # fmt: skip


class PerRequest(Policy):
    """The trained service asked once per request, as ``GET /recommend`` is."""

    name = "pipeline"

    def __init__(self, inner) -> None:
        self.inner = inner

    def recommend(self, requests: Requests, market) -> Slates:
        session = np.full((len(requests), requests.k), -1, dtype=np.int64)
        product = session.copy()
        for i, (user, ts) in enumerate(zip(requests.user_id.tolist(), requests.ts.tolist(),
                                           strict=True)):  # fmt: skip
            items = self.inner.service.recommend(user, ts, requests.k, ("product",)).items
            for j, item in enumerate(items[: requests.k]):
                session[i, j], product[i, j] = item.session, item.id
        return Slates(session, product)

    def observe(self, logs) -> None:
        self.inner.observe(logs)


def pipelines(args, config: MarketConfig) -> dict:
    """The trained pipeline, batched and per request, serving from the first market day."""
    from recsys.market.pipeline import PipelinePolicy

    start = config.sim_config().chunk_window(config.start_day)[0]

    def load(market):
        return PipelinePolicy.load(args.checkpoint, start_ts=start, ranker=args.ranker)

    return {"pipeline (batched)": load, "pipeline (per request)": lambda m: PerRequest(load(m))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--start-day", type=int, default=0, help="first market day")
    p.add_argument("--checkpoint", help="a two-tower checkpoint with its index (recsys-pipeline)")
    p.add_argument("--ranker", help="its ranker.pt (default: the blend)")
    p.add_argument("--out-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    config = MarketConfig(preset=args.preset, seed=0, start_day=args.start_day)
    policies = {"random": lambda m: RandomPolicy(seed=0),
                "popularity": lambda m: PopularityPolicy(),
                "oracle": lambda m: OraclePolicy(m.truth)}  # fmt: skip
    if args.checkpoint:
        policies |= pipelines(args, config)
    with tempfile.TemporaryDirectory() as tmp:
        base_s, base_events = baseline(config, args.days, Path(tmp) / "baseline")
        rows = {"world alone": {"seconds_per_day": base_s / args.days,
                                "events_per_s": base_events / base_s, "policy_share": 0.0,
                                "requests": 0, "events": base_events}}  # fmt: skip
        for name, make in policies.items():
            rows[name] = run_policy(config, args.days, make, Path(tmp) / name)
    for row in rows.values():
        row["ratio"] = row["seconds_per_day"] / rows["world alone"]["seconds_per_day"]
    report = {"command": "python benchmarks/market.py " + shlex.join(sys.argv[1:] if argv is None
                                                                     else argv),
              "preset": args.preset, "days": args.days, "rows": rows,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "loadavg": os.getloadavg()}}  # fmt: skip
    lines = [f"# Market speed ({args.preset}, {args.days} days from day {args.start_day})", "",
             f"`{report['command']}`",
             "", "| run | s/day | x world alone | events/s | share in policy | requests |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['seconds_per_day']:.2f} | {r['ratio']:.1f} | "
            f"{r['events_per_s']:,.0f} | {r['policy_share']:.0%} | {r['requests']:,} |"
        )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"market_{args.preset}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"market_{args.preset}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
