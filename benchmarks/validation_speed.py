"""Time ``recsys.data.validation.validate`` on a generated world with a million events.

    python benchmarks/validation_speed.py [--events 1000000] [--seed 0]

Reports the time of a strict pass over clean tables, a lenient pass over the same tables with
1% of events corrupted (negative amounts, unknown users, junk text in ``ts``), and the time
of writing the quarantine files.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.schema import EVENT_REQUIREMENTS, EVENT_TYPES, TABLES, pandas_dtype
from recsys.data.tables import LiveCommerceTables
from recsys.data.validation import validate

RESULTS = Path(__file__).resolve().parent / "results"


def _typed(name: str, columns: dict[str, object]) -> pd.DataFrame:
    schema = TABLES[name]
    return pd.DataFrame(columns).astype({c.name: pandas_dtype(c) for c in schema.columns})


def entity_tables(rng: np.random.Generator, n_users: int, n_sessions: int) -> dict:
    n_streamers, n_products = 1_000, 10_000
    users = {"user_id": np.arange(n_users) + 1, "age_band": "25-34", "gender": "f"}
    users |= {"region": "north", "signup_ts": 0}
    streamers = {"streamer_id": np.arange(n_streamers), "category": "food"}
    streamers["follower_count"] = rng.integers(0, 10_000, n_streamers)
    products = {"product_id": np.arange(n_products), "category": "food", "brand": "b"}
    products |= {"imported": False, "price": rng.uniform(1, 100, n_products), "keywords": "tea"}
    start = rng.integers(0, 10_000_000, n_sessions)
    sessions = {"session_id": np.arange(n_sessions)}
    sessions |= {"streamer_id": rng.integers(0, n_streamers, n_sessions)}
    sessions |= {"start_ts": start, "end_ts": start + 7_200}
    showcase = {"session_id": np.arange(n_sessions)}
    showcase |= {"product_id": rng.integers(0, n_products, n_sessions)}
    showcase |= {"start_ts": start, "end_ts": start + 600}
    frames = {"users": users, "streamers": streamers, "products": products}
    frames |= {"live_sessions": sessions, "showcase": showcase}
    return {name: _typed(name, columns) for name, columns in frames.items()}


def events_table(rng: np.random.Generator, entities: dict, n_events: int) -> pd.DataFrame:
    sessions = entities["live_sessions"]
    s = rng.integers(0, len(sessions), n_events)
    ts = sessions["start_ts"].to_numpy()[s] + rng.integers(0, 7_200, n_events)
    order = np.argsort(ts, kind="stable")  # event ids in time order: monotone per session
    s, ts = s[order], ts[order]
    kind = rng.integers(0, len(EVENT_TYPES), n_events)

    def needed(field: str) -> np.ndarray:
        return np.array([field in EVENT_REQUIREMENTS[t] for t in EVENT_TYPES])[kind]

    def where(field: str, values: np.ndarray) -> pd.Series:
        return pd.Series(values).where(needed(field) | (field == "session_id"))

    return _typed("events", {
        "event_id": np.arange(n_events), "ts": ts,
        "user_id": rng.integers(1, len(entities["users"]) + 1, n_events),
        "event_type": np.array(EVENT_TYPES)[kind],
        "session_id": s, "streamer_id": sessions["streamer_id"].to_numpy()[s],
        "product_id": where("product_id", rng.integers(0, 10_000, n_events)),
        "dwell_s": where("dwell_s", rng.uniform(1, 600, n_events)),
        "amount": where("amount", rng.uniform(1, 100, n_events)),
        "coupon_value": where("coupon_value", rng.uniform(1, 20, n_events)),
        "comment": where("comment", np.full(n_events, "nice")),
    })  # fmt: skip


def corrupt(events: pd.DataFrame, rng: np.random.Generator, share: float) -> pd.DataFrame:
    out = events.copy()
    rows = rng.choice(len(out), int(share * len(out)), replace=False)
    third = np.array_split(rows, 3)
    out.loc[third[0], "amount"] = -5.0
    out.loc[third[1], "user_id"] = -1
    ts = out["ts"].astype(object)
    ts[third[2]] = "junk"
    out["ts"] = ts
    return out


def timed(label: str, fn, rows: list[dict]):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    print(f"{label:<44}{seconds:8.2f} s")
    rows.append({"run": label, "seconds": round(seconds, 3)})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    entities = entity_tables(rng, n_users=100_000, n_sessions=5_000)
    events = events_table(rng, entities, args.events)
    clean = LiveCommerceTables(**entities, events=events)
    rows: list[dict] = []
    timed(f"strict, clean, {args.events} events", lambda: validate(clean), rows)
    dirty = LiveCommerceTables(**entities, events=corrupt(events, rng, 0.01))
    report = timed("lenient, 1% corrupted", lambda: validate(dirty, mode="lenient"), rows)
    with tempfile.TemporaryDirectory() as tmp:
        timed("lenient, 1% corrupted, with quarantine files",
              lambda: validate(dirty, mode="lenient", quarantine_dir=tmp), rows)  # fmt: skip
    print(report.summary())
    write_results(rows, args, report.counts["events"].rejected)


def write_results(rows: list[dict], args: argparse.Namespace, rejected: int) -> None:
    command = f"python benchmarks/validation_speed.py --events {args.events} --seed {args.seed}"
    for row in rows:
        row["events_per_s"] = round(args.events / row["seconds"])
    out = {"command": command, "events": args.events, "loadavg": os.getloadavg(),
           "rejected_in_corrupted_run": rejected, "runs": rows}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "validation_speed.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# Validation speed\n\n`{command}`\n",
        "| run | seconds | events/s |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r['run']} | {r['seconds']:.2f} | {r['events_per_s']:,} |" for r in rows]
    (RESULTS / "validation_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
