"""Replay one logged day as a stream: events in micro-batches -> triggers -> decisions -> copy.

``replay_day`` reads a folder in the project's layout (a market run, or any world folder with
``events/part-<day>.parquet``): the days before ``day`` build the viewers' history, profile tags
and the trigger engine's state; the day itself arrives ``micro`` events at a time, and each
batch's triggers are decided at once (``now``: the batch's last event; the day's earlier
messages count towards the caps). Consent is the market's at the end of the day before
(``state/day-<day-1>.pkl``), or in-app only for everyone where the folder has none. The
response model is one a study saved (``reach_model.pkl``).
"""

from __future__ import annotations

import pickle
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from recsys.data.schema import TABLES
from recsys.data.tables import read_table
from recsys.reach.copy import CopyTemplates, CopyWriter
from recsys.reach.decide import Catalogue, DecisionConfig, decide
from recsys.reach.features import Clock, ReachHistory, streamer_categories
from recsys.reach.model import ResponseModel
from recsys.reach.stream import EventBatch
from recsys.reach.texts import ProfileTags, message_texts
from recsys.reach.triggers import TriggerEngine


def _day_logs(folder: Path, day: int) -> dict[str, pd.DataFrame]:
    logs = {"events": read_table(folder / "events" / f"part-{day:05d}.parquet", TABLES["events"])}
    for table in ("requests", "messages"):
        path = folder / table / f"part-{day:05d}.parquet"
        if path.exists():
            logs[table] = pd.read_parquet(path)
    return logs


def _consent(folder: Path, day: int, users: pd.DataFrame) -> pd.DataFrame:
    state = folder / "state" / f"day-{day - 1:05d}.pkl"
    if state.exists():
        with open(state, "rb") as f:
            return pickle.load(f).consent
    return users[["user_id"]].assign(in_app=True, push=False, sms=False)


def replay_day(folder: str | Path, day: int, model: ResponseModel, decision: DecisionConfig,
               templates: CopyTemplates, clock: Clock | None = None,
               micro: int = 200) -> tuple[pd.DataFrame, dict]:  # fmt: skip
    """(every decision of the day with its copy, the replay's counts and timings)."""
    folder, clock = Path(folder), clock or Clock()
    if not (folder / "events" / f"part-{day:05d}.parquet").exists():
        raise FileNotFoundError(f"replay: {folder}/events/part-{day:05d}.parquet does not exist")
    f = {n: pd.read_parquet(folder / f"{n}.parquet")
         for n in ("users", "products", "live_sessions", "showcase")}  # fmt: skip
    shelf = f["showcase"][["session_id", "product_id"]].merge(f["live_sessions"])
    category = streamer_categories(shelf, f["products"])
    history, tags = ReachHistory(clock, category), ProfileTags(f["products"], category)
    engine = TriggerEngine(f["live_sessions"], f["showcase"], f["products"])
    for before in range(day):
        logs = _day_logs(folder, before)
        history.observe(logs)
        tags.observe(logs["events"])
        engine.push(EventBatch.from_frame(logs["events"]))
    events = _day_logs(folder, day)["events"]
    batch = EventBatch.from_frame(events, engine.faults)
    engine.advance(int(batch.ts.min()) if len(batch) else 0)  # what the day inherits is old news
    catalogue = Catalogue.of(f["live_sessions"], f["products"])
    consent, writer = _consent(folder, day, f["users"]), CopyWriter(templates)
    market = SimpleNamespace(products=f["products"])
    rows, waits, today, started = [], [], None, time.perf_counter()
    for i in range(0, len(batch), micro):
        arrived, part = time.perf_counter(), batch.take(slice(i, i + micro))
        now = int(part.ts.max())
        triggers = pd.concat([engine.push(part), engine.advance(now)], ignore_index=True)
        if triggers.empty:
            continue
        out = decide(triggers, consent, history, model, catalogue, decision, clock, now, today)
        out = message_texts(out.assign(decided_ts=now), market, history, writer, tags)
        today = pd.concat([today, out.loc[out["send"]]], ignore_index=True)
        rows.append(out)
        waits += [time.perf_counter() - arrived] * len(triggers)
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return table, _stats(table, engine, writer, len(batch), time.perf_counter() - started, waits)


def _stats(table, engine, writer, n_events, seconds, waits) -> dict:
    w = np.array(waits) if waits else np.zeros(1)
    return {"events": n_events, "seconds": round(seconds, 2),
            "triggers": table["kind"].value_counts().to_dict() if len(table) else {},
            "decisions": table["reason_code"].value_counts().to_dict() if len(table) else {},
            "sent_by_channel": table.loc[table["send"], "channel"].value_counts().to_dict()
            if len(table) else {}, "faults": dict(+Counter(engine.faults)),
            "copy_faults": dict(writer.faults),
            "delay_ms": {"p50": float(np.percentile(w, 50) * 1e3),
                         "p99": float(np.percentile(w, 99) * 1e3)}}  # fmt: skip
