"""The ledger over logs larger than memory: DuckDB at several memory limits vs pandas.

    python benchmarks/ledger.py --days 3 7 14 --limits 128MB 512MB 2GB --work-dir /tmp/ledger

1. Runs (or resumes, or reuses) a market of the ``--preset`` world (default ``large``: 80k
   users) under popularity slates for ``max(--days)`` days in ``<work-dir>/run`` (never in the
   repository). The policy is ``PopularityPolicy`` answered once per distinct live set: its
   slates do not depend on the viewer, and the live set changes only when a session starts or
   ends, so this is the same policy at a fraction of the cost (checked against the plain
   policy on a sample of each day's requests).
2. For each ``n`` in ``--days``, a folder of links to the first ``n`` days' parts is measured,
   each engine in a fresh Python process (its own peak RSS, ``VmHWM``): ``Ledger.daily()`` and
   ``Ledger.ltv()`` at each DuckDB ``--limits`` value with ``--threads``, and the in-memory
   pandas ``recsys.market.daily_kpis`` (skipped, with the reason, when the machine has too
   little free memory for it). A bare process (imports only) gives the baseline RSS.
3. Checks the answers agree: every ledger run with the others, and the ledger with pandas
   (counts equal exactly, sums and KPIs with their intervals to a relative 1e-9).

Writes ``benchmarks/results/ledger_<preset>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from recsys.ledger import Ledger
from recsys.market import Market, MarketConfig, PopularityPolicy, daily_kpis
from recsys.market.env import LOG_TABLES
from recsys.market.policy import MarketView, Policy, Requests, Slates

RESULTS = Path(__file__).resolve().parent / "results"
# Ledger column -> daily_kpis column, for counts (exact) and sums (to 1e-9, summation order).
COUNTS = {"viewers": "viewers", "requests": "requests", "impressions": "impressions",
          "slate_orders": "orders"}  # fmt: skip
SUMS = {"slate_gmv": "gmv", "gmv": "all_gmv", "coupon_cost": "coupon_cost"}
KPIS = {"ctr": "ctr", "cvr": "cvr", "slate_gmv_per_viewer": "gmv_per_viewer",
        "true_gmv_per_viewer": "true_gmv_per_viewer"}  # fmt: skip
TOLERANCE = 1e-9


class LiveSetPopularity(Policy):
    """``PopularityPolicy``, asked once per distinct live set among a day's requests."""

    name = "popularity"

    def __init__(self, view: MarketView, check: int = 256) -> None:
        self.inner, self.check = PopularityPolicy(), check
        shelf = view.shelf
        # A session is live at t when start <= t <= end: the set changes at start and end + 1.
        self.bounds = np.unique(np.concatenate([shelf["start_ts"], shelf["end_ts"] + 1]))

    def recommend(self, requests: Requests, market: MarketView) -> Slates:
        span = np.searchsorted(self.bounds, requests.ts, side="right")
        _, first, inverse = np.unique(span, return_index=True, return_inverse=True)
        slates = self.inner.recommend(_subset(requests, first), market)
        out = Slates(slates.session_id[inverse], slates.product_id[inverse])
        sample = np.linspace(0, len(requests) - 1, min(self.check, len(requests))).astype(int)
        plain = self.inner.recommend(_subset(requests, sample), market)
        if not (np.array_equal(plain.session_id, out.session_id[sample])
                and np.array_equal(plain.product_id, out.product_id[sample])):  # fmt: skip
            raise AssertionError("LiveSetPopularity: slates differ from PopularityPolicy's")
        return out

    def observe(self, logs: dict[str, pd.DataFrame]) -> None:
        self.inner.observe(logs)


def _subset(requests: Requests, rows: np.ndarray) -> Requests:
    return Requests(requests.request_id[rows], requests.user_id[rows], requests.ts[rows],
                    requests.k)  # fmt: skip


def generate(run: Path, preset: str, days: int) -> list[dict]:
    """The market run with at least ``days`` days (resumed after its last complete day); the
    record of every invocation that ran some of its days (``<run>/generation.json``)."""
    market = Market(MarketConfig(preset=preset, seed=0), run)
    done = len(list(run.glob("state/day-*.pkl")))
    record = run / "generation.json"
    history = json.loads(record.read_text()) if record.exists() else []
    if done < days:
        print(f"market: {preset}, days {done}..{days - 1} into {run}", flush=True)
        started = time.perf_counter()
        market.run(LiveSetPopularity(market.view), days=days - done, progress=True)
        history.append({"days": f"{done}-{days - 1}", "seconds": time.perf_counter() - started,
                        "loadavg": os.getloadavg()})  # fmt: skip
        record.write_text(json.dumps(history, indent=2) + "\n")
    return history


def prefix(run: Path, days: int, work: Path) -> Path:
    """A run folder of links to the first ``days`` days of every log table."""
    folder = work / f"first-{days:02d}-days"
    for table in LOG_TABLES:
        (folder / table).mkdir(parents=True, exist_ok=True)
        for day in range(days):
            link, part = folder / table / f"part-{day:05d}.parquet", run / table
            if not link.exists():
                link.symlink_to(part / link.name)
    users = folder / "users.parquet"
    if not users.exists():
        users.symlink_to(run / "users.parquet")
    return folder


def log_stats(folder: Path) -> dict:
    """Rows, bytes on disk and Arrow bytes in memory per table (read one part at a time)."""
    out = {}
    for table in LOG_TABLES:
        parts = sorted((folder / table).glob("part-*.parquet"))
        out[table] = {"rows": sum(pq.ParquetFile(p).metadata.num_rows for p in parts),
                      "disk_bytes": sum(p.stat().st_size for p in parts),
                      "memory_bytes": sum(pq.read_table(p).nbytes for p in parts)}  # fmt: skip
    out["total"] = {k: sum(t[k] for t in out.values()) for k in ("rows", "disk_bytes",
                                                                  "memory_bytes")}  # fmt: skip
    return out


def worker(engine: str, folder: Path, limit: str, threads: int, answer: Path) -> None:
    """One measurement, in this (fresh) process: the daily KPIs (and LTV) into ``answer``."""
    timings: dict = {}
    started = time.perf_counter()
    if engine == "ledger":
        with Ledger(folder, memory_limit=limit, threads=threads,
                    temp_directory=answer.parent / f"spill-{answer.stem}") as ledger:  # fmt: skip
            daily = ledger.daily()
            timings["daily_s"] = time.perf_counter() - started
            # Hourly periods: a run of a day or two still has repeat buyers to fit on.
            ltv = ledger.ltv(horizon=30 * 24, period_s=3600)
            timings["ltv_s"] = time.perf_counter() - started - timings["daily_s"]
        timings["ltv"] = {"buyers": len(ltv.users), "mean_ltv": float(ltv.users["ltv"].mean()),
                          "finite": bool(np.isfinite(ltv.users["ltv"]).all())}  # fmt: skip
        daily.to_parquet(answer)
    elif engine == "pandas":
        daily_kpis(folder).to_parquet(answer)
        timings["daily_s"] = time.perf_counter() - started
    # engine "bare": nothing but the imports, the baseline RSS of every process
    timings["peak_rss_mb"] = peak_rss_mb()
    answer.with_suffix(".json").write_text(json.dumps(timings))


def peak_rss_mb() -> float:
    """This process's peak resident memory since its ``exec`` (``VmHWM``: unlike a child's
    ``ru_maxrss``, it does not start from the forking parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(engine: str, folder: Path, limit: str, threads: int, answer: Path) -> dict:
    """Run ``worker`` in a fresh process; its wall seconds, peak RSS and timings."""
    cmd = [sys.executable, __file__, "--worker", engine, "--folder", str(folder),
           "--limit", limit, "--threads", str(threads), "--answer", str(answer)]  # fmt: skip
    started = time.perf_counter()
    code = subprocess.run(cmd).returncode
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{engine} ({limit}) on {folder}: exit {code}")
    row = {"engine": engine, "limit": limit if engine == "ledger" else None, "wall_s": wall}
    return row | json.loads(answer.with_suffix(".json").read_text())


def max_rel(a: pd.Series, b: pd.Series) -> float:
    """Largest relative difference, NaN matching NaN (a mismatch in NaN-ness is infinite)."""
    a, b = a.to_numpy(float), b.to_numpy(float)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    ok = ~np.isnan(a)
    scale = np.maximum(np.abs(a[ok]), np.abs(b[ok]))
    return float(np.max(np.abs(a[ok] - b[ok]) / np.where(scale > 0, scale, 1.0), initial=0.0))


def agreement(ledger: pd.DataFrame, pandas: pd.DataFrame) -> dict:
    """Counts equal exactly; sums and KPIs (with intervals) within ``TOLERANCE``."""
    counts = all(np.array_equal(ledger[o].to_numpy(), pandas[t].to_numpy())
                 for o, t in COUNTS.items())  # fmt: skip
    sums = max(max_rel(ledger[o], pandas[t]) for o, t in SUMS.items())
    kpis = max(max_rel(ledger[o + e], pandas[t + e])
               for o, t in KPIS.items() for e in ("", "_lo", "_hi"))  # fmt: skip
    return {"counts_equal": counts, "sums_max_rel": sums, "kpis_max_rel": kpis,
            "ok": bool(counts and sums <= TOLERANCE and kpis <= TOLERANCE)}  # fmt: skip


def between_limits(answers: list[pd.DataFrame]) -> float:
    """Largest relative difference of any numeric column between ledger answers."""
    first, worst = answers[0], 0.0
    for other in answers[1:]:
        for column in first.select_dtypes("number").columns:
            worst = max(worst, max_rel(first[column], other[column]))
    return worst


def free_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_size(folder: Path, days: int, args: argparse.Namespace, work: Path) -> dict:
    """Every engine on one folder, and whether their answers agree."""
    logs = log_stats(folder)
    answers, rows = {}, [measure("bare", folder, "-", 1, work / f"{folder.name}-bare.parquet")]
    for limit in args.limits:
        answer = work / f"{folder.name}-ledger-{limit}.parquet"
        rows.append(measure("ledger", folder, limit, args.threads, answer))
        answers[limit] = pd.read_parquet(answer)
    need = args.pandas_factor * logs["total"]["memory_bytes"] / 2**20
    size = {
        "folder": folder.name,
        "logs": logs,
        "rows": rows,
        "ledger_max_rel_between_limits": between_limits(list(answers.values())),
    }
    if args.pandas_days is not None and days not in args.pandas_days:
        size["pandas_skipped"] = f"not asked for (--pandas-days), would need ~{need:,.0f} MB"
        return size
    if free_mb() < need:
        size["pandas_skipped"] = f"needs ~{need:,.0f} MB, {free_mb():,.0f} MB free"
        return size
    answer = work / f"{folder.name}-pandas.parquet"
    rows.append(measure("pandas", folder, "-", 1, answer))
    theirs = pd.read_parquet(answer)
    size["ledger_vs_pandas"] = {lim: agreement(a, theirs) for lim, a in answers.items()}
    return size


def _seconds(row: dict, key: str) -> str:
    return f"{row[key]:.1f}" if key in row else "-"


def markdown(report: dict) -> list[str]:
    lines = [f"# The ledger over a `{report['preset']}` market run's logs", "",
             f"`{report['command']}`", "", report["note"], "",
             "| days | log rows | on disk MB | in memory MB | engine | DuckDB limit | wall s "
             "| daily s | LTV s | peak RSS MB | above bare MB |",
             "|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for n, size in report["sizes"].items():
        total, bare = size["logs"]["total"], size["rows"][0]["peak_rss_mb"]
        for r in size["rows"]:
            lines.append(
                f"| {n} | {total['rows']:,} | {total['disk_bytes'] / 2**20:,.0f} | "
                f"{total['memory_bytes'] / 2**20:,.0f} | {r['engine']} | {r['limit'] or ''} | "
                f"{r['wall_s']:.1f} | {_seconds(r, 'daily_s')} | {_seconds(r, 'ltv_s')} | "
                f"{r['peak_rss_mb']:,.0f} | {r['peak_rss_mb'] - bare:,.0f} |"
            )
    n, largest = max(report["sizes"].items(), key=lambda item: int(item[0]))
    runs = "; ".join(f"days {g['days']} in {g['seconds']:.0f} s" + (f" ({g['note']})"
                     if "note" in g else "") for g in report["generation"])  # fmt: skip
    lines += ["", f"The market run's days were generated (popularity slates): {runs}.", "",
              f"The logs of the largest size ({n} days):", "",
              "| table | rows | on disk MB | in memory MB |", "|---|---:|---:|---:|"]  # fmt: skip
    for table, t in largest["logs"].items():
        lines.append(f"| {table} | {t['rows']:,} | {t['disk_bytes'] / 2**20:,.1f} | "
                     f"{t['memory_bytes'] / 2**20:,.1f} |")  # fmt: skip
    lines += ["", "| days | check | result |", "|---:|---|---|"]
    for n, size in report["sizes"].items():
        lines += [f"| {n} | {check} | {result} |" for check, result in _checks(size)]
    return lines


def _checks(size: dict) -> list[tuple[str, str]]:
    """(check, result) lines of one size: agreement, LTV, pandas against the ledger."""
    ledgers = {r["limit"]: r for r in size["rows"] if r["engine"] == "ledger"}
    buyers = {r["ltv"]["buyers"] for r in ledgers.values()}
    means = [r["ltv"]["mean_ltv"] for r in ledgers.values()]
    spread = (max(means) - min(means)) / max(means)  # the fit stops within its tolerance
    out = [("ledger limits with each other",
            f"max rel diff {size['ledger_max_rel_between_limits']:.1e}"),
           ("LTV (BG/NBD x Gamma-Gamma, 30 days)",
            f"buyers {' / '.join(f'{b:,}' for b in sorted(buyers))} at every limit, mean "
            f"{means[0]:,.1f} (max rel diff between limits {spread:.1e})")]  # fmt: skip
    if "pandas_skipped" in size:
        return out + [("pandas", f"skipped: {size['pandas_skipped']}")]
    pandas = next(r for r in size["rows"] if r["engine"] == "pandas")
    for lim, a in size["ledger_vs_pandas"].items():
        out.append((f"ledger {lim} vs pandas: {'agree' if a['ok'] else 'DISAGREE'}",
                    f"counts equal: {a['counts_equal']}, sums max rel {a['sums_max_rel']:.1e}, "
                    f"KPIs and intervals max rel {a['kpis_max_rel']:.1e}; pandas takes "
                    f"{pandas['daily_s'] / ledgers[lim]['daily_s']:.1f}x the time and "
                    f"{pandas['peak_rss_mb'] / ledgers[lim]['peak_rss_mb']:.1f}x the peak "
                    "RSS"))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="large")
    p.add_argument("--days", type=int, nargs="+", default=[3, 7, 14])
    p.add_argument("--limits", nargs="+", default=["128MB", "512MB", "2GB"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default="/tmp/recsys-ledger-bench")
    p.add_argument(
        "--pandas-factor",
        type=float,
        default=2.2,
        help="skip pandas unless this x the logs' Arrow size is free",
    )
    p.add_argument("--pandas-days", type=int, nargs="+", help="sizes pandas runs on (all)")
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--worker", choices=["bare", "ledger", "pandas"], help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--limit", help=argparse.SUPPRESS)
    p.add_argument("--answer", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, Path(args.folder), args.limit, args.threads, Path(args.answer))
        return {}
    work = Path(args.work_dir)
    generation = generate(work / "run", args.preset, max(args.days))
    report = {"command": "python benchmarks/ledger.py " + shlex.join(sys.argv[1:] if argv is None
                                                                     else argv),
              "preset": args.preset, "threads": args.threads, "generation": generation,
              "note": NOTE, "sizes": {},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "loadavg": os.getloadavg()}}  # fmt: skip
    for n in sorted(set(args.days)):
        print(f"measuring the first {n} days", flush=True)
        report["sizes"][n] = measure_size(prefix(work / "run", n, work), n, args, work)
    lines = markdown(report)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"ledger_{args.preset}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"ledger_{args.preset}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


NOTE = (
    "Each engine runs in a fresh process; peak RSS is the whole process (Python, numpy, "
    "pandas, pyarrow and DuckDB loaded: see the `bare` row). In memory: the logs' Arrow "
    "size, all tables."
)

if __name__ == "__main__":
    main()
