"""Ingestion speed of a platform's consent log (``recsys-ingest``'s ``consent`` table).

    python benchmarks/ingest_consent.py --decisions 1000000 4000000 --chunks 250000

A platform-shaped input is generated under ``--work-dir`` (default: a temporary folder,
removed afterwards; never committed): ``--users`` account ids with one streamer, product,
live session and shelf slot, no events, and a consent log of ``--decisions`` rows in one
Parquet file of 250k-row row groups: the platform's own column names and labels (one label
names purpose and channel), ``opt_in`` / ``opt_out``, times in milliseconds, about 5% of the
decisions from viewers the users table does not hold. Each measurement runs in its own process
pinned to one core: a first ingestion into a new world, then the same log again into that
world (every decision already held: counted as present, nothing appended). Reported: the
consent stage's wall seconds and decisions per second, the whole run's CPU seconds and the
process's peak resident memory. Results: ``benchmarks/results/ingest_consent.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

RESULTS = Path(__file__).resolve().parent / "results"
T0 = 1_717_000_000
LABELS = {"个性化推荐": "personalisation", "personalized_coupons": "coupons",
          "all_marketing": "marketing", "sms_marketing": "marketing:sms",
          "app_push": "marketing:push", "站内信": "marketing:in_app"}  # fmt: skip
COLUMNS = {"user_id": "account_id", "purpose": "scene", "channel": None, "granted": "status",
           "ts": "update_time"}  # fmt: skip


def make_input(source: Path, n_decisions: int, n_users: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    source.mkdir(parents=True, exist_ok=True)
    ids = 10**12 + np.arange(n_users)
    one = {"streamers": {"streamer_id": [1], "category": ["beauty"], "follower_count": [10]},
           "products": {"product_id": [1], "category": ["beauty"], "brand": ["b"],
                        "imported": [False], "price": [9.9], "keywords": ["lipstick"]},
           "live_sessions": {"session_id": [1], "streamer_id": [1], "start_ts": [T0],
                             "end_ts": [T0 + 3600]},
           "showcase": {"session_id": [1], "product_id": [1], "start_ts": [T0],
                        "end_ts": [T0 + 60]}}  # fmt: skip
    for name, table in one.items():
        pd.DataFrame(table).to_parquet(source / f"{name}.parquet", index=False)
    pd.DataFrame({"user_id": ids, "age_band": "25-34", "gender": "f", "region": "east",
                  "signup_ts": T0}).to_parquet(source / "users.parquet", index=False)  # fmt: skip
    events = pd.DataFrame({"event_id": [1], "ts": [T0 + 10], "user_id": ids[:1],
                           "event_type": ["like"], "session_id": [1], "streamer_id": [1],
                           "product_id": pd.array([None], "Int64"), "dwell_s": [np.nan],
                           "amount": [np.nan], "coupon_value": [np.nan],
                           "comment": pd.array([None], "str")})  # fmt: skip
    events.to_parquet(source / "events.parquet", index=False)
    stranger = rng.random(n_decisions) < 0.05
    viewer = np.where(stranger, 10**13 + rng.integers(0, n_users, n_decisions),
                      ids[rng.integers(0, n_users, n_decisions)])  # fmt: skip
    ms = (T0 + rng.integers(0, 30 * 86_400, n_decisions)) * 1000
    log = pa.table({"account_id": viewer, "scene": rng.choice(list(LABELS), n_decisions),
                    "status": rng.choice(["opt_in", "opt_out"], n_decisions),
                    "update_time": ms})  # fmt: skip
    pq.write_table(log, source / "consent.parquet", row_group_size=250_000)


def worker(source: Path, out: Path, chunk_rows: int) -> dict:
    """One ingestion in this process (one Arrow thread), measured."""
    from recsys.data.ingest import IngestSettings, TableSource, ingest_files
    from recsys.data.schema import TABLES
    from recsys.utils.resources import measure

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    values = {"purpose": LABELS, "granted": {"opt_in": "true", "opt_out": "false"}}
    tables = {t: TableSource(t, t) for t in TABLES}
    tables["consent"] = TableSource("consent", "consent", COLUMNS, values, "ms")
    settings = IngestSettings(source=str(source), out_dir=str(out), tables=tables,
                              chunk_rows=chunk_rows, key="benchmark-key",
                              progress=False)  # fmt: skip
    cpu0 = time.process_time()
    with measure() as memory:
        report = ingest_files(settings)
    counts, stage = report.counts["consent"], report.stage_seconds["consent"]
    return {"decisions": counts.input, "accepted": counts.accepted,
            "present": report.already_present.get("consent", 0), "rejected": counts.rejected,
            "chunk_rows": chunk_rows, "consent_stage_s": stage,
            "decisions_per_s": round(counts.input / stage), "run_wall_s": round(memory.seconds, 2),
            "run_cpu_s": round(time.process_time() - cpu0, 2),
            "peak_rss_mib": round(memory.peak_rss_mb)}  # fmt: skip


def run_one(source: Path, out: Path, chunk_rows: int, core: int) -> dict:
    """``worker`` in a fresh process pinned to one core (its own peak memory)."""
    command = [sys.executable, __file__, "--worker", str(source), str(out), str(chunk_rows)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    lines = ["# Consent log ingestion (one core, lenient, pseudonymised)", "",
             "The consent stage maps labels and values, pseudonymises, checks every decision, "
             "looks it up among those already held and writes the world's consent.parquet; "
             "'again' ingests the same log into the world it just made (every decision present). "
             "The world's whole decision log is held in memory while it is rewritten (one file), "
             "so memory grows with the log, unlike the events'.",
             "", "| run | decisions | users | chunk rows | consent stage s | decisions/s | "
             "run CPU s | peak RSS MiB | load avg | command |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['run']} | {r['decisions']:,} | {r['users']:,} "
                     f"| {r['chunk_rows']:,} | {r['consent_stage_s']} "
                     f"| {r['decisions_per_s']:,} | {r['run_cpu_s']} | {r['peak_rss_mib']} "
                     f"| {r['loadavg_after'][0]:.1f} | `{r['command']}` |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--decisions", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--chunks", type=int, default=250_000)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--core", type=int, default=0)
    p.add_argument("--work-dir", default=None, help="raw inputs and outputs (default: temporary)")
    p.add_argument("--out-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="recsys-consent-bench-"))
    command = "python benchmarks/ingest_consent.py " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv)  # fmt: skip
    rows = []
    try:
        for n in args.decisions:
            make_input(work / "raw", n, args.users)
            for run in ("first", "again"):
                row = run_one(work / "raw", work / "world", args.chunks, args.core)
                rows.append({"run": run, **row, "users": args.users, "command": command,
                             "loadavg_after": os.getloadavg()})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(work / "world")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest_consent.json").write_text(json.dumps({"runs": rows}, indent=2) + "\n")
    (out / "ingest_consent.md").write_text(markdown(rows))
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(json.dumps(worker(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
