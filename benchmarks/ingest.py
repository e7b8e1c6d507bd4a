"""Ingestion speed and memory: raw Parquet events -> a world folder (``recsys-ingest``).

    python benchmarks/ingest.py --events 5000000 20000000 50000000 --chunks 1000000
    python benchmarks/ingest.py --events 20000000 --chunks 250000 1000000 4000000

A platform-shaped raw input is generated on the fly under ``--work-dir`` (default: a temporary
folder, removed afterwards; never committed): ``--users`` account ids (ingested as
pseudonyms), 2,000 streamers, 10,000 products, 5,000 live sessions, their shelves, and the
events as one Parquet file of 1M-row row groups, every event valid (types in the platform's
mix, each with the fields its type needs, time non-decreasing). Each ingestion runs in its own
process pinned to one core (``taskset``; Arrow's thread pools set to one thread), lenient mode
with pseudonymisation, and reports wall and CPU seconds, events per second and the peak
resident memory sampled during the run. Memory should follow ``chunk_rows``, not the input.
Results: ``benchmarks/results/ingest.json`` and ``ingest.md``.
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

from recsys.data.schema import EVENT_REQUIREMENTS, EVENT_TYPES, TABLES

RESULTS = Path(__file__).resolve().parent / "results"
GROUP = 1_000_000
MIX = np.array([0.12, 0.12, 0.11, 0.35, 0.14, 0.05, 0.03, 0.001, 0.03, 0.019, 0.02])
N_STREAMERS, N_PRODUCTS, N_SESSIONS, T0, SPAN = 2_000, 10_000, 5_000, 1_717_000_000, 30 * 86_400


def entity_tables(n_users: int, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    users = pd.DataFrame({"user_id": 10**12 + np.arange(n_users), "age_band": "25-34",
                          "gender": rng.choice(["f", "m"], n_users), "region": "east",
                          "signup_ts": T0 - 86_400})  # fmt: skip
    streamers = pd.DataFrame({"streamer_id": np.arange(N_STREAMERS), "category": "beauty",
                              "follower_count": rng.integers(0, 10**6, N_STREAMERS)})  # fmt: skip
    products = pd.DataFrame({"product_id": np.arange(N_PRODUCTS), "category": "beauty",
                             "brand": "b", "imported": False, "price": 99.0,
                             "keywords": "lipstick matte"})  # fmt: skip
    sessions = pd.DataFrame({"session_id": np.arange(N_SESSIONS),
                             "streamer_id": np.arange(N_SESSIONS) % N_STREAMERS,
                             "start_ts": T0, "end_ts": T0 + SPAN})  # fmt: skip
    shelf = rng.integers(0, N_PRODUCTS, 4 * N_SESSIONS)
    showcase = pd.DataFrame({"session_id": np.repeat(np.arange(N_SESSIONS), 4),
                             "product_id": shelf, "start_ts": T0, "end_ts": T0 + SPAN})  # fmt: skip
    return {"users": users, "streamers": streamers, "products": products,
            "live_sessions": sessions, "showcase": showcase}  # fmt: skip


def event_group(start: int, n: int, n_total: int, n_users: int, rng) -> pa.Table:
    """Events start..start+n-1 of n_total, time spread evenly over SPAN (so non-decreasing)."""
    ids = np.arange(start, start + n, dtype=np.int64)
    kind = rng.choice(len(EVENT_TYPES), n, p=MIX / MIX.sum())
    session = rng.integers(0, N_SESSIONS, n)
    need = {f: np.array([f in EVENT_REQUIREMENTS[t] for t in EVENT_TYPES])[kind]
            for f in ("session_id", "streamer_id", "product_id", "dwell_s", "amount",
                      "coupon_value", "comment")}  # fmt: skip
    columns = {
        "event_id": ids,
        "ts": T0 + ids * SPAN // max(n_total, 1),
        "user_id": 10**12 + rng.integers(0, n_users, n),
        "event_type": np.array(EVENT_TYPES, dtype=object)[kind],
        "session_id": pa.array(session, mask=~need["session_id"]),
        "streamer_id": pa.array(session % N_STREAMERS, mask=~need["streamer_id"]),
        "product_id": pa.array(rng.integers(0, N_PRODUCTS, n), mask=~need["product_id"]),
        "dwell_s": pa.array(rng.exponential(300.0, n), mask=~need["dwell_s"]),
        "amount": pa.array(np.round(rng.uniform(9, 299, n), 2), mask=~need["amount"]),
        "coupon_value": pa.array(np.full(n, 10.0), mask=~need["coupon_value"]),
        "comment": pa.array(np.full(n, "好看吗", dtype=object), mask=~need["comment"]),
    }
    return pa.table(columns)


def make_input(folder: Path, n_events: int, n_users: int, seed: int = 0) -> float:
    """Write the raw tables; returns seconds spent."""
    began, rng = time.perf_counter(), np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in entity_tables(n_users, rng).items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    writer = None
    for start in range(0, n_events, GROUP):
        table = event_group(start, min(GROUP, n_events - start), n_events, n_users, rng)
        writer = writer or pq.ParquetWriter(folder / "events.parquet", table.schema)
        writer.write_table(table, row_group_size=GROUP)
    writer.close()
    return time.perf_counter() - began


def worker(source: Path, out: Path, chunk_rows: int) -> dict:
    """One ingestion in this process (one Arrow thread), measured."""
    from recsys.data.ingest import IngestSettings, TableSource, ingest_files
    from recsys.utils.resources import measure

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    settings = IngestSettings(
        source=str(source), out_dir=str(out), chunk_rows=chunk_rows, key="benchmark-key",
        tables={t: TableSource(t, t) for t in TABLES}, progress=False,
    )  # fmt: skip
    cpu0 = time.process_time()
    with measure() as memory:
        report = ingest_files(settings)
    cpu = time.process_time() - cpu0
    events = report.counts["events"]
    events_s = report.stage_seconds["events"]
    written = sum(p.stat().st_size for p in (out / "events").glob("*"))
    return {"events": events.input, "rejected": report.n_rejected, "chunk_rows": chunk_rows,
            "wall_s": round(memory.seconds, 2), "cpu_s": round(cpu, 2),
            "events_per_s": round(events.input / memory.seconds),
            "events_per_cpu_s": round(events.input / cpu),
            "stage_seconds": report.stage_seconds,
            "events_stage_per_s": round(events.input / events_s),
            "events_stage_per_cpu_s": round(events.input / report.stage_seconds["events_cpu"]),
            "peak_rss_mib": round(memory.peak_rss_mb), "start_rss_mib": round(memory.start_rss_mb),
            "input_mib": round((source / "events.parquet").stat().st_size / 2**20),
            "output_mib": round(written / 2**20)}  # fmt: skip


def run_one(source: Path, out: Path, chunk_rows: int, core: int) -> dict:
    """``worker`` in a fresh process pinned to one core (its own peak memory)."""
    command = [sys.executable, __file__, "--worker", str(source), str(out), str(chunk_rows)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    """One line per ingestion; events stage = reading, checking and writing the events (the
    entity tables, with their users' pseudonyms, come before it)."""
    lines = ["# Ingestion speed and memory (one core, lenient, pseudonymised)", "",
             "Each ingestion pinned to one core of a 2-core machine shared with other jobs (load "
             "average after the run in its row): wall seconds include waiting for that core, so "
             "events per CPU-second is the closer measure of one core's speed. The events stage "
             "reads, maps, pseudonymises, validates and writes the events; the entity tables "
             "(1M users hashed) come before it.", "",
             "| events | users | chunk rows | wall s | CPU s | events/s (events stage) | "
             "events/CPU-s (events stage) | peak RSS MiB | input MiB | load avg | command |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        load = r["machine"]["loadavg_after"][0]
        lines.append(f"| {r['events']:,} | {r['users']:,} | {r['chunk_rows']:,} | {r['wall_s']} "
                     f"| {r['cpu_s']} | {r['events_stage_per_s']:,} | "
                     f"{r['events_stage_per_cpu_s']:,} | {r['peak_rss_mib']} | {r['input_mib']} "
                     f"| {load:.1f} | `{r['command']}` |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, nargs="+", default=[5_000_000])
    p.add_argument("--chunks", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--core", type=int, default=0, help="the core each ingestion is pinned to")
    p.add_argument("--work-dir", default=None, help="raw inputs and outputs (default: temporary)")
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--append", action="store_true", help="add to the runs already in ingest.json")
    args = p.parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="recsys-ingest-bench-"))
    rows = []
    try:
        for n in args.events:
            source = work / f"raw-{n}"
            made = make_input(source, n, args.users) if not source.is_dir() else 0.0
            print(f"input of {n:,} events written in {made:.1f} s", flush=True)
            for chunk in args.chunks:
                rows.append(run_one(source, work / "world", chunk, args.core))
                rows[-1]["input_generate_s"] = round(made, 1)
                print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(source)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    command = "python benchmarks/ingest.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = {"cpus": os.cpu_count(), "loadavg_after": os.getloadavg(), "pinned_core": args.core}
    for row in rows:
        row |= {"command": command, "users": args.users, "machine": machine}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.append and (out / "ingest.json").is_file():
        rows = json.loads((out / "ingest.json").read_text())["runs"] + rows
    (out / "ingest.json").write_text(json.dumps({"runs": rows}, indent=2) + "\n")
    (out / "ingest.md").write_text(markdown(rows))
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(json.dumps(worker(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
